package kubelet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/etcdtest"
	"github.com/etcdadm-io/etcdadm/internal/fakehost"
	"github.com/etcdadm-io/etcdadm/internal/opstest"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/hostfile"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

// kubeletHost is an in-memory host whose "kubelet" runs an etcd process
// for the manifest in its static Pod directory: a new process (another
// PID) for every new manifest content, none while the manifest is away,
// and, with holdBack, none for a first manifest written while the old Pod
// is still being cleaned up.
type kubeletHost struct {
	*fakehost.Host
	manifest string
	mu       sync.Mutex
	pid      int
	content  string
	holdBack bool
	written  []string
}

func newKubeletHost(t *testing.T, c *config.Cluster) *kubeletHost {
	k := &kubeletHost{Host: fakehost.New("n0"), manifest: manifests.ManifestPath(c), pid: 1000, content: "v1"}
	k.PutFile(k.manifest, []byte("v1"), 0o600)
	k.Handle(fakehost.Exact(facts.ProcessScript(manifests.ClientPort)), func(context.Context, string, io.Reader) ([]byte, error) {
		return []byte(k.process()), nil
	})
	// The manifest taken away: its Pod and etcd go.
	k.Handle(fakehost.Contains("then mv -f"), func(_ context.Context, cmd string, _ io.Reader) ([]byte, error) {
		data, mode, ok := k.File(k.manifest)
		if ok {
			k.Remove(k.manifest)
			k.PutFile(holdPath(c), data, mode)
		}
		return nil, nil
	})
	k.Handle(fakehost.Contains("/stat ]; then read -r st"), func(_ context.Context, cmd string, _ io.Reader) ([]byte, error) {
		k.mu.Lock()
		defer k.mu.Unlock()
		if k.content != "" && strings.Contains(cmd, fmt.Sprintf("/proc/%d/stat", k.pid)) {
			return []byte(fmt.Sprintln(k.pid)), nil
		}
		return nil, nil
	})
	k.Handle(fakehost.Exact("rm -f '"+holdPath(c)+"'"), func(context.Context, string, io.Reader) ([]byte, error) {
		k.Remove(holdPath(c))
		return nil, nil
	})
	return k
}

// process is what the process script prints: the etcd the kubelet runs
// for the manifest there now.
func (k *kubeletHost) process() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	data, _, ok := k.File(k.manifest)
	switch {
	case !ok:
		k.content = ""
		return ""
	case string(data) != k.content:
		if len(k.written) == 0 || k.written[len(k.written)-1] != string(data) {
			k.written = append(k.written, string(data))
		}
		if k.holdBack && len(k.written) == 1 {
			return ""
		}
		k.content = string(data)
		k.pid++
	}
	return fmt.Sprintf("proc %d %d -\n", k.pid, k.pid*10)
}

func kubeletEnv(t *testing.T) (*opstest.Env, *kubeletHost) {
	c := &config.Cluster{Spec: config.Spec{Kubelet: config.Kubelet{StaticPodPath: "/etc/kubernetes/manifests"}, Hosts: []config.Host{{Name: "n0", Address: "192.0.2.10"}}}}
	k := newKubeletHost(t, c)
	return &opstest.Env{C: c, H: c.Spec.Hosts[0], T: k.Host, R: Runtime{}, State: "/var/lib/etcdadm", Backups: "/var/lib/etcdadm/backup", Stamp: "20300101T000000Z", Health: 10 * time.Second}, k
}

