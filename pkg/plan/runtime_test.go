package plan

// The systemd runtime: facts in, stages out, as for the static Pods, with
// the members run as etcd.service from a release tarball.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/etcdservice"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	kubeletconf "github.com/etcdadm-io/etcdadm/pkg/kubelet"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/release"
	"github.com/etcdadm-io/etcdadm/pkg/runtime/kubelet"
	"github.com/etcdadm-io/etcdadm/pkg/runtime/systemd"
)

const testPlatform = "linux/amd64"

// writeTestRelease writes etcd-v<version>-linux-amd64.tar.gz into dir, its
// etcd and etcdctl small scripts that name the version, and returns its
// file name and sha256.
func writeTestRelease(t *testing.T, dir, version string) (string, string) {
	t.Helper()
	top := "etcd-v" + version + "-linux-amd64"
	files := map[string]string{}
	for _, n := range []string{"etcd", "etcdctl", "etcdutl"} {
		p := filepath.Join(dir, top+"."+n)
		if err := os.WriteFile(p, []byte("#!/bin/sh\necho "+n+" "+version+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		files[n] = p
	}
	name := top + ".tar.gz"
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := release.Write(f, top, []string{"etcd", "etcdctl", "etcdutl"}, files); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	info, err := release.Read(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return name, info.SHA256
}

// systemdEtcd is the spec.etcd YAML of the systemd runtime with the
// release of version in dir, then more (more spec.etcd fields, or "").
func systemdEtcd(t *testing.T, dir, version, more string) string {
	t.Helper()
	file, sum := writeTestRelease(t, dir, version)
	s := fmt.Sprintf("runtime: systemd\n    release: {file: %s, sha256: %s}", file, sum)
	if more != "" {
		s += "\n    " + more
	}
	return s
}

// newSystemdWorld is newWorld with the members run by systemd from release
// 3.7.0.
func newSystemdWorld(t *testing.T, count int) *world {
	t.Helper()
	dir := t.TempDir()
	c := parseInventory(t, inventoryYAML(count, systemdEtcd(t, dir, "3.7.0", "")), dir)
	return &world{dir: dir, c: c, pki: savedPKI(t, c)}
}

// systemdChanged is changed for a systemd world: release version, and more.
func (w *world) systemdChanged(t *testing.T, count int, version, more string) *world {
	t.Helper()
	c := parseInventory(t, inventoryYAML(count, systemdEtcd(t, w.dir, version, more)), w.dir)
	return &world{dir: w.dir, c: c, pki: computePKI(t, c)}
}

// emptySystemdHost is a prepared machine with systemd and neither etcd nor
// a kubelet.
func emptySystemdHost(name string) *facts.Host {
	return &facts.Host{Name: name, Files: map[string]facts.FileState{}, DataDir: facts.DataDir{Exists: true}, EtcdActive: "inactive"}
}

// systemdAsPlanned is a host with every file of its plan, whose etcd.service
// runs the member (with data), started as m; no kubelet.
func (w *world) systemdAsPlanned(t *testing.T, name string, m Member) *facts.Host {
	t.Helper()
	hp := w.planned(t, name, m)
	hf := emptySystemdHost(name)
	hf.EtcdActive = "active"
	for _, d := range hp.Dirs {
		hf.Files[d.Path] = facts.FileState{Dir: true, Mode: d.Mode}
	}
	for _, f := range hp.Files {
		st := facts.FileState{Mode: f.Mode, SHA256: f.SHA256()}
		if strings.HasSuffix(f.Path, ".crt") {
			st.Data = f.Data
		}
		hf.Files[f.Path] = st
		if f.Path == etcdservice.EnvPath {
			hf.Manifest = facts.ParseEnvFile(f.Data)
		}
	}
	trust(hf, w.pki)
	hf.DataDir = facts.DataDir{Exists: true, Entries: 1, HasWAL: true, MemberID: idOf(t, name), ClusterID: testClusterID}
	run(hf, 4000+int(idOf(t, name)%1000))
	hf.Etcd[0].Cgroup = ""
	return hf
}

func (w *world) allSystemd(t *testing.T) map[string]*facts.Host {
	t.Helper()
	hosts := map[string]*facts.Host{}
	for _, h := range w.c.Spec.Hosts {
		hosts[h.Name] = w.systemdAsPlanned(t, h.Name, Bootstrap(w.c))
	}
	return hosts
}

// viewVersion makes every member of the view report version.
func viewVersion(e *facts.Cluster, version string) *facts.Cluster {
	for id, st := range e.Status {
		st.Version = version
		e.Status[id] = st
	}
	return e
}

// A host of the systemd runtime gets the release's etcd and etcdctl,
// etcd.service and the environment file; no kubelet file, no manifest. The
// environment file carries exactly the flags of the member's static Pod.
func TestSystemdFiles(t *testing.T) {
	dir := t.TempDir()
	sd := parseInventory(t, inventoryYAML(3, systemdEtcd(t, dir, "3.7.0", "extraArgs: {quota-backend-bytes: \"8589934592\", listen-metrics-urls: \"http://0.0.0.0:2381\", log-level: debug}")), dir)
	pki := computePKI(t, sd)
	kube := parseInventory(t, inventoryYAML(3, "extraArgs: {quota-backend-bytes: \"8589934592\", listen-metrics-urls: \"http://0.0.0.0:2381\", log-level: debug}"), dir)
	rel := sd.Spec.Etcd.Release.Info
	for _, m := range []Member{Bootstrap(sd), {InitialCluster: "n0=https://192.0.2.10:2380,n1=https://192.0.2.11:2380", State: manifests.StateExisting}} {
		h, _ := sd.Host("n1")
		hp, err := HostFiles(sd, rtOf(sd), pki, h, m, AllParts)
		if err != nil {
			t.Fatal(err)
		}
		var paths []string
		for _, f := range hp.Files {
			paths = append(paths, f.Path)
		}
		for _, absent := range []string{kubeletconf.ConfigPath, kubeletconf.DropInPath, manifests.ManifestPath(sd)} {
			if slices.Contains(paths, absent) {
				t.Errorf("a systemd host gets %s", absent)
			}
		}
		for _, name := range []string{"etcd", "etcdctl"} {
			f, ok := hp.File("/usr/local/bin/" + name)
			if !ok || f.Mode != 0o755 || f.Source == nil || f.Data != nil || f.SHA256() != rel.Binaries[name].SHA256 || f.Source.Entry != "etcd-v3.7.0-linux-amd64/"+name {
				t.Errorf("%s: %+v, want mode 0755 streamed from the release (sha256 %s)", name, f, rel.Binaries[name].SHA256)
			}
		}
		if _, ok := hp.File("/usr/local/bin/etcdutl"); ok {
			t.Error("etcdutl is installed")
		}
		unit, ok := hp.File(etcdservice.UnitPath)
		if !ok || unit.Mode != 0o644 || string(unit.Data) != string(etcdservice.UnitFile()) {
			t.Errorf("etcd.service: %+v", unit)
		}
		for _, want := range []string{"/etc/kubernetes/pki/etcd/ca.crt", "/etc/kubernetes/pki/etcd/server.key", kubeadmPath} {
			if !slices.Contains(paths, want) {
				t.Errorf("a systemd host lacks %s (certificates stay at kubeadm's paths)", want)
			}
		}
		env, ok := hp.File(etcdservice.EnvPath)
		if !ok {
			t.Fatalf("no %s in %v", etcdservice.EnvPath, paths)
		}
		flags, err := etcdservice.ParseEnvFile(env.Data)
		if err != nil {
			t.Fatal(err)
		}
		// The static Pod of the same member in the same cluster, run by the kubelet.
		pod, err := kubelet.ManifestFile(kube, h, m)
		if err != nil {
			t.Fatal(err)
		}
		podFlags := facts.ParseManifest(pod.Data)
		want := manifests.EtcdPod(kube, h, m.InitialCluster, m.State).Spec.Containers[0].Command
		if diff := cmp.Diff(want[1:], flags); diff != "" || want[0] != "etcd" {
			t.Errorf("the environment file's flags differ from the static Pod's (-pod +env):\n%s", diff)
		}
		if envm := facts.ParseEnvFile(env.Data); !cmp.Equal(envm.Flags, podFlags.Flags) || envm.InitialCluster != m.InitialCluster || envm.InitialClusterState != m.State {
			t.Errorf("the facts read other flags from the environment file than from the Pod:\n%s", cmp.Diff(podFlags.Flags, envm.Flags))
		}
		if !slices.Contains(flags, "--listen-metrics-urls=http://0.0.0.0:2381") || !slices.Contains(flags, "--quota-backend-bytes=8589934592") {
			t.Errorf("extraArgs missing from %v", flags)
		}
	}
}

// A new cluster on hosts without a kubelet: not refused; every host gets
// the binaries, the unit (systemd reloaded) and its certificates, then
// every member starts through its unit together. No kubelet file, no
// image import.
func TestSystemdFreshCluster(t *testing.T) {
	dir := t.TempDir()
	c := parseInventory(t, inventoryYAML(3, systemdEtcd(t, dir, "3.7.0", "")), dir)
	pki := computePKI(t, c)
	hosts := map[string]*facts.Host{}
	for _, n := range names3 {
		hosts[n] = emptySystemdHost(n)
	}
	p := mustBuild(t, Input{Cluster: c, Runtime: rtOf(c), PKI: pki, Hosts: hosts, Now: fixedNow, Platform: testPlatform})
	if len(p.Stages) != 2 || p.Stages[0].Rollout != AllAtOnce || p.Stages[1].Rollout != AllAtOnce {
		t.Fatalf("want prepare and start stages, all at once:\n%s", planText(p))
	}
	prep, start := p.Stages[0], p.Stages[1]
	if !slices.Equal(start.Wait, names3) {
		t.Errorf("start waits for %v", start.Wait)
	}
	for _, n := range names3 {
		steps := stageOps(prep, n)
		written := writtenPaths(steps)
		for _, want := range []string{"/usr/local/bin/etcd", "/usr/local/bin/etcdctl", etcdservice.UnitPath, "/etc/kubernetes/pki/etcd/peer.crt", kubeadmPath} {
			if !slices.Contains(written, want) {
				t.Errorf("%s: prepare does not write %s: %v", n, want, kinds(steps))
			}
		}
		for _, p := range written {
			if strings.Contains(p, "kubelet") || p == etcdservice.EnvPath {
				t.Errorf("%s: prepare writes %s", n, p)
			}
		}
		unit := slices.Index(written, etcdservice.UnitPath)
		if _, reload := findOp(steps, isRun(CmdDaemonReload)); reload < 0 || reload < slices.IndexFunc(steps, isWriteOf(etcdservice.UnitPath)) || unit < 0 {
			t.Errorf("%s: no daemon-reload after the unit: %v", n, kinds(steps))
		}
		for _, op := range steps {
			if op.Kind() == ops.KindImportImage || op.Kind() == ops.KindMark || (op.Kind() == ops.KindRun && strings.Contains(as[ops.Run](t, op).Command, "kubelet")) {
				t.Errorf("%s: %s", n, op)
			}
		}
		sops := stageOps(start, n)
		if len(sops) != 1 || sops[0].Kind() != ops.KindRestartEtcd || as[ops.RestartEtcd](t, sops[0]).Command != systemd.CmdRestartEtcd || sops[0].Meta().Disruptive || as[ops.RestartEtcd](t, sops[0]).Retry != nil {
			t.Fatalf("%s: start steps %v, want one start through the unit", n, sops)
		}
		env := as[ops.RestartEtcd](t, sops[0]).Change
		if env == nil || env.Path != etcdservice.EnvPath || env.Kind != Create {
			t.Fatalf("%s: the start does not write the environment file: %+v", n, env)
		}
		m := facts.ParseEnvFile(env.File.Data)
		if m.Name != n || m.InitialClusterState != manifests.StateNew || m.InitialCluster != manifests.InitialCluster(c.Spec.Hosts) {
			t.Errorf("%s: starts as %+v", n, m)
		}
	}
	if !strings.Contains(planText(p), "restart etcd: $ systemctl enable etcd && systemctl restart --no-block etcd") {
		t.Errorf("the plan does not show the command:\n%s", planText(p))
	}

	// The same hosts under the static Pod runtime are refused: no kubelet.
	kube := parseInventory(t, inventoryYAML(3, ""), t.TempDir())
	_, err := build(t, Input{Cluster: kube, Runtime: rtOf(kube), PKI: computePKI(t, kube), Hosts: hosts, Now: fixedNow})
	if re := mustRefuse(t, nil, err); !strings.Contains(re.Error(), "kubelet is not installed") {
		t.Errorf("without a kubelet, the static Pod runtime: %v", re)
	}
}

// Pre-flight of the systemd runtime: systemctl must answer, etcd's port
// must not be served by an etcd the unit does not run, and the release must
// be for the hosts' platform.
func TestSystemdPreflight(t *testing.T) {
	w := newSystemdWorld(t, 3)
	hosts := w.allSystemd(t)
	hosts["n0"].EtcdActive = ""
	hosts["n1"].EtcdActive = "inactive"
	_, err := build(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow, Platform: "linux/arm64"})
	re := mustRefuse(t, nil, err)
	for _, want := range []string{
		"n0: systemctl does not answer",
		"n1: an etcd process (pid ",
		"but not as etcd, which is inactive",
		"n2: the etcd release etcd-v3.7.0-linux-amd64 is for linux/amd64, the hosts are linux/arm64: use etcd-v3.7.0-linux-arm64.tar.gz",
	} {
		if !strings.Contains(re.Error(), want) {
			t.Errorf("refusal lacks %q:\n%v", want, re)
		}
	}
}

// Every host as planned: nothing to do, no restart.
func TestSystemdSteadyState(t *testing.T) {
	w := newSystemdWorld(t, 3)
	p := mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: w.allSystemd(t), Etcd: viewVersion(etcdView(t, "n1", names3...), "3.7.0"), Now: fixedNow, Platform: testPlatform})
	if !p.Empty() {
		t.Errorf("plan is not empty:\n%s", planText(p))
	}
}

