package certs

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"k8s.io/kubernetes/cmd/kubeadm/app/util/pkiutil"
)

const withControlPlane = threeHosts + `  controlPlane:
    hosts:
    - {name: cp0, address: 10.0.0.20}
`

// A control-plane host gets its own apiserver-etcd-client, as kubeadm makes
// it, and no member certificate; adding it leaves the members' as they are.
func TestControlPlaneHostGetsItsOwnAPIServerClient(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := Ensure(cluster(t, dir, threeHosts), Options{}); err != nil {
		t.Fatal(err)
	}
	c := cluster(t, dir, withControlPlane)
	before := snapshot(t, c.PKIDir())
	p, events, err := Ensure(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var made []string
	for _, e := range events {
		if e.Action != Reused {
			made = append(made, e.Host+" "+e.Name+" "+string(e.Action))
		}
	}
	if want := []string{"cp0 apiserver-etcd-client created"}; !slices.Equal(made, want) {
		t.Errorf("events %v, want %v", made, want)
	}
	ch := changed(before, snapshot(t, c.PKIDir()))
	slices.Sort(ch)
	if want := []string{"/hosts/cp0/apiserver-etcd-client.crt", "/hosts/cp0/apiserver-etcd-client.key"}; !slices.Equal(ch, want) {
		t.Errorf("files written %v, want %v", ch, want)
	}
	if len(p.Hosts["cp0"]) != 1 {
		t.Fatalf("cp0 has %d leaves, want 1", len(p.Hosts["cp0"]))
	}
	kp, ok := p.Leaf("cp0", APIServerEtcdClient)
	if !ok {
		t.Fatal("no apiserver-etcd-client for cp0")
	}
	if _, ok := p.Leaf("cp0", EtcdServer); ok {
		t.Error("cp0 has an etcd-server certificate: it runs no member")
	}
	if got := kp.Cert.Subject.String(); got != "CN=kube-apiserver-etcd-client" {
		t.Errorf("subject %s, want kubeadm's CN=kube-apiserver-etcd-client", got)
	}
	if !slices.Equal(kp.Cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || len(kp.Cert.DNSNames)+len(kp.Cert.IPAddresses) > 0 {
		t.Errorf("usages %v, SANs %v %v: want client auth and no SAN", kp.Cert.ExtKeyUsage, kp.Cert.DNSNames, kp.Cert.IPAddresses)
	}
	if err := pkiutil.VerifyCertChain(kp.Cert, nil, p.CA.Cert); err != nil {
		t.Errorf("not issued by the CA: %v", err)
	}
	other, _ := p.Leaf("infra0", APIServerEtcdClient)
	if kp.Cert.SerialNumber.Cmp(other.Cert.SerialNumber) == 0 {
		t.Error("cp0 shares infra0's certificate; each host has its own")
	}
	if st, err := os.Stat(filepath.Join(c.PKIDir(), "hosts/cp0/apiserver-etcd-client.key")); err != nil || st.Mode().Perm() != KeyMode {
		t.Errorf("key: %v, %v", st, err)
	}
}

// Renewal names a control-plane host like any other, and renews only what
// it has.
func TestRenewIncludesControlPlaneHosts(t *testing.T) {
	dir := t.TempDir()
	c := cluster(t, dir, withControlPlane)
	if _, _, err := Ensure(c, Options{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		opts Options
		want []string
	}{
		{Options{Renew: []string{APIServerEtcdClient}}, []string{"cp0", "infra0", "infra1", "infra2"}},
		{Options{Renew: []string{"all"}, Hosts: []string{"cp0"}}, []string{"cp0"}},
		{Options{Renew: []string{EtcdServer}, Hosts: []string{"cp0"}}, nil},
	} {
		_, events, err := Compute(c, tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range events {
			if e.Action == Reissued {
				if e.Host == "cp0" && e.Name != APIServerEtcdClient {
					t.Errorf("%v: cp0 gets %s", tc.opts, e.Name)
				}
				got = append(got, e.Host)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%v reissued on %v, want %v", tc.opts, got, tc.want)
		}
	}
}

func TestCheckExpirationListsControlPlaneHosts(t *testing.T) {
	dir := t.TempDir()
	c := cluster(t, dir, withControlPlane)
	rows := CheckExpiration(c, time.Now())
	var cp []string
	for _, r := range rows {
		if filepath.Base(filepath.Dir(r.Path)) == "cp0" {
			cp = append(cp, r.Name)
		}
	}
	if want := []string{APIServerEtcdClient}; !slices.Equal(cp, want) {
		t.Errorf("cp0's rows %v, want %v", cp, want)
	}
	if got := len(rows); got != 1+3*4+1 {
		t.Errorf("%d rows, want 14", got)
	}
}
