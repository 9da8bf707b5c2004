package plan

import (
	"crypto/x509"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/kubeadmconfig"
)

const (
	cpCAPath   = "/etc/kubernetes/pki/etcd/ca.crt"
	cpCertPath = "/etc/kubernetes/pki/apiserver-etcd-client.crt"
	cpKeyPath  = "/etc/kubernetes/pki/apiserver-etcd-client.key"
)

// cpAddrOf is the address of control-plane host cpI (192.0.2.5I).
func cpAddrOf(name string) string {
	var i int
	if _, err := fmt.Sscanf(name, "cp%d", &i); err != nil {
		panic("no address for " + name)
	}
	return fmt.Sprintf("192.0.2.%d", 50+i)
}

// cpInventoryYAML is inventoryYAML with the named control-plane hosts.
func cpInventoryYAML(count int, cps ...string) string {
	var b strings.Builder
	b.WriteString(inventoryYAML(count, ""))
	if len(cps) > 0 {
		b.WriteString("  controlPlane:\n    hosts:\n")
		for _, n := range cps {
			fmt.Fprintf(&b, "    - {name: %s, address: %s}\n", n, cpAddrOf(n))
		}
	}
	return b.String()
}

// withControlPlane is the same operator's directory with control-plane
// hosts added to the inventory; save also saves their certificates.
func (w *world) withControlPlane(t *testing.T, save bool, cps ...string) *world {
	t.Helper()
	c := parseInventory(t, cpInventoryYAML(len(w.c.Spec.Hosts), cps...), w.dir)
	if save {
		return &world{dir: w.dir, c: c, pki: savedPKI(t, c)}
	}
	return &world{dir: w.dir, c: c, pki: computePKI(t, c)}
}

func (w *world) cpHost(t *testing.T, name string) config.ControlPlaneHost {
	t.Helper()
	h, ok := w.c.ControlPlaneHost(name)
	if !ok {
		t.Fatalf("%s is not a control-plane host of the inventory", name)
	}
	return h
}

// cpPlanned is control-plane host name's plan.
func (w *world) cpPlanned(t *testing.T, name string) Host {
	t.Helper()
	hp, err := ControlPlaneFiles(w.c, w.pki, w.cpHost(t, name), AllParts)
	if err != nil {
		t.Fatal(err)
	}
	return hp
}

// cpEmpty is a control-plane host with nothing of etcdadm's on it, as the
// reduced facts request reads it: no kubelet, no etcd.
func cpEmpty(name string) *facts.Host {
	return &facts.Host{Name: name, UID: 0, Files: map[string]facts.FileState{}}
}

// cpAsPlanned is a control-plane host that has every file of its plan.
func (w *world) cpAsPlanned(t *testing.T, name string) *facts.Host {
	t.Helper()
	hf := cpEmpty(name)
	hp := w.cpPlanned(t, name)
	for _, d := range hp.Dirs {
		hf.Files[d.Path] = facts.FileState{Dir: true, Mode: d.Mode}
	}
	for _, f := range hp.Files {
		st := facts.FileState{Mode: f.Mode, SHA256: f.SHA256()}
		if strings.HasSuffix(f.Path, ".crt") {
			st.Data = f.Data
		}
		hf.Files[f.Path] = st
	}
	hf.CAData = w.pki.Trust
	hf.TrustedCAs = facts.ParseCerts(w.pki.Trust)
	return hf
}