// A changed flag restarts every member through its unit, one at a time,
// the leader last: the restart is recorded first, the new environment file
// written and etcd restarted by systemctl, then the new process waited for.
func TestSystemdFlagChangeRolls(t *testing.T) {
	w := newSystemdWorld(t, 3)
	hosts := w.allSystemd(t)
	e := viewVersion(etcdView(t, "n1", names3...), "3.7.0")
	w2 := w.systemdChanged(t, 3, "3.7.0", "extraArgs: {quota-backend-bytes: \"8589934592\"}")
	p := mustBuild(t, Input{Cluster: w2.c, Runtime: rtOf(w2.c), PKI: w2.pki, Hosts: hosts, Etcd: e, Now: fixedNow, Platform: testPlatform})
	if len(p.Stages) != 1 {
		t.Fatalf("want one rolling stage:\n%s", planText(p))
	}
	st := p.Stages[0]
	if st.Rollout != OneAtATime || st.Quorum != 2 || st.Name != "update members" {
		t.Errorf("stage %q %s quorum %d", st.Name, st.Rollout, st.Quorum)
	}
	if order := stageHosts(st); !slices.Equal(sorted(order), names3) || order[2] != "n1" {
		t.Errorf("order %v: want the leader n1 last", order)
	}
	for _, n := range names3 {
		steps := stageOps(st, n)
		want := []string{"mark " + facts.PendingEtcdRestart, "write " + kubeadmPath, string(ops.KindRestartEtcd), string(ops.KindWaitMember), "unmark " + facts.PendingEtcdRestart, string(ops.KindWaitCluster)}
		if diff := cmp.Diff(want, kinds(steps)); diff != "" {
			t.Errorf("%s: operations (-want +got):\n%s", n, diff)
			continue
		}
		r := as[ops.RestartEtcd](t, steps[2])
		if !r.Disruptive || r.Command != systemd.CmdRestartEtcd || r.Change == nil || r.Change.Path != etcdservice.EnvPath || r.Change.Kind != Update || r.Why != "its flags change" {
			t.Errorf("%s: restart %+v", n, r)
		}
		if m := facts.ParseEnvFile(r.Change.File.Data); m.Flags["quota-backend-bytes"] != "8589934592" || m.InitialCluster != hosts[n].Manifest.InitialCluster {
			t.Errorf("%s: new flags %v", n, m.Flags)
		}
		if wm := as[ops.WaitMember](t, steps[3]); !wm.NewProcess || wm.Member != n || wm.Version != "" || !wm.Gated {
			t.Errorf("%s: wait %+v", n, steps[3])
		}
	}
	for _, op := range opsOf(p, "n0") {
		if op, ok := op.(ops.Run); ok && strings.Contains(op.Command, "kubelet") {
			t.Errorf("a kubelet command: %s", op)
		}
	}
}

