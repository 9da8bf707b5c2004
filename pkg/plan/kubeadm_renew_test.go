package plan

// On stacked hosts kubeadm can renew etcd's certificates itself (`kubeadm
// certs renew`, and `kubeadm upgrade` for apiserver-etcd-client). etcdadm
// owns those files: what kubeadm wrote shows in the plan as a change, and
// apply puts etcdadm's own back, restarting the member only when its server
// or peer certificate changed. These tests run kubeadm v1.37.2's renewal code
// on a stacked host's files and show what etcdadm then plans.

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/kubernetes/cmd/kubeadm/app/phases/certs/renewal"
	configutil "k8s.io/kubernetes/cmd/kubeadm/app/util/config"

	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/kubeadmconfig"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

// stackedWorld is three stacked control-plane hosts, n0 first, with a saved PKI.
func stackedWorld(t *testing.T) *world {
	t.Helper()
	dir := t.TempDir()
	c := parseInventory(t, strings.Replace(inventoryYAML(3, ""), "topology: external", "topology: stacked", 1), dir)
	return &world{dir: dir, c: c, pki: savedPKI(t, c)}
}

// kubeadmRenew puts the host's planned certificates in a scratch
// certificatesDir and runs kubeadm's renewal manager on them with the
// cluster's kubeadm configuration, as `kubeadm certs renew NAME` does (every
// certificate present for "all"). It returns the files kubeadm rewrote, by
// host path, with what is in them now.
func kubeadmRenew(t *testing.T, w *world, hp Host, names ...string) map[string]facts.FileState {
	t.Helper()
	dir := t.TempDir()
	before := map[string]string{}
	for _, f := range hp.Files {
		if f.Part != PartCerts {
			continue
		}
		p := filepath.Join(dir, strings.TrimPrefix(f.Path, manifests.CertificatesDir+"/"))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.Data, f.Mode.Perm()); err != nil {
			t.Fatal(err)
		}
		before[f.Path] = f.SHA256()
	}
	// The ClusterConfiguration kubeadm init uploaded: the first host's.
	first := w.planned(t, w.c.Spec.Hosts[0].Name, Bootstrap(w.c))
	initFile, ok := first.File(kubeadmconfig.InitPath)
	if !ok {
		t.Fatalf("%s has no %s", first.Name, kubeadmconfig.InitPath)
	}
	cfg, err := configutil.BytesToInitConfiguration(initFile.Data, true)
	if err != nil {
		t.Fatal(err)
	}
	cfg.CertificatesDir = dir
	rm, err := renewal.NewManager(&cfg.ClusterConfiguration, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range rm.Certificates() {
		if ok, _ := rm.CertificateExists(h.Name); !ok || !(slices.Contains(names, h.Name) || slices.Contains(names, "all")) {
			continue
		}
		renewed, err := rm.RenewUsingLocalCA(h.Name)
		if err != nil || !renewed {
			t.Fatalf("kubeadm certs renew %s: renewed %v, %v", h.Name, renewed, err)
		}
	}
	changed := map[string]facts.FileState{}
	for hostPath, sum := range before {
		p := filepath.Join(dir, strings.TrimPrefix(hostPath, manifests.CertificatesDir+"/"))
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		got := sha256.Sum256(b)
		if hex.EncodeToString(got[:]) == sum {
			continue
		}
		fs := facts.FileState{Mode: st.Mode().Perm(), SHA256: hex.EncodeToString(got[:])}
		if strings.HasSuffix(hostPath, ".crt") {
			fs.Data = b
		}
		changed[hostPath] = fs
	}
	return changed
}

func pkiPaths(bases ...string) []string {
	var out []string
	for _, b := range bases {
		p := path.Join(manifests.CertificatesDir, b)
		out = append(out, p+".crt", p+".key")
	}
	slices.Sort(out)
	return out
}

