package plan

// The kube-apiservers around a change of the cluster: their --etcd-servers
// follow the members (out before a member stops, in once one is promoted),
// they restart one at a time when their etcd files change or they have not
// read them, a restore stops and starts the whole control plane, and
// kubeadm's record of the endpoints follows.

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/etcdadm-io/etcdadm/pkg/apiserver"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/kubeadmconfig"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

// apiserverPod is a kube-apiserver static Pod as kubeadm writes it, using
// servers, serving at address.
func apiserverPod(t *testing.T, address string, servers ...string) []byte {
	t.Helper()
	pod := corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "kube-apiserver", Namespace: "kube-system"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "kube-apiserver", Image: "registry.k8s.io/kube-apiserver:v1.37.2", Command: []string{
			"kube-apiserver",
			"--advertise-address=" + address,
			"--client-ca-file=/etc/kubernetes/pki/ca.crt",
			"--etcd-cafile=" + kubeadmconfig.ExternalCAFile,
			"--etcd-certfile=" + kubeadmconfig.ExternalCertFile,
			"--etcd-keyfile=" + kubeadmconfig.ExternalKeyFile,
			"--etcd-servers=" + strings.Join(servers, ","),
			"--secure-port=6443",
		}}}},
	}
	b, err := yaml.Marshal(&pod)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withAPIServer gives host hf kubeadm's control plane, its kube-apiserver
// on servers, started after every file it reads was written.
func withAPIServer(t *testing.T, hf *facts.Host, address string, servers ...string) *facts.Host {
	t.Helper()
	hf.APIServer = &facts.APIServer{
		Manifest:  apiserver.Parse(apiserverPod(t, address, servers...)),
		Process:   []facts.Process{{PID: 7000, Start: 100}},
		Started:   fixedNow.Add(-time.Hour),
		Modified:  map[string]time.Time{kubeadmconfig.ExternalCAFile: fixedNow.Add(-2 * time.Hour), kubeadmconfig.ExternalCertFile: fixedNow.Add(-2 * time.Hour)},
		Running:   slices.Clone(apiserver.ControlPlaneManifests),
		AdminConf: true,
	}
	return hf
}

// withCPs is w's cluster of count members and the control-plane hosts cps,
// every control-plane host with its files and a kube-apiserver on servers.
func withCPs(t *testing.T, w *world, hosts map[string]*facts.Host, servers []string, cps ...string) (*world, map[string]*facts.Host) {
	t.Helper()
	wc := w.withControlPlane(t, true, cps...)
	for _, cp := range cps {
		hosts[cp] = withAPIServer(t, wc.cpAsPlanned(t, cp), cpAddrOf(cp), servers...)
	}
	return wc, hosts
}

// stageIndex is the index of the first stage whose name starts with prefix.
func stageIndex(p *Plan, prefix string) int {
	return slices.IndexFunc(p.Stages, func(s Stage) bool { return strings.HasPrefix(s.Name, prefix) })
}

// restartsOf are the kube-apiserver restarts of a stage, by host, in order.
func restartsOf(t *testing.T, st Stage) ([]string, []ops.RestartAPIServer) {
	t.Helper()
	var hosts []string
	var out []ops.RestartAPIServer
	for _, h := range st.Hosts {
		for _, op := range h.Ops {
			if r, ok := op.(ops.RestartAPIServer); ok {
				hosts = append(hosts, h.Host)
				out = append(out, r)
			}
		}
	}
	return hosts, out
}

func clientsOf(names ...string) []string {
	var out []string
	for _, n := range names {
		out = append(out, clientOf(n))
	}
	return out
}

// checkRestart: the restart writes kubeadm's manifest with --etcd-servers
// servers and nothing else changed.
func checkRestart(t *testing.T, r ops.RestartAPIServer, old []byte, servers []string) {
	t.Helper()
	want, err := apiserver.SetEtcdServers(old, servers)
	if err != nil {
		t.Fatal(err)
	}
	if string(r.File.Data) != string(want) || r.File.Path != "/etc/kubernetes/manifests/kube-apiserver.yaml" || r.File.Mode != 0o600 {
		t.Errorf("restart writes %s (%04o):\n%s\nwant:\n%s", r.File.Path, r.File.Mode, r.File.Data, want)
	}
	if r.Retry == nil || apiserver.Parse(r.Retry.Data).Restart == "" || !apiserver.Parse(r.Retry.Data).Servers(servers) {
		t.Errorf("the retry %+v is not the same Pod under a restart annotation", r.Retry)
	}
}