// A SAN change restarts through the unit too, behind the marker, without
// touching the environment file.
func TestSystemdCertificateChangeRestarts(t *testing.T) {
	w := newSystemdWorld(t, 3)
	hosts := w.allSystemd(t)
	w2 := w.systemdChanged(t, 3, "3.7.0", "serverCertSANs: [etcd.example.com]")
	p := mustBuild(t, Input{Cluster: w2.c, Runtime: rtOf(w2.c), PKI: w2.pki, Hosts: hosts, Etcd: viewVersion(etcdView(t, "n2", names3...), "3.7.0"), Now: fixedNow, Platform: testPlatform})
	if len(p.Stages) != 1 || stageHosts(p.Stages[0])[2] != "n2" {
		t.Fatalf("want one roll, the leader n2 last:\n%s", planText(p))
	}
	steps := stageOps(p.Stages[0], "n0")
	want := []string{"mark " + facts.PendingEtcdRestart, "write /etc/kubernetes/pki/etcd/server.crt", "write /etc/kubernetes/pki/etcd/server.key", "write " + kubeadmPath,
		string(ops.KindRestartEtcd), string(ops.KindWaitMember), "unmark " + facts.PendingEtcdRestart, string(ops.KindWaitCluster)}
	if diff := cmp.Diff(want, kinds(steps)); diff != "" {
		t.Fatalf("operations (-want +got):\n%s", diff)
	}
	if r := as[ops.RestartEtcd](t, steps[4]); r.Change != nil || !r.Disruptive || r.Why != "the CA or its server or peer certificate changes" {
		t.Errorf("restart %+v", r)
	}
}

