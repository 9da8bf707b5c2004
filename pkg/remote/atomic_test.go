//go:build unix

package remote

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBackupPath(t *testing.T) {
	stamp := backupStamp(time.Date(2026, 11, 23, 12, 13, 14, 0, time.FixedZone("CET", 3600)))
	if stamp != "20261123T111314Z" {
		t.Errorf("stamp = %q, want UTC 20261123T111314Z", stamp)
	}
	if got, want := backupPath("/var/lib/etcdadm/backup", stamp, "/etc/kubernetes/pki/etcd/ca.crt"),
		"/var/lib/etcdadm/backup/20261123T111314Z/etc/kubernetes/pki/etcd/ca.crt"; got != want {
		t.Errorf("backupPath = %q, want %q", got, want)
	}
}

func TestTempName(t *testing.T) {
	a, err := tempName("/etc/kubernetes/manifests/etcd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := tempName("/etc/kubernetes/manifests/etcd.yaml")
	if a == b {
		t.Errorf("two temporary names are equal: %q", a)
	}
	if filepath.Dir(a) != "/etc/kubernetes/manifests" || !strings.HasPrefix(filepath.Base(a), ".etcd.yaml.etcdadm-") || !isTempName(filepath.Base(a)) {
		t.Errorf("tempName = %q, want .etcd.yaml.etcdadm-<random>.tmp in the same directory", a)
	}
	for _, n := range []string{"etcd.yaml", ".etcd.yaml.swp", "x.etcdadm-1.tmp", ".x.tmp"} {
		if isTempName(n) {
			t.Errorf("isTempName(%q) = true", n)
		}
	}
}

func TestValidateFile(t *testing.T) {
	for _, f := range []File{
		{Path: "relative/x", Mode: 0o644},
		{Path: "/a/../b", Mode: 0o644},
		{Path: "/", Mode: 0o644},
		{Path: "/x", Mode: fs.ModeDir | 0o755},
		{Path: "/x", Mode: 0o644, DirMode: fs.ModeSymlink},
		{Path: "/x", Mode: 0o644, UID: -1},
	} {
		if err := validateFile(f, ""); err == nil {
			t.Errorf("validateFile(%+v) = nil, want an error", f)
		}
	}
	if err := validateFile(File{Path: "/x", Mode: 0o644}, "backup"); err == nil {
		t.Error("relative backup directory accepted")
	}
	if err := validateFile(File{Path: "/usr/bin/x", Mode: fs.ModeSetuid | 0o755}, "/b"); err != nil {
		t.Error(err)
	}
}

func testWriter(t *testing.T, fsys fileSystem) *fileWriter {
	t.Helper()
	return newFileWriter(fsys, "20260101T000000Z", slog.New(slog.DiscardHandler))
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to root and another user")
	}
}

func readModeOwner(t *testing.T, p string) (fs.FileMode, int, int) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fi.Mode(), int(st.Uid), int(st.Gid)
}

