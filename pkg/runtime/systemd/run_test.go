package systemd

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/etcdadm-io/etcdadm/internal/opstest"
	"github.com/etcdadm-io/etcdadm/internal/testinv"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/hostfile"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/release"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// fakeSystemctl puts a systemctl stand-in first on PATH that records
// its arguments, one call a line, in the returned file.
func fakeSystemctl(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	if err := os.WriteFile(filepath.Join(dir, "systemctl"), []byte("#!/bin/sh\necho \"$*\" >> "+calls+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	return calls
}

// localEnv runs a member's operations on this machine, under root (a
// directory), with the systemd runtime.
func localEnv(root string) *opstest.Env {
	c := &config.Cluster{Spec: config.Spec{Etcd: config.Etcd{Runtime: config.RuntimeSystemd}, Hosts: []config.Host{{Name: "local", Address: "127.0.0.1"}}}}
	return &opstest.Env{C: c, H: c.Spec.Hosts[0], T: remote.NewLocal("local", false), R: Runtime{}, State: filepath.Join(root, "state"), Backups: filepath.Join(root, "backup"), Stamp: "20300101T000000Z"}
}

func binaryWrite(info *release.Info, dst string) ops.Write {
	b := info.Binaries["etcd"]
	f := hostfile.File{Path: dst, Mode: 0o755, Part: hostfile.PartManifests, Source: &hostfile.Source{Archive: info.Path, Entry: b.Entry, Size: b.Size, SHA256: b.SHA256}}
	return ops.Write{Path: dst, Change: &hostfile.Change{File: f, Path: dst, Kind: hostfile.Update}}
}

// A restart of a member run by systemd writes its environment file, then
// has systemctl enable and restart the unit without blocking.
func TestServiceRestart(t *testing.T) {
	root := t.TempDir()
	calls := fakeSystemctl(t)
	env := filepath.Join(root, "etc", "etcd", "etcd.env")
	if err := os.MkdirAll(filepath.Dir(env), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(env, []byte("ETCDADM_ARGS=\"--name=old\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := hostfile.File{Path: env, Mode: 0o644, Part: hostfile.PartManifests, Data: []byte("ETCDADM_ARGS=\"--name=local\"\n")}
	op := ops.RestartEtcd{Path: env, Command: CmdRestartEtcd, Change: &hostfile.Change{File: f, Path: env, Kind: hostfile.Update}}
	e := localEnv(root)
	if err := ops.Execute(context.Background(), e, op); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(env); string(b) != string(f.Data) {
		t.Errorf("environment file %q", b)
	}
	if b, _ := os.ReadFile(calls); string(b) != "enable etcd\nrestart --no-block etcd\n" {
		t.Errorf("systemctl calls:\n%s", b)
	}
	if done := e.Done(); len(done) != 2 || done[0].Ran != CmdRestartEtcd || !done[1].RestartedEtcd || done[1].RestartedKubelet || done[1].Wrote != env {
		t.Errorf("reported %+v", done)
	}

	// A restart for new certificates writes nothing.
	os.Remove(calls)
	if err := ops.Execute(context.Background(), localEnv(root), ops.RestartEtcd{Command: CmdRestartEtcd}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(calls); string(b) != "enable etcd\nrestart --no-block etcd\n" {
		t.Errorf("systemctl calls:\n%s", b)
	}
}

// A stop without a unit file stops the service by name.
func TestServiceStop(t *testing.T) {
	for _, p := range []string{"/etc/systemd/system/etcd.service", "/etc/etcd/etcd.env"} {
		if _, err := os.Stat(p); err == nil {
			t.Skipf("this machine has %s, which the stop would take", p)
		}
	}
	calls := fakeSystemctl(t)
	if err := ops.Execute(context.Background(), localEnv(t.TempDir()), ops.StopEtcd{Command: CmdStopEtcd}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(calls); string(b) != "stop etcd\n" {
		t.Errorf("systemctl calls:\n%s", b)
	}
}

// A rollback puts back the binaries the run replaced, from the copies it
// kept, and of the other files only those etcd reads when it starts.
func TestServiceRollBackBinaries(t *testing.T) {
	root := t.TempDir()
	info, _ := testinv.Release(t, root)
	dst := filepath.Join(root, "bin", "etcd")
	os.MkdirAll(filepath.Dir(dst), 0o755)
	if err := os.WriteFile(dst, []byte("old etcd"), 0o755); err != nil {
		t.Fatal(err)
	}
	e := localEnv(root)
	if err := ops.Execute(context.Background(), e, binaryWrite(info, dst)); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", "/usr/bin:/bin")
	put, err := ops.PutBack(context.Background(), e, func(p string) bool { return p == dst })
	if err != nil || len(put) != 1 || put[0] != dst {
		t.Fatalf("put back %v, %v", put, err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "old etcd" {
		t.Errorf("after the rollback the binary is %d bytes", len(b))
	}
	if st, _ := os.Stat(dst); st.Mode().Perm() != 0o755 {
		t.Errorf("mode %v", st.Mode())
	}
	for p, want := range map[string]bool{"/usr/local/bin/etcd": true, "/usr/local/bin/etcdctl": true, "/etc/kubernetes/pki/etcd/ca.crt": true,
		"/etc/kubernetes/pki/etcd/peer.key": true, "/etc/kubernetes/kubeadmcfg.yaml": false, "/etc/etcd/etcd.env": false, "/etc/kubernetes/pki/etcd/healthcheck-client.crt": false} {
		if etcdFile(p) != want {
			t.Errorf("a rollback puts %s back: %v, want %v", p, !want, want)
		}
	}
}

// A rollback in a run that replaced no binary (the run that did was cut
// before its restart) finds the copies the newest earlier run kept that
// differ from the binaries there now.
func TestKeptBinariesOfACutRun(t *testing.T) {
	root := t.TempDir()
	dst := filepath.Join(root, "bin", "etcd")
	backups := filepath.Join(root, "backup")
	for p, content := range map[string]string{
		dst: "new etcd",
		filepath.Join(backups, "20300101T000000Z", dst):     "oldest etcd",
		filepath.Join(backups, "20300102T000000Z", dst):     "old etcd",
		filepath.Join(backups, "20300103T000000Z", "other"): "not a binary",
	} {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e := localEnv(root)
	kept, err := KeptBinaries(context.Background(), e.T, backups, []string{dst, filepath.Join(root, "bin", "etcdctl")})
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != 1 || kept[0].Path != dst || kept[0].Backup != filepath.Join(backups, "20300102T000000Z", dst) {
		t.Fatalf("kept %+v, want the newest run's copy of etcd", kept)
	}
	// A copy equal to the binary there now is none to go back to.
	if err := os.WriteFile(dst, []byte("old etcd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if kept, _ = KeptBinaries(context.Background(), e.T, backups, []string{dst}); len(kept) != 1 || kept[0].Backup != filepath.Join(backups, "20300101T000000Z", dst) {
		t.Errorf("kept %+v, want the older copy that differs", kept)
	}
}
