package fakehost_test

import (
	"context"
	"errors"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/internal/fakehost"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

func stat(t *testing.T, h *fakehost.Host, p string) remote.FileInfo {
	t.Helper()
	fi, err := h.Stat(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

func TestFiles(t *testing.T) {
	h := fakehost.New("node-1")
	ctx := context.Background()
	p := "/etc/kubernetes/pki/etcd/ca.crt"

	if _, err := h.ReadFile(ctx, p); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "node-1") {
		t.Errorf("missing file: err = %v, want fs.ErrNotExist naming the host", err)
	}
	if _, err := h.Stat(ctx, p); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat missing file: err = %v", err)
	}
	res, err := h.WriteFile(ctx, remote.File{Path: p, Mode: 0o644, Data: []byte("cert")}, "/var/lib/etcdadm/backup")
	if err != nil || res.Action != remote.WriteCreated || res.BackupPath != "" {
		t.Fatalf("write = %+v, %v", res, err)
	}
	if fi := stat(t, h, p); fi.Mode != 0o644 || fi.UID != 0 || fi.GID != 0 || fi.Size != 4 || fi.IsDir() || fi.Path != p || fi.ModTime.IsZero() {
		t.Errorf("stat = %+v", fi)
	}
	if b, err := h.ReadFile(ctx, p); err != nil || string(b) != "cert" {
		t.Errorf("read = %q, %v", b, err)
	}
	if fi := stat(t, h, "/etc/kubernetes/pki"); fi.Mode != fs.ModeDir|remote.DefaultDirMode || !fi.IsDir() {
		t.Errorf("parent made by WriteFile = %+v, want the default directory mode", fi)
	}
	if _, err := h.ReadFile(ctx, "/etc/kubernetes"); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("read a directory: err = %v", err)
	}

	data := "/var/lib/etcd"
	if err := h.MkdirAll(ctx, data, 0o700); err != nil {
		t.Fatal(err)
	}
	if fi := stat(t, h, data); fi.Mode != fs.ModeDir|0o700 {
		t.Errorf("data dir = %+v", fi)
	}
	if fi := stat(t, h, "/"); !fi.IsDir() {
		t.Errorf("root = %+v", fi)
	}
	for _, bad := range []string{"relative", "/a/../b", "/a/"} {
		if err := h.MkdirAll(ctx, bad, 0o700); err == nil {
			t.Errorf("MkdirAll(%q) accepted", bad)
		}
		if _, err := h.Stat(ctx, bad); err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat(%q): err = %v, want a refused path", bad, err)
		}
	}
	if err := h.MkdirAll(ctx, "/x", fs.ModeSymlink|0o700); err == nil {
		t.Error("MkdirAll with a type bit accepted")
	}
}

