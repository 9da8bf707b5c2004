package execute

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/internal/testinv"
	"github.com/etcdadm-io/etcdadm/pkg/hosts"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
	"github.com/etcdadm-io/etcdadm/pkg/runtime/kubelet"
)

// What a run does on a control-plane host is reported under its name, and
// its old backups are pruned like a member's.
func TestExecutorReportsControlPlaneHosts(t *testing.T) {
	c, _ := testinv.ControlPlane(t)
	root := t.TempDir()
	backups := filepath.Join(root, "backup")
	for _, d := range []string{"20300101T000000Z", "20300102T000000Z"} {
		if err := os.MkdirAll(filepath.Join(backups, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	hs := &hosts.Hosts{Order: c.AllHosts(), T: map[string]remote.Transport{}}
	for _, h := range c.AllHosts() {
		hs.T[h.Name] = remote.NewLocal(h.Name, false)
	}
	p := &plan.Plan{Stages: []plan.Stage{{Name: "control-plane hosts", Rollout: plan.AllAtOnce, Hosts: []plan.HostOps{
		{Host: "cp0", Ops: []plan.Op{ops.Run{Command: "true"}}},
	}}}}
	var out bytes.Buffer
	x := &Executor{Cluster: c, Runtime: kubelet.Runtime{}, Hosts: hs, Log: progress.NewLog(progress.New(&out, nil)), BackupDir: backups, StateDir: root, KeepBackups: 1}
	res, err := x.Run(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Hosts) != 1 || res.Hosts[0].Host != "cp0" || !slices.Equal(res.Hosts[0].Ran, []string{"true"}) {
		t.Errorf("result %+v", res.Hosts)
	}
	if !strings.Contains(out.String(), "[cp0] ran true") {
		t.Errorf("the log does not name cp0:\n%s", out.String())
	}
	if left, _ := os.ReadDir(backups); len(left) != 1 {
		t.Errorf("%d backups left, want 1: cp0's were not pruned", len(left))
	}
}
