package plan

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
)

// The stage of a CA rotation is read from the hosts: which CAs they trust,
// who issued their leaves, whether a restart is pending.
func TestRotationStage(t *testing.T) {
	w := newWorld(t, 3)
	old := w.pki.CA
	next, err := certs.NewCA(w.c, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	moved, _, err := certs.Compute(w.c, certs.Options{Issuer: &next})
	if err != nil {
		t.Fatal(err)
	}
	forward := CAMove{Target: next.Cert, Other: old.Cert, TargetName: "the new CA", OtherName: "the old CA"}
	back := CAMove{Target: old.Cert, Other: next.Cert, TargetName: "the old CA", OtherName: "the new CA"}
	hostsWith := func(leavesByNew bool, trusted ...*x509.Certificate) map[string]*facts.Host {
		src := w
		if leavesByNew {
			src = &world{dir: w.dir, c: w.c, pki: moved}
		}
		hosts := src.allBootstrapped(t)
		for _, hf := range hosts {
			hf.TrustedCAs = trusted
		}
		return hosts
	}
	for _, tc := range []struct {
		name  string
		hosts map[string]*facts.Host
		move  CAMove
		want  RotationStage
	}{
		{"nothing done", hostsWith(false, old.Cert), forward, TrustBoth},
		{"the new CA second", hostsWith(false, old.Cert, next.Cert), forward, MoveLeaves},
		{"both trusted", hostsWith(false, next.Cert, old.Cert), forward, MoveLeaves},
		{"leaves moved", hostsWith(true, next.Cert, old.Cert), forward, DropOther},
		{"old CA dropped", hostsWith(true, next.Cert), forward, RotationDone},
		{"aborted after both were trusted", hostsWith(false, next.Cert, old.Cert), back, DropOther},
		{"aborted after the leaves moved", hostsWith(true, next.Cert, old.Cert), back, MoveLeaves},
		{"aborted once the old CA was dropped", hostsWith(true, next.Cert), back, TrustBoth},
		{"aborted and back", hostsWith(false, old.Cert), back, RotationDone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := Rotation(Input{Cluster: w.c, Runtime: rtOf(w.c), Hosts: tc.hosts}, tc.move)
			if got != tc.want {
				t.Errorf("stage %s (%s), want %s", tc.move.Describe(got), why, tc.move.Describe(tc.want))
			}
		})
	}
	// One host whose restart was cut short is not past the stage; one that
	// already dropped the old CA is past the others'.
	hosts := hostsWith(false, next.Cert, old.Cert)
	hosts["n1"].Pending = []string{facts.PendingEtcdRestart}
	if got, why := Rotation(Input{Cluster: w.c, Runtime: rtOf(w.c), Hosts: hosts}, forward); got != TrustBoth {
		t.Errorf("with a pending restart: %s (%s)", forward.Describe(got), why)
	}
	hosts = hostsWith(true, next.Cert, old.Cert)
	hosts["n0"].TrustedCAs = []*x509.Certificate{next.Cert}
	if got, why := Rotation(Input{Cluster: w.c, Runtime: rtOf(w.c), Hosts: hosts}, forward); got != DropOther {
		t.Errorf("with a host already on the new CA only: %s (%s)", forward.Describe(got), why)
	}
}

// During a rotation the hosts get the bundle, the stacked ones the target's
// key, and the guard knows both CAs.
func TestRotationPKI(t *testing.T) {
	w := newWorld(t, 3)
	next, err := certs.NewCA(w.c, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := certs.Compute(w.c, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	old := certs.CA{KeyPair: p.CA}
	p.ForRotation(next, old, true)
	if string(p.Trust) != string(next.CertPEM)+string(old.CertPEM) || string(p.HostCAKey) != string(next.KeyPEM) || len(p.Known) != 2 {
		t.Errorf("bundle of %d bytes, key of the new CA %v, %d known CAs", len(p.Trust), string(p.HostCAKey) == string(next.KeyPEM), len(p.Known))
	}
	hosts := w.allBootstrapped(t)
	hp, err := HostFiles(w.c, rtOf(w.c), p, w.host(t, "n0"), Bootstrap(w.c), AllParts)
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := hp.File("/etc/kubernetes/pki/etcd/ca.crt"); !ok || string(f.Data) != string(p.Trust) {
		t.Error("the host's ca.crt is not the bundle")
	}
	// Hosts that trust only the new CA are not refused as another CA's.
	for _, hf := range hosts {
		hf.TrustedCAs = []*x509.Certificate{next.Cert}
	}
	if _, err := Build(Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: p, Hosts: hosts, Etcd: etcdView(t, "n0", names3...), Now: fixedNow}); err != nil {
		t.Errorf("hosts on the new CA refused: %v", err)
	}
}
