package plan

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

// upgradeWorld is 3 members running image tag `from` and reporting version
// `running`, and an inventory that asks for etcd (extra spec.etcd YAML).
func upgradeWorld(t *testing.T, from, running, etcd string) (*world, Input) {
	t.Helper()
	w0 := newWorld(t, 3)
	old := w0.changed(t, 3, "imageTag: "+from)
	hosts := old.allBootstrapped(t)
	e := etcdView(t, "n1", "n0", "n1", "n2")
	for id, st := range e.Status {
		st.Version = running
		e.Status[id] = st
	}
	w := w0.changed(t, 3, etcd)
	return w, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: e, Now: fixedNow}
}

func TestUpgradePatch(t *testing.T) {
	w, in := upgradeWorld(t, "3.7.0-0", "3.7.0", "imageTag: 3.7.3-0")
	p := mustBuild(t, in)
	if len(p.Stages) != 2 {
		t.Fatalf("want a snapshot stage and an upgrade stage, got:\n%s", planText(p))
	}
	snap := p.Stages[0]
	if len(snap.Hosts) != 1 || snap.Hosts[0].Host != LocalHost || snap.Hosts[0].Ops[0].Kind() != ops.KindSnapshot {
		t.Fatalf("the first stage must save a snapshot here, got:\n%s", planText(p))
	}
	sp := as[ops.Snapshot](t, snap.Hosts[0].Ops[0]).Path
	if filepath.Dir(sp) != filepath.Join(w.dir, "snapshots") || !strings.HasSuffix(sp, "-before-3.7.3.db") {
		t.Errorf("snapshot path %s: want snapshots/ next to the inventory, named for the target", sp)
	}
	up := p.Stages[1]
	if up.Rollout != OneAtATime || !strings.Contains(up.Name, "3.7.0 -> 3.7.3") {
		t.Errorf("upgrade stage %q (%s)", up.Name, up.Rollout)
	}
	if got := stageHosts(up); strings.Join(got, ",") != "n0,n2,n1" {
		t.Errorf("order %v: want the leader n1 last", got)
	}
	for _, ho := range up.Hosts {
		restart, i := first[ops.RestartEtcd](ho.Ops)
		if i < 0 {
			t.Fatalf("%s: no restart in %v", ho.Host, kinds(ho.Ops))
		}
		if restart.Rollback == nil {
			t.Fatalf("%s: the restart must carry the host's current manifest to roll back to", ho.Host)
		}
		old, back := in.Hosts[ho.Host].Manifest, facts.ParseManifest(restart.Rollback.Data)
		if back.Image != old.Image || back.InitialCluster != old.InitialCluster || back.Name != old.Name || back.Restart == old.Restart || !strings.Contains(back.Restart, "rolled back") {
			t.Errorf("%s: the rollback manifest must be the old one (image %s) under a new restart annotation, got image %s, restart %q", ho.Host, old.Image, back.Image, back.Restart)
		}
		if !bytes.Contains(restart.Change.File.Data, []byte("etcd:3.7.3-0")) {
			t.Errorf("%s: the new manifest does not run 3.7.3-0", ho.Host)
		}
		wait, j := first[ops.WaitMember](ho.Ops)
		if j < i || wait.Version != "3.7.3" || !wait.NewProcess {
			t.Errorf("%s: the gate after the restart must wait for the new process reporting 3.7.3, got %+v", ho.Host, wait)
		}
	}
}

func TestUpgradeGates(t *testing.T) {
	for _, tc := range []struct {
		name, from, running, etcd string
		refuse                    string // "" when allowed
	}{
		{"minor from the last patches", "3.6.11-0", "3.6.11", "imageTag: 3.7.0-0", ""},
		{"minor from an old patch", "3.6.10-0", "3.6.10", "imageTag: 3.7.0-0", "upgrades to 3.7 only from 3.6.11 or later"},
		{"3.5 to 3.6 from an old patch", "3.5.31-0", "3.5.31", "imageTag: 3.6.13-0", "upgrades to 3.6 only from 3.5.32 or later"},
		{"3.5 to 3.6", "3.5.32-0", "3.5.32", "imageTag: 3.6.13-0", ""},
		{"a skipped minor", "3.5.32-0", "3.5.32", "imageTag: 3.7.0-0", "one minor version at a time"},
		{"kubernetesVersion's default skips a minor", "3.5.32-0", "3.5.32", "", "one minor version at a time"},
		{"a downgrade across minors", "3.7.0-0", "3.7.0", "imageTag: 3.6.13-0", "does not downgrade etcd across minor versions"},
		{"a patch downgrade", "3.7.3-0", "3.7.3", "imageTag: 3.7.0-0", ""},
		{"a major", "3.7.0-0", "3.7.0", "imageTag: 4.0.0-0", "major version"},
		{"a tag without a version", "3.7.0-0", "3.7.0", "imageTag: latest", "names no version"},
		{"experimental flags on 3.7", "3.6.11-0", "3.6.11", "imageTag: 3.7.0-0\n    extraArgs: {experimental-initial-corrupt-check: \"true\"}", "--experimental-initial-corrupt-check"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, in := upgradeWorld(t, tc.from, tc.running, tc.etcd)
			p, err := build(t, in)
			if tc.refuse == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if len(p.Stages) == 0 || p.Stages[0].Hosts[0].Ops[0].Kind() != ops.KindSnapshot {
					t.Fatalf("want a snapshot first, got:\n%s", planText(p))
				}
				return
			}
			mustRefuse(t, p, err)
			if !strings.Contains(err.Error(), tc.refuse) {
				t.Fatalf("refusal %q does not say %q", err, tc.refuse)
			}
			if len(p.Stages) != 0 {
				t.Fatalf("a refused upgrade has no stage, got:\n%s", planText(p))
			}
		})
	}
}

