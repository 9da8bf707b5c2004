package ops

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/apiserver"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/hostfile"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// KindRestartAPIServer restarts the host's kube-apiserver on a manifest.
const KindRestartAPIServer Kind = "restart-apiserver"

// RestartAPIServer makes the host's kube-apiserver run File, its static
// Pod (kubeadm's, with at most --etcd-servers and the restart annotation
// changed), and waits until it answers /readyz: the Pod is taken away,
// its process and Pod are waited for until gone, then File is written;
// Retry, the same Pod under another restart annotation, is written should
// the kubelet hold the first back.
type RestartAPIServer struct {
	File  hostfile.File  `json:"file"`
	Retry *hostfile.File `json:"-"`
	// Servers are the --etcd-servers it runs with.
	Servers []string `json:"servers,omitempty"`
	Why     string   `json:"why,omitempty"`
}

func (RestartAPIServer) Kind() Kind   { return KindRestartAPIServer }
func (o RestartAPIServer) Meta() Meta { return Meta{Why: o.Why} }

func (o RestartAPIServer) String() string {
	return fmt.Sprintf("restart the kube-apiserver with --etcd-servers=%s (static Pod out and back), then wait for /readyz", strings.Join(o.Servers, ","))
}

func restartAPIServer(ctx context.Context, e Env, o RestartAPIServer) error {
	m := apiserver.Parse(o.File.Data)
	if m.Err != "" {
		return fmt.Errorf("restart the kube-apiserver: %s: %s", o.File.Path, m.Err)
	}
	start := time.Now()
	if err := ReplaceStaticPod(ctx, e, m.Port, o.File, o.Retry, "kube-apiserver"); err != nil {
		return err
	}
	if err := AwaitAPIServer(ctx, e, m); err != nil {
		return err
	}
	e.Log().Host(e.Host().Name, "the kube-apiserver answers /readyz %s after its restart", time.Since(start).Round(time.Millisecond))
	e.Report(Done{Wrote: o.File.Path, Ran: "restart kube-apiserver"})
	return nil
}

// ReplaceStaticPod puts f in place of the static Pod at its path whose
// process, named what, listens on port: the old Pod is taken away, then
// its process and its Pod (cgroup) are waited for until gone, then f is
// written, and retry when no new process came after RetryAfter (the
// kubelet holds back a Pod that arrives while it still finishes the old
// one). A run cut in
// between leaves the old Pod under a dotted name, which the facts read.
func ReplaceStaticPod(ctx context.Context, e Env, port int, f hostfile.File, retry *hostfile.File, what string) error {
	t, name := e.Transport(), e.Host().Name
	q := shell.Quote
	hold := RestartHold(f.Path)
	before, err := facts.Processes(ctx, t, port)
	if err != nil {
		return err
	}
	e.Log().Host(name, "restarting the %s", what)
	if _, err := t.Run(ctx, fmt.Sprintf("if [ -f %[1]s ]; then mv -f %[1]s %[2]s; fi", q(f.Path), q(hold)), nil); err != nil {
		return fmt.Errorf("take the %s's manifest away: %w", what, err)
	}
	if err := WaitGoneOn(ctx, e, port, before, true); err != nil {
		return err
	}
	if _, err := t.WriteFile(ctx, remote.File{Path: f.Path, Mode: f.Mode, Data: f.Data}, ""); err != nil {
		return fmt.Errorf("write %s: %w", f.Path, err)
	}
	if _, err := t.Run(ctx, "rm -f "+q(hold), nil); err != nil {
		return fmt.Errorf("remove %s: %w", hold, err)
	}
	if retry == nil {
		return nil
	}
	// The new process is looked for by name: it runs well before it
	// listens on its port.
	for deadline := time.Now().Add(RetryAfter); time.Now().Before(deadline); {
		now, err := facts.Named(ctx, t, what)
		if err != nil {
			return err
		}
		if NewProcess(before, now) {
			return nil
		}
		if err := Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	if _, err := t.WriteFile(ctx, remote.File{Path: retry.Path, Mode: retry.Mode, Data: retry.Data}, ""); err != nil {
		return fmt.Errorf("write %s: %w", retry.Path, err)
	}
	e.Log().Host(name, "no new %s after %s: the kubelet held the Pod back; wrote it again with another restart annotation", what, RetryAfter)
	return nil
}

// RetryAfter is how long a restarted static Pod may take to start before
// it is written again under another name.
const RetryAfter = 2 * time.Second

// RestartHold is where a restart parks the static Pod at p: a dotted name
// in the same directory, which the kubelet does not read.
func RestartHold(p string) string {
	dir, base := path.Split(p)
	return path.Join(dir, "."+base+".etcdadm-restart")
}

// AwaitAPIServer waits until the host's kube-apiserver, as manifest m
// says it serves, answers /readyz, reached through the host's SSH
// connection and checked against the cluster CA its manifest names.
func AwaitAPIServer(ctx context.Context, e Env, m *apiserver.Manifest) error {
	t := e.Transport()
	ep, err := apiserver.EndpointOf(ctx, m, t.ReadFile)
	if err != nil {
		return err
	}
	client, err := ep.Client(t.Dial)
	if err != nil {
		return err
	}
	e.Log().Host(e.Host().Name, "waiting for the kube-apiserver to answer /readyz")
	if err := apiserver.WaitReady(ctx, client, ep, e.HealthTimeout(), 250*time.Millisecond); err != nil {
		return err
	}
	return awaitStorage(ctx, e, ep)
}

// awaitStorage waits, on a host with kubeadm's admin.conf, until the
// kube-apiserver at ep reads from etcd through its own connection. After
// its member restarted, that connection can wait out gRPC's reconnection
// backoff (seconds) while /readyz, which asks etcd by other connections,
// already passes; the member stopped next would then leave no kube-apiserver
// able to write. A host without admin.conf has /readyz alone.
func awaitStorage(ctx context.Context, e Env, ep apiserver.Endpoint) error {
	t := e.Transport()
	kubeconfig, err := t.ReadFile(ctx, apiserver.AdminConf)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", apiserver.AdminConf, err)
	}
	c, err := apiserver.NewClient(kubeconfig, t.Dial)
	if err != nil {
		return fmt.Errorf("%s: %w", apiserver.AdminConf, err)
	}
	start := time.Now()
	asked, err := apiserver.WaitReadsStorage(ctx, c.At(ep, t.Dial), e.HealthTimeout(), 250*time.Millisecond)
	switch {
	case err != nil && ctx.Err() == nil:
		return fmt.Errorf("the kube-apiserver at %s answers /readyz but after %s still fails to %w", ep.Addr(), e.HealthTimeout(), err)
	case err != nil:
		return err
	case asked > 1:
		e.Log().Host(e.Host().Name, "the kube-apiserver reads from etcd %s after /readyz", time.Since(start).Round(time.Millisecond))
	}
	return nil
}
