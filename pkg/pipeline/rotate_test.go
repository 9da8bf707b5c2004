package pipeline

import (
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
)

// renew and rotate-ca change certificates only; the manifest a cut run's
// restart took away is put back, since the plan finishes that restart,
// but no other file, nor a manifest that differs.
func TestOnlyCertificates(t *testing.T) {
	manifest := plan.Change{Path: "/etc/kubernetes/manifests/etcd.yaml", Kind: plan.Create, File: plan.File{Part: plan.PartManifests}}
	cert := plan.Change{Path: "/etc/kubernetes/pki/etcd/ca.crt", Kind: plan.Update, File: plan.File{Part: plan.PartCerts}}
	withOps := func(changes []plan.Change, steps ...plan.Op) *plan.Plan {
		return &plan.Plan{Hosts: []plan.Host{{Name: "n0", Changes: changes}},
			Stages: []plan.Stage{{Hosts: []plan.HostOps{{Host: "n0", Ops: steps}}}}}
	}
	unmark := ops.Unmark{Marker: facts.PendingEtcdRestart}
	if err := OnlyCertificates(withOps([]plan.Change{cert, manifest}, unmark)); err != nil {
		t.Errorf("a cut restart's manifest: %v", err)
	}
	if err := OnlyCertificates(withOps([]plan.Change{cert, manifest})); err == nil || !strings.Contains(err.Error(), "n0:/etc/kubernetes/manifests/etcd.yaml") {
		t.Errorf("a manifest missing for no run's restart: %v", err)
	}
	changed := manifest
	changed.Kind = plan.Update
	if err := OnlyCertificates(withOps([]plan.Change{changed}, unmark)); err == nil {
		t.Error("a manifest that differs passed")
	}
}
