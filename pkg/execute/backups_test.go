package execute

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/hosts"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
	"github.com/etcdadm-io/etcdadm/pkg/runtime/kubelet"
)

func runDirs(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// Two plans of one run share its backup directory; a data directory a
// recovery moves aside marks it; pruning counts runs, keeps the newest N
// and never removes a marked one, however old.
func TestBackupsOfARun(t *testing.T) {
	root := t.TempDir()
	backups := filepath.Join(root, "backup")
	data := filepath.Join(root, "data")
	for p, content := range map[string]string{
		filepath.Join(data, "member/snap/db"):                                  "old data",
		filepath.Join(backups, "20300101T000000Z", facts.KeptFile):             "pre-restore " + data + " restore-abc-tok\n",
		filepath.Join(backups, "20300101T000000Z", data, "member/snap/db"):     "older data",
		filepath.Join(backups, "20300102T000000Z/etc/kubernetes/etcd.yaml"):    "a manifest",
		filepath.Join(backups, "20300103T000000Z/etc/kubernetes/etcd.yaml"):    "a manifest",
		filepath.Join(backups, "20300104T000000Z/etc/kubernetes/kubeadm.yaml"): "a file",
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := &config.Cluster{Spec: config.Spec{Hosts: []config.Host{{Name: "local", Address: "127.0.0.1"}}}}
	hs := &hosts.Hosts{Order: c.Spec.Hosts, T: map[string]remote.Transport{"local": remote.NewLocal("local", false)}}
	var out bytes.Buffer
	run := func(steps ...plan.Op) {
		t.Helper()
		x := &Executor{Cluster: c, Runtime: kubelet.Runtime{}, Hosts: hs, Log: progress.NewLog(progress.New(&out, nil)), BackupDir: backups, StateDir: root, KeepBackups: 1, Stamp: "20300105T000000Z"}
		p := &plan.Plan{Stages: []plan.Stage{{Name: "test", Rollout: plan.OneAtATime, Hosts: []plan.HostOps{{Host: "local", Ops: steps}}}}}
		if _, err := x.Run(context.Background(), p); err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
	}
	run(ops.Backup{Path: data, Keep: "pre-recovery", Ref: "recover"})
	run(ops.Run{Command: "true"})
	// This run's directory is marked too, so the newest other one stays.
	if got, want := runDirs(t, backups), []string{"20300101T000000Z", "20300104T000000Z", "20300105T000000Z"}; !slices.Equal(got, want) {
		t.Errorf("run directories %v, want %v: the marked ones (this run's, once) and the newest other", got, want)
	}
	b, err := os.ReadFile(filepath.Join(backups, "20300105T000000Z", facts.KeptFile))
	if err != nil || string(b) != "pre-recovery "+data+" recover\n" {
		t.Errorf("this run's mark: %q %v", b, err)
	}
	if b, _ := os.ReadFile(filepath.Join(backups, "20300105T000000Z", data, "member/snap/db")); string(b) != "old data" {
		t.Errorf("the data moved aside: %q", b)
	}
	if !strings.Contains(out.String(), "removed 2 old backup(s)") {
		t.Errorf("log:\n%s", out.String())
	}

	// A later run's pruning keeps the marked ones and its own.
	if err := os.MkdirAll(filepath.Join(backups, "20300106T000000Z"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := hs.T["local"].Run(context.Background(), PruneScript(backups, 1), nil); err != nil {
		t.Fatal(err)
	}
	if got := runDirs(t, backups); len(got) != 3 {
		t.Errorf("run directories %v, want the two marked ones and the newest", got)
	}

	// A move with nothing to move leaves no mark.
	if err := os.RemoveAll(filepath.Join(backups, "20300105T000000Z")); err != nil {
		t.Fatal(err)
	}
	run(ops.Backup{Path: data, Keep: "pre-recovery", Ref: "recover"})
	if _, err := os.Stat(filepath.Join(backups, "20300105T000000Z", facts.KeptFile)); err == nil {
		t.Error("an empty data directory marked a run as keeping data")
	}
}