// A control-plane host gets the CA bundle, its own client certificate and
// key, and etcd-external.yaml; nothing of a member.
func TestControlPlaneHostFiles(t *testing.T) {
	w := newWorld(t, 3).withControlPlane(t, false, "cp0", "cp1")
	hp := w.cpPlanned(t, "cp0")
	var got []string
	for _, f := range hp.Files {
		got = append(got, fmt.Sprintf("%04o %s (%s)", f.Mode, f.Path, f.Part))
	}
	want := []string{
		"0644 " + cpCAPath + " (certs)",
		"0644 " + cpCertPath + " (certs)",
		"0600 " + cpKeyPath + " (certs)",
		"0644 /etc/kubernetes/etcd-external.yaml (kubeadm-config)",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"/etc/kubernetes", "/etc/kubernetes/pki", "/etc/kubernetes/pki/etcd"}, dirPaths(hp)); diff != "" {
		t.Errorf("directories (-want +got):\n%s", diff)
	}
	ca, _ := hp.File(cpCAPath)
	if string(ca.Data) != string(w.pki.Trust) {
		t.Error("ca.crt is not what the members trust")
	}
	kp, _ := w.pki.Leaf("cp0", certs.APIServerEtcdClient)
	crt, _ := hp.File(cpCertPath)
	key, _ := hp.File(cpKeyPath)
	if string(crt.Data) != string(kp.CertPEM) || string(key.Data) != string(kp.KeyPEM) || !key.Secret {
		t.Error("the client certificate and key are not cp0's own from the PKI, or the key is not secret")
	}
	other := w.cpPlanned(t, "cp1")
	if c1, _ := other.File(cpCertPath); string(c1.Data) == string(crt.Data) {
		t.Error("cp0 and cp1 share a client certificate")
	}
	ext, _ := hp.File(kubeadmconfig.ExternalPath)
	for _, n := range names3 {
		if !strings.Contains(string(ext.Data), "- "+clientOf(n)+"\n") {
			t.Errorf("etcd-external.yaml lacks %s's endpoint:\n%s", n, ext.Data)
		}
	}
	// render and the phase commands: the control-plane hosts come after the
	// members, with the files of the parts asked for only.
	p, err := Files(w.c, rtOf(w.c), w.pki, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var hosts []string
	for _, h := range p.Hosts {
		hosts = append(hosts, h.Name)
	}
	if diff := cmp.Diff([]string{"n0", "n1", "n2", "cp0", "cp1"}, hosts); diff != "" {
		t.Errorf("rendered hosts (-want +got):\n%s", diff)
	}
	p, err = Files(w.c, rtOf(w.c), w.pki, Options{Parts: []Part{PartKubelet, PartManifests}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.FindHost("cp0"); ok || len(p.Hosts) != 3 {
		t.Errorf("kubelet and manifests rendered for %d hosts, cp0 among them: %v", len(p.Hosts), ok)
	}
}

func TestControlPlaneGoldenFiles(t *testing.T) {
	_, p := load(t, "testdata/external-control-plane.yaml")
	hp, ok := p.FindHost("cp0")
	if !ok {
		t.Fatal("no plan for cp0")
	}
	var listing strings.Builder
	for _, d := range hp.Dirs {
		fmt.Fprintf(&listing, "dir  %04o %s\n", d.Mode, d.Path)
	}
	for _, f := range hp.Files {
		fmt.Fprintf(&listing, "file %04o %s (%s)\n", f.Mode, f.Path, f.Part)
	}
	golden(t, filepath.Join("testdata/golden/external-control-plane/cp0/PLAN"), listing.String())
	f, _ := hp.File(kubeadmconfig.ExternalPath)
	golden(t, filepath.Join("testdata/golden/external-control-plane/cp0", f.Path), string(f.Data))
}

// A control-plane host added to a running cluster is the only host
// written: no member restarts, no etcd host changes.
func TestAddingAControlPlaneHostTouchesOnlyIt(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	w2 := w.withControlPlane(t, false, "cp0")
	hosts["cp0"] = cpEmpty("cp0")
	p := mustBuild(t, Input{Cluster: w2.c, Runtime: rtOf(w2.c), PKI: w2.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow})
	if len(p.Stages) != 1 {
		t.Fatalf("%d stages, want 1:\n%s", len(p.Stages), planText(p))
	}
	st := p.Stages[0]
	if got := stageHosts(st); !slices.Equal(got, []string{"cp0"}) || st.Rollout != AllAtOnce || len(st.Wait) > 0 {
		t.Errorf("stage %q on %v (%s, waits %v); want cp0 alone, all at once, no wait", st.Name, got, st.Rollout, st.Wait)
	}
	steps := stageOps(st, "cp0")
	want := []string{
		"mkdir /etc/kubernetes", "mkdir /etc/kubernetes/pki", "mkdir /etc/kubernetes/pki/etcd",
		"write " + cpCAPath, "write " + cpCertPath, "write " + cpKeyPath, "write /etc/kubernetes/etcd-external.yaml",
	}
	if diff := cmp.Diff(want, kinds(steps)); diff != "" {
		t.Errorf("cp0's operations (-want +got):\n%s", diff)
	}
	for _, n := range names3 {
		hp, _ := p.FindHost(n)
		if ch := hp.Changed(); len(ch) > 0 {
			t.Errorf("%s changes: %v", n, ch)
		}
		if steps := opsOf(p, n); len(steps) > 0 {
			t.Errorf("%s has operations: %v", n, kinds(steps))
		}
	}
	if d := anyDisruptive(p); len(d) > 0 {
		t.Errorf("disruptive operations: %v", d)
	}
	// Once written, nothing is left to do.
	w3 := w.withControlPlane(t, true, "cp0")
	hosts["cp0"] = w3.cpAsPlanned(t, "cp0")
	if p := mustBuild(t, Input{Cluster: w3.c, Runtime: rtOf(w3.c), PKI: w3.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow}); !p.Empty() {
		t.Errorf("a control-plane host as planned still has work:\n%s", planText(p))
	}
}

// On a cluster brought up with its control-plane hosts, theirs come after
// the members start.
func TestBringUpWithControlPlaneHosts(t *testing.T) {
	c := parseInventory(t, cpInventoryYAML(3, "cp0"), t.TempDir())
	pki := computePKI(t, c)
	hosts := map[string]*facts.Host{"cp0": cpEmpty("cp0")}
	for _, n := range names3 {
		hosts[n] = emptyHost(n)
	}
	p := mustBuild(t, Input{Cluster: c, Runtime: rtOf(c), PKI: pki, Hosts: hosts, Now: fixedNow})
	var names []string
	for _, st := range p.Stages {
		names = append(names, st.Name+" "+strings.Join(stageHosts(st), ","))
	}
	want := []string{"bring-up: prepare the hosts n0,n1,n2", "bring-up: start the members n0,n1,n2", "control-plane hosts cp0"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("stages (-want +got):\n%s", diff)
	}
}

// A control-plane host is checked before anything is written: root, its
// clock, and an etcd CA file of another cluster there.
func TestControlPlaneHostRefusals(t *testing.T) {
	w := newWorld(t, 3).withControlPlane(t, true, "cp0")
	foreign, err := certs.NewCA(w.c, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*facts.Host)
		want string
	}{
		{"not root", func(hf *facts.Host) { hf.UID = 1000 }, "commands run as uid 1000"},
		{"clock off", func(hf *facts.Host) { hf.ClockSkew = 5 * time.Second }, "clock is 5s off"},
		{"another CA", func(hf *facts.Host) { hf.TrustedCAs = []*x509.Certificate{foreign.Cert} }, "holds another etcd CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hosts := w.allBootstrapped(t)
			hosts["cp0"] = w.cpAsPlanned(t, "cp0")
			tc.edit(hosts["cp0"])
			p, err := build(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow})
			re := mustRefuse(t, p, err)
			if len(re.Refusals) != 1 || re.Refusals[0].Host != "cp0" || !strings.Contains(re.Refusals[0].Reason, tc.want) {
				t.Errorf("refusals %+v, want one for cp0 saying %q", re.Refusals, tc.want)
			}
			if !p.Refused {
				t.Error("the plan is not marked refused")
			}
			if _, ok := p.FindHost("cp0"); !ok {
				t.Error("a refused plan does not show cp0's files")
			}
		})
	}
	// A member's refusal and a control-plane host's are listed together.
	hosts := w.allBootstrapped(t)
	hosts["n2"].UID = 1000
	hosts["cp0"] = w.cpAsPlanned(t, "cp0")
	hosts["cp0"].UID = 1000
	p, err := build(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow})
	re := mustRefuse(t, p, err)
	var who []string
	for _, r := range re.Refusals {
		who = append(who, r.Host)
	}
	if !slices.Equal(who, []string{"cp0", "n2"}) {
		t.Errorf("refused hosts %v, want cp0 and n2", who)
	}
	// A host without facts is an error, not a refusal.
	delete(hosts, "cp0")
	if _, err := Build(Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Now: fixedNow}); err == nil || !strings.Contains(err.Error(), "no facts for control-plane host cp0") {
		t.Errorf("without cp0's facts: %v", err)
	}
}

