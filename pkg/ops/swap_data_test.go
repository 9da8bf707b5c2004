package ops_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

func writeData(t *testing.T, dir, content string) {
	t.Helper()
	p := filepath.Join(dir, "member", "snap", "db")
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readData(t *testing.T, dir string) string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(dir, "member", "snap", "db"))
	return string(b)
}

// A swap keeps the old data under the run's backup directory, marked for
// good, and leaves no staging; swapping it back from there puts it in
// place again and clears the mark.
func TestSwapDataKeepsAndPutsBack(t *testing.T) {
	root := t.TempDir()
	data, staging := filepath.Join(root, "etcd"), filepath.Join(root, ".etcd.etcdadm-restore")
	writeData(t, data, "old")
	writeData(t, staging, "restored")
	e := localEnv(root)
	if err := ops.Execute(context.Background(), e, ops.SwapData{Path: data, Source: staging, Keep: facts.KeptPreRestore, Ref: "restore-x-tok"}); err != nil {
		t.Fatal(err)
	}
	kept := filepath.Join(e.BackupDir(), data)
	if readData(t, data) != "restored" || readData(t, kept) != "old" {
		t.Fatalf("after the swap: data %q, kept %q", readData(t, data), readData(t, kept))
	}
	if _, err := os.Stat(staging); err == nil {
		t.Error("the staging directory is left")
	}
	mark, err := os.ReadFile(filepath.Join(e.BackupDir(), facts.KeptFile))
	if err != nil || string(mark) != "pre-restore "+data+" restore-x-tok\n" {
		t.Errorf("mark %q %v", mark, err)
	}

	back := localEnv(root)
	back.Stamp = "20300102T000000Z"
	if err := ops.Execute(context.Background(), back, ops.SwapData{Path: data, Source: kept, Release: e.BackupDir()}); err != nil {
		t.Fatal(err)
	}
	if readData(t, data) != "old" || readData(t, filepath.Join(back.BackupDir(), data)) != "restored" {
		t.Errorf("after going back: data %q, this run's backup %q", readData(t, data), readData(t, filepath.Join(back.BackupDir(), data)))
	}
	if _, err := os.Stat(filepath.Join(e.BackupDir(), facts.KeptFile)); err == nil {
		t.Error("the mark stayed, but its data left")
	}
	if _, err := os.Stat(filepath.Join(back.BackupDir(), facts.KeptFile)); err == nil {
		t.Error("the restored data moved aside was marked as kept for good")
	}
}