// A member whose unit is stopped is started; a recorded restart is
// finished; a member whose unit runs but whose etcd does not listen yet
// (waiting for its peers) is left to systemd.
func TestSystemdStartsAStoppedUnit(t *testing.T) {
	w := newSystemdWorld(t, 3)
	hosts := w.allSystemd(t)
	stop(hosts["n0"])
	hosts["n0"].EtcdActive = "failed"
	e := viewVersion(etcdView(t, "n1", names3...), "3.7.0")
	down(t, e, "n0")
	p := mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: e, Now: fixedNow, Platform: testPlatform})
	if len(p.Stages) != 1 || !slices.Equal(stageHosts(p.Stages[0]), []string{"n0"}) {
		t.Fatalf("want n0 started:\n%s", planText(p))
	}
	if got := kinds(opsOf(p, "n0")); !slices.Equal(got, []string{string(ops.KindRestartEtcd), string(ops.KindWaitMember), string(ops.KindWaitCluster)}) {
		t.Errorf("n0: %v", got)
	}
	if r, _ := first[ops.RestartEtcd](opsOf(p, "n0")); r.Why != "its unit is failed" || r.Disruptive {
		t.Errorf("n0: %+v", r)
	}

	hosts = w.allSystemd(t)
	hosts["n1"].Pending = []string{facts.PendingEtcdRestart}
	p = mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: viewVersion(etcdView(t, "n1", names3...), "3.7.0"), Now: fixedNow, Platform: testPlatform})
	if got := kinds(opsOf(p, "n1")); !slices.Equal(got, []string{string(ops.KindRestartEtcd), string(ops.KindWaitMember), "unmark " + facts.PendingEtcdRestart, string(ops.KindWaitCluster)}) {
		t.Errorf("n1, pending: %v", got)
	}

	// No quorum: every member comes back at once; n2's unit is starting.
	hosts = w.allSystemd(t)
	for _, n := range []string{"n0", "n2"} {
		stop(hosts[n])
		down(t, e, n)
	}
	hosts["n0"].EtcdActive, hosts["n2"].EtcdActive = "inactive", "activating"
	e.Status[idOf(t, "n1")] = etcdclientStatusUnhealthy(e.Status[idOf(t, "n1")])
	e.QuorumLost = true
	p = mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: e, Now: fixedNow, Platform: testPlatform})
	if len(p.Stages) != 1 || p.Stages[0].Rollout != AllAtOnce || !slices.Equal(stageHosts(p.Stages[0]), []string{"n0"}) {
		t.Errorf("recovery: want n0 started alone:\n%s", planText(p))
	}
}