// A member added by apply is put in every kube-apiserver's --etcd-servers
// once it is promoted: after its stage, one kube-apiserver at a time;
// then kubeadm's record.
func TestAddedMemberJoinsTheAPIServersAfterItsPromotion(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	hosts["n3"] = emptyHost("n3")
	w4 := w.changed(t, 4, "")
	wc, hosts := withCPs(t, w4, hosts, clientsOf(names3...), "cp0", "cp1")
	old := hosts["cp0"].APIServer.Manifest.Data
	p := mustBuild(t, Input{Cluster: wc.c, Runtime: rtOf(wc.c), PKI: wc.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow})
	add, kas, record := stageIndex(p, "add member n3"), stageIndex(p, "kube-apiservers"), stageIndex(p, "kubeadm's record")
	if add < 0 || kas <= add || record <= kas {
		t.Fatalf("stages add %d, kube-apiservers %d, record %d; want them in that order:\n%s", add, kas, record, planText(p))
	}
	if promote, _ := findOp(stageOps(p.Stages[add], "n3"), isKind(ops.KindPromote)); promote == nil {
		t.Fatalf("n3 is not promoted in its stage:\n%s", planText(p))
	}
	st := p.Stages[kas]
	hostsOf, restarts := restartsOf(t, st)
	if st.Rollout != OneAtATime || !slices.Equal(hostsOf, []string{"cp0", "cp1"}) {
		t.Fatalf("kube-apiservers stage: %s on %v, want one at a time on cp0 then cp1", st.Rollout, hostsOf)
	}
	four := clientsOf("n0", "n1", "n2", "n3")
	checkRestart(t, restarts[0], old, four)
	up := as[ops.UpdateKubeadmConfig](t, stageOps(p.Stages[record], "cp0")[0])
	if !slices.Equal(up.Endpoints, four) {
		t.Errorf("kubeadm's record set to %v, want %v", up.Endpoints, four)
	}
	checkInvariants(t, p)
}

// apply with the kube-apiservers on the members and their files as
// planned restarts nothing; one that started before its CA bundle was
// written is restarted on the same Pod, under a restart annotation.
func TestAPIServersKeptWhenNothingChanges(t *testing.T) {
	w := newWorld(t, 3)
	wc, hosts := withCPs(t, w, w.allBootstrapped(t), clientsOf(names3...), "cp0", "cp1")
	in := Input{Cluster: wc.c, Runtime: rtOf(wc.c), PKI: wc.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow}
	if p := mustBuild(t, in); !p.Empty() {
		t.Fatalf("a cluster as planned with its kube-apiservers on the members:\n%s", planText(p))
	}
	// Servers in another order are the same servers.
	hosts["cp1"] = withAPIServer(t, hosts["cp1"], cpAddrOf("cp1"), clientsOf("n2", "n0", "n1")...)
	if p := mustBuild(t, in); !p.Empty() {
		t.Fatalf("--etcd-servers in another order:\n%s", planText(p))
	}
	hosts["cp1"].APIServer.Modified[kubeadmconfig.ExternalCAFile] = fixedNow.Add(-time.Minute)
	p := mustBuild(t, in)
	if len(p.Stages) != 1 {
		t.Fatalf("want the stale kube-apiserver's restart alone:\n%s", planText(p))
	}
	hostsOf, restarts := restartsOf(t, p.Stages[0])
	if !slices.Equal(hostsOf, []string{"cp1"}) || !strings.Contains(restarts[0].Why, "started before "+kubeadmconfig.ExternalCAFile) {
		t.Fatalf("restarts %v: %+v", hostsOf, restarts)
	}
	got := apiserver.Parse(restarts[0].File.Data)
	if got.Restart == "" || !got.Servers(clientsOf(names3...)) {
		t.Errorf("the restart's Pod %+v: want the same servers under a restart annotation", got)
	}
	if again := apiserver.Parse(restarts[0].Retry.Data); again.Restart == got.Restart {
		t.Errorf("the retry has the first restart's annotation %q", got.Restart)
	}
}