// certs renew apiserver-etcd-client renews the control-plane hosts' too,
// restarting nothing.
func TestRenewalIncludesControlPlaneHosts(t *testing.T) {
	w := newWorld(t, 3).withControlPlane(t, true, "cp0")
	hosts := w.allBootstrapped(t)
	hosts["cp0"] = w.cpAsPlanned(t, "cp0")
	renewed, _, err := certs.Compute(w.c, certs.Options{Renew: []string{certs.APIServerEtcdClient}})
	if err != nil {
		t.Fatal(err)
	}
	p := mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: renewed, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow})
	if d := anyDisruptive(p); len(d) > 0 {
		t.Errorf("a client certificate's renewal stops members: %v", d)
	}
	if diff := cmp.Diff([]string{cpCertPath, cpKeyPath}, writtenPaths(opsOf(p, "cp0"))); diff != "" {
		t.Errorf("cp0's writes (-want +got):\n%s", diff)
	}
	for _, n := range names3 {
		if got := writtenPaths(opsOf(p, n)); !slices.Equal(got, []string{cpCertPath, cpKeyPath}) {
			t.Errorf("%s writes %v, want its own client certificate and key", n, got)
		}
	}
	// --hosts cp0: cp0 alone.
	renewed, _, err = certs.Compute(w.c, certs.Options{Renew: []string{"all"}, Hosts: []string{"cp0"}})
	if err != nil {
		t.Fatal(err)
	}
	p = mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: renewed, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow})
	if diff := cmp.Diff([]string{cpCertPath, cpKeyPath}, writtenPaths(opsOf(p, "cp0"))); len(p.Stages) == 0 || diff != "" {
		t.Errorf("--hosts cp0: cp0's writes (-want +got):\n%s\n%s", diff, planText(p))
	}
	for _, st := range p.Stages {
		if got := stageHosts(st); !slices.Equal(got, []string{"cp0"}) {
			t.Errorf("stage %q on %v, want cp0 alone", st.Name, got)
		}
	}
}

