//go:build linux

package facts_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// A control-plane host's kube-apiserver is read from its manifest: the
// flags, the process on the port it names with its start, the times its
// etcd files were written (written after it started: stale), and the
// control plane's static Pods there or held aside.
func TestGatherAPIServer(t *testing.T) {
	if !haveSS() {
		t.Skip("ss (iproute2) is not installed")
	}
	root := t.TempDir()
	dir := filepath.Join(root, "manifests")
	_, port := listen(t)
	ca := filepath.Join(root, "pki", "etcd", "ca.crt")
	_, caPEM := newCA(t, "etcd-ca")
	writeFile(t, ca, caPEM, 0o644)
	// File times and process starts are read to the second.
	if err := os.Chtimes(ca, time.Now().Add(3*time.Second), time.Now().Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-apiserver
    - --advertise-address=10.0.0.20
    - --etcd-cafile=%s
    - --etcd-servers=https://10.0.0.6:2379,https://10.0.0.7:2379
    - --secure-port=%d
    name: kube-apiserver
`, ca, port)
	writeFile(t, filepath.Join(dir, "kube-apiserver.yaml"), []byte(manifest), 0o600)
	writeFile(t, filepath.Join(dir, "kube-controller-manager.yaml"), []byte("kind: Pod\n"), 0o600)
	writeFile(t, facts.HeldPath(dir, "kube-scheduler.yaml"), []byte("kind: Pod\n"), 0o600)
	req := facts.Request{CAPath: ca, NoMember: true, StateDir: filepath.Join(root, "state"), ControlPlaneDir: dir}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr := remote.NewLocal("cp0", false)
	defer tr.Close()
	h, _, err := facts.Gather(ctx, tr, req, "")
	if err != nil {
		t.Fatal(err)
	}
	a := h.APIServer
	if a == nil || a.Manifest == nil || a.Manifest.Err != "" {
		t.Fatalf("apiserver facts %+v", a)
	}
	if got := a.Manifest.EtcdServers; !slices.Equal(got, []string{"https://10.0.0.6:2379", "https://10.0.0.7:2379"}) || a.Manifest.Port != port {
		t.Errorf("manifest read as %+v", a.Manifest)
	}
	if !slices.Equal(a.Running, []string{"kube-apiserver.yaml", "kube-controller-manager.yaml"}) || !slices.Equal(a.Held, []string{"kube-scheduler.yaml"}) {
		t.Errorf("running %v, held %v", a.Running, a.Held)
	}
	if len(a.Process) != 1 || a.Started.IsZero() || a.Started.After(time.Now()) {
		t.Errorf("the process on port %d: %+v, started %s", port, a.Process, a.Started)
	}
	if _, ok := a.Modified[ca]; !ok {
		t.Errorf("modification times %v", a.Modified)
	}
	// The test's process started before it wrote the CA file: a
	// kube-apiserver would not have read it.
	if got := a.Stale(); !slices.Equal(got, []string{ca}) {
		t.Errorf("stale files %v, want the CA written after the process started", got)
	}
	// A restart cut after it took the Pod away: the held Pod is read.
	if err := os.Rename(filepath.Join(dir, "kube-apiserver.yaml"), filepath.Join(dir, ".kube-apiserver.yaml.etcdadm-restart")); err != nil {
		t.Fatal(err)
	}
	if h, _, err = facts.Gather(ctx, tr, req, ""); err != nil {
		t.Fatal(err)
	}
	if a := h.APIServer; a.Manifest == nil || !a.RestartHeld || a.Manifest.Address != "10.0.0.20" || slices.Contains(a.Running, "kube-apiserver.yaml") {
		t.Errorf("a held restart read as %+v", a)
	}
}

// Without a control-plane directory nothing of it is read; with one that
// holds nothing, the facts say so.
func TestGatherNoAPIServer(t *testing.T) {
	root := t.TempDir()
	req := facts.Request{CAPath: filepath.Join(root, "ca.crt"), NoMember: true, StateDir: filepath.Join(root, "state")}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr := remote.NewLocal("cp0", false)
	defer tr.Close()
	h, _, err := facts.Gather(ctx, tr, req, "")
	if err != nil || h.APIServer != nil {
		t.Fatalf("without a control-plane directory: %+v, %v", h.APIServer, err)
	}
	req.ControlPlaneDir = filepath.Join(root, "manifests")
	h, _, err = facts.Gather(ctx, tr, req, "")
	if err != nil || h.APIServer == nil || h.APIServer.Manifest != nil || len(h.APIServer.Running)+len(h.APIServer.Held) > 0 {
		t.Fatalf("an empty control-plane directory: %+v, %v", h.APIServer, err)
	}
}

// A component's process is found by its name, in the shell's network
// namespace: here, this test's own.
func TestNamed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr := remote.NewLocal("cp0", false)
	defer tr.Close()
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	ps, err := facts.Named(ctx, tr, strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(ps, func(p facts.Process) bool { return p.PID == os.Getpid() }) {
		t.Errorf("this process (%d) not among %+v", os.Getpid(), ps)
	}
	if ps, err := facts.Named(ctx, tr, "no-such-process-name"); err != nil || len(ps) != 0 {
		t.Errorf("a name nothing runs as: %+v, %v", ps, err)
	}
}