// A restart takes the static Pod away, waits until its etcd is gone, then
// writes the new manifest: a new process runs it, and the hold is gone.
func TestRestartWritesTheManifestOnceTheOldEtcdIsGone(t *testing.T) {
	e, k := kubeletEnv(t)
	e.Procs = []facts.Process{{PID: 1000, Start: 10000}}
	f := hostfile.File{Path: k.manifest, Mode: 0o600, Data: []byte("v2")}
	retry := hostfile.File{Path: k.manifest, Mode: 0o600, Data: []byte("v2 again")}
	op := ops.RestartEtcd{Path: f.Path, Change: &hostfile.Change{File: f, Path: f.Path, Kind: hostfile.Update}, Retry: &retry}
	if err := ops.Execute(context.Background(), e, op); err != nil {
		t.Fatal(err)
	}
	if data, mode, _ := k.File(k.manifest); string(data) != "v2" || mode != 0o600 {
		t.Errorf("manifest %q (%v), want the new one, 0600", data, mode)
	}
	if _, _, ok := k.File(holdPath(e.C)); ok {
		t.Error("the held manifest was left behind")
	}
	if k.pid != 1001 || strings.Join(k.written, ",") != "v2" {
		t.Errorf("etcd pid %d after %q, want a new process for v2 alone", k.pid, k.written)
	}
	if done := e.Done(); len(done) != 1 || !done[0].RestartedEtcd || done[0].Wrote != k.manifest {
		t.Errorf("reported %+v", done)
	}
	if u := k.Unhandled(); len(u) != 0 {
		t.Errorf("unexpected commands: %q", u)
	}
}

