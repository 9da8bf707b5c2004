//go:build linux

package remote

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// hideSFTPServer is a mount namespace in which OpenSSH's sftp-server is not
// at /usr/lib/openssh, and in which sshd -T reads the test sshd's config,
// whose "Subsystem sftp" line names subsystem.
func hideSFTPServer(subsystem string) string {
	return fmt.Sprintf(`sed -i 's|^Subsystem sftp .*|Subsystem sftp %s|' "$SSHD_CONFIG"
empty=$(dirname "$SSHD_CONFIG")/empty
mkdir -p "$empty"
mount --bind "$empty" /usr/lib/openssh
mount --bind "$SSHD_CONFIG" /etc/ssh/sshd_config`, subsystem)
}

// dirEvent is one inotify event in a watched directory.
type dirEvent struct {
	name string
	mask uint32
}

// watchDir reports what happens to the entries of dir until stop, which
// returns once every event before it was reported.
func watchDir(t *testing.T, dir string, report func(dirEvent)) (stop func()) {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_CREATE|syscall.IN_MOVED_TO|syscall.IN_ATTRIB|syscall.IN_CLOSE_WRITE); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "inotify")
	sentinel := ".watch-end"
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			for off := 0; off+syscall.SizeofInotifyEvent <= n; {
				mask := binary.NativeEndian.Uint32(buf[off+4:])
				size := int(binary.NativeEndian.Uint32(buf[off+12:]))
				name := string(bytes.TrimRight(buf[off+syscall.SizeofInotifyEvent:off+syscall.SizeofInotifyEvent+size], "\x00"))
				off += syscall.SizeofInotifyEvent + size
				if name == sentinel {
					return
				}
				report(dirEvent{name: name, mask: mask})
			}
		}
	}()
	return func() {
		if err := os.WriteFile(filepath.Join(dir, sentinel), nil, 0o600); err != nil {
			t.Error(err)
		}
		<-done
		f.Close()
		os.Remove(filepath.Join(dir, sentinel))
	}
}

// Without an sftp-server binary, files are written through the sshd's
// internal-sftp, which creates them with the sshd's umask (022 here): a key
// must never appear where others can read it, even for a moment. It is
// staged in a private directory and renamed into place, so no regular file
// is ever created in its directory.
func TestIntegrationSFTPSubsystemStagesKeys(t *testing.T) {
	requireIntegration(t)
	withUmask(t) // inherited by sshd
	c := newClient(t)
	s := startSSHD(t, "subsystem", sshdOptions{authorized: []*testKey{c.key}, namespace: hideSFTPServer("internal-sftp")})
	c.trust(t, s.knownHostsLine(0))
	cfg := c.config(t, s)
	log, logBuf := testLogger(t)
	cfg.Logger = log
	tr := dial(t, cfg)
	ctx := context.Background()

	root := t.TempDir()
	dir := filepath.Join(root, "pki")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "server.key")
	var mu sync.Mutex
	var created, exposed []string
	movedIn := false
	stop := watchDir(t, dir, func(e dirEvent) {
		mu.Lock()
		defer mu.Unlock()
		if e.mask&syscall.IN_CREATE != 0 && e.mask&syscall.IN_ISDIR == 0 {
			created = append(created, e.name)
		}
		if e.mask&syscall.IN_MOVED_TO != 0 && e.name == "server.key" {
			movedIn = true
		}
		entries, _ := os.ReadDir(dir)
		for _, en := range entries {
			if fi, err := os.Lstat(filepath.Join(dir, en.Name())); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o077 != 0 {
				exposed = append(exposed, fmt.Sprintf("%s %v", en.Name(), fi.Mode()))
			}
		}
	})
	for _, data := range []string{"key v1", "key v2"} {
		if _, err := tr.WriteFile(ctx, File{Path: key, Mode: 0o600, Data: []byte(data)}, filepath.Join(root, "backup")); err != nil {
			t.Fatal(err)
		}
	}
	stop()

	if !strings.Contains(logBuf.String(), "using the sftp subsystem") {
		t.Fatalf("the sftp subsystem was not used:\n%s", logBuf)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(created) > 0 {
		t.Errorf("files created in %s with the subsystem's umask before any chmod: %v", dir, created)
	}
	if len(exposed) > 0 {
		t.Errorf("files seen readable by others: %v", exposed)
	}
	if !movedIn {
		t.Error("the key was not renamed into place")
	}
	if m, uid, _ := readModeOwner(t, key); m != 0o600 || uid != 0 {
		t.Errorf("key is %v owned by %d, want 0600 root's", m, uid)
	}
	if b, _ := os.ReadFile(key); string(b) != "key v2" {
		t.Errorf("key holds %q", b)
	}
	assertNoTemps(t, dir)
}

// sshd -T names the sftp-server binary sshd runs, wherever it is installed.
func TestIntegrationSFTPServerFoundThroughSSHD(t *testing.T) {
	requireIntegration(t)
	bin := t.TempDir()
	server, err := os.ReadFile("/usr/lib/openssh/sftp-server")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "sftp-server.real"), server, 0o755); err != nil {
		t.Fatal(err)
	}
	used := filepath.Join(bin, "used")
	wrapper := fmt.Sprintf("#!/bin/sh\necho \"$@\" >> %s\nexec %s \"$@\"\n", used, filepath.Join(bin, "sftp-server.real"))
	if err := os.WriteFile(filepath.Join(bin, "sftp-server"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	c := newClient(t)
	s := startSSHD(t, "sshd-t", sshdOptions{authorized: []*testKey{c.key}, namespace: hideSFTPServer(filepath.Join(bin, "sftp-server") + " -l INFO")})
	c.trust(t, s.knownHostsLine(0))
	cfg := c.config(t, s)
	log, logBuf := testLogger(t)
	cfg.Logger = log
	tr := dial(t, cfg)

	p := filepath.Join(t.TempDir(), "server.key")
	if _, err := tr.WriteFile(context.Background(), File{Path: p, Mode: 0o600, Data: []byte("key")}, ""); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logBuf.String(), "using the sftp subsystem") {
		t.Errorf("fell back to the sftp subsystem:\n%s", logBuf)
	}
	if b, _ := os.ReadFile(used); strings.TrimSpace(string(b)) != "-u 0077" {
		t.Errorf("sftp-server ran with %q, want it started by etcdadm with -u 0077", b)
	}
	if m, _, _ := readModeOwner(t, p); m != 0o600 {
		t.Errorf("mode %v, want 0600", m)
	}
}
