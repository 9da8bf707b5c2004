package apply

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

func controlPlaneCluster(t *testing.T) (*config.Cluster, *certs.PKI) {
	t.Helper()
	inv := `apiVersion: etcdadm/v1alpha1
kind: Cluster
metadata: {name: test}
spec:
  pki: {keyAlgorithm: ECDSA-P256}
  hosts:
  - {name: m0, address: 192.0.2.10}
  controlPlane:
    hosts:
    - {name: cp0, address: 192.0.2.50}
    - {name: cp1, address: 192.0.2.51}
`
	c, _, err := config.Parse([]byte(inv), "test", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pki, _, err := certs.Compute(c, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c, pki
}

// A control-plane host is read with the reduced request: its planned files
// and directories and its CA file, nothing of a member.
func TestRequestOfAControlPlaneHost(t *testing.T) {
	c, pki := controlPlaneCluster(t)
	cp, _ := c.ControlPlaneHost("cp0")
	req, err := Request(c, pki, cp.Host())
	if err != nil {
		t.Fatal(err)
	}
	want := facts.Request{
		CAPath:   "/etc/kubernetes/pki/etcd/ca.crt",
		Files:    []string{"/etc/kubernetes/pki/etcd/ca.crt", "/etc/kubernetes/pki/apiserver-etcd-client.crt", "/etc/kubernetes/pki/apiserver-etcd-client.key", "/etc/kubernetes/etcd-external.yaml"},
		Dirs:     []string{"/etc/kubernetes", "/etc/kubernetes/pki", "/etc/kubernetes/pki/etcd"},
		NoMember: true,
	}
	if diff := cmp.Diff(want, req); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	member, err := Request(c, pki, c.Spec.Hosts[0])
	if err != nil || member.NoMember || member.DataDir == "" {
		t.Errorf("a member's request %+v, %v", member, err)
	}
}

// What a run does on a control-plane host is reported under its name, and
// its old backups are pruned like a member's.
func TestExecutorReportsControlPlaneHosts(t *testing.T) {
	c, _ := controlPlaneCluster(t)
	root := t.TempDir()
	backups := filepath.Join(root, "backup")
	for _, d := range []string{"20300101T000000Z", "20300102T000000Z"} {
		if err := os.MkdirAll(filepath.Join(backups, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	hs := &Hosts{Order: c.AllHosts(), T: map[string]remote.Transport{}}
	for _, h := range c.AllHosts() {
		hs.T[h.Name] = remote.NewLocal(h.Name, false)
	}
	p := &plan.Plan{Stages: []plan.Stage{{Name: "control-plane hosts", Rollout: plan.AllAtOnce, Hosts: []plan.HostOps{
		{Host: "cp0", Ops: []plan.Op{{Kind: plan.OpRun, Command: "true"}}},
	}}}}
	var out bytes.Buffer
	x := &Executor{Cluster: c, Hosts: hs, Log: NewLog(progress.New(&out, nil)), BackupDir: backups, StateDir: root, KeepBackups: 1}
	res, err := x.Run(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Hosts) != 1 || res.Hosts[0].Host != "cp0" || !slices.Equal(res.Hosts[0].Ran, []string{"true"}) {
		t.Errorf("result %+v", res.Hosts)
	}
	if !strings.Contains(out.String(), "[cp0] ran true") {
		t.Errorf("the log does not name cp0:\n%s", out.String())
	}
	if left, _ := os.ReadDir(backups); len(left) != 1 {
		t.Errorf("%d backups left, want 1: cp0's were not pruned", len(left))
	}
}

// status has a line per control-plane host with its client certificate's
// expiry, read on the host.
func TestStatusShowsControlPlaneHosts(t *testing.T) {
	c, pki := controlPlaneCluster(t)
	now := time.Now()
	kp, _ := pki.Leaf("cp0", certs.APIServerEtcdClient)
	hf := &facts.Host{Name: "cp0", Files: map[string]facts.FileState{
		"/etc/kubernetes/pki/apiserver-etcd-client.crt": {Data: kp.CertPEM},
		"/etc/kubernetes/pki/etcd/ca.crt":               {Data: pki.CA.CertPEM},
	}}
	f := &Facts{Hosts: map[string]*facts.Host{"cp0": hf}}
	r := Status(c, f, map[string]error{"cp1": errString("no route to host")}, now)
	if len(r.ControlPlane) != 2 {
		t.Fatalf("control-plane rows %+v", r.ControlPlane)
	}
	var names []string
	for _, e := range r.ControlPlane[0].Certificates {
		names = append(names, e.Name)
	}
	if !slices.Equal(names, []string{certs.EtcdCA, certs.APIServerEtcdClient}) {
		t.Errorf("cp0's certificates %v, want the CA and its client certificate only", names)
	}
	for _, m := range r.Members {
		if strings.HasPrefix(m.Name, "cp") {
			t.Errorf("a control-plane host is a member row: %+v", m)
		}
	}
	var out bytes.Buffer
	if err := WriteStatusTable(&out, r); err != nil {
		t.Fatal(err)
	}
	expires := kp.Cert.NotAfter.UTC().Format(time.RFC3339)
	for _, want := range []string{"CONTROL-PLANE HOST", "cp0  ", "192.0.2.50", "(" + expires + ")", "cp1", "host unreachable: no route to host"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}
