// Package gather reads what a plan is made from: every host's facts, in one
// round trip per host (and its lock, for a run that writes), then etcd's
// own view through the members that listen. It owns what to read on a host
// and in what order; it must not import the executor or the runtimes
// themselves (the caller hands it the inventory's runtime).
package gather

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/apiserver"
	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/hosts"
	"github.com/etcdadm-io/etcdadm/pkg/kubeadmconfig"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
	"github.com/etcdadm-io/etcdadm/pkg/runtime"
)

// Facts are what a run read from the hosts and from etcd.
type Facts struct {
	Hosts map[string]*facts.Host
	Etcd  *facts.Cluster
	locks []*facts.Lock
}

// Held says whether the run still holds every host it locked: nil, or
// why one is lost (see facts.Lock.Held).
func (f *Facts) Held() error {
	for _, l := range f.locks {
		if err := l.Held(); err != nil {
			return err
		}
	}
	return nil
}

// Release lets other runs take the hosts this run locked.
func (f *Facts) Release() {
	for _, l := range f.locks {
		l.Release()
	}
	f.locks = nil
}

// Options tune Gather.
type Options struct {
	Concurrency int
	// Lock takes every host's lock, held until Facts.Release: for a run
	// that changes the hosts. Without it nothing is written anywhere.
	Lock bool
	// EtcdTimeout bounds every call to etcd.
	EtcdTimeout time.Duration
	// Lease is how long a host's lock lasts unless renewed;
	// facts.DefaultLease when 0.
	Lease time.Duration
}

// Request is what to read on host h: every path the plan could write there.
func Request(c *config.Cluster, rt runtime.Runtime, h config.Host) facts.Request {
	files, dirs := plan.Paths(c, rt, h)
	if c.IsControlPlaneHost(h.Name) {
		// Its files and who trusts which CA, nothing of a member.
		return facts.Request{CAPath: kubeadmconfig.ExternalCAFile, NoMember: true, Files: files, Dirs: dirs, ControlPlaneDir: apiserver.ManifestsDir}
	}
	cpDir := ""
	if c.Spec.Topology == config.TopologyStacked {
		// A stacked member's host runs kubeadm's control plane too.
		cpDir = c.Spec.Kubelet.StaticPodPath
	}
	return facts.Request{
		ControlPlaneDir:  cpDir,
		DataDir:          c.Spec.Etcd.DataDir,
		ManifestPath:     rt.StartPath(c),
		HeldManifestPath: rt.HeldStartPath(c),
		EtcdUnit:         rt.Unit(),
		CAPath:           path.Join(manifests.CertificatesDir, certs.CABaseName+".crt"),
		ClientPort:       manifests.ClientPort,
		// The images that matter are those of the kubelet's runtime.
		ContainerdAddress: facts.ContainerdAddress(c.Spec.Kubelet.ContainerRuntimeEndpoint),
		Files:             files,
		Dirs:              dirs,
	}
}

// Gather reads every host's facts, one command per host, concurrently, then
// asks etcd (client nil: not asked). Hosts without a transport in hs are
// skipped. With opts.Lock, a host that another run holds fails the gather.
func Gather(ctx context.Context, c *config.Cluster, rt runtime.Runtime, hs *hosts.Hosts, client *etcdclient.Client, opts Options) (*Facts, error) {
	f := &Facts{Hosts: map[string]*facts.Host{}}
	holder := ""
	if opts.Lock {
		holder = lockHolder()
	}
	var mu sync.Mutex
	var reachable []config.Host
	for _, h := range hs.Order {
		if hs.T[h.Name] != nil {
			reachable = append(reachable, h)
		}
	}
	gather := func(ctx context.Context, h config.Host) error {
		hf, lock, err := hostFacts(ctx, c, rt, hs.T[h.Name], h, holder, opts.Lease)
		if err != nil {
			return err
		}
		mu.Lock()
		f.Hosts[h.Name] = hf
		if lock != nil {
			f.locks = append(f.locks, lock)
		}
		mu.Unlock()
		return nil
	}
	rest := reachable
	var err error
	if opts.Lock && len(reachable) > 1 {
		// Every run takes the first host first: of two runs started at
		// once, one gets the cluster and the other is refused, rather than
		// each getting some hosts and both being refused.
		err = hosts.ForEach(ctx, reachable[:1], 1, gather)
		rest = reachable[1:]
	}
	if err == nil {
		err = hosts.ForEach(ctx, rest, opts.Concurrency, gather)
	}
	if err != nil {
		f.Release()
		return nil, hosts.Named(err, "reading the hosts")
	}
	if client != nil {
		f.Etcd = Etcd(ctx, c, f, client, opts.EtcdTimeout)
	}
	return f, nil
}

