package status

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/testinv"
	"github.com/etcdadm-io/etcdadm/pkg/apiserver"
	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/gather"
)

// status has a line per control-plane host with its client certificate's
// expiry, read on the host.
func TestStatusShowsControlPlaneHosts(t *testing.T) {
	c, pki := testinv.ControlPlane(t)
	now := time.Now()
	kp, _ := pki.Leaf("cp0", certs.APIServerEtcdClient)
	hf := &facts.Host{Name: "cp0", Files: map[string]facts.FileState{
		"/etc/kubernetes/pki/apiserver-etcd-client.crt": {Data: kp.CertPEM},
		"/etc/kubernetes/pki/etcd/ca.crt":               {Data: pki.CA.CertPEM},
	}}
	f := &gather.Facts{Hosts: map[string]*facts.Host{"cp0": hf}}
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

func apiserverFacts(servers ...string) *facts.APIServer {
	data := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --etcd-servers=" + strings.Join(servers, ",") + "\n    name: kube-apiserver\n"
	return &facts.APIServer{Manifest: apiserver.Parse([]byte(data)), Running: []string{"kube-apiserver.yaml"}}
}

// status shows each control-plane host's kube-apiserver: its
// --etcd-servers, whether they are the members' and what /readyz said; a
// control plane a cut restore holds aside shows as stopped.
func TestStatusShowsTheAPIServers(t *testing.T) {
	c, _ := testinv.ControlPlane(t)
	cp0 := &facts.Host{Name: "cp0", Files: map[string]facts.FileState{}, APIServer: apiserverFacts("https://192.0.2.10:2379")}
	cp1 := &facts.Host{Name: "cp1", Files: map[string]facts.FileState{}, APIServer: apiserverFacts("https://192.0.2.10:2379", "https://192.0.2.99:2379")}
	f := &gather.Facts{Hosts: map[string]*facts.Host{"cp0": cp0, "cp1": cp1}}
	r := Status(c, f, nil, time.Now())
	r.WithReadyz(map[string]error{"cp0": nil, "cp1": errString("/readyz answered 500: etcd")})
	a0, a1 := r.ControlPlane[0].APIServer, r.ControlPlane[1].APIServer
	if a0 == nil || !a0.Matches || a0.Ready != "ok" {
		t.Errorf("cp0's kube-apiserver %+v", a0)
	}
	if a1 == nil || a1.Matches || a1.Mismatch != "not a member: https://192.0.2.99:2379" || a1.Ready != "/readyz answered 500: etcd" {
		t.Errorf("cp1's kube-apiserver %+v", a1)
	}
	var out bytes.Buffer
	if err := WriteStatusTable(&out, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ETCD-SERVERS", "MEMBERS", "READYZ", "yes", "no: not a member: https://192.0.2.99:2379  /readyz answered 500: etcd"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	cp0.APIServer = &facts.APIServer{Held: []string{"kube-apiserver.yaml", "kube-scheduler.yaml"}}
	out.Reset()
	if err := WriteStatusTable(&out, Status(c, f, nil, time.Now())); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "stopped (kube-apiserver.yaml, kube-scheduler.yaml held aside)") {
		t.Errorf("a stopped control plane:\n%s", out.String())
	}
}
