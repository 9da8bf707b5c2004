package status

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/testinv"
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