func TestWriteAtomicLifecycle(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	w := testWriter(t, osFS{})
	target := filepath.Join(root, "etc/kubernetes/pki/etcd/server.key")
	backups := filepath.Join(root, "backup")

	res, err := w.write(File{Path: target, Mode: 0o600, Data: []byte("v1"), DirMode: 0o700}, backups)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != WriteCreated || res.BackupPath != "" {
		t.Errorf("first write = %+v, want created without backup", res)
	}
	for _, d := range []string{"etc", "etc/kubernetes", "etc/kubernetes/pki", "etc/kubernetes/pki/etcd"} {
		if m, _, _ := readModeOwner(t, filepath.Join(root, d)); m.Perm() != 0o700 || !m.IsDir() {
			t.Errorf("created directory %s has mode %v, want 0700", d, m)
		}
	}
	if m, uid, gid := readModeOwner(t, target); m != 0o600 || uid != 0 || gid != 0 {
		t.Errorf("file mode/owner = %v %d:%d, want 0600 0:0", m, uid, gid)
	}

	st1, _ := os.Stat(target)
	res, err = w.write(File{Path: target, Mode: 0o600, Data: []byte("v1")}, backups)
	if err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(target)
	if res.Action != WriteUnchanged || res.Changed() {
		t.Errorf("identical write = %+v, want unchanged", res)
	}
	if !os.SameFile(st1, st2) || !st1.ModTime().Equal(st2.ModTime()) {
		t.Error("identical write replaced the file")
	}

	res, err = w.write(File{Path: target, Mode: 0o640, Data: []byte("v1"), UID: 65534, GID: 65534}, backups)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != WriteMetadata {
		t.Errorf("mode change = %+v, want metadata", res)
	}
	if m, uid, gid := readModeOwner(t, target); m != 0o640 || uid != 65534 || gid != 65534 {
		t.Errorf("after metadata fix: %v %d:%d, want 0640 65534:65534", m, uid, gid)
	}

	res, err = w.write(File{Path: target, Mode: 0o600, Data: []byte("v2")}, backups)
	if err != nil {
		t.Fatal(err)
	}
	wantBackup := filepath.Join(backups, "20260101T000000Z", target)
	if res.Action != WriteReplaced || res.BackupPath != wantBackup {
		t.Errorf("replacing write = %+v, want replaced with backup %s", res, wantBackup)
	}
	if b, _ := os.ReadFile(target); string(b) != "v2" {
		t.Errorf("content = %q, want v2", b)
	}
	if b, _ := os.ReadFile(wantBackup); string(b) != "v1" {
		t.Errorf("backup content = %q, want v1", b)
	}
	if m, uid, gid := readModeOwner(t, wantBackup); m != 0o640 || uid != 65534 || gid != 65534 {
		t.Errorf("backup mode/owner = %v %d:%d, want the old file's 0640 65534:65534", m, uid, gid)
	}
	if m, _, _ := readModeOwner(t, filepath.Join(backups, "20260101T000000Z")); m.Perm() != 0o700 {
		t.Errorf("backup directory mode = %v, want 0700", m)
	}

	// A second change in the same run keeps the first backup: the state before the run.
	if _, err := w.write(File{Path: target, Mode: 0o600, Data: []byte("v3")}, backups); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(wantBackup); string(b) != "v1" {
		t.Errorf("backup content after a second change = %q, want v1", b)
	}
	assertNoTemps(t, filepath.Dir(target))
}

func assertNoTemps(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if isTempName(e.Name()) {
			t.Errorf("temporary file %s left in %s", e.Name(), dir)
		}
	}
}

func TestWriteAtomicRefusesNonRegular(t *testing.T) {
	root := t.TempDir()
	w := testWriter(t, osFS{})
	dir := filepath.Join(root, "d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "link")
	if err := os.Symlink(filepath.Join(root, "elsewhere"), link); err != nil {
		t.Fatal(err)
	}
	uid, gid := os.Geteuid(), os.Getegid()
	for _, p := range []string{dir, link} {
		if _, err := w.write(File{Path: p, Mode: 0o644, Data: []byte("x"), UID: uid, GID: gid}, ""); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("write over %s: err = %v, want a refusal", p, err)
		}
	}
	if _, err := w.write(File{Path: filepath.Join(root, "link", "x"), Mode: 0o644, UID: uid, GID: gid}, ""); err == nil {
		t.Error("write under a dangling symlink succeeded")
	}
}

func TestWriteAtomicSweepsStaleTemps(t *testing.T) {
	root := t.TempDir()
	stale := filepath.Join(root, ".ca.crt.etcdadm-0123456789ab.tmp")
	keep := filepath.Join(root, ".other.swp")
	for _, p := range []string{stale, keep} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w := testWriter(t, osFS{})
	if _, err := w.write(File{Path: filepath.Join(root, "ca.crt"), Mode: 0o644, Data: []byte("x"), UID: os.Geteuid(), GID: os.Getegid()}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale temporary file still there: %v", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("unrelated file removed: %v", err)
	}
}