// member remove takes the member out of every kube-apiserver's
// --etcd-servers before the member is removed and stops; then kubeadm's
// record and etcd-external.yaml follow.
func TestRemovedMemberLeavesTheAPIServersFirst(t *testing.T) {
	w := newWorld(t, 3)
	wc, hosts := withCPs(t, w, w.allBootstrapped(t), clientsOf(names3...), "cp0", "cp1")
	old := hosts["cp1"].APIServer.Manifest.Data
	p, err := Remove(Input{Cluster: wc.c, Runtime: rtOf(wc.c), PKI: wc.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow}, "n2")
	if err != nil {
		t.Fatal(err)
	}
	out, remove, record := stageIndex(p, "take "+clientOf("n2")+" out"), stageIndex(p, "remove member n2"), stageIndex(p, "kubeadm's record")
	if out != 0 || remove != 1 || record != 2 || len(p.Stages) != 3 {
		t.Fatalf("stages: want the kube-apiservers first, the removal, then kubeadm's record:\n%s", planText(p))
	}
	hostsOf, restarts := restartsOf(t, p.Stages[out])
	if p.Stages[out].Rollout != OneAtATime || !slices.Equal(hostsOf, []string{"cp0", "cp1"}) {
		t.Fatalf("restarts on %v (%s)", hostsOf, p.Stages[out].Rollout)
	}
	two := clientsOf("n0", "n1")
	checkRestart(t, restarts[1], old, two)
	var written []string
	for _, h := range p.Stages[record].Hosts {
		for _, op := range h.Ops {
			switch o := op.(type) {
			case ops.Write:
				written = append(written, h.Host+":"+o.Path)
				if strings.Contains(string(o.Change.File.Data), clientOf("n2")) || !strings.Contains(string(o.Change.File.Data), clientOf("n1")) {
					t.Errorf("etcd-external.yaml on %s:\n%s", h.Host, o.Change.File.Data)
				}
			case ops.UpdateKubeadmConfig:
				if !slices.Equal(o.Endpoints, two) {
					t.Errorf("kubeadm's record set to %v", o.Endpoints)
				}
				written = append(written, h.Host+":kubeadm-config")
			}
		}
	}
	want := []string{"cp0:" + kubeadmconfig.ExternalPath, "cp0:kubeadm-config", "cp1:" + kubeadmconfig.ExternalPath}
	if !slices.Equal(written, want) {
		t.Errorf("record stage %v, want %v", written, want)
	}
}

// member move takes the old address out of the kube-apiservers before the
// member stops on its old host, and puts the new one in once it started
// on its new host.
func TestMovedMemberFollowedByTheAPIServers(t *testing.T) {
	w := newWorld(t, 3)
	old := w.bootstrapped(t, "n2")
	hosts := w.allBootstrapped(t)
	c := parseInventory(t, strings.Replace(cpInventoryYAML(3, "cp0", "cp1"), "address: "+addrOf("n2"), "address: "+newAddress, 1), w.dir)
	nw := &world{dir: w.dir, c: c, pki: computePKI(t, c)}
	hosts["n2"] = emptyHost("n2")
	for _, cp := range []string{"cp0", "cp1"} {
		hosts[cp] = withAPIServer(t, nw.cpAsPlanned(t, cp), cpAddrOf(cp), clientsOf(names3...)...)
	}
	in := Input{Cluster: nw.c, Runtime: rtOf(nw.c), PKI: nw.pki, Hosts: hosts, Etcd: etcdView(t, "n0", names3...), Now: fixedNow}
	from, err := MoveSource(in, "n2")
	if err != nil {
		t.Fatal(err)
	}
	from.Facts = old
	p, err := Move(in, "n2", from)
	if err != nil {
		t.Fatal(err)
	}
	out, stop, start, back := stageIndex(p, "take "+clientOf("n2")+" out"), stageIndex(p, "stop n2 on its old host"), stageIndex(p, "start n2 on its new host"), stageIndex(p, "kube-apiservers on the members")
	if out != 0 || stop <= out || start <= stop || back <= start {
		t.Fatalf("stages out %d, stop %d, start %d, back %d:\n%s", out, stop, start, back, planText(p))
	}
	_, restarts := restartsOf(t, p.Stages[out])
	if len(restarts) != 2 || !slices.Equal(restarts[0].Servers, clientsOf("n0", "n1")) {
		t.Fatalf("out: %+v", restarts)
	}
	_, restarts = restartsOf(t, p.Stages[back])
	moved := []string{clientOf("n0"), clientOf("n1"), "https://" + newAddress + ":2379"}
	if len(restarts) != 2 || !slices.Equal(restarts[1].Servers, moved) {
		t.Fatalf("back: %+v", restarts)
	}
}