// An upgrade is a new release: the version gates read the release's
// version; a snapshot comes first; each member gets the new binaries behind
// the marker, restarts through its unit and must report the new version;
// its environment file is what it goes back to.
func TestSystemdUpgrade(t *testing.T) {
	w := newSystemdWorld(t, 3)
	hosts := w.allSystemd(t)
	e := viewVersion(etcdView(t, "n1", names3...), "3.7.0")
	w2 := w.systemdChanged(t, 3, "3.7.3", "")
	p := mustBuild(t, Input{Cluster: w2.c, Runtime: rtOf(w2.c), PKI: w2.pki, Hosts: hosts, Etcd: e, Now: fixedNow, Platform: testPlatform})
	if len(p.Stages) != 2 || p.Stages[0].Hosts[0].Ops[0].Kind() != ops.KindSnapshot || !strings.HasSuffix(as[ops.Snapshot](t, p.Stages[0].Hosts[0].Ops[0]).Path, "-before-3.7.3.db") {
		t.Fatalf("want a snapshot, then the upgrade:\n%s", planText(p))
	}
	up := p.Stages[1]
	if !strings.Contains(up.Name, "3.7.0 -> 3.7.3") || stageHosts(up)[2] != "n1" || !strings.Contains(up.Why, "put back on its old binaries") {
		t.Errorf("upgrade stage %q, order %v", up.Name, stageHosts(up))
	}
	rel := w2.c.Spec.Etcd.Release.Info
	for _, n := range names3 {
		steps := stageOps(up, n)
		want := []string{"mark " + facts.PendingEtcdRestart, "write /usr/local/bin/etcd", "write /usr/local/bin/etcdctl", string(ops.KindRestartEtcd), string(ops.KindWaitMember), "unmark " + facts.PendingEtcdRestart, string(ops.KindWaitCluster)}
		if diff := cmp.Diff(want, kinds(steps)); diff != "" {
			t.Errorf("%s: operations (-want +got):\n%s", n, diff)
			continue
		}
		if bin := as[ops.Write](t, steps[1]); bin.Change.File.Source.SHA256 != rel.Binaries["etcd"].SHA256 || bin.Change.OldSHA != hosts[n].Files["/usr/local/bin/etcd"].SHA256 {
			t.Errorf("%s: binary change %+v", n, as[ops.Write](t, steps[1]).Change)
		}
		r := as[ops.RestartEtcd](t, steps[3])
		if r.Rollback == nil || string(r.Rollback.Data) != string(hosts[n].Manifest.Data) || r.Rollback.Path != etcdservice.EnvPath || r.Why != "its etcd binaries change" {
			t.Errorf("%s: restart %+v, want the host's environment file to roll back to", n, r)
		}
		if wm := as[ops.WaitMember](t, steps[4]); wm.Version != "3.7.3" || !wm.NewProcess {
			t.Errorf("%s: wait %+v", n, steps[4])
		}
	}

	// A skipped minor is refused before anything is touched, naming the release.
	w3 := w.systemdChanged(t, 3, "3.9.0", "")
	_, err := build(t, Input{Cluster: w3.c, Runtime: rtOf(w3.c), PKI: w3.pki, Hosts: hosts, Etcd: e, Now: fixedNow, Platform: testPlatform})
	if re := mustRefuse(t, nil, err); !strings.Contains(re.Error(), "runs etcd 3.7.0 and the inventory asks for 3.9.0: etcd upgrades one minor version at a time") {
		t.Errorf("skipped minor: %v", re)
	}

	// A member that runs the old version on the new binary (a roll cut
	// after the write) is still upgraded: the version is etcd's own.
	cut := w2.allSystemd(t)
	p = mustBuild(t, Input{Cluster: w2.c, Runtime: rtOf(w2.c), PKI: w2.pki, Hosts: cut, Etcd: e, Now: fixedNow, Platform: testPlatform})
	if len(p.Stages) != 0 {
		t.Errorf("binaries as planned, no marker: %s", planText(p))
	}
	cut["n0"].Pending = []string{facts.PendingEtcdRestart}
	p = mustBuild(t, Input{Cluster: w2.c, Runtime: rtOf(w2.c), PKI: w2.pki, Hosts: cut, Etcd: e, Now: fixedNow, Platform: testPlatform})
	if len(p.Stages) != 2 || p.Stages[0].Hosts[0].Ops[0].Kind() != ops.KindSnapshot {
		t.Fatalf("a cut upgrade: %s", planText(p))
	}
	if w, _ := first[ops.WaitMember](opsOf(p, "n0")); w.Version != "3.7.3" {
		t.Errorf("a cut upgrade waits for %+v", w)
	}
}