// A manifest the kubelet holds back (its old Pod not yet cleaned up) is
// written again under its other restart annotation, and that one runs.
func TestRestartWritesTheRetryWhenTheKubeletHoldsThePodBack(t *testing.T) {
	e, k := kubeletEnv(t)
	k.holdBack = true
	e.Procs = []facts.Process{{PID: 1000, Start: 10000}}
	f := hostfile.File{Path: k.manifest, Mode: 0o600, Data: []byte("v2")}
	retry := hostfile.File{Path: k.manifest, Mode: 0o600, Data: []byte("v2 again")}
	start := time.Now()
	if err := (Runtime{}).Restart(context.Background(), e, ops.RestartEtcd{Change: &hostfile.Change{File: f, Path: f.Path}, Retry: &retry}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < RetryAfter {
		t.Errorf("the retry came after %s, before the kubelet had %s to start the first", took, RetryAfter)
	}
	if data, _, _ := k.File(k.manifest); string(data) != "v2 again" {
		t.Errorf("manifest %q, want the retry", data)
	}
	if p := k.process(); p != "proc 1001 10010 -\n" {
		t.Errorf("process %q, want a new one for the retry", p)
	}
}

// A stop moves the manifest under the run's backup directory and waits for
// etcd to exit; the member stays stopped.
func TestStopKeepsTheManifestAndWaitsForEtcd(t *testing.T) {
	e, k := kubeletEnv(t)
	bk := e.BackupDir() + k.manifest
	k.Handle(fakehost.Contains("src='"+k.manifest+"'; dst='"+bk+"'"), func(context.Context, string, io.Reader) ([]byte, error) {
		data, mode, _ := k.File(k.manifest)
		k.Remove(k.manifest)
		k.PutFile(bk, data, mode)
		return []byte("moved\n"), nil
	})
	if err := ops.Execute(context.Background(), e, ops.StopEtcd{Disruptive: true}); err != nil {
		t.Fatal(err)
	}
	if data, _, ok := k.File(bk); !ok || string(data) != "v1" {
		t.Errorf("backup %q %v, want the manifest under %s", data, ok, bk)
	}
	if p := k.process(); p != "" {
		t.Errorf("etcd still runs: %q", p)
	}
}

// A rollback keeps the old manifest under the run's backup directory
// before it puts it back: when that fails too, the error points at a copy
// that is there.
func TestRollBackKeepsTheOldManifest(t *testing.T) {
	e, k := kubeletEnv(t)
	k.Handle(fakehost.Contains("then mv -f"), fakehost.Fail(1, "read-only file system"))
	k.Handle(fakehost.Contains("images ls -q"), fakehost.Reply(""))
	old := hostfile.File{Path: k.manifest, Mode: 0o600, Data: []byte("image: registry.k8s.io/etcd:3.7.0-0\n")}
	cause := errors.New("not healthy")
	err := Runtime{}.RollBack(context.Background(), e, ops.RestartEtcd{Rollback: &old}, cause)
	kept := e.BackupDir() + k.manifest
	if !errors.Is(err, cause) || !strings.Contains(err.Error(), "a copy of the manifest is at "+kept) {
		t.Fatalf("err %v, want the copy at %s named", err, kept)
	}
	if data, mode, ok := k.File(kept); !ok || string(data) != string(old.Data) || mode != 0o600 {
		t.Errorf("the kept manifest: %q %v %v", data, mode, ok)
	}
}

func podYAML(image string) string {
	return "apiVersion: v1\nkind: Pod\nmetadata: {name: etcd, namespace: kube-system}\nspec:\n  containers:\n  - name: etcd\n    image: " + image + "\n"
}

// A member that did not come up on its new manifest is put back on its old
// one, with the CA the run replaced put back too, and waited for (its
// pending restart then cleared); the
// error says why the new Pod did not come up (its image missing, what its
// container logged) and that the roll stopped there.
func TestRollBackPutsTheOldManifestBackAndSaysWhy(t *testing.T) {
	ctx := context.Background()
	cl := etcdtest.Start(t, 1)
	c := &config.Cluster{Spec: config.Spec{Kubelet: config.Kubelet{StaticPodPath: "/etc/kubernetes/manifests"}, Hosts: cl.Hosts()}}
	k := newKubeletHost(t, c)
	e := &opstest.Env{C: c, H: c.Spec.Hosts[0], T: k.Host, R: Runtime{}, Client: cl.Client(t, cl.Dialer()),
		State: "/var/lib/etcdadm", Backups: "/var/lib/etcdadm/backup", Stamp: "20300101T000000Z", Health: 10 * time.Second}
	ca := "/etc/kubernetes/pki/etcd/ca.crt"
	k.PutFile(ca, []byte("old CA"), 0o644)
	newCA := hostfile.File{Path: ca, Mode: 0o644, Data: []byte("new CA")}
	if err := ops.Execute(ctx, e, ops.Write{Path: ca, Change: &hostfile.Change{File: newCA, Path: ca, Kind: hostfile.Update}}); err != nil {
		t.Fatal(err)
	}
	k.Handle(fakehost.Contains(".etcdadm-rollback.tmp"), func(context.Context, string, io.Reader) ([]byte, error) {
		for _, r := range e.Replaced() {
			data, mode, _ := k.File(r.Backup)
			k.PutFile(r.Path, data, mode)
		}
		return nil, nil
	})
	k.Handle(fakehost.Contains("images ls -q"), fakehost.Reply("image-missing\n| etcd: flag provided but not defined\n"))
	marker := ops.MarkerPath(e.State, facts.PendingEtcdRestart)
	k.PutFile(marker, []byte("pending"), 0o600)
	k.Handle(fakehost.Exact("rm -f '"+marker+"'"), func(context.Context, string, io.Reader) ([]byte, error) {
		k.Remove(marker)
		return nil, nil
	})
	broken, old := podYAML("registry.k8s.io/etcd:3.7.0-9"), podYAML("registry.k8s.io/etcd:3.7.0-0")
	k.PutFile(k.manifest, []byte(broken), 0o600)
	k.process()
	op := ops.RestartEtcd{Change: &hostfile.Change{File: hostfile.File{Path: k.manifest, Data: []byte(broken)}},
		Rollback: &hostfile.File{Path: k.manifest, Mode: 0o600, Data: []byte(old)}}
	err := Runtime{}.RollBack(ctx, e, op, &ops.GateError{Err: errors.New("no new etcd process after 1m0s")})
	for _, want := range []string{"no new etcd process after 1m0s", "the image registry.k8s.io/etcd:3.7.0-9 is not in the host's containerd",
		"its etcd container logged: etcd: flag provided but not defined",
		"stopped here: m0 is back on its old manifest (registry.k8s.io/etcd:3.7.0-0) and " + ca + " and healthy"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err %v\nwant %q", err, want)
		}
	}
	if data, _, _ := k.File(k.manifest); string(data) != old {
		t.Errorf("manifest %q, want the old one", data)
	}
	if data, _, _ := k.File(ca); string(data) != "old CA" {
		t.Errorf("CA %q, want the old one put back", data)
	}
	if _, _, ok := k.File(marker); ok {
		t.Error("the pending restart is still recorded: the member runs what its files say")
	}
	if u := k.Unhandled(); len(u) != 0 {
		t.Errorf("unexpected commands: %q", u)
	}
}
