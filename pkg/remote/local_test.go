//go:build unix

package remote

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLocalRun(t *testing.T) {
	tr := NewLocal("node-1", true)
	defer tr.Close()
	ctx := context.Background()

	out, err := tr.Run(ctx, `read x; printf '%s|%s' "$x" "it's"`, strings.NewReader("from stdin\n"))
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "from stdin|it's" {
		t.Errorf("stdout = %q", out)
	}

	_, err = tr.Run(ctx, "echo partial; echo 'boom: no such unit' | tr a-z A-Z >&2; exit 3", nil)
	var ce *CommandError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *CommandError", err)
	}
	if ce.Host != "node-1" || ce.ExitCode != 3 || strings.TrimSpace(ce.Stderr) != "BOOM: NO SUCH UNIT" {
		t.Errorf("CommandError = %+v", ce)
	}
	if msg := err.Error(); msg != `run "echo partial; echo 'boom: no such unit' | tr a-z A-Z >&2; exit 3" on node-1: exit status 3: BOOM: NO SUCH UNIT` {
		t.Errorf("message = %q", msg)
	}
	if strings.Count(err.Error(), "BOOM") != 1 {
		t.Errorf("stderr printed more than once: %q", err)
	}

	ctx2, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = tr.Run(ctx2, "sleep 30", nil)
	if !errors.As(err, &ce) || ce.ExitCode != -1 || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled command: err = %v, want a CommandError wrapping the deadline", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("cancelled command took %v", time.Since(start))
	}
}

// What a started command wrote is read whole, even once it has exited.
func TestLocalStartOutputOutlivesTheCommand(t *testing.T) {
	tr := NewLocal("node-1", false)
	defer tr.Close()
	p, err := tr.Start(context.Background(), "head -c 30000 /dev/zero")
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	read := make(chan error, 1)
	go func() {
		// The reader starts only once the command is done writing.
		time.Sleep(200 * time.Millisecond)
		var err error
		got, err = io.ReadAll(p.Stdout)
		read <- err
	}()
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := <-read; err != nil || len(got) != 30000 {
		t.Errorf("read %d of 30000 bytes: %v", len(got), err)
	}
	if n, err := p.Stdout.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("a read after the end: %d, %v", n, err)
	}
}

func TestLocalFiles(t *testing.T) {
	requireRoot(t)
	tr := NewLocal("node-1", true)
	defer tr.Close()
	ctx := context.Background()
	root := t.TempDir()
	p := filepath.Join(root, "etc/kubernetes/pki/etcd/ca.crt")

	if _, err := tr.ReadFile(ctx, p); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "node-1") {
		t.Errorf("missing file: err = %v, want fs.ErrNotExist naming the host", err)
	}
	if _, err := tr.Stat(ctx, p); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat missing file: err = %v", err)
	}
	res, err := tr.WriteFile(ctx, File{Path: p, Mode: 0o644, Data: []byte("cert")}, filepath.Join(root, "backup"))
	if err != nil || res.Action != WriteCreated {
		t.Fatalf("write = %+v, %v", res, err)
	}
	fi, err := tr.Stat(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode != 0o644 || fi.UID != 0 || fi.GID != 0 || fi.Size != 4 || fi.IsDir() {
		t.Errorf("stat = %+v", fi)
	}
	if b, err := tr.ReadFile(ctx, p); err != nil || string(b) != "cert" {
		t.Errorf("read = %q, %v", b, err)
	}
	data := filepath.Join(root, "var/lib/etcd")
	if err := tr.MkdirAll(ctx, data, 0o700); err != nil {
		t.Fatal(err)
	}
	if fi, err := tr.Stat(ctx, data); err != nil || fi.Mode != fs.ModeDir|0o700 {
		t.Errorf("data dir = %+v, %v", fi, err)
	}
	if err := tr.MkdirAll(ctx, "relative", 0o700); err == nil {
		t.Error("relative MkdirAll accepted")
	}
}

func TestLocalDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = io.Copy(c, c)
			c.Close()
		}
	}()
	conn, err := NewLocal("node-1", false).Dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || !bytes.Equal(buf, []byte("ping")) {
		t.Errorf("echo = %q, %v", buf, err)
	}
}

// As root, sudo needs no rule, so the path a non-root operator takes (sudo
// for commands, an sftp-server started through sudo for files) runs here.
func TestLocalThroughSudo(t *testing.T) {
	requireRoot(t)
	if !isExecutable("/usr/bin/sudo") || !isExecutable("/usr/lib/openssh/sftp-server") {
		t.Skip("needs sudo and /usr/lib/openssh/sftp-server")
	}
	tr := newLocal("node-1", true)
	defer tr.Close()
	ctx := context.Background()
	out, err := tr.Run(ctx, "id -u; cat", strings.NewReader("in"))
	if err != nil || string(out) != "0\nin" {
		t.Fatalf("run through sudo: %q, %v", out, err)
	}
	root := t.TempDir()
	f := File{Path: filepath.Join(root, "pki/etcd/healthcheck-client.key"), Mode: 0o640, Data: []byte("key"), UID: 65534, GID: 65534, DirMode: 0o700}
	res, err := tr.WriteFile(ctx, f, filepath.Join(root, "backup"))
	if err != nil || res.Action != WriteCreated {
		t.Fatalf("write through sudo: %+v, %v", res, err)
	}
	if m, uid, gid := readModeOwner(t, f.Path); m != f.Mode || uid != f.UID || gid != f.GID {
		t.Errorf("written file: %v %d:%d", m, uid, gid)
	}
	if m, _, _ := readModeOwner(t, filepath.Dir(f.Path)); m != fs.ModeDir|0o700 {
		t.Errorf("created directory: %v", m)
	}
	f.Data = []byte("new key")
	res, err = tr.WriteFile(ctx, f, filepath.Join(root, "backup"))
	if err != nil || res.Action != WriteReplaced || res.BackupPath == "" {
		t.Fatalf("replace through sudo: %+v, %v", res, err)
	}
	if b, err := tr.ReadFile(ctx, res.BackupPath); err != nil || string(b) != "key" {
		t.Errorf("backup: %q, %v", b, err)
	}
	if fi, err := tr.Stat(ctx, f.Path); err != nil || fi.Size != int64(len(f.Data)) {
		t.Errorf("stat: %+v, %v", fi, err)
	}
	if _, err := tr.ReadFile(ctx, filepath.Join(root, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode()&0o111 != 0
}
