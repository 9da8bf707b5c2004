package execute

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"slices"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/internal/fakehost"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/hostfile"
	"github.com/etcdadm-io/etcdadm/pkg/hosts"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
	"github.com/etcdadm-io/etcdadm/pkg/runtime/kubelet"
)

// fakeHosts are in-memory hosts named names, and an executor for them
// whose log goes to out.
func fakeHosts(names ...string) (*Executor, map[string]*fakehost.Host, *bytes.Buffer) {
	c := &config.Cluster{Spec: config.Spec{Kubelet: config.Kubelet{StaticPodPath: "/etc/kubernetes/manifests"}}}
	hs := &hosts.Hosts{T: map[string]remote.Transport{}}
	fakes := map[string]*fakehost.Host{}
	for i, n := range names {
		h := config.Host{Name: n, Address: "127.0.0." + string(rune('1'+i))}
		c.Spec.Hosts = append(c.Spec.Hosts, h)
		fakes[n] = fakehost.New(n)
		hs.T[n] = fakes[n]
	}
	hs.Order = c.Spec.Hosts
	var out bytes.Buffer
	x := &Executor{Cluster: c, Runtime: kubelet.Runtime{}, Hosts: hs, Log: progress.NewLog(progress.New(&out, nil)), BackupDir: "/var/lib/etcdadm/backup", StateDir: "/var/lib/etcdadm"}
	return x, fakes, &out
}

func write(path string, mode uint32, data string) ops.Write {
	f := hostfile.File{Path: path, Mode: fsMode(mode), Part: hostfile.PartCerts, Data: []byte(data)}
	return ops.Write{Path: path, Change: &hostfile.Change{File: f, Path: path, Kind: hostfile.Create}}
}

// The executor's host operations, in order, on an in-memory host: the
// files land with their modes, the command runs while its marker is there,
// the marker goes, the data directory's contents move under the run's
// backup directory.
func TestExecutorRunsHostOperationsInOrder(t *testing.T) {
	x, fakes, out := fakeHosts("local")
	h := fakes["local"]
	h.PutFile("/var/lib/etcd/member/snap/db", []byte("data"), 0o600)
	marker := ops.MarkerPath("/var/lib/etcdadm", facts.PendingKubeletRestart)
	sawMarker := false
	h.Handle(fakehost.Exact(ops.CmdRestartKube), func(context.Context, string, io.Reader) ([]byte, error) {
		_, _, sawMarker = h.File(marker)
		return nil, nil
	})
	h.Handle(fakehost.Exact("rm -f '"+marker+"'"), func(context.Context, string, io.Reader) ([]byte, error) {
		h.Remove(marker)
		return nil, nil
	})
	h.Handle(fakehost.Contains("src='/var/lib/etcd'; dst="), func(_ context.Context, cmd string, _ io.Reader) ([]byte, error) {
		dst := between(cmd, "dst='", "'")
		data, mode, _ := h.File("/var/lib/etcd/member/snap/db")
		h.PutFile(dst+"/member/snap/db", data, mode)
		h.Remove("/var/lib/etcd/member")
		return []byte("moved\n"), nil
	})
	steps := []plan.Op{
		ops.Mkdir{Path: "/etc/kubernetes/pki", Mode: 0o755},
		write("/etc/kubernetes/pki/ca.crt", 0o644, "ca"),
		write("/etc/kubernetes/pki/server.key", 0o600, "key"),
		ops.Mark{Marker: facts.PendingKubeletRestart, Why: "test"},
		ops.Run{Command: ops.CmdRestartKube},
		ops.Unmark{Marker: facts.PendingKubeletRestart},
		ops.Backup{Path: "/var/lib/etcd"},
	}
	p := &plan.Plan{Stages: []plan.Stage{{Name: "test", Rollout: plan.OneAtATime, Hosts: []plan.HostOps{{Host: "local", Ops: steps}}}}}
	res, err := x.Run(context.Background(), p)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(res.Hosts) != 1 || len(res.Hosts[0].Written) != 2 || !res.Hosts[0].RestartedKubelet {
		t.Errorf("result %+v", res)
	}
	for path, mode := range map[string]uint32{"/etc/kubernetes/pki/ca.crt": 0o644, "/etc/kubernetes/pki/server.key": 0o600} {
		if _, got, ok := h.File(path); !ok || got != fsMode(mode) {
			t.Errorf("%s: mode %v (there: %v), want %04o", path, got, ok, mode)
		}
	}
	if !sawMarker {
		t.Error("the kubelet restarted without its marker recorded")
	}
	if _, _, ok := h.File(marker); ok {
		t.Error("marker left")
	}
	stamp := "/var/lib/etcdadm/backup/" + x.stamp
	if _, _, ok := h.File(stamp + "/var/lib/etcd/member/snap/db"); !ok {
		t.Errorf("the data is not under %s: %v", stamp, h.Paths())
	}
	if !strings.Contains(out.String(), "wrote /etc/kubernetes/pki/ca.crt (create)") {
		t.Errorf("log:\n%s", out)
	}
	if u := h.Unhandled(); len(u) != 0 {
		t.Errorf("unexpected commands: %q", u)
	}
}

// A failing operation stops the host's operations and names the host; the
// next host is not touched.
func TestExecutorStopsAtTheFirstFailure(t *testing.T) {
	x, fakes, _ := fakeHosts("local", "next")
	fakes["local"].Handle(fakehost.Exact("break"), fakehost.Fail(3, "broken"))
	p := &plan.Plan{Stages: []plan.Stage{{Name: "test", Rollout: plan.OneAtATime, Hosts: []plan.HostOps{
		{Host: "local", Ops: []plan.Op{ops.Run{Command: "break"}, ops.Run{Command: "after"}}},
		{Host: "next", Ops: []plan.Op{ops.Run{Command: "after"}}},
	}}}}
	_, err := x.Run(context.Background(), p)
	if err == nil || !strings.Contains(err.Error(), "local") || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("err = %v", err)
	}
	if got := fakes["local"].Commands(); !slices.Equal(got, []string{"break"}) {
		t.Errorf("local ran %q, want only the failing command", got)
	}
	if got := fakes["next"].Commands(); len(got) != 0 {
		t.Errorf("next ran %q after the failure", got)
	}
	var he *hosts.HostsError
	if !errors.As(err, &he) || he.Errors[0].Host != "local" {
		t.Errorf("err %v does not name local", err)
	}
}

func fsMode(m uint32) fs.FileMode { return fs.FileMode(m) }

// between is what s holds between the first from and the next to.
func between(s, from, to string) string {
	_, rest, _ := strings.Cut(s, from)
	v, _, _ := strings.Cut(rest, to)
	return v
}