// faultFS fails one operation, as a host that goes away would.
type faultFS struct {
	osFS
	failWriteAfter int  // bytes written before the write fails; <0: never
	failRename     bool // rename fails
	failRemove     bool // the connection is gone: cleanup fails too
}

type faultFile struct {
	tempFile
	left *int
}

func (f faultFile) Write(p []byte) (int, error) {
	if *f.left >= 0 && len(p) > *f.left {
		n, _ := f.tempFile.Write(p[:*f.left])
		*f.left = 0
		return n, errors.New("connection lost")
	}
	if *f.left >= 0 {
		*f.left -= len(p)
	}
	return f.tempFile.Write(p)
}

func (f *faultFS) CreateExclusive(p string) (tempFile, error) {
	tf, err := f.osFS.CreateExclusive(p)
	if err != nil {
		return nil, err
	}
	return faultFile{tf, &f.failWriteAfter}, nil
}

func (f *faultFS) Rename(o, n string) error {
	if f.failRename {
		return errors.New("connection lost")
	}
	return f.osFS.Rename(o, n)
}

func (f *faultFS) Remove(p string) error {
	if f.failRemove {
		return errors.New("connection lost")
	}
	return f.osFS.Remove(p)
}

func TestWriteAtomicFailureKeepsOldContent(t *testing.T) {
	uid, gid := os.Geteuid(), os.Getegid()
	old := bytes.Repeat([]byte("old "), 1000)
	big := bytes.Repeat([]byte("new!"), 1<<16)
	for name, fsys := range map[string]*faultFS{
		"write fails, cleanup works": {failWriteAfter: 4096},
		"rename fails":               {failWriteAfter: -1, failRename: true},
		"connection gone":            {failWriteAfter: 4096, failRemove: true},
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			target := filepath.Join(root, "etcd.yaml")
			if err := os.WriteFile(target, old, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := testWriter(t, fsys).write(File{Path: target, Mode: 0o600, Data: big, UID: uid, GID: gid}, "")
			if err == nil {
				t.Fatal("write succeeded despite the fault")
			}
			if b, _ := os.ReadFile(target); !bytes.Equal(b, old) {
				t.Fatalf("target holds %d bytes after a failed write, want the old %d", len(b), len(old))
			}
			if !fsys.failRemove {
				assertNoTemps(t, root)
				return
			}
			// Cleanup was impossible: a new session's next write removes the leftover.
			entries, _ := os.ReadDir(root)
			if len(entries) != 2 {
				t.Fatalf("want the target and one leftover, got %d entries", len(entries))
			}
			if _, err := testWriter(t, osFS{}).write(File{Path: target, Mode: 0o600, Data: big, UID: uid, GID: gid}, ""); err != nil {
				t.Fatal(err)
			}
			assertNoTemps(t, root)
			if b, _ := os.ReadFile(target); !bytes.Equal(b, big) {
				t.Error("rewrite did not land")
			}
		})
	}
}

func TestMkdirAllKeepsExisting(t *testing.T) {
	root := t.TempDir()
	existing := filepath.Join(root, "existing")
	if err := os.Mkdir(existing, 0o751); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(existing, 0o751); err != nil {
		t.Fatal(err)
	}
	if err := mkdirAll(osFS{}, filepath.Join(existing, "a/b"), 0o700); err != nil {
		t.Fatal(err)
	}
	if m, _, _ := readModeOwner(t, existing); m.Perm() != 0o751 {
		t.Errorf("existing directory mode changed to %v", m)
	}
	if m, _, _ := readModeOwner(t, filepath.Join(existing, "a/b")); m.Perm() != 0o700 {
		t.Errorf("new directory mode = %v, want 0700", m)
	}
	f := filepath.Join(root, "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := mkdirAll(osFS{}, filepath.Join(f, "sub"), 0o755); err == nil {
		t.Error("mkdirAll under a file succeeded")
	}
}