// A restore stops every kube-apiserver, controller manager and scheduler
// (recorded first) before any member stops, and starts them after the
// restored members, every kube-apiserver waited for; a restore cut after
// the stop finds them held and puts them back.
func TestRestoreStopsAndStartsTheControlPlane(t *testing.T) {
	w := newWorld(t, 3)
	wc, hosts := withCPs(t, w, w.allBootstrapped(t), clientsOf(names3...), "cp0", "cp1")
	in := Input{Cluster: wc.c, Runtime: rtOf(wc.c), PKI: wc.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow}
	p, err := Restore(in, staged)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, st := range p.Stages {
		names = append(names, st.Name)
	}
	want := "record the restore | make the data directories here | push the restored data | stop the control plane | stop every member | swap the data directories | start the restored members | remove the staged data and the records | start the control plane"
	if got := strings.Join(names, " | "); got != want {
		t.Fatalf("stages:\n%s\nwant:\n%s", got, want)
	}
	stop, start := p.Stages[3], p.Stages[8]
	for _, cp := range []string{"cp0", "cp1"} {
		if got := kinds(stageOps(stop, cp)); strings.Join(got, ",") != "mark control-plane-stopped,stop-control-plane" {
			t.Errorf("%s's stop: %v", cp, got)
		}
		so := as[ops.StopControlPlane](t, stageOps(stop, cp)[1])
		if !slices.Equal(so.Names, apiserver.ControlPlaneManifests) || so.Dir != apiserver.ManifestsDir {
			t.Errorf("%s stops %v in %s", cp, so.Names, so.Dir)
		}
		if got := kinds(stageOps(start, cp)); strings.Join(got, ",") != "start-control-plane,unmark control-plane-stopped" {
			t.Errorf("%s's start: %v", cp, got)
		}
		if up := as[ops.StartControlPlane](t, stageOps(start, cp)[0]); up.APIServer != nil {
			t.Errorf("%s's kube-apiserver rewritten although its servers are the members", cp)
		}
	}
	if stop.Rollout != AllAtOnce || start.Rollout != AllAtOnce {
		t.Errorf("stop %s, start %s", stop.Rollout, start.Rollout)
	}

	// Cut after cp0's stop: its Pods are held, and put back at the end.
	a := hosts["cp0"].APIServer
	a.HeldManifest, a.Manifest = a.Manifest, nil
	a.Held, a.Running = a.Running, nil
	hosts["cp0"].Pending = []string{facts.PendingControlPlane}
	if p, err = Restore(in, staged); err != nil {
		t.Fatal(err)
	}
	up := as[ops.StartControlPlane](t, stageOps(p.Stages[len(p.Stages)-1], "cp0")[0])
	if !slices.Equal(up.Names, apiserver.ControlPlaneManifests) {
		t.Errorf("the held Pods put back: %v", up.Names)
	}
	// And apply, after such a cut, starts them again.
	p = mustBuild(t, in)
	if i := stageIndex(p, "start the control plane a cut run stopped"); i < 0 || len(p.Stages[i].Hosts) != 1 || p.Stages[i].Hosts[0].Host != "cp0" {
		t.Errorf("apply after a cut restore:\n%s", planText(p))
	}
}