// member remove stops the service, disables it and keeps everything of it
// under the backup directory; systemd forgets the unit; the kubelet is
// left alone.
func TestSystemdRemove(t *testing.T) {
	w := newSystemdWorld(t, 3)
	hosts := w.allSystemd(t)
	p, err := Remove(Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow}, "n2")
	if err != nil {
		t.Fatal(err)
	}
	steps := opsOf(p, "n2")
	stopOp, i := first[ops.StopEtcd](steps)
	if i < 0 || stopOp.Command != systemd.CmdStopEtcd {
		t.Fatalf("no stop through the unit: %v", kinds(steps))
	}
	got := kinds(steps[i:])
	for _, want := range []string{"backup " + w.c.Spec.Etcd.DataDir, "backup /usr/local/bin/etcd", "backup /usr/local/bin/etcdctl", "backup " + etcdservice.UnitPath, "backup /etc/kubernetes/pki/etcd/server.key", "run " + CmdDaemonReload} {
		if !slices.Contains(got, want) {
			t.Errorf("clean lacks %q: %v", want, got)
		}
	}
	if slices.Contains(got, "backup "+etcdservice.EnvPath) || slices.Contains(got, "run "+CmdStopKube) {
		t.Errorf("clean: %v", got)
	}
	if got[len(got)-2] != "run "+CmdDaemonReload {
		t.Errorf("systemd reloads after the unit is gone: %v", got)
	}
	if !strings.Contains(planText(p), "stop etcd: $ systemctl disable --now etcd") {
		t.Errorf("plan:\n%s", planText(p))
	}
}

