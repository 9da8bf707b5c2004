package plan

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
)

// A host that trusts the local CA and one the local PKI does not hold (a
// rotation's first stage, run from another copy of the PKI) is refused:
// writing the local bundle would undo that stage. So is a control-plane
// host with such a bundle.
func TestBundleWithAnUnknownCAIsRefused(t *testing.T) {
	w := newWorld(t, 3).withControlPlane(t, true, "cp0")
	next, err := certs.NewCA(w.c, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"n1", "cp0"} {
		t.Run(host, func(t *testing.T) {
			hosts := w.allBootstrapped(t)
			hosts["cp0"] = w.cpAsPlanned(t, "cp0")
			hosts[host].TrustedCAs = []*x509.Certificate{next.Cert, w.pki.CA.Cert}
			p, err := build(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow})
			re := mustRefuse(t, p, err)
			if len(re.Refusals) != 1 || re.Refusals[0].Host != host || !strings.Contains(re.Refusals[0].Reason, "a CA rotation begun from another copy of the PKI") || !strings.Contains(re.Refusals[0].Reason, Fingerprint(next.Cert)) {
				t.Errorf("refusals %+v, want one for %s naming the unknown CA", re.Refusals, host)
			}
		})
	}
}