// The same outcomes as the real transports' atomic write, step by step.
func TestWriteFileLifecycle(t *testing.T) {
	h := fakehost.New("node-1")
	ctx := context.Background()
	target := "/etc/kubernetes/pki/etcd/server.key"
	backups := "/var/lib/etcdadm/backup"
	write := func(f remote.File) remote.WriteResult {
		t.Helper()
		f.Path = target
		res, err := h.WriteFile(ctx, f, backups)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	if res := write(remote.File{Mode: 0o600, Data: []byte("v1"), DirMode: 0o700}); res.Action != remote.WriteCreated || res.BackupPath != "" {
		t.Errorf("first write = %+v, want created without backup", res)
	}
	for _, d := range []string{"/etc", "/etc/kubernetes", "/etc/kubernetes/pki", "/etc/kubernetes/pki/etcd"} {
		if fi := stat(t, h, d); fi.Mode != fs.ModeDir|0o700 {
			t.Errorf("created directory %s has mode %v, want 0700", d, fi.Mode)
		}
	}
	first := stat(t, h, target)
	if first.Mode != 0o600 || first.UID != 0 || first.GID != 0 {
		t.Errorf("file = %+v, want 0600 0:0", first)
	}

	if res := write(remote.File{Mode: 0o600, Data: []byte("v1")}); res.Action != remote.WriteUnchanged || res.Changed() {
		t.Errorf("identical write = %+v, want unchanged", res)
	}
	if fi := stat(t, h, target); !fi.ModTime.Equal(first.ModTime) {
		t.Error("identical write replaced the file")
	}

	if res := write(remote.File{Mode: 0o640, Data: []byte("v1"), UID: 65534, GID: 65534}); res.Action != remote.WriteMetadata {
		t.Errorf("mode change = %+v, want metadata", res)
	}
	if fi := stat(t, h, target); fi.Mode != 0o640 || fi.UID != 65534 || fi.GID != 65534 || !fi.ModTime.Equal(first.ModTime) {
		t.Errorf("after metadata fix: %+v, want 0640 65534:65534 with the same time", fi)
	}

	res := write(remote.File{Mode: 0o600, Data: []byte("v2")})
	if res.Action != remote.WriteReplaced || !strings.HasPrefix(res.BackupPath, backups+"/") || !strings.HasSuffix(res.BackupPath, target) {
		t.Fatalf("replacing write = %+v, want replaced with a backup under %s", res, backups)
	}
	stamp := strings.TrimSuffix(strings.TrimPrefix(res.BackupPath, backups+"/"), target)
	if !regexp.MustCompile(`^\d{8}T\d{6}Z$`).MatchString(stamp) {
		t.Errorf("backup stamp %q, want <UTC time>Z", stamp)
	}
	if b, mode, ok := h.File(target); !ok || string(b) != "v2" || mode != 0o600 {
		t.Errorf("content = %q %v %v, want v2 0600", b, mode, ok)
	}
	if b, _, _ := h.File(res.BackupPath); string(b) != "v1" {
		t.Errorf("backup content = %q, want v1", b)
	}
	if fi := stat(t, h, res.BackupPath); fi.Mode != 0o640 || fi.UID != 65534 || fi.GID != 65534 {
		t.Errorf("backup = %+v, want the old file's 0640 65534:65534", fi)
	}
	for d := path.Dir(res.BackupPath); d != "/var/lib/etcdadm"; d = path.Dir(d) {
		if fi := stat(t, h, d); fi.Mode != fs.ModeDir|0o700 {
			t.Errorf("backup directory %s has mode %v, want 0700", d, fi.Mode)
		}
	}

	// A second change in the same run keeps the first backup: the state before the run.
	if again := write(remote.File{Mode: 0o600, Data: []byte("v3")}); again.BackupPath != res.BackupPath {
		t.Errorf("second backup at %s, want %s", again.BackupPath, res.BackupPath)
	}
	if b, _, _ := h.File(res.BackupPath); string(b) != "v1" {
		t.Errorf("backup content after a second change = %q, want v1", b)
	}
	if got, want := h.Paths(), []string{target, res.BackupPath}; !slices.Equal(got, want) {
		t.Errorf("files = %v, want %v", got, want)
	}
	if res, err := h.WriteFile(ctx, remote.File{Path: target, Mode: 0o600, Data: []byte("v4")}, ""); err != nil || res.BackupPath != "" || res.Action != remote.WriteReplaced {
		t.Errorf("write without a backup directory = %+v, %v", res, err)
	}
}

func TestWriteFileRefuses(t *testing.T) {
	h := fakehost.New("node-1")
	ctx := context.Background()
	if err := h.MkdirAll(ctx, "/d", 0o755); err != nil {
		t.Fatal(err)
	}
	h.PutFile("/file", nil, 0o600)
	for _, tc := range []struct {
		f         remote.File
		backupDir string
		want      string
	}{
		{remote.File{Path: "relative/x", Mode: 0o644}, "", "not an absolute, clean file path"},
		{remote.File{Path: "/a/../b", Mode: 0o644}, "", "not an absolute, clean file path"},
		{remote.File{Path: "/", Mode: 0o644}, "", "not an absolute, clean file path"},
		{remote.File{Path: "/x", Mode: fs.ModeDir | 0o755}, "", "bits other than permissions"},
		{remote.File{Path: "/x", Mode: 0o644, DirMode: fs.ModeSymlink}, "", "bits other than permissions"},
		{remote.File{Path: "/x", Mode: 0o644, UID: -1}, "", "negative"},
		{remote.File{Path: "/x", Mode: 0o644}, "backup", "backup directory"},
		{remote.File{Path: "/d", Mode: 0o644, Data: []byte("x")}, "", "not a regular file (d---------)"},
		{remote.File{Path: "/file/sub", Mode: 0o644}, "", "/file exists and is not a directory"},
	} {
		_, err := h.WriteFile(ctx, tc.f, tc.backupDir)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "write "+tc.f.Path+" on node-1: ") {
			t.Errorf("WriteFile(%+v, %q): err = %v, want %q", tc.f, tc.backupDir, err, tc.want)
		}
	}
	if _, err := h.WriteFile(ctx, remote.File{Path: "/usr/bin/x", Mode: fs.ModeSetuid | 0o755}, "/b"); err != nil {
		t.Error(err)
	}
	if fi := stat(t, h, "/usr/bin/x"); fi.Mode != fs.ModeSetuid|0o755 {
		t.Errorf("setuid file = %+v", fi)
	}
	if got := h.Paths(); !slices.Equal(got, []string{"/file", "/usr/bin/x"}) {
		t.Errorf("a refused write left files: %v", got)
	}
}