// A restore stops every service, swaps the data, then starts every member
// through its unit with a new environment file; no kubelet is asked for.
func TestSystemdRestore(t *testing.T) {
	w := newSystemdWorld(t, 3)
	hosts := w.allSystemd(t)
	p, err := Restore(Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow, Platform: testPlatform}, staged)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Stages) != 7 {
		t.Fatalf("stages:\n%s", planText(p))
	}
	for _, n := range names3 {
		stopOps := stageOps(p.Stages[3], n)
		if len(stopOps) != 1 || stopOps[0].Kind() != ops.KindStopEtcd || as[ops.StopEtcd](t, stopOps[0]).Command != systemd.CmdStopEtcd || !stopOps[0].Meta().Disruptive {
			t.Errorf("%s: stop %v", n, stopOps)
		}
		start := stageOps(p.Stages[5], n)
		r, i := first[ops.RestartEtcd](start)
		if i < 0 || r.Command != systemd.CmdRestartEtcd || r.Retry != nil || r.Change == nil || r.Change.Path != etcdservice.EnvPath || r.Change.Kind != Create {
			t.Errorf("%s: start %+v", n, r)
		}
	}

	// Drift in the binaries is refused, as any file but how members start.
	hosts["n0"].Files["/usr/local/bin/etcd"] = facts.FileState{Mode: 0o755, SHA256: strings.Repeat("0", 64)}
	_, err = Restore(Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow, Platform: testPlatform}, staged)
	if re := mustRefuse(t, nil, err); !strings.Contains(re.Error(), "n0: its files are not as planned (/usr/local/bin/etcd)") {
		t.Errorf("drift: %v", re)
	}
}

