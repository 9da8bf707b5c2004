//go:build linux

package remote

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/pkg/sftp"
)

// startLocalSFTP connects an SFTP client to an in-process server over this
// machine's file system, which, like the sshd's sftp subsystem, creates
// files with its process umask. check runs before each request is passed
// on: every earlier request has been answered by then, so check sees the
// state between two steps of a write.
func startLocalSFTP(t *testing.T, check func()) *sftp.Client {
	t.Helper()
	fromServer, serverOut := io.Pipe()
	fromClient, clientOut := io.Pipe()
	serverIn, toServer := io.Pipe()
	srv, err := sftp.NewServer(struct {
		io.Reader
		io.WriteCloser
	}{serverIn, serverOut})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = srv.Serve()
		serverOut.Close()
	}()
	go func() {
		defer wg.Done()
		for {
			var size [4]byte
			if _, err := io.ReadFull(fromClient, size[:]); err != nil {
				toServer.CloseWithError(err)
				return
			}
			packet := make([]byte, binary.BigEndian.Uint32(size[:]))
			if _, err := io.ReadFull(fromClient, packet); err != nil {
				toServer.CloseWithError(err)
				return
			}
			check()
			if _, err := toServer.Write(append(size[:], packet...)); err != nil {
				return
			}
		}
	}()
	c, err := sftp.NewClientPipe(fromServer, clientOut)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		fromClient.Close()
		wg.Wait()
	})
	return c
}

// exposedFiles lists the regular files under root that a user other than
// their owner can read: readable by group or others, in directories all of
// which such a user may enter.
func exposedFiles(root string) []string {
	var exposed []string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		switch {
		case fi.IsDir() && fi.Mode()&0o011 == 0:
			return filepath.SkipDir
		case fi.Mode().IsRegular() && fi.Mode()&0o044 != 0:
			exposed = append(exposed, fmt.Sprintf("%s (%v)", strings.TrimPrefix(p, root), fi.Mode()))
		}
		return nil
	})
	return exposed
}

// withUmask runs the rest of the test under umask 022, the sshd's on most
// hosts, with which the sftp subsystem creates files 0644.
func withUmask(t *testing.T) {
	old := syscall.Umask(0o022)
	t.Cleanup(func() { syscall.Umask(old) })
}

// Through the sshd's sftp subsystem, a private file is never readable by
// others, not between its creation and a chmod either: the state is checked
// between every two requests of the writes.
func TestSFTPSubsystemNeverExposesPrivateFiles(t *testing.T) {
	withUmask(t)
	root := t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var exposed []string
	requests := 0
	c := startLocalSFTP(t, func() {
		mu.Lock()
		defer mu.Unlock()
		requests++
		for _, e := range exposedFiles(root) {
			if !strings.Contains(e, ".key") {
				continue // public, like ca.crt
			}
			exposed = append(exposed, fmt.Sprintf("before request %d: %s", requests, e))
		}
	})
	log, _ := testLogger(t)
	w := newFileWriter(newStagingFS(c, os.Geteuid(), log), "20260101T000000Z", log)

	key := filepath.Join(root, "etc/kubernetes/pki/etcd/server.key")
	// A staging directory left by a cut connection, with a key in it.
	stale := filepath.Join(filepath.Dir(key), ".peer.key.etcdadm-0123456789ab.tmp")
	if err := os.MkdirAll(filepath.Dir(key), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, filepath.Base(stale)), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	uid, gid := os.Geteuid(), os.Getegid()
	backups := filepath.Join(root, "backup")
	for i, data := range []string{"key v1", "key v2"} {
		res, err := w.write(File{Path: key, Mode: 0o600, Data: []byte(data), UID: uid, GID: gid}, backups)
		if err != nil {
			t.Fatalf("write %d: %v", i+1, err)
		}
		if got, _ := os.ReadFile(key); string(got) != data {
			t.Errorf("write %d: content %q", i+1, got)
		}
		if i == 1 && res.BackupPath == "" {
			t.Error("no backup of the replaced key")
		}
	}
	if _, err := w.write(File{Path: filepath.Join(root, "etc/kubernetes/pki/etcd/ca.crt"), Mode: 0o644, Data: []byte("cert"), UID: uid, GID: gid}, ""); err != nil {
		t.Fatal(err)
	}
	if m, _, _ := readModeOwner(t, key); m != 0o600 {
		t.Errorf("key mode %v, want 0600", m)
	}
	mu.Lock()
	defer mu.Unlock()
	if requests < 20 {
		t.Fatalf("only %d requests seen", requests)
	}
	for _, e := range exposed {
		t.Errorf("readable by others %s", e)
	}
	assertNoTemps(t, filepath.Dir(key))
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale staging directory still there: %v", err)
	}
}

// A staging directory that does not end up private to the login user is
// removed, and the write refused with the fix.
func TestSFTPSubsystemRefusesStagingItCannotTrust(t *testing.T) {
	withUmask(t)
	root := t.TempDir()
	c := startLocalSFTP(t, func() {})
	log, _ := testLogger(t)
	w := newFileWriter(newStagingFS(c, os.Geteuid()+1, log), "20260101T000000Z", log)
	key := filepath.Join(root, "server.key")
	_, err := w.write(File{Path: key, Mode: 0o600, Data: []byte("key"), UID: os.Geteuid(), GID: os.Getegid()}, "")
	if err == nil || !strings.Contains(err.Error(), "install OpenSSH's sftp-server") || !strings.Contains(err.Error(), fmt.Sprintf("owned by uid %d", os.Geteuid())) {
		t.Fatalf("err = %v, want a refusal naming the owner and the fix", err)
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}