// During a CA rotation the control-plane hosts go through the same stages:
// (a) the bundle, (b) a client certificate of the new CA, (c) the new CA
// alone; and a control-plane host behind holds the rotation at its stage.
func TestRotationIncludesControlPlaneHosts(t *testing.T) {
	w := newWorld(t, 3).withControlPlane(t, true, "cp0")
	old := certs.CA{KeyPair: w.pki.CA}
	next, err := certs.NewCA(w.c, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	forward := CAMove{Target: next.Cert, Other: old.Cert, TargetName: "the new CA", OtherName: "the old CA"}
	moved, _, err := certs.Compute(w.c, certs.Options{Issuer: &next})
	if err != nil {
		t.Fatal(err)
	}
	movedWorld := &world{dir: w.dir, c: w.c, pki: moved}

	// Members past stage (a), cp0 not: stage (a) again, for cp0 alone.
	hosts := w.allBootstrapped(t)
	for _, hf := range hosts {
		hf.TrustedCAs = []*x509.Certificate{next.Cert, old.Cert}
	}
	hosts["cp0"] = w.cpAsPlanned(t, "cp0")
	if got, why := Rotation(Input{Cluster: w.c, Runtime: rtOf(w.c), Hosts: hosts}, forward); got != TrustBoth || !strings.Contains(why, "cp0") {
		t.Errorf("cp0 on the old CA alone: stage %s (%s), want (a) naming cp0", forward.Describe(got), why)
	}
	a := computePKI(t, w.c)
	a.ForRotation(next, old, true)
	p := mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: a, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow})
	if f := plannedFile(t, p, "cp0", cpCAPath); string(f.Data) != string(next.CertPEM)+string(old.CertPEM) {
		t.Error("stage (a): cp0's ca.crt is not the new CA, then the old")
	}
	if got := writtenPaths(opsOf(p, "cp0")); !slices.Equal(got, []string{cpCAPath}) {
		t.Errorf("stage (a): cp0 writes %v, want its ca.crt alone", got)
	}

	// Everyone trusts both, cp0's client certificate is the old CA's: (b).
	hosts["cp0"].TrustedCAs = []*x509.Certificate{next.Cert, old.Cert}
	if got, why := Rotation(Input{Cluster: w.c, Runtime: rtOf(w.c), Hosts: hosts}, forward); got != MoveLeaves {
		t.Errorf("both trusted everywhere: stage %s (%s), want (b)", forward.Describe(got), why)
	}
	moved.ForRotation(next, old, true)
	p = mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: moved, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow})
	if got := writtenPaths(opsOf(p, "cp0")); !slices.Contains(got, cpCertPath) || !slices.Contains(got, cpKeyPath) {
		t.Errorf("stage (b): cp0 writes %v, want a new client certificate and key", got)
	}
	if c, err := certs.ParseCert(plannedFile(t, p, "cp0", cpCertPath).Data); err != nil || !certs.IssuedBy(c, next.Cert) {
		t.Errorf("stage (b): cp0's client certificate is not the new CA's (%v)", err)
	}

	// The members' leaves moved, cp0's not: still (b).
	hosts = movedWorld.allBootstrapped(t)
	for _, hf := range hosts {
		hf.TrustedCAs = []*x509.Certificate{next.Cert, old.Cert}
	}
	hosts["cp0"] = w.cpAsPlanned(t, "cp0")
	hosts["cp0"].TrustedCAs = []*x509.Certificate{next.Cert, old.Cert}
	if got, why := Rotation(Input{Cluster: w.c, Runtime: rtOf(w.c), Hosts: hosts}, forward); got != MoveLeaves || !strings.Contains(why, "cp0") {
		t.Errorf("cp0's leaf by the old CA: stage %s (%s), want (b) naming cp0", forward.Describe(got), why)
	}
	if LeavesIssuedBy(w.c, "cp0", hosts["cp0"], next.Cert) || !LeavesIssuedBy(w.c, "n0", hosts["n0"], next.Cert) {
		t.Error("LeavesIssuedBy does not read each host's own leaves")
	}

	// Every leaf moved: (c), and cp0's ca.crt becomes the new CA alone.
	hosts["cp0"] = movedWorld.cpAsPlanned(t, "cp0")
	hosts["cp0"].TrustedCAs = []*x509.Certificate{next.Cert, old.Cert}
	if got, why := Rotation(Input{Cluster: w.c, Runtime: rtOf(w.c), Hosts: hosts}, forward); got != DropOther {
		t.Errorf("every leaf moved: stage %s (%s), want (c)", forward.Describe(got), why)
	}
	moved.ForRotation(next, old, false)
	p = mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: moved, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow})
	if f := plannedFile(t, p, "cp0", cpCAPath); string(f.Data) != string(next.CertPEM) {
		t.Error("stage (c): cp0's ca.crt is not the new CA alone")
	}
	if got := writtenPaths(opsOf(p, "cp0")); !slices.Equal(got, []string{cpCAPath}) {
		t.Errorf("stage (c): cp0 writes %v, want its ca.crt alone", got)
	}
	hosts["cp0"].TrustedCAs = []*x509.Certificate{next.Cert}
	for _, n := range names3 {
		hosts[n].TrustedCAs = []*x509.Certificate{next.Cert}
	}
	if got, why := Rotation(Input{Cluster: w.c, Runtime: rtOf(w.c), Hosts: hosts}, forward); got != RotationDone {
		t.Errorf("all on the new CA: stage %s (%s), want done", forward.Describe(got), why)
	}
}