// certs renew apiserver-etcd-client writes the control-plane hosts' new
// client certificates all at once, then restarts each kube-apiserver, one
// at a time.
func TestRenewedClientCertificatesRestartTheAPIServers(t *testing.T) {
	w := newWorld(t, 3)
	wc, hosts := withCPs(t, w, w.allBootstrapped(t), clientsOf(names3...), "cp0", "cp1")
	for _, cp := range []string{"cp0", "cp1"} {
		st := hosts[cp].Files[cpCertPath]
		st.SHA256 = "renewed elsewhere"
		hosts[cp].Files[cpCertPath] = st
	}
	p := mustBuild(t, Input{Cluster: wc.c, Runtime: rtOf(wc.c), PKI: wc.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow})
	files, kas := stageIndex(p, "control-plane hosts"), stageIndex(p, "kube-apiservers")
	if files < 0 || kas != files+1 || len(p.Stages) != 2 {
		t.Fatalf("want the files, then the restarts:\n%s", planText(p))
	}
	hostsOf, restarts := restartsOf(t, p.Stages[kas])
	if p.Stages[kas].Rollout != OneAtATime || !slices.Equal(hostsOf, []string{"cp0", "cp1"}) || !strings.Contains(restarts[0].Why, "client certificate it reads changes") {
		t.Fatalf("restarts %v: %+v", hostsOf, restarts)
	}
	if anyDisruptive(p) != nil {
		t.Errorf("a member would restart: %v", anyDisruptive(p))
	}
}

// A CA rotation does not go past a stage while a kube-apiserver started
// before its CA bundle was written: it has not read it.
func TestRotationWaitsForTheAPIServers(t *testing.T) {
	w := newWorld(t, 3)
	wc, hosts := withCPs(t, w, w.allBootstrapped(t), clientsOf(names3...), "cp0")
	ca := wc.pki.CA.Cert
	move := CAMove{Target: ca, Other: ca, TargetName: "the new CA", OtherName: "the old CA"}
	in := Input{Cluster: wc.c, Runtime: rtOf(wc.c), Hosts: hosts, Now: fixedNow}
	if stage, why := Rotation(in, move); stage != DropOther && stage != RotationDone {
		t.Fatalf("every host on the CA: stage %v (%s)", stage, why)
	}
	hosts["cp0"].APIServer.Modified[kubeadmconfig.ExternalCAFile] = fixedNow
	if stage, why := Rotation(in, move); stage != TrustBoth || !strings.Contains(why, "cp0") {
		t.Errorf("a kube-apiserver that has not read its CA bundle: stage %v (%s), want (a) naming cp0", stage, why)
	}
}

// A stacked control plane keeps kubeadm's loopback --etcd-servers; its
// kube-apiservers restart, one at a time after the members, when their CA
// bundle changes.
func TestStackedAPIServersKeepLoopback(t *testing.T) {
	w := newWorld(t, 3)
	c := parseInventory(t, strings.Replace(inventoryYAML(3, ""), "topology: external", "topology: stacked", 1), w.dir)
	ws := &world{dir: w.dir, c: c, pki: savedPKI(t, c)}
	hosts := ws.allBootstrapped(t)
	for _, n := range names3 {
		withAPIServer(t, hosts[n], addrOf(n), "https://127.0.0.1:2379")
	}
	in := Input{Cluster: ws.c, Runtime: rtOf(ws.c), PKI: ws.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow}
	if p := mustBuild(t, in); !p.Empty() {
		t.Fatalf("a stacked cluster as planned:\n%s", planText(p))
	}
	st := hosts["n0"].Files[cpCAPath]
	st.SHA256 = "another bundle"
	hosts["n0"].Files[cpCAPath] = st
	p := mustBuild(t, in)
	kas := stageIndex(p, "kube-apiservers")
	if kas != len(p.Stages)-1 || kas == 0 {
		t.Fatalf("want the members' stage, then the kube-apiservers':\n%s", planText(p))
	}
	// n0's member restarts for its new bundle; its kube-apiserver, which
	// reaches it alone, is ready again before the next member restarts.
	steps := stageOps(p.Stages[0], "n0")
	restart, ri := findOp(steps, isKind(ops.KindRestartEtcd))
	wait, wi := findOp(steps, isKind(ops.KindWaitAPIServer))
	if restart == nil || wait == nil || wi < ri || wi != len(steps)-1 {
		t.Errorf("n0's roll: %v, want the wait for its kube-apiserver last", kinds(steps))
	}
	hostsOf, restarts := restartsOf(t, p.Stages[kas])
	if !slices.Equal(hostsOf, []string{"n0"}) || !slices.Equal(restarts[0].Servers, []string{"https://127.0.0.1:2379"}) {
		t.Fatalf("restarts %v: %+v", hostsOf, restarts)
	}
	if i := stageIndex(p, "kubeadm's record"); i >= 0 {
		t.Errorf("a stacked control plane's kubeadm record is not etcdadm's:\n%s", planText(p))
	}
}
