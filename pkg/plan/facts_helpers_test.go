package plan

// Helpers that build realistic facts for the planner's tests, so that a test
// reads as "facts in, stages out". Nothing here touches the network: the
// addresses are from TEST-NET-1 and nothing connects to them.

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/kubeadmconfig"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/runtime"
	"github.com/etcdadm-io/etcdadm/pkg/runtime/kubelet"
	"github.com/etcdadm-io/etcdadm/pkg/runtime/systemd"
)

// fixedNow stamps restarts; it is not UTC on purpose, so that a test sees
// the stamp converted.
var fixedNow = time.Date(2031, 5, 17, 10, 4, 5, 0, time.FixedZone("CEST", 2*3600))

// fixedStamp is fixedNow as the restart annotation must carry it.
const fixedStamp = "2031-05-17T08:04:05Z"

const testClusterID = 0xcdf818194e3a8c32

// memberIDs are realistic etcd member IDs, by member name.
var memberIDs = map[string]uint64{
	"n0":    0x8e9e05c52164694d,
	"n1":    0x91bc3c398fb3c146,
	"n2":    0xfd422379fda50e48,
	"n3":    0x2f6a9b1e7d3c5a01,
	"ghost": 0x5a5a5a5a5a5a5a5a,
}

func idOf(t *testing.T, name string) uint64 {
	t.Helper()
	id, ok := memberIDs[name]
	if !ok {
		t.Fatalf("no member ID for %s", name)
	}
	return id
}

// addrOf is the address of host nI (192.0.2.1I), or of the ghost member.
func addrOf(name string) string {
	if name == "ghost" {
		return "192.0.2.99"
	}
	var i int
	if _, err := fmt.Sscanf(name, "n%d", &i); err != nil {
		panic("no address for " + name)
	}
	return fmt.Sprintf("192.0.2.%d", 10+i)
}

func cfgHost(name string) config.Host { return config.Host{Name: name, Address: addrOf(name)} }

func peerOf(name string) string   { return manifests.PeerURL(cfgHost(name)) }
func clientOf(name string) string { return manifests.ClientURL(cfgHost(name)) }

// inventoryYAML is an external cluster of hosts n0..n(count-1); etcd is
// extra YAML under spec.etcd (e.g. "serverCertSANs: [etcd.example.com]").
func inventoryYAML(count int, etcd string) string {
	var b strings.Builder
	b.WriteString("apiVersion: etcdadm/v1alpha1\nkind: Cluster\nmetadata:\n  name: test\nspec:\n  topology: external\n")
	if etcd != "" {
		b.WriteString("  etcd:\n    " + etcd + "\n")
	}
	b.WriteString("  pki:\n    keyAlgorithm: ECDSA-P256\n  hosts:\n")
	for i := range count {
		name := fmt.Sprintf("n%d", i)
		fmt.Fprintf(&b, "  - name: %s\n    address: %s\n", name, addrOf(name))
	}
	return b.String()
}

