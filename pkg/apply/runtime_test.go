package apply

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
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

// testRelease writes a release tarball whose etcd is big enough to take
// many reads, and returns its Info.
func testRelease(t *testing.T, dir string) (*release.Info, []byte) {
	t.Helper()
	etcd := bytes.Repeat([]byte("etcd binary "), 300000)
	files := map[string]string{"etcd": filepath.Join(dir, "etcd.src"), "etcdctl": filepath.Join(dir, "etcdctl.src")}
	if err := os.WriteFile(files["etcd"], etcd, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files["etcdctl"], []byte("etcdctl"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "etcd-v3.7.0-linux-amd64.tar.gz")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := release.Write(f, "etcd-v3.7.0-linux-amd64", []string{"etcd", "etcdctl"}, files); err != nil {
		t.Fatal(err)
	}
	f.Close()
	info, err := release.Read(p)
	if err != nil {
		t.Fatal(err)
	}
	return info, etcd
}

func systemdExecutor(root string) *Executor {
	x := importExecutor(root)
	x.Cluster.Spec.Etcd.Runtime = config.RuntimeSystemd
	return x
}

func binaryWrite(info *release.Info, dst string) plan.Op {
	b := info.Binaries["etcd"]
	f := plan.File{Path: dst, Mode: 0o755, Part: plan.PartManifests, Source: &plan.Source{Archive: info.Path, Entry: b.Entry, Size: b.Size, SHA256: b.SHA256}}
	return plan.Op{Kind: plan.OpWrite, Path: dst, Change: &plan.Change{File: f, Path: dst, Kind: plan.Update}}
}

func onePlan(ops ...plan.Op) *plan.Plan {
	return &plan.Plan{Stages: []plan.Stage{{Name: "test", Rollout: plan.AllAtOnce, Hosts: []plan.HostOps{{Host: "local", Ops: ops}}}}}
}

// A release's binary is streamed to the host, checked by sha256 there,
// installed with its mode by a rename, and the one it replaces is kept
// under the run's backup directory for a rollback.
func TestPushBinary(t *testing.T) {
	root := t.TempDir()
	info, etcd := testRelease(t, root)
	dst := filepath.Join(root, "usr", "local", "bin", "etcd")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, []byte("old etcd"), 0o700); err != nil {
		t.Fatal(err)
	}
	// What a cut push left behind goes.
	stale := filepath.Join(filepath.Dir(dst), ".etcd.etcdadm-999.tmp")
	if err := os.WriteFile(stale, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	x := systemdExecutor(root)
	res, err := x.Run(context.Background(), onePlan(binaryWrite(info, dst)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, etcd) {
		t.Fatalf("pushed %d bytes (%v), want the release's %d", len(got), err, len(etcd))
	}
	if st, _ := os.Stat(dst); st.Mode().Perm() != 0o755 {
		t.Errorf("mode %v, want 0755", st.Mode())
	}
	kept := filepath.Join(root, "backup", x.stamp, dst)
	if b, err := os.ReadFile(kept); err != nil || string(b) != "old etcd" {
		t.Errorf("the old binary is not kept at %s: %q %v", kept, b, err)
	}
	if r := x.replaced["local"]; len(r) != 1 || r[0].path != dst || r[0].backup != kept {
		t.Errorf("replaced %+v", r)
	}
	if len(res.Hosts) != 1 || len(res.Hosts[0].Written) != 1 || res.Hosts[0].Written[0] != dst {
		t.Errorf("result %+v", res.Hosts)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dst), ".*.tmp")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// The same binary again keeps nothing.
	x2 := systemdExecutor(root)
	if _, err := x2.Run(context.Background(), onePlan(binaryWrite(info, dst))); err != nil {
		t.Fatal(err)
	}
	if len(x2.replaced["local"]) != 0 {
		t.Errorf("an identical binary was kept: %+v", x2.replaced)
	}

	// A tarball that changed since it was read: the host refuses what it
	// received and the binary stays.
	if err := os.WriteFile(dst, []byte("old etcd"), 0o755); err != nil {
		t.Fatal(err)
	}
	op := binaryWrite(info, dst)
	op.Change.File.Source.SHA256 = strings.Repeat("0", 64)
	_, err = systemdExecutor(root).Run(context.Background(), onePlan(op))
	if err == nil || !strings.Contains(err.Error(), "the release tarball changed since it was read") {
		t.Errorf("a wrong sha256: %v", err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "old etcd" {
		t.Errorf("the binary changed after a refused push: %d bytes", len(b))
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dst), ".*.tmp")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
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
	f := plan.File{Path: env, Mode: 0o644, Part: plan.PartManifests, Data: []byte("ETCDADM_ARGS=\"--name=local\"\n")}
	op := plan.Op{Kind: plan.OpRestartEtcd, Path: env, Command: plan.CmdRestartEtcd, Change: &plan.Change{File: f, Path: env, Kind: plan.Update}}
	x := systemdExecutor(root)
	res, err := x.Run(context.Background(), onePlan(op))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(env); string(b) != string(f.Data) {
		t.Errorf("environment file %q", b)
	}
	if b, _ := os.ReadFile(calls); string(b) != "enable etcd\nrestart --no-block etcd\n" {
		t.Errorf("systemctl calls:\n%s", b)
	}
	hr := res.Hosts[0]
	if !hr.RestartedEtcd || hr.RestartedKubelet || len(hr.Written) != 1 || hr.Written[0] != env {
		t.Errorf("result %+v", hr)
	}

	// A restart for new certificates writes nothing.
	os.Remove(calls)
	if _, err := systemdExecutor(root).Run(context.Background(), onePlan(plan.Op{Kind: plan.OpRestartEtcd, Command: plan.CmdRestartEtcd})); err != nil {
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
	if _, err := systemdExecutor(t.TempDir()).Run(context.Background(), onePlan(plan.Op{Kind: plan.OpStopEtcd, Command: plan.CmdStopEtcd})); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(calls); string(b) != "stop etcd\n" {
		t.Errorf("systemctl calls:\n%s", b)
	}
}

// A failed upgrade puts back the binaries the run replaced; one that
// replaced none says so.
func TestServiceRollBackBinaries(t *testing.T) {
	root := t.TempDir()
	info, _ := testRelease(t, root)
	dst := filepath.Join(root, "bin", "etcd")
	os.MkdirAll(filepath.Dir(dst), 0o755)
	if err := os.WriteFile(dst, []byte("old etcd"), 0o755); err != nil {
		t.Fatal(err)
	}
	x := systemdExecutor(root)
	if _, err := x.Run(context.Background(), onePlan(binaryWrite(info, dst))); err != nil {
		t.Fatal(err)
	}
	r := serviceRuntime{x}
	t.Setenv("PATH", "/usr/bin:/bin")
	tr := remote.NewLocal("local", false)
	if err := r.restoreBinaries(context.Background(), tr, x.replaced["local"]); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "old etcd" {
		t.Errorf("after the rollback the binary is %d bytes", len(b))
	}
	if st, _ := os.Stat(dst); st.Mode().Perm() != 0o755 {
		t.Errorf("mode %v", st.Mode())
	}
	cause := errors.New("not healthy")
	err := serviceRuntime{systemdExecutor(root)}.rollBack(context.Background(), tr, config.Host{Name: "local"}, plan.File{}, nil, cause)
	if !errors.Is(err, cause) || !strings.Contains(err.Error(), "this run replaced no binary of local") {
		t.Errorf("rollback without binaries: %v", err)
	}
}

// The facts of a host of the systemd runtime: its environment file as the
// manifest, its unit's state, the binaries among its files.
func TestRequestSystemd(t *testing.T) {
	dir := t.TempDir()
	info, _ := testRelease(t, dir)
	inv := fmt.Sprintf("apiVersion: etcdadm/v1alpha1\nkind: Cluster\nmetadata: {name: t}\nspec:\n  etcd:\n    runtime: systemd\n    release: {file: %s, sha256: %s}\n  pki: {keyAlgorithm: ECDSA-P256}\n  hosts:\n  - {name: n0, address: 192.0.2.10}\n",
		filepath.Base(info.Path), info.SHA256)
	c, _, err := config.Parse([]byte(inv), "inventory", dir)
	if err != nil {
		t.Fatal(err)
	}
	pki, _, err := certs.Compute(c, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	req, err := Request(c, pki, c.Spec.Hosts[0])
	if err != nil {
		t.Fatal(err)
	}
	if req.ManifestPath != "/etc/etcd/etcd.env" || req.EtcdUnit != "etcd" {
		t.Errorf("request %+v", req)
	}
	for _, want := range []string{"/usr/local/bin/etcd", "/usr/local/bin/etcdctl", "/etc/systemd/system/etcd.service", "/etc/etcd/etcd.env"} {
		if !slices.Contains(req.Files, want) {
			t.Errorf("the request does not read %s: %v", want, req.Files)
		}
	}
	if slices.ContainsFunc(req.Files, func(p string) bool { return strings.Contains(p, "kubelet") || strings.HasSuffix(p, "etcd.yaml") }) {
		t.Errorf("the request reads a kubelet file or a manifest: %v", req.Files)
	}
}