// hostFacts reads host h's facts through t, taking its lock for holder
// ("" for a run that writes nothing).
//
// The lease of a run of this machine that has ended (killed before it let
// go) is taken over at once: its process is gone, so the run after it,
// the same command run again, goes on without waiting for the lease to
// run out. A live run's is refused.
func hostFacts(ctx context.Context, c *config.Cluster, rt runtime.Runtime, t remote.Transport, h config.Host, holder string, lease time.Duration) (*facts.Host, *facts.Lock, error) {
	req := Request(c, rt, h)
	req.Lease = lease
	for {
		hf, lock, err := facts.Gather(ctx, t, req, holder)
		if !errors.Is(err, facts.ErrLocked) {
			return hf, lock, err
		}
		if req.Takeover == "" && hf.LockRun != "" && endedHere(hf.LockHolder) {
			req.Takeover = hf.LockRun
			continue
		}
		who := hf.LockHolder
		if !hf.LockUntil.IsZero() {
			who += fmt.Sprintf("; its lease runs until %s unless it renews it", hf.LockUntil.UTC().Format(time.TimeOnly+" UTC"))
		}
		return nil, nil, fmt.Errorf("%w (%s): wait for it to finish, or stop it", err, who)
	}
}

// holderPattern reads lockHolder's pid and machine back.
var holderPattern = regexp.MustCompile(`^etcdadm pid (\d+) of \S*@(\S+) since `)

// endedHere reports whether holder is a run of this machine whose process
// is gone.
func endedHere(holder string) bool {
	m := holderPattern.FindStringSubmatch(holder)
	if m == nil {
		return false
	}
	machine, _ := os.Hostname()
	pid, err := strconv.Atoi(m[1])
	if err != nil || m[2] != machine || pid == os.Getpid() {
		return false
	}
	return !processRuns(pid)
}

// Another reads, as Gather does, the facts of inventory host h through
// another transport than the run's for it: the old host of a member that
// moves, reached at its old address. With lock it takes the host's lock,
// held until the returned lock is released.
func Another(ctx context.Context, c *config.Cluster, rt runtime.Runtime, t remote.Transport, h config.Host, lock bool) (*facts.Host, *facts.Lock, error) {
	holder := ""
	if lock {
		holder = lockHolder()
	}
	return hostFacts(ctx, c, rt, t, h, holder, 0)
}

// Etcd asks etcd, through the members whose hosts have something
// listening on the client port (or could not be read): a call to a port
// nobody listens on would only wait out its deadline.
func Etcd(ctx context.Context, c *config.Cluster, f *Facts, client *etcdclient.Client, timeout time.Duration) *facts.Cluster {
	var eps []etcdclient.Endpoint
	var idle, down []string
	for _, e := range ops.Endpoints(c) {
		hf := f.Hosts[e.Name]
		if hf == nil || slices.ContainsFunc(hf.Listeners, func(l facts.Listener) bool { return l.Port == manifests.ClientPort }) {
			eps = append(eps, e)
		} else {
			idle = append(idle, e.Name)
			down = append(down, e.ClientURL)
		}
	}
	if len(eps) == 0 {
		why := "no member runs: nothing listens on port 2379 on " + strings.Join(idle, ", ")
		return &facts.Cluster{ListError: why, QuorumLost: true, QuorumWhy: why,
			Status: map[uint64]etcdclient.MemberStatus{}, Unanswered: map[string]etcdclient.MemberStatus{}}
	}
	e := facts.GatherCluster(ctx, client, eps, down, dataCluster(c, f), timeout, facts.NoLeaderRecheck)
	for _, name := range idle {
		h, _ := c.Host(name)
		u := manifests.ClientURL(h)
		if _, ok := e.Unanswered[u]; !ok && !slices.ContainsFunc(e.Members, func(m etcdclient.Member) bool { return slices.Contains(m.ClientURLs, u) && e.Healthy(m.ID) }) {
			e.Unanswered[u] = etcdclient.MemberStatus{Name: name, Endpoint: u, Error: "etcd is not running (nothing listens on port 2379)"}
		}
	}
	return e
}

// dataCluster is the cluster ID most of the inventory's hosts' data holds
// (their write-ahead logs); of two held as often, the first host's; 0 for
// none.
func dataCluster(c *config.Cluster, f *Facts) uint64 {
	count := map[uint64]int{}
	var best uint64
	for _, h := range c.Spec.Hosts {
		hf := f.Hosts[h.Name]
		if hf == nil || hf.DataDir.ClusterID == 0 {
			continue
		}
		id := hf.DataDir.ClusterID
		count[id]++
		if best == 0 || count[id] > count[best] {
			best = id
		}
	}
	return best
}

// lockHolder says who holds a host's lock, for the run that finds it taken.
func lockHolder() string {
	who := "unknown"
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	machine, _ := os.Hostname()
	return fmt.Sprintf("etcdadm pid %d of %s@%s since %s", os.Getpid(), who, machine, time.Now().UTC().Format(time.RFC3339))
}
