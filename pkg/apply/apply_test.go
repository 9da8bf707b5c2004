package apply

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// The executor's host operations, run on this machine under a temporary
// root with the local transport.
func TestExecutorRunsHostOperationsInOrder(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the local transport writes files as root")
	}
	ctx := context.Background()
	root := t.TempDir()
	state := filepath.Join(root, "state")
	marker := filepath.Join(root, "restarted")
	data := filepath.Join(root, "data")
	if err := os.MkdirAll(filepath.Join(data, "member"), 0o700); err != nil {
		t.Fatal(err)
	}
	ca := plan.File{Path: filepath.Join(root, "pki/ca.crt"), Mode: 0o644, Part: plan.PartCerts, Data: []byte("ca")}
	key := plan.File{Path: filepath.Join(root, "pki/server.key"), Mode: 0o600, Part: plan.PartCerts, Data: []byte("key")}
	ops := []plan.Op{
		{Kind: plan.OpMkdir, Path: filepath.Join(root, "pki"), Mode: 0o755},
		{Kind: plan.OpWrite, Path: ca.Path, Change: &plan.Change{File: ca, Path: ca.Path, Kind: plan.Create}},
		{Kind: plan.OpWrite, Path: key.Path, Change: &plan.Change{File: key, Path: key.Path, Kind: plan.Create}},
		{Kind: plan.OpMark, Marker: facts.PendingKubeletRestart, Why: "test"},
		{Kind: plan.OpRun, Command: "test -f " + filepath.Join(state, "pending", facts.PendingKubeletRestart) + " && echo x >> " + marker},
		{Kind: plan.OpUnmark, Marker: facts.PendingKubeletRestart},
		{Kind: plan.OpBackup, Path: data},
	}
	p := &plan.Plan{Stages: []plan.Stage{{Name: "test", Rollout: plan.OneAtATime, Hosts: []plan.HostOps{{Host: "local", Ops: ops}}}}}
	c := &config.Cluster{Spec: config.Spec{Hosts: []config.Host{{Name: "local", Address: "127.0.0.1"}}}}
	hs := &Hosts{Order: c.Spec.Hosts, T: map[string]remote.Transport{"local": remote.NewLocal("local", false)}}
	var out bytes.Buffer
	x := &Executor{Cluster: c, Hosts: hs, Log: NewLog(progress.New(&out, nil)), BackupDir: filepath.Join(root, "backup"), StateDir: state}
	res, err := x.Run(ctx, p)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if len(res.Hosts) != 1 || len(res.Hosts[0].Written) != 2 {
		t.Errorf("result %+v", res)
	}
	for path, mode := range map[string]os.FileMode{ca.Path: 0o644, key.Path: 0o600, filepath.Join(root, "pki"): 0o755 | os.ModeDir} {
		st, err := os.Stat(path)
		if err != nil || st.Mode() != mode {
			t.Errorf("%s: %v %v, want %v", path, st.Mode(), err, mode)
		}
	}
	// The command ran while the marker was there, and the marker is gone.
	if b, _ := os.ReadFile(marker); string(b) != "x\n" {
		t.Errorf("the command did not see its marker: %q", b)
	}
	if _, err := os.Stat(filepath.Join(state, "pending", facts.PendingKubeletRestart)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("marker left: %v", err)
	}
	// The data directory is kept (it may be a mount point); its contents moved.
	entries, _ := os.ReadDir(data)
	moved, _ := filepath.Glob(filepath.Join(root, "backup", "*", data, "member"))
	if len(entries) != 0 || len(moved) != 1 {
		t.Errorf("data dir holds %v, backup %v", entries, moved)
	}
	if !strings.Contains(out.String(), "wrote "+ca.Path+" (create)") {
		t.Errorf("log:\n%s", out.String())
	}
}

// A failing operation stops the host's operations and names the host.
func TestExecutorStopsAtTheFirstFailure(t *testing.T) {
	root := t.TempDir()
	marker := filepath.Join(root, "after")
	c := &config.Cluster{Spec: config.Spec{Hosts: []config.Host{{Name: "local", Address: "127.0.0.1"}, {Name: "next", Address: "127.0.0.2"}}}}
	hs := &Hosts{Order: c.Spec.Hosts, T: map[string]remote.Transport{"local": remote.NewLocal("local", false), "next": remote.NewLocal("next", false)}}
	p := &plan.Plan{Stages: []plan.Stage{{Name: "test", Rollout: plan.OneAtATime, Hosts: []plan.HostOps{
		{Host: "local", Ops: []plan.Op{{Kind: plan.OpRun, Command: "echo broken >&2; exit 3"}, {Kind: plan.OpRun, Command: "touch " + marker}}},
		{Host: "next", Ops: []plan.Op{{Kind: plan.OpRun, Command: "touch " + marker}}},
	}}}}
	x := &Executor{Cluster: c, Hosts: hs, StateDir: root}
	_, err := x.Run(context.Background(), p)
	if err == nil || !strings.Contains(err.Error(), "local") || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Error("operations ran after the failure")
	}
}

func TestForEachNamesEveryFailedHost(t *testing.T) {
	hosts := []config.Host{{Name: "b"}, {Name: "a"}, {Name: "c"}}
	err := ForEach(context.Background(), hosts, 2, func(_ context.Context, h config.Host) error {
		if h.Name == "c" {
			return nil
		}
		return errors.New("boom on " + h.Name)
	})
	var he *HostsError
	if !errors.As(err, &he) || len(he.Errors) != 2 || he.Errors[0].Host != "a" {
		t.Fatalf("err = %v", err)
	}
	if msg := named(err, "pre-flight").Error(); !strings.HasPrefix(msg, "pre-flight failed on 2 host(s):\n  - a: boom on a\n  - b: boom on b") {
		t.Errorf("message %q", msg)
	}
}