// A host added to the inventory gets its binaries, unit and certificates
// before it is added as a learner, then starts through its unit as a
// member of the running cluster and is promoted; the others are untouched.
func TestSystemdAddMember(t *testing.T) {
	w := newSystemdWorld(t, 3)
	hosts := w.allSystemd(t)
	w4 := w.systemdChanged(t, 4, "3.7.0", "")
	hosts["n3"] = emptySystemdHost("n3")
	p := mustBuild(t, Input{Cluster: w4.c, Runtime: rtOf(w4.c), PKI: w4.pki, Hosts: hosts, Etcd: viewVersion(etcdView(t, "n1", names3...), "3.7.0"), Now: fixedNow, Platform: testPlatform})
	if len(p.Stages) != 1 || p.Stages[0].Name != "add member n3" {
		t.Fatalf("want one stage adding n3:\n%s", planText(p))
	}
	steps := stageOps(p.Stages[0], "n3")
	_, i := findOp(steps, isKind(ops.KindAddLearner))
	if i < 0 {
		t.Fatalf("no add-learner: %v", kinds(steps))
	}
	written := writtenPaths(steps[:i])
	for _, want := range []string{"/usr/local/bin/etcd", "/usr/local/bin/etcdctl", etcdservice.UnitPath, "/etc/kubernetes/pki/etcd/server.crt"} {
		if !slices.Contains(written, want) {
			t.Errorf("%s is not written before the learner is added: %v", want, kinds(steps[:i]))
		}
	}
	if diff := cmp.Diff([]ops.Kind{ops.KindAddLearner, ops.KindRestartEtcd, ops.KindWaitMember, ops.KindPromote, ops.KindWaitCluster}, kindsOnly(steps[i:])); diff != "" {
		t.Fatalf("from add-learner on (-want +got):\n%s", diff)
	}
	r := as[ops.RestartEtcd](t, steps[i+1])
	m := facts.ParseEnvFile(r.Change.File.Data)
	want := "n0=https://192.0.2.10:2380,n1=https://192.0.2.11:2380,n2=https://192.0.2.12:2380,n3=https://192.0.2.13:2380"
	if r.Command != systemd.CmdRestartEtcd || r.Disruptive || m.InitialClusterState != manifests.StateExisting || m.InitialCluster != want {
		t.Errorf("start %+v: %s %s", r, m.InitialClusterState, m.InitialCluster)
	}
	if !as[ops.WaitMember](t, steps[i+2]).NewProcess {
		t.Errorf("wait %+v", steps[i+2])
	}
	for _, n := range names3 {
		if got := opsOf(p, n); len(got) > 0 {
			t.Errorf("%s: %v", n, kinds(got))
		}
	}
}

// member replace stops the failed member's service, moves its data
// aside, and starts the new member through the unit as a learner.
func TestSystemdReplace(t *testing.T) {
	w := newSystemdWorld(t, 3)
	hosts := w.allSystemd(t)
	stop(hosts["n2"])
	hosts["n2"].EtcdActive = "failed"
	dropData(hosts["n2"])
	e := viewVersion(etcdView(t, "n1", names3...), "3.7.0")
	down(t, e, "n2")
	p, err := Replace(Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: e, Now: fixedNow, Platform: testPlatform}, "n2", false)
	if err != nil {
		t.Fatal(err)
	}
	got := kinds(opsOf(p, "n2"))
	want := []string{string(ops.KindRemoveMember), string(ops.KindStopEtcd), "write " + kubeadmPath, string(ops.KindAddLearner), string(ops.KindRestartEtcd), string(ops.KindWaitMember), string(ops.KindPromote), string(ops.KindWaitCluster)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("operations (-want +got):\n%s", diff)
	}
	if r, _ := first[ops.RestartEtcd](opsOf(p, "n2")); r.Change == nil || r.Change.Kind != Create || r.Command != systemd.CmdRestartEtcd {
		t.Errorf("start %+v", r)
	}
}

func etcdclientStatusUnhealthy(st etcdclient.MemberStatus) etcdclient.MemberStatus {
	st.Healthy, st.Leader, st.Error = false, false, "no leader"
	return st
}
