package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
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