func TestUpgradeNeedsAHealthyCluster(t *testing.T) {
	_, in := upgradeWorld(t, "3.7.0-0", "3.7.0", "imageTag: 3.7.3-0")
	unhealthy(t, in.Etcd, "n2")
	p, err := build(t, in)
	mustRefuse(t, p, err)
	if !strings.Contains(err.Error(), "needs a healthy cluster") || !strings.Contains(err.Error(), "n2") {
		t.Fatalf("refusal: %v", err)
	}
}

// A roll cut after its first member: that member is on the new version, the
// others go on; the gate reads the lowest version.
func TestUpgradeContinued(t *testing.T) {
	w, in := upgradeWorld(t, "3.7.0-0", "3.7.0", "imageTag: 3.7.3-0")
	done := w.bootstrapped(t, "n0")
	in.Hosts["n0"] = done
	st := in.Etcd.Status[idOf(t, "n0")]
	st.Version = "3.7.3"
	in.Etcd.Status[idOf(t, "n0")] = st
	p := mustBuild(t, in)
	if len(p.Stages) != 2 || p.Stages[0].Hosts[0].Ops[0].Kind() != ops.KindSnapshot {
		t.Fatalf("want a snapshot, then the rest of the roll:\n%s", planText(p))
	}
	if got := stageHosts(p.Stages[1]); strings.Join(got, ",") != "n2,n1" {
		t.Errorf("hosts %v: want n2 then the leader n1", got)
	}
}

// Nothing changes version: no snapshot, no upgrade stage.
func TestNoUpgradeNoSnapshot(t *testing.T) {
	_, in := upgradeWorld(t, "3.7.0-0", "3.7.0", "imageTag: 3.7.0-0")
	p := mustBuild(t, in)
	if !p.Empty() {
		t.Fatalf("want nothing to do:\n%s", planText(p))
	}
	// Certificates to renew do not take a snapshot either.
	_, in = upgradeWorld(t, "3.7.0-0", "3.7.0", "serverCertSANs: [etcd.example.com]")
	p = mustBuild(t, in)
	if len(p.Stages) == 0 || !slices.Contains(writtenPaths(opsOf(p, "n0")), "/etc/kubernetes/pki/etcd/server.crt") {
		t.Fatalf("want the new server certificates rolled out:\n%s", planText(p))
	}
	for _, st := range p.Stages {
		if strings.Contains(st.Name, "snapshot") || strings.Contains(st.Name, "upgrade") {
			t.Fatalf("a certificate change is no upgrade:\n%s", planText(p))
		}
	}
}

// A member that does not run, its manifest naming an image that does not
// exist: a repair with the inventory's image, not an upgrade.
func TestBrokenManifestIsARepair(t *testing.T) {
	w, in := upgradeWorld(t, "3.7.0-0", "3.7.0", "imageTag: 3.7.0-0")
	broken := in.Hosts["n0"]
	broken.Manifest.Image = "registry.k8s.io/etcd:0.0.0-missing"
	st := broken.Files[w.manifestPath()]
	st.SHA256 = "0000"
	broken.Files[w.manifestPath()] = st
	stop(broken)
	unhealthy(t, in.Etcd, "n0")
	p := mustBuild(t, in)
	for _, st := range p.Stages {
		if strings.Contains(st.Name, "snapshot") || strings.Contains(st.Name, "upgrade") {
			t.Fatalf("a repair is no upgrade:\n%s", planText(p))
		}
	}
	if _, i := findOp(opsOf(p, "n0"), isKind(ops.KindWaitMember)); i < 0 {
		t.Errorf("n0 must be repaired and waited for:\n%s", planText(p))
	}
}
