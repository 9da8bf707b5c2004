package atomicfile

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

func TestWriteAllReplacesWithModesAndLeavesNoTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "a", "b", "x.key")
	crt := filepath.Join(dir, "a", "x.crt")
	if err := os.MkdirAll(filepath.Dir(crt), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crt, []byte("old"), 0o666); err != nil {
		t.Fatal(err)
	}
	err := WriteAll([]File{{Path: key, Data: []byte("secret"), Mode: 0o600}, {Path: crt, Data: []byte("new"), Mode: 0o644}}, 0o700)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]struct {
		data string
		mode os.FileMode
	}{key: {"secret", 0o600}, crt: {"new", 0o644}} {
		b, _ := os.ReadFile(p)
		st, _ := os.Stat(p)
		if string(b) != want.data || st.Mode().Perm() != want.mode {
			t.Errorf("%s: %q %o, want %q %o", p, b, st.Mode().Perm(), want.data, want.mode)
		}
	}
	if st, _ := os.Stat(filepath.Dir(key)); st.Mode().Perm() != 0o700 {
		t.Errorf("new dir mode %o", st.Mode().Perm())
	}
	filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error {
		if strings.HasSuffix(p, ".tmp") {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})
}

func TestWriteAllFailureChangesNothing(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A path under a regular file cannot be created.
	err := WriteAll([]File{{Path: good, Data: []byte("new"), Mode: 0o644}, {Path: filepath.Join(blocker, "x"), Data: []byte("y"), Mode: 0o644}}, 0o755)
	if err == nil {
		t.Fatal("no error")
	}
	if b, _ := os.ReadFile(good); string(b) != "old" {
		t.Errorf("good file changed to %q although the batch failed", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("left %d entries, want 2", len(entries))
	}
}

// A file of a known size has its space allocated before it is written: a
// size the disk cannot hold fails before write runs, leaving nothing; what
// was reserved past a shorter content is given back.
func TestWriteFromSized(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "big")
	called := false
	err := WriteFromSized(p, 1<<62, 0o600, 0o700, func(w io.Writer) error { called = true; return nil }, nil)
	if runtime.GOOS == "linux" && (err == nil || !strings.Contains(err.Error(), "no room for its") || called) {
		t.Errorf("a file larger than the disk: %v, write called %v", err, called)
	}
	if left, _ := os.ReadDir(dir); runtime.GOOS == "linux" && len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}

	data := bytes.Repeat([]byte("0123456789abcdef"), 2<<20/16)
	if err := WriteFromSized(p, 8<<20, 0o600, 0o700, func(w io.Writer) error { _, err := w.Write(data); return err }, nil); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, want %d: %v", len(got), len(data), err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > 4<<20 {
		t.Errorf("%d bytes of disk for %d bytes of content: the reserve was not given back", used, len(data))
	}
}