// `kubeadm certs renew all` on a stacked host renews etcd's four leaves
// with the same CA, subject and SANs. etcdadm plans them back, as any other
// drift: the next diff shows the eight files, and apply writes etcdadm's
// certificates and keys and restarts that member alone, behind its health
// gate. The CA, the manifest and the kubeadm configurations are not touched.
func TestKubeadmRenewAllIsUndoneByApply(t *testing.T) {
	w := stackedWorld(t)
	hosts := w.allBootstrapped(t)
	hp := w.planned(t, "n1", Bootstrap(w.c))
	renewed := kubeadmRenew(t, w, hp, "all")
	want := pkiPaths("etcd/server", "etcd/peer", "etcd/healthcheck-client", "apiserver-etcd-client")
	if diff := cmp.Diff(want, sorted(keysOf(renewed))); diff != "" {
		t.Fatalf("kubeadm certs renew all rewrote other files than etcd's leaves (-want +got):\n%s", diff)
	}
	for p, st := range renewed {
		if st.Mode.Perm() != 0o600 && strings.HasSuffix(p, ".key") || st.Mode.Perm() != 0o644 && strings.HasSuffix(p, ".crt") {
			t.Errorf("kubeadm wrote %s with mode %04o", p, st.Mode.Perm())
		}
		if strings.HasSuffix(p, ".crt") {
			ours, theirs := Summarize(plannedFileOf(t, hp, p).Data), Summarize(st.Data)
			if ours.Subject != theirs.Subject || ours.Issuer != theirs.Issuer || !slices.Equal(ours.SANs, theirs.SANs) {
				t.Errorf("kubeadm's renewed %s is not etcdadm's with a new key: %+v, etcdadm's %+v", p, theirs, ours)
			}
		}
		hosts["n1"].Files[p] = st
	}

	p := mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n0", "n0", "n1", "n2"), Now: fixedNow})
	n1, _ := p.FindHost("n1")
	var updated []string
	for _, ch := range n1.Changes {
		switch {
		case ch.Kind == Update:
			updated = append(updated, ch.Path)
			if ch.NewSHA != plannedFileOf(t, hp, ch.Path).SHA256() || ch.OldSHA != renewed[ch.Path].SHA256 {
				t.Errorf("%s: the change goes from %s to %s, not from kubeadm's to etcdadm's", ch.Path, ch.OldSHA, ch.NewSHA)
			}
		case ch.Kind != Unchanged:
			t.Errorf("%s: %s, want unchanged", ch.Path, ch.Kind)
		}
	}
	if diff := cmp.Diff(want, sorted(updated)); diff != "" {
		t.Errorf("the plan's changes on n1 (-want +got):\n%s", diff)
	}
	for _, other := range []string{"n0", "n2"} {
		if steps := opsOf(p, other); len(steps) > 0 {
			t.Errorf("%s is touched: %v", other, kinds(steps))
		}
	}
	steps := opsOf(p, "n1")
	if diff := cmp.Diff(want, sorted(writtenPaths(steps))); diff != "" {
		t.Errorf("apply writes on n1 (-want +got):\n%s", diff)
	}
	restart, i := findOp(steps, isKind(ops.KindRestartEtcd))
	if i < 0 || !restart.Meta().Disruptive {
		t.Errorf("n1's member is not restarted after its server and peer certificates go back: %v", kinds(steps))
	}
	if _, j := findOp(steps, isKind(ops.KindWaitMember)); j < i {
		t.Errorf("no health gate after the restart: %v", kinds(steps))
	}
}

// `kubeadm upgrade apply|node` renews apiserver-etcd-client with the API
// server, even with --etcd-upgrade=false. etcdadm writes its own back and
// restarts nothing: the API server reads its client certificate on every
// new connection to etcd.
func TestKubeadmUpgradeRenewalOfTheAPIServerClientRestartsNothing(t *testing.T) {
	w := stackedWorld(t)
	hosts := w.allBootstrapped(t)
	hp := w.planned(t, "n0", Bootstrap(w.c))
	renewed := kubeadmRenew(t, w, hp, "apiserver-etcd-client")
	want := pkiPaths("apiserver-etcd-client")
	if diff := cmp.Diff(want, sorted(keysOf(renewed))); diff != "" {
		t.Fatalf("kubeadm renewed (-want +got):\n%s", diff)
	}
	for p, st := range renewed {
		hosts["n0"].Files[p] = st
	}
	p := mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n0", "n0", "n1", "n2"), Now: fixedNow})
	steps := opsOf(p, "n0")
	if diff := cmp.Diff(want, sorted(writtenPaths(steps))); diff != "" {
		t.Errorf("apply writes on n0 (-want +got):\n%s", diff)
	}
	if d := anyDisruptive(p); len(d) > 0 {
		t.Errorf("putting the API server's client certificate back disrupts: %v", d)
	}
	if _, i := findOp(steps, isKind(ops.KindRestartEtcd)); i >= 0 {
		t.Errorf("n0's member restarts: %v", kinds(steps))
	}
}

func keysOf(m map[string]facts.FileState) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func plannedFileOf(t *testing.T, hp Host, p string) File {
	t.Helper()
	f, ok := hp.File(p)
	if !ok {
		t.Fatalf("%s: no planned %s", hp.Name, p)
	}
	return f
}