// parseInventory loads an inventory whose relative paths (the PKI
// directory) resolve in dir.
func parseInventory(t *testing.T, yaml, dir string) *config.Cluster {
	t.Helper()
	c, _, err := config.Parse([]byte(yaml), "test inventory", dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// computePKI works out the PKI in memory, as plan.Compute does.
func computePKI(t *testing.T, c *config.Cluster) *certs.PKI {
	t.Helper()
	p, _, err := certs.Compute(c, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// savedPKI saves a PKI in c's directory once (certs.Ensure), then computes
// it again: the CA exists (CACreated false) and the leaves are reused.
func savedPKI(t *testing.T, c *config.Cluster) *certs.PKI {
	t.Helper()
	if _, _, err := certs.Ensure(c, certs.Options{}); err != nil {
		t.Fatal(err)
	}
	p := computePKI(t, c)
	if p.CACreated || p.Unsaved() {
		t.Fatalf("the saved PKI was not reused: CACreated %v, unsaved %v", p.CACreated, p.Unsaved())
	}
	return p
}

// world is a cluster of hosts with a saved PKI: the operator's side.
type world struct {
	dir string
	c   *config.Cluster
	pki *certs.PKI
}

// newWorld is an inventory of count hosts (n0...) with a saved PKI.
func newWorld(t *testing.T, count int) *world {
	t.Helper()
	dir := t.TempDir()
	c := parseInventory(t, inventoryYAML(count, ""), dir)
	return &world{dir: dir, c: c, pki: savedPKI(t, c)}
}

// changed is the same operator's directory with another inventory: the PKI
// is recomputed in memory, nothing is saved.
func (w *world) changed(t *testing.T, count int, etcd string) *world {
	t.Helper()
	c := parseInventory(t, inventoryYAML(count, etcd), w.dir)
	return &world{dir: w.dir, c: c, pki: computePKI(t, c)}
}

func (w *world) host(t *testing.T, name string) config.Host {
	t.Helper()
	h, ok := w.c.Host(name)
	if !ok {
		t.Fatalf("%s is not in the inventory", name)
	}
	return h
}

func (w *world) manifestPath() string { return manifests.ManifestPath(w.c) }

// planned is host name's plan when its member starts as m.
func (w *world) planned(t *testing.T, name string, m Member) Host {
	t.Helper()
	hp, err := HostFiles(w.c, rtOf(w.c), w.pki, w.host(t, name), m, AllParts)
	if err != nil {
		t.Fatal(err)
	}
	return hp
}

// asPlanned is a host that has every file of its plan (its member starting
// as m) and runs its member, with data.
func (w *world) asPlanned(t *testing.T, name string, m Member) *facts.Host {
	t.Helper()
	hp := w.planned(t, name, m)
	hf := &facts.Host{
		Name:          name,
		UID:           0,
		Kubelet:       "/usr/bin/kubelet",
		KubeletBin:    true,
		KubeletActive: "active",
		Files:         map[string]facts.FileState{},
	}
	for _, d := range hp.Dirs {
		hf.Files[d.Path] = facts.FileState{Dir: true, Mode: d.Mode}
	}
	for _, f := range hp.Files {
		st := facts.FileState{Mode: f.Mode, SHA256: f.SHA256()}
		if strings.HasSuffix(f.Path, ".crt") {
			st.Data = f.Data
		}
		hf.Files[f.Path] = st
		if f.Part == PartManifests {
			hf.Manifest = facts.ParseManifest(f.Data)
		}
	}
	trust(hf, w.pki)
	hf.DataDir = facts.DataDir{Exists: true, Entries: 1, HasWAL: true, MemberID: idOf(t, name), ClusterID: testClusterID}
	run(hf, 4000+int(idOf(t, name)%1000))
	return hf
}

// bootstrapped is asPlanned for a member of the cluster brought up from
// every host of the inventory.
func (w *world) bootstrapped(t *testing.T, name string) *facts.Host {
	t.Helper()
	return w.asPlanned(t, name, Bootstrap(w.c))
}

// allBootstrapped are the facts of every host, each running as brought up.
func (w *world) allBootstrapped(t *testing.T) map[string]*facts.Host {
	t.Helper()
	hosts := map[string]*facts.Host{}
	for _, h := range w.c.Spec.Hosts {
		hosts[h.Name] = w.bootstrapped(t, h.Name)
	}
	return hosts
}

// emptyHost is a prepared machine with nothing of etcd on it.
func emptyHost(name string) *facts.Host {
	return &facts.Host{
		Name:       name,
		UID:        0,
		Kubelet:    "/usr/bin/kubelet",
		KubeletBin: true,
		Files:      map[string]facts.FileState{},
		DataDir:    facts.DataDir{Exists: true, Entries: 0},
	}
}

// trust makes the host's etcd CA file the PKI's CA.
func trust(hf *facts.Host, p *certs.PKI) {
	hf.CAData = p.CA.CertPEM
	hf.TrustedCAs = facts.ParseCerts(p.CA.CertPEM)
}

// run makes etcd run on the host: its process listens on etcd's ports.
func run(hf *facts.Host, pid int) {
	hf.Etcd = []facts.Process{{PID: pid, Start: 987654, Cgroup: "/sys/fs/cgroup/kubepods.slice/kubepods-podabc.slice"}}
	hf.Listeners = nil
	for _, port := range []int{manifests.ClientPort, manifests.PeerPort, manifests.MetricsPort} {
		hf.Listeners = append(hf.Listeners, facts.Listener{Port: port, Process: "etcd", PID: pid,
			Line: fmt.Sprintf(`LISTEN 0 4096 *:%d *:* users:(("etcd",pid=%d,fd=7))`, port, pid)})
	}
}

// stop makes etcd not run on the host.
func stop(hf *facts.Host) {
	hf.Etcd, hf.Listeners = nil, nil
}

// dropManifest deletes the etcd manifest from the host.
func (w *world) dropManifest(hf *facts.Host) {
	delete(hf.Files, w.manifestPath())
	hf.Manifest = nil
}

// dropData empties the host's data directory.
func dropData(hf *facts.Host) { hf.DataDir = facts.DataDir{Exists: true} }

// member is a started voting member of the etcd view.
func member(t *testing.T, name string) etcdclient.Member {
	t.Helper()
	return etcdclient.Member{ID: idOf(t, name), Name: name, PeerURLs: []string{peerOf(name)}, ClientURLs: []string{clientOf(name)}}
}

// etcdView is what etcd says when the named members are started healthy
// voters, leader leading ("" for none): a linearizable member list.
func etcdView(t *testing.T, leader string, names ...string) *facts.Cluster {
	t.Helper()
	e := &facts.Cluster{Status: map[uint64]etcdclient.MemberStatus{}, Unanswered: map[string]etcdclient.MemberStatus{}, ClusterID: testClusterID}
	var leaderID uint64
	if leader != "" {
		leaderID = idOf(t, leader)
	}
	e.LeaderID = leaderID
	for _, n := range names {
		m := member(t, n)
		e.Members = append(e.Members, m)
		e.Status[m.ID] = etcdclient.MemberStatus{Name: n, Endpoint: clientOf(n), ID: m.HexID(), MemberID: m.ID, ClusterID: testClusterID,
			LeaderID: leaderID, Leader: n == leader, Version: "3.6.5", RaftTerm: 4, RaftIndex: 1234, Healthy: true}
	}
	if len(names) > 0 {
		e.ListFrom = clientOf(names[0])
	}
	return e
}

// viewMember returns a pointer to the named member of the view.
func viewMember(t *testing.T, e *facts.Cluster, name string) *etcdclient.Member {
	t.Helper()
	for i := range e.Members {
		if e.Members[i].Name == name {
			return &e.Members[i]
		}
	}
	t.Fatalf("no member %s in the etcd view", name)
	return nil
}

// unhealthy makes the named member answer its status but fail the health
// read.
func unhealthy(t *testing.T, e *facts.Cluster, name string) {
	t.Helper()
	id := idOf(t, name)
	st := e.Status[id]
	st.Name, st.Endpoint, st.ID, st.MemberID = name, clientOf(name), etcdclient.FormatID(id), id
	st.Healthy, st.Leader = false, false
	st.Error = "context deadline exceeded"
	e.Status[id] = st
}

// down makes the named member not answer at all, as when its process is
// gone.
func down(t *testing.T, e *facts.Cluster, name string) {
	t.Helper()
	delete(e.Status, idOf(t, name))
	e.Unanswered[clientOf(name)] = etcdclient.MemberStatus{Name: name, Endpoint: clientOf(name),
		Error: "no answer in time (member down, unreachable, or no quorum)"}
}

// learner makes the named member a healthy learner.
func learner(t *testing.T, e *facts.Cluster, name string) {
	t.Helper()
	viewMember(t, e, name).Learner = true
	st := e.Status[idOf(t, name)]
	st.Learner = true
	e.Status[idOf(t, name)] = st
}

// --- running the planner, with the checks every plan must pass ---

func build(t *testing.T, in Input) (*Plan, error) {
	t.Helper()
	p, err := Build(in)
	if err == nil {
		checkInvariants(t, p)
	}
	return p, err
}

func mustBuild(t *testing.T, in Input) *Plan {
	t.Helper()
	p, err := build(t, in)
	if err != nil {
		t.Fatalf("plan refused: %v", err)
	}
	return p
}

// mustRefuse returns the refusal of a plan that must be refused.
func mustRefuse(t *testing.T, p *Plan, err error) *RefusedError {
	t.Helper()
	if err == nil {
		t.Fatalf("the plan was not refused:\n%s", planText(p))
	}
	var re *RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("error %v is not a *RefusedError", err)
	}
	// A refused plan has nothing to run.
	if p != nil && (!p.Empty() || len(p.Stages) > 0) {
		t.Errorf("a refused plan has stages:\n%s", planText(p))
	}
	return re
}

// checkInvariants holds for every plan: a write never targets a file that
// is as planned, and a one-at-a-time stage that stops a running member
// names the quorum the executor checks.
func checkInvariants(t *testing.T, p *Plan) {
	t.Helper()
	for _, st := range p.Stages {
		disruptive := false
		for _, ho := range st.Hosts {
			hp, _ := p.FindHost(ho.Host)
			for _, op := range ho.Ops {
				disruptive = disruptive || op.Meta().Disruptive
				op, ok := op.(ops.Write)
				if !ok {
					continue
				}
				if op.Change == nil {
					t.Errorf("stage %q, %s: write of %s has no change", st.Name, ho.Host, op.Path)
					continue
				}
				if op.Change.Kind == Unchanged {
					t.Errorf("stage %q, %s: write of %s, which is unchanged", st.Name, ho.Host, op.Path)
				}
				if op.Path != op.Change.Path {
					t.Errorf("stage %q, %s: write of %s carries the change of %s", st.Name, ho.Host, op.Path, op.Change.Path)
				}
				if hp != nil {
					for _, ch := range hp.Changes {
						if ch.Path == op.Path && ch.Kind == Unchanged {
							t.Errorf("stage %q, %s: write of %s, which the host's changes say is unchanged", st.Name, ho.Host, op.Path)
						}
					}
				}
			}
		}
		if st.Rollout == OneAtATime && disruptive && st.Quorum <= 0 {
			t.Errorf("stage %q stops a running member one host at a time but has no quorum to check (%d)", st.Name, st.Quorum)
		}
	}
}

func planText(p *Plan) string {
	if p == nil {
		return "(no plan)"
	}
	var b strings.Builder
	WriteText(&b, p)
	return b.String()
}

// --- reading plans ---

// stageOps returns the operations of host in stage st, nil when none.
func stageOps(st Stage, host string) []Op {
	for _, ho := range st.Hosts {
		if ho.Host == host {
			return ho.Ops
		}
	}
	return nil
}

func stageHosts(st Stage) []string {
	var out []string
	for _, ho := range st.Hosts {
		out = append(out, ho.Host)
	}
	return out
}

// opsOf are every operation of host in the plan, stage after stage.
func opsOf(p *Plan, host string) []Op {
	var out []Op
	for _, st := range p.Stages {
		out = append(out, stageOps(st, host)...)
	}
	return out
}

// kinds describes operations in a compact form: "write /path",
// "run systemctl ...", "mark x", or the kind alone.
func kinds(steps []Op) []string {
	var out []string
	for _, op := range steps {
		k := string(op.Kind())
		switch o := op.(type) {
		case ops.Write:
			out = append(out, k+" "+o.Path)
		case ops.Mkdir:
			out = append(out, k+" "+o.Path)
		case ops.Backup:
			out = append(out, k+" "+o.Path)
		case ops.Run:
			out = append(out, "run "+o.Command)
		case ops.Mark:
			out = append(out, k+" "+o.Marker)
		case ops.Unmark:
			out = append(out, k+" "+o.Marker)
		default:
			out = append(out, k)
		}
	}
	return out
}

func kindsOnly(steps []Op) []ops.Kind {
	var out []ops.Kind
	for _, op := range steps {
		out = append(out, op.Kind())
	}
	return out
}

func findOp(steps []Op, pred func(Op) bool) (Op, int) {
	i := slices.IndexFunc(steps, pred)
	if i < 0 {
		return nil, -1
	}
	return steps[i], i
}

// as is op as the payload type T, failing the test when it is another.
func as[T Op](t *testing.T, op Op) T {
	t.Helper()
	o, ok := op.(T)
	if !ok {
		var want T
		t.Fatalf("operation %v is a %T, not a %T", op, op, want)
	}
	return o
}

// first is the first operation of payload type T, and its index (-1 for none).
func first[T Op](steps []Op) (T, int) {
	for i, op := range steps {
		if o, ok := op.(T); ok {
			return o, i
		}
	}
	var none T
	return none, -1
}

func isKind(k ops.Kind) func(Op) bool { return func(op Op) bool { return op.Kind() == k } }

func isRun(cmd string) func(Op) bool {
	return func(op Op) bool { o, ok := op.(ops.Run); return ok && o.Command == cmd }
}

func isMark(k ops.Kind, marker string) func(Op) bool {
	return func(op Op) bool {
		switch o := op.(type) {
		case ops.Mark:
			return k == ops.KindMark && o.Marker == marker
		case ops.Unmark:
			return k == ops.KindUnmark && o.Marker == marker
		}
		return false
	}
}

func isWriteOf(path string) func(Op) bool {
	return func(op Op) bool { o, ok := op.(ops.Write); return ok && o.Path == path }
}

// writtenPaths are the paths the operations write, in order.
func writtenPaths(steps []Op) []string {
	var out []string
	for _, op := range steps {
		if o, ok := op.(ops.Write); ok {
			out = append(out, o.Path)
		}
	}
	return out
}

// nonManifestFiles are the paths of the planned files but the manifest.
func nonManifestFiles(hp Host) []string {
	var out []string
	for _, f := range hp.Files {
		if f.Part != PartManifests {
			out = append(out, f.Path)
		}
	}
	return out
}

func dirPaths(hp Host) []string {
	var out []string
	for _, d := range hp.Dirs {
		out = append(out, d.Path)
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// kubeadmArgs reads the extraArgs of a kubeadmcfg.yaml.
func kubeadmArgs(data []byte) map[string]string {
	out := map[string]string{}
	lines := strings.Split(string(data), "\n")
	for i := 0; i+1 < len(lines); i++ {
		name, ok := strings.CutPrefix(strings.TrimSpace(lines[i]), "- name: ")
		if !ok {
			continue
		}
		if value, ok := strings.CutPrefix(strings.TrimSpace(lines[i+1]), "value: "); ok {
			out[name] = value
		}
	}
	return out
}

// plannedFile is a planned file of the host in the plan.
func plannedFile(t *testing.T, p *Plan, host, path string) File {
	t.Helper()
	hp, ok := p.FindHost(host)
	if !ok {
		t.Fatalf("no host %s in the plan", host)
	}
	f, ok := hp.File(path)
	if !ok {
		t.Fatalf("%s: no planned file %s", host, path)
	}
	return f
}

const kubeadmPath = kubeadmconfig.Path

func anyDisruptive(p *Plan) []string {
	var out []string
	for _, st := range p.Stages {
		for _, ho := range st.Hosts {
			for _, op := range ho.Ops {
				if op.Meta().Disruptive {
					out = append(out, fmt.Sprintf("%s/%s: %s", st.Name, ho.Host, op))
				}
			}
		}
	}
	return out
}

// rtOf is the runtime the inventory runs its members with.
func rtOf(c *config.Cluster) runtime.Runtime {
	if c.Systemd() {
		return systemd.Runtime{}
	}
	return kubelet.Runtime{}
}