func TestMkdirAllKeepsExisting(t *testing.T) {
	h := fakehost.New("node-1")
	ctx := context.Background()
	if err := h.MkdirAll(ctx, "/existing", 0o751); err != nil {
		t.Fatal(err)
	}
	if err := h.MkdirAll(ctx, "/existing/a/b", 0o700); err != nil {
		t.Fatal(err)
	}
	if fi := stat(t, h, "/existing"); fi.Mode.Perm() != 0o751 {
		t.Errorf("existing directory mode changed to %v", fi.Mode)
	}
	if fi := stat(t, h, "/existing/a/b"); fi.Mode != fs.ModeDir|0o700 {
		t.Errorf("new directory mode = %v, want 0700", fi.Mode)
	}
	h.PutFile("/file", nil, 0o600)
	if err := h.MkdirAll(ctx, "/file/sub", 0o755); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("MkdirAll under a file: err = %v", err)
	}
}

func TestTestSideHelpers(t *testing.T) {
	h := fakehost.New("node-1")
	h.PutFile("/etc/b", []byte("b"), 0o644)
	h.PutFile("/etc/sub/a", []byte("a"), 0o600)
	h.PutFile("/a", []byte("x"), 0o600)
	h.PutFile("/a", []byte("replaced"), 0o640)
	if got := h.Paths(); !slices.Equal(got, []string{"/a", "/etc/b", "/etc/sub/a"}) {
		t.Errorf("Paths = %v", got)
	}
	b, mode, ok := h.File("/a")
	if !ok || string(b) != "replaced" || mode != 0o640 {
		t.Errorf("File = %q %v %v", b, mode, ok)
	}
	b[0] = 'X'
	if b, _, _ := h.File("/a"); string(b) != "replaced" {
		t.Error("File returned the host's own bytes")
	}
	if _, _, ok := h.File("/etc"); ok {
		t.Error("File reports a directory")
	}
	if fi := stat(t, h, "/etc/sub"); fi.Mode != fs.ModeDir|remote.DefaultDirMode {
		t.Errorf("parent made by PutFile = %+v", fi)
	}

	h.Remove("/etc")
	h.Remove("/missing")
	if got := h.Paths(); !slices.Equal(got, []string{"/a"}) {
		t.Errorf("after Remove: %v", got)
	}
	if _, err := h.Stat(context.Background(), "/etc/sub"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a removed directory's child: %v", err)
	}
	h.Remove("/")
	if fi := stat(t, h, "/"); !fi.IsDir() || len(h.Paths()) != 0 {
		t.Errorf("after removing everything: root %+v, files %v", fi, h.Paths())
	}

	for name, misuse := range map[string]func(){
		"PutFile relative":     func() { h.PutFile("rel", nil, 0o600) },
		"PutFile type bits":    func() { h.PutFile("/x", nil, fs.ModeDir|0o755) },
		"PutFile on directory": func() { h.PutFile("/", nil, 0o600) },
		"Remove relative":      func() { h.Remove("rel") },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", name)
				}
			}()
			misuse()
		}()
	}
}

func TestFilesHonourContext(t *testing.T) {
	h := fakehost.New("node-1")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.WriteFile(ctx, remote.File{Path: "/x", Mode: 0o600}, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("write with a cancelled context: %v", err)
	}
	if len(h.Paths()) != 0 {
		t.Error("a cancelled write wrote")
	}
	if _, err := h.ReadFile(ctx, "/x"); !errors.Is(err, context.Canceled) {
		t.Errorf("read with a cancelled context: %v", err)
	}
}
