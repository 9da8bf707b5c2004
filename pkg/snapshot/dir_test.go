package snapshot

import (
	"os"
	"path/filepath"
	"testing"
)

// The snapshots directory is made private: 0700, with a .gitignore that
// ignores everything; one an older etcdadm made open gets both, and a
// .gitignore of the operator's is left as it is.
func TestPrivateDir(t *testing.T) {
	root := t.TempDir()
	for name, prepare := range map[string]func(dir string){
		"missing": func(string) {},
		"open":    func(dir string) { os.MkdirAll(dir, 0o755); os.Chmod(dir, 0o755) },
	} {
		dir := filepath.Join(root, name, "snapshots")
		prepare(dir)
		if err := PrivateDir(dir); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(dir)
		if err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, mode %v; want 0700", name, err, st.Mode())
		}
		if b, err := os.ReadFile(filepath.Join(dir, ".gitignore")); err != nil || string(b) != gitignore {
			t.Errorf("%s: .gitignore %q, %v", name, b, err)
		}
	}
	dir := filepath.Join(root, "own")
	os.MkdirAll(dir, 0o700)
	os.WriteFile(filepath.Join(dir, ".gitignore"), []byte("*.db\n"), 0o644)
	if err := PrivateDir(dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, ".gitignore")); string(b) != "*.db\n" {
		t.Errorf("the operator's .gitignore was replaced: %q", b)
	}
}

// A restore's record is saved private, read back, and removed with the
// data made here that it names.
func TestRecord(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "snapshots")
	if r, err := ReadRecord(dir); r != nil || err != nil {
		t.Fatalf("no record: %+v %v", r, err)
	}
	made := t.TempDir()
	os.WriteFile(filepath.Join(made, "db"), []byte("x"), 0o600)
	r := &Record{Cluster: "c", File: "/s.db", SHA256: "abc", Token: "c-20300101T000000Z", TempDir: made}
	if err := r.Save(dir); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, RecordName)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("record: %v %v", st, err)
	}
	got, err := ReadRecord(dir)
	if err != nil || got.Token != r.Token || got.TempDir != made {
		t.Fatalf("read back %+v %v", got, err)
	}
	if err := RemoveRecord(dir, got); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, RecordName), made} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left", p)
		}
	}
}
