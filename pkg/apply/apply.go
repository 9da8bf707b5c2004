package apply

import (
	"context"
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// DefaultBackupDir is where a file etcdadm replaces or moves away is kept, on its host.
const DefaultBackupDir = "/var/lib/etcdadm/backup"

// Executor runs a plan's stages on the hosts.
type Executor struct {
	Cluster *config.Cluster
	Hosts   *Hosts
	Etcd    *etcdclient.Client
	Log     *Log
	// BackupDir keeps, per run, what is replaced or moved away.
	BackupDir string
	// HealthTimeout bounds every wait for a member or the cluster.
	HealthTimeout time.Duration
	// PromoteTimeout bounds the retries of a learner's promotion.
	PromoteTimeout time.Duration
	Concurrency    int
	// StateDir is etcdadm's directory on the hosts (pending-work markers);
	// facts.StateDir when empty.
	StateDir string
	// KeepBackups is how many runs' backups each host this run changes
	// keeps under BackupDir; 0 keeps them all.
	KeepBackups int

	stamp     string
	snapshots []string
	mu        sync.Mutex
	res       map[string]*HostResult
	// replaced are, by host, the binaries this run replaced and where it
	// kept the previous ones: what a failed upgrade goes back to.
	replaced map[string][]replacedFile
}

// HostResult says what a run did on one host.
type HostResult struct {
	Host             string   `json:"host"`
	Written          []string `json:"written,omitempty"`
	Ran              []string `json:"ran,omitempty"`
	RestartedKubelet bool     `json:"restartedKubelet,omitempty"`
	RestartedEtcd    bool     `json:"restartedEtcd,omitempty"`
	// Imported are the images imported into the host's containerd.
	Imported []string `json:"imported,omitempty"`
}

// Result is the outcome of a run.
type Result struct {
	Hosts []HostResult `json:"hosts"`
	// Snapshots are the snapshots the run saved on this machine.
	Snapshots []string                  `json:"snapshots,omitempty"`
	Members   []etcdclient.MemberStatus `json:"members,omitempty"`
	Warnings  []string                  `json:"warnings,omitempty"`
}

func (x *Executor) defaults() {
	if x.Log == nil {
		x.Log = NewLog(nil)
	}
	if x.BackupDir == "" {
		x.BackupDir = DefaultBackupDir
	}
	if x.HealthTimeout == 0 {
		x.HealthTimeout = 5 * time.Minute
	}
	if x.PromoteTimeout == 0 {
		x.PromoteTimeout = 2 * time.Minute
	}
	if x.StateDir == "" {
		x.StateDir = facts.StateDir
	}
	if x.stamp == "" {
		x.stamp = time.Now().UTC().Format("20060102T150405Z")
	}
	if x.res == nil {
		x.res = map[string]*HostResult{}
	}
}

// Run runs every stage in order. A stage that fails stops the run: the next
// stage, and in a one-at-a-time stage the next host, is not touched.
func (x *Executor) Run(ctx context.Context, p *plan.Plan) (*Result, error) {
	x.defaults()
	defer x.pruneBackups(context.WithoutCancel(ctx))
	for i, st := range p.Stages {
		x.Log.Printf("stage %d/%d: %s (%s)", i+1, len(p.Stages), st.Name, st.Rollout)
		if st.Why != "" {
			x.Log.Printf("  why: %s", st.Why)
		}
		var err error
		if st.Rollout == plan.AllAtOnce {
			err = x.allAtOnce(ctx, st)
		} else {
			err = x.oneAtATime(ctx, st)
		}
		if err != nil {
			return x.result(), fmt.Errorf("stage %q: %w", st.Name, err)
		}
	}
	return x.result(), nil
}

func (x *Executor) result() *Result {
	r := &Result{Snapshots: x.snapshots}
	for _, h := range x.Cluster.AllHosts() {
		if hr, ok := x.res[h.Name]; ok {
			r.Hosts = append(r.Hosts, *hr)
		}
	}
	return r
}

// Add adds what another run did, host by host: the commands that run
// several plans (a CA rotation's stages) report them as one.
func (r *Result) Add(o *Result) {
	for _, h := range o.Hosts {
		i := slices.IndexFunc(r.Hosts, func(x HostResult) bool { return x.Host == h.Host })
		if i < 0 {
			r.Hosts = append(r.Hosts, h)
			continue
		}
		x := &r.Hosts[i]
		x.Written = append(x.Written, h.Written...)
		x.Ran = append(x.Ran, h.Ran...)
		x.Imported = append(x.Imported, h.Imported...)
		x.RestartedKubelet = x.RestartedKubelet || h.RestartedKubelet
		x.RestartedEtcd = x.RestartedEtcd || h.RestartedEtcd
	}
	r.Snapshots = append(r.Snapshots, o.Snapshots...)
	r.Warnings = append(r.Warnings, o.Warnings...)
	if o.Members != nil {
		r.Members = o.Members
	}
}

func (x *Executor) record(host string, f func(*HostResult)) {
	x.mu.Lock()
	defer x.mu.Unlock()
	hr, ok := x.res[host]
	if !ok {
		hr = &HostResult{Host: host}
		x.res[host] = hr
	}
	f(hr)
}

func (x *Executor) allAtOnce(ctx context.Context, st plan.Stage) error {
	var hosts []config.Host
	ops := map[string][]plan.Op{}
	for _, ho := range st.Hosts {
		hosts = append(hosts, config.Host{Name: ho.Host})
		ops[ho.Host] = ho.Ops
	}
	err := ForEach(ctx, hosts, x.Concurrency, func(ctx context.Context, h config.Host) error {
		return x.hostOps(ctx, h.Name, ops[h.Name])
	})
	if err != nil {
		return named(err, "changing the hosts")
	}
	if len(st.Wait) > 0 {
		x.Log.Printf("waiting for %d member(s) to be healthy (mTLS, healthcheck-client certificate)", len(st.Wait))
		if _, err := x.Etcd.WaitHealthy(ctx, x.endpoints(st.Wait), x.HealthTimeout, nil); err != nil {
			return err
		}
	}
	return nil
}

func (x *Executor) oneAtATime(ctx context.Context, st plan.Stage) error {
	for _, ho := range st.Hosts {
		if st.Quorum > 0 {
			if err := x.checkQuorum(ctx, ho, st.Quorum); err != nil {
				return &HostsError{What: "quorum check", Errors: []*HostError{{Host: ho.Host, Err: err}}}
			}
		}
		if err := x.hostOps(ctx, ho.Host, ho.Ops); err != nil {
			return &HostsError{What: "changing the host", Errors: []*HostError{{Host: ho.Host, Err: err}}}
		}
	}
	return nil
}

// checkQuorum makes sure, just before a host is touched, that the cluster
// can still lose that host's member: the facts the plan was made from may
// be seconds old.
func (x *Executor) checkQuorum(ctx context.Context, ho plan.HostOps, quorum int) error {
	disruptive := slices.ContainsFunc(ho.Ops, func(o plan.Op) bool { return o.Disruptive })
	sts := x.Etcd.Status(ctx, Endpoints(x.Cluster), 2*time.Second)
	healthy, targetHealthy := 0, false
	for _, s := range sts {
		if s.Healthy && !s.Learner {
			healthy++
			if s.Name == ho.Host {
				targetHealthy = true
			}
		}
	}
	left := healthy
	if disruptive && targetHealthy {
		left--
	}
	if left < quorum {
		return fmt.Errorf("stopped before touching it: %d voting member(s) would be healthy, below the quorum of %d (%v)", left, quorum, etcdclient.Unhealthy(sts))
	}
	return nil
}

// hostOps runs one host's operations in order.
func (x *Executor) hostOps(ctx context.Context, host string, ops []plan.Op) error {
	t := x.Hosts.T[host]
	h, ok := x.Cluster.Host(host)
	if !ok {
		// This machine, or a control-plane host: no member there.
		h.Name = host
	}
	var before []facts.Process
	if t != nil && slices.ContainsFunc(ops, func(o plan.Op) bool { return o.Kind == plan.OpWaitMember && o.NewProcess }) {
		var err error
		if before, err = facts.Processes(ctx, t, manifests.ClientPort); err != nil {
			return err
		}
	}
	var rollback, rollbackRetry *plan.File
	for _, op := range ops {
		if t == nil && needsHost(op) {
			return fmt.Errorf("%s: the host is not reachable", op)
		}
		if op.Kind == plan.OpRestartEtcd && op.Rollback != nil {
			rollback, rollbackRetry = op.Rollback, op.RollbackRetry
		}
		if err := x.op(ctx, t, h, op, before); err != nil {
			if rollback != nil && op.Kind != plan.OpWaitCluster {
				return x.runtime().rollBack(ctx, t, h, *rollback, rollbackRetry, err)
			}
			return err
		}
	}
	return nil
}

// rollBack puts a member that did not come up on its new manifest back on
// its old one, and waits for it: the roll stops either way.
func (x *Executor) rollBack(ctx context.Context, t remote.Transport, h config.Host, old plan.File, retry *plan.File, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), x.HealthTimeout+time.Minute)
	defer cancel()
	x.Log.Host(h.Name, "the member did not come up on its new manifest (%v): putting its old manifest back", cause)
	image := facts.ParseManifest(old.Data).Image
	now, err := facts.Processes(ctx, t, manifests.ClientPort)
	if err == nil {
		err = x.restartEtcd(ctx, t, h.Name, old, retry, now)
	}
	if err == nil {
		err = x.waitMember(ctx, t, h, true, "", now)
	}
	if err != nil {
		return fmt.Errorf("%w; putting the old manifest (%s) back failed too: %v; the old manifest is the newest file for %s under %s on the host", cause, image, err, manifests.ManifestPath(x.Cluster), x.BackupDir)
	}
	x.Log.Host(h.Name, "back on its old manifest (%s), healthy and caught up", image)
	return fmt.Errorf("%w; stopped here: %s is back on its old manifest (%s) and healthy, the members after it were not touched", cause, h.Name, image)
}

func needsHost(op plan.Op) bool {
	switch op.Kind {
	case plan.OpAddLearner, plan.OpPromote, plan.OpRemoveMember, plan.OpMoveLeader, plan.OpWaitCluster, plan.OpSnapshot:
		return false
	}
	return true
}

func (x *Executor) op(ctx context.Context, t remote.Transport, h config.Host, op plan.Op, before []facts.Process) error {
	name := h.Name
	switch op.Kind {
	case plan.OpMkdir:
		if err := t.MkdirAll(ctx, op.Path, op.Mode); err != nil {
			return fmt.Errorf("create %s: %w", op.Path, err)
		}
	case plan.OpWrite:
		f := op.Change.File
		if f.Source != nil {
			return x.pushFile(ctx, t, name, op.Change)
		}
		if _, err := t.WriteFile(ctx, remote.File{Path: f.Path, Mode: f.Mode, Data: f.Data}, x.BackupDir); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
		x.Log.Host(name, "wrote %s (%s)", f.Path, op.Change.Kind)
		x.record(name, func(r *HostResult) { r.Written = append(r.Written, f.Path) })
	case plan.OpMark:
		data := fmt.Sprintf("recorded by etcdadm at %s: %s\n", time.Now().UTC().Format(time.RFC3339), op.Why)
		if _, err := t.WriteFile(ctx, remote.File{Path: path.Join(x.StateDir, "pending", op.Marker), Mode: 0o600, DirMode: 0o700, Data: []byte(data)}, ""); err != nil {
			return fmt.Errorf("record pending %s: %w", op.Marker, err)
		}
	case plan.OpUnmark:
		if _, err := t.Run(ctx, "rm -f "+shell.Quote(path.Join(x.StateDir, "pending", op.Marker)), nil); err != nil {
			return fmt.Errorf("clear pending %s: %w", op.Marker, err)
		}
	case plan.OpRun:
		if _, err := t.Run(ctx, op.Command, nil); err != nil {
			return err
		}
		x.Log.Host(name, "ran %s", op.Command)
		x.record(name, func(r *HostResult) {
			r.Ran = append(r.Ran, op.Command)
			if op.Command == plan.CmdRestartKube || op.Command == plan.CmdStartKube {
				r.RestartedKubelet = true
			}
		})
	case plan.OpRestartEtcd:
		if err := x.runtime().restart(ctx, t, name, op, before); err != nil {
			return err
		}
		x.record(name, func(r *HostResult) {
			r.RestartedEtcd = true
			if op.Change != nil {
				r.Written = append(r.Written, op.Change.File.Path)
			}
		})
	case plan.OpStopEtcd:
		return x.runtime().stop(ctx, t, name)
	case plan.OpBackup:
		return x.backup(ctx, t, name, op.Path)
	case plan.OpAddLearner:
		return x.addLearner(ctx, op)
	case plan.OpPromote:
		return x.promote(ctx, op)
	case plan.OpRemoveMember:
		return x.removeMember(ctx, op)
	case plan.OpMoveLeader:
		return x.moveLeader(ctx, op)
	case plan.OpWaitMember:
		return x.waitMember(ctx, t, h, op.NewProcess, op.Version, before)
	case plan.OpSnapshot:
		return x.snapshot(ctx, op)
	case plan.OpPushData:
		return x.pushData(ctx, t, name, op)
	case plan.OpSwapData:
		return x.swapData(ctx, t, name, op)
	case plan.OpImportImage:
		return x.importImage(ctx, t, name, op)
	case plan.OpWaitCluster:
		x.Log.Host(name, "waiting for %v to be healthy", op.Members)
		if _, err := x.Etcd.WaitHealthy(ctx, x.endpoints(op.Members), x.HealthTimeout, nil); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown operation %q", op.Kind)
	}
	return nil
}

// holdPath is where a restart parks the manifest: a dotted name in the same
// directory, which the kubelet does not read.
func holdPath(c *config.Cluster) string {
	return path.Join(c.Spec.Kubelet.StaticPodPath, "."+manifests.ManifestName+".etcdadm-restart")
}

// restartEtcd takes the static Pod away, waits until its etcd has exited and
// the kubelet is done with its Pod, then writes the new manifest: the kubelet
// starts it at once, and the new process reads the CA and certificates anew.
// Written while the old Pod still terminates, the kubelet would start it only
// after its retry delay. A run cut in between leaves the manifest missing,
// which the next run's plan restores.
func (x *Executor) restartEtcd(ctx context.Context, t remote.Transport, name string, f plan.File, retry *plan.File, before []facts.Process) error {
	m, hold := manifests.ManifestPath(x.Cluster), holdPath(x.Cluster)
	x.Log.Host(name, "restarting etcd")
	start := time.Now()
	q := shell.Quote
	if _, err := t.Run(ctx, fmt.Sprintf("if [ -f %[1]s ]; then mv -f %[1]s %[2]s; fi", q(m), q(hold)), nil); err != nil {
		return fmt.Errorf("take the etcd manifest away: %w", err)
	}
	if err := x.waitGone(ctx, t, before, true); err != nil {
		return err
	}
	if _, err := t.WriteFile(ctx, remote.File{Path: f.Path, Mode: f.Mode, Data: f.Data}, ""); err != nil {
		return fmt.Errorf("write %s: %w", f.Path, err)
	}
	if _, err := t.Run(ctx, "rm -f "+q(hold), nil); err != nil {
		return fmt.Errorf("remove %s: %w", hold, err)
	}
	x.Log.Host(name, "wrote %s (the old etcd was gone and its Pod cleaned up after %s)", f.Path, time.Since(start).Round(time.Millisecond))
	if retry == nil {
		return nil
	}
	// A Pod that arrives while the kubelet still finishes the old one waits
	// for the kubelet's retry (10-15s); one under another name starts at once.
	for deadline := time.Now().Add(retryAfter); time.Now().Before(deadline); {
		now, err := facts.Processes(ctx, t, manifests.ClientPort)
		if err != nil {
			return err
		}
		if len(now) > 0 && !slices.ContainsFunc(now, func(p facts.Process) bool { return running(before, p) }) {
			return nil
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	if _, err := t.WriteFile(ctx, remote.File{Path: retry.Path, Mode: retry.Mode, Data: retry.Data}, ""); err != nil {
		return fmt.Errorf("write %s: %w", retry.Path, err)
	}
	x.Log.Host(name, "no new etcd after %s: the kubelet held the Pod back; wrote it again with another restart annotation", retryAfter)
	return nil
}

// retryAfter is how long a restarted member's Pod may take to start before
// it is written again under another name.
const retryAfter = 2 * time.Second

// stopEtcd moves the manifest under the backup directory and waits until
// etcd has exited.
func (x *Executor) stopEtcd(ctx context.Context, t remote.Transport, name string) error {
	before, err := facts.Processes(ctx, t, manifests.ClientPort)
	if err != nil {
		return err
	}
	if err := x.backup(ctx, t, name, manifests.ManifestPath(x.Cluster)); err != nil {
		return err
	}
	x.Log.Host(name, "waiting for etcd to stop")
	// The member stays stopped: the kubelet may finish its Pod at leisure;
	// a manifest written later is a new Pod, which starts at once.
	return x.waitGone(ctx, t, before, false)
}

// waitGone waits until none of the processes runs any more, then, with
// pod, until the kubelet is done with their Pod (its cgroup is gone): a
// static Pod that comes back before that starts only after the kubelet's
// retry delay (10s), or behind its restart back-off.
func (x *Executor) waitGone(ctx context.Context, t remote.Transport, before []facts.Process, pod bool) error {
	deadline := time.Now().Add(x.HealthTimeout)
	for {
		now, err := facts.Processes(ctx, t, manifests.ClientPort)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(now, func(p facts.Process) bool { return running(before, p) }) {
			// etcd closes its listeners first, then syncs its log and
			// database: gone is the process, not its port.
			alive, err := x.alive(ctx, t, before)
			if err != nil {
				return err
			}
			if len(alive) == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd (pid %v) still runs %s after its manifest was taken away", before, x.HealthTimeout)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	var test strings.Builder
	for _, p := range before {
		if p.Cgroup != "" {
			fmt.Fprintf(&test, "[ -d %s ] && echo left; ", shell.Quote(p.Cgroup))
		}
	}
	if test.Len() == 0 || !pod {
		return nil
	}
	test.WriteString("true")
	podDeadline := time.Now().Add(podCleanupWait)
	for time.Now().Before(podDeadline) {
		out, err := t.Run(ctx, test.String(), nil)
		if err != nil {
			return err
		}
		if len(out) == 0 {
			return nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// alive lists the processes that still run: the same PID with the same
// start time.
func (x *Executor) alive(ctx context.Context, t remote.Transport, ps []facts.Process) ([]int, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "if [ -r /proc/%[1]d/stat ]; then read -r st < /proc/%[1]d/stat; st=${st##*) }; set -- $st; [ \"${20}\" = %[2]d ] && echo %[1]d; fi; ", p.PID, p.Start)
	}
	b.WriteString("true")
	out, err := t.Run(ctx, b.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("look for etcd's process: %w", err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// podCleanupWait bounds the wait for the kubelet to let go of a stopped Pod;
// past it the Pod comes back anyway, only later.
const podCleanupWait = 15 * time.Second

func running(before []facts.Process, p facts.Process) bool {
	return slices.ContainsFunc(before, p.Same)
}

// backup moves p under the backup directory of this run, keeping its path;
// a directory's contents are moved and the directory kept (it may be a
// mount point).
func (x *Executor) backup(ctx context.Context, t remote.Transport, name, p string) error {
	dst := path.Join(x.BackupDir, x.stamp, p)
	q := shell.Quote
	script := fmt.Sprintf(`umask 077; src=%s; dst=%s
if [ -d "$src" ] && [ ! -L "$src" ]; then
  mkdir -p "$dst" && find "$src" -mindepth 1 -maxdepth 1 -exec mv -t "$dst" {} +
elif [ -e "$src" ] || [ -L "$src" ]; then
  mkdir -p "$(dirname "$dst")" && mv "$src" "$dst"
else exit 0; fi && echo moved`, q(p), q(dst))
	out, err := t.Run(ctx, script, nil)
	if err != nil {
		return fmt.Errorf("move %s under %s: %w", p, path.Join(x.BackupDir, x.stamp), err)
	}
	if len(out) > 0 {
		x.Log.Host(name, "moved %s to %s", p, dst)
		x.record(name, func(r *HostResult) { r.Ran = append(r.Ran, "backup "+p) })
	}
	return nil
}

// voters are the client URLs of the healthy voting members, from a fresh
// member list.
func (x *Executor) voters(ctx context.Context, exclude string) ([]string, []etcdclient.Member, error) {
	list, err := x.Etcd.MemberList(ctx, x.allURLs(), etcdclient.DefaultCallTimeout)
	if err != nil {
		return nil, nil, err
	}
	var urls []string
	for _, m := range list.Members {
		if m.Learner || len(m.ClientURLs) == 0 || m.HasPeerURL(exclude) {
			continue
		}
		urls = append(urls, m.ClientURLs...)
	}
	return urls, list.Members, nil
}

func (x *Executor) allURLs() []string {
	var urls []string
	for _, e := range Endpoints(x.Cluster) {
		urls = append(urls, e.ClientURL)
	}
	return urls
}

func (x *Executor) addLearner(ctx context.Context, op plan.Op) error {
	voters, _, err := x.voters(ctx, op.PeerURL)
	if err != nil {
		return err
	}
	m, _, err := x.Etcd.AddLearner(ctx, voters, op.PeerURL, etcdclient.DefaultCallTimeout, time.Minute)
	if err != nil {
		return err
	}
	x.Log.Host(op.Member, "added to etcd as learner %s", m.HexID())
	return nil
}

func (x *Executor) promote(ctx context.Context, op plan.Op) error {
	voters, members, err := x.voters(ctx, op.PeerURL)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(members, func(m etcdclient.Member) bool { return m.HasPeerURL(op.PeerURL) })
	if i < 0 {
		return fmt.Errorf("promote %s: no member has peer URL %s", op.Member, op.PeerURL)
	}
	start := time.Now()
	if err := x.Etcd.Promote(ctx, voters, members[i].ID, x.PromoteTimeout); err != nil {
		return err
	}
	x.Log.Host(op.Member, "promoted to voting member %s (%s after it caught up)", members[i].HexID(), time.Since(start).Round(time.Millisecond))
	return nil
}

func (x *Executor) removeMember(ctx context.Context, op plan.Op) error {
	list, err := x.Etcd.MemberList(ctx, x.allURLs(), etcdclient.DefaultCallTimeout)
	if err != nil {
		return err
	}
	var id uint64
	var urls []string
	for _, m := range list.Members {
		if m.HexID() == op.MemberID {
			id = m.ID
			continue
		}
		if !m.Learner {
			urls = append(urls, m.ClientURLs...)
		}
	}
	if id == 0 {
		x.Log.Host(op.Member, "member %s is not in the cluster any more", op.MemberID)
		return nil
	}
	if err := x.Etcd.Remove(ctx, urls, id, time.Minute); err != nil {
		return err
	}
	x.Log.Host(op.Member, "removed member %s from the cluster", op.MemberID)
	return nil
}

func (x *Executor) moveLeader(ctx context.Context, op plan.Op) error {
	if err := x.Etcd.MoveLeaderAway(ctx, x.allURLs(), op.MemberID); err != nil {
		return err
	}
	x.Log.Host(op.Member, "leadership moved to another member")
	return nil
}

// waitMember is the health gate after a member changed: first its new
// process (another PID or start time than before the change, when asked:
// "healthy" alone could be the old process answering), then the member
// healthy and caught up with the leader.
func (x *Executor) waitMember(ctx context.Context, t remote.Transport, h config.Host, newProcess bool, version string, before []facts.Process) error {
	start := time.Now()
	deadline := start.Add(x.HealthTimeout)
	if newProcess {
		x.Log.Host(h.Name, "waiting for the new etcd process")
		for {
			now, err := facts.Processes(ctx, t, manifests.ClientPort)
			if err != nil {
				return err
			}
			if len(now) > 0 && !slices.ContainsFunc(now, func(p facts.Process) bool { return running(before, p) }) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("no new etcd process after %s (before: %v, now: %v); look at the kubelet's log", x.HealthTimeout, before, now)
			}
			if err := sleep(ctx, 200*time.Millisecond); err != nil {
				return err
			}
		}
	}
	if newProcess {
		x.Log.Host(h.Name, "new etcd process after %s; waiting for the member to be healthy and caught up", time.Since(start).Round(time.Millisecond))
	} else {
		x.Log.Host(h.Name, "waiting for the member to be healthy and caught up")
	}
	me := etcdclient.Endpoint{Name: h.Name, ClientURL: manifests.ClientURL(h)}
	var last string
	for {
		ok, why := x.caughtUp(ctx, me, version)
		if ok {
			if version != "" {
				x.Log.Host(h.Name, "reports version %s, healthy and caught up after %s", version, time.Since(start).Round(time.Millisecond))
				return nil
			}
			x.Log.Host(h.Name, "healthy and caught up after %s", time.Since(start).Round(time.Millisecond))
			return nil
		}
		last = why
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is not healthy and caught up after %s: %s", h.Name, x.HealthTimeout, last)
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

// CatchUpSlack is how many raft entries a member may trail the leader by
// and count as caught up: the two are read one after the other while
// clients keep writing.
const CatchUpSlack = 100

func (x *Executor) caughtUp(ctx context.Context, me etcdclient.Endpoint, version string) (bool, string) {
	all := x.Etcd.Status(ctx, Endpoints(x.Cluster), 2*time.Second)
	var leader *etcdclient.MemberStatus
	for i := range all {
		if all[i].Leader && all[i].Healthy {
			leader = &all[i]
		}
	}
	if leader == nil {
		return false, fmt.Sprintf("no healthy leader (%v)", etcdclient.Unhealthy(all))
	}
	st := x.Etcd.Status(ctx, []etcdclient.Endpoint{me}, 2*time.Second)[0]
	switch {
	case !st.Healthy:
		return false, st.Error
	case st.RaftIndex+CatchUpSlack < leader.RaftIndex:
		return false, fmt.Sprintf("raft index %d, the leader's %d", st.RaftIndex, leader.RaftIndex)
	case version != "" && strings.TrimPrefix(st.Version, "v") != version:
		return false, fmt.Sprintf("it reports version %s, not %s", st.Version, version)
	}
	return true, ""
}

func (x *Executor) endpoints(names []string) []etcdclient.Endpoint {
	var out []etcdclient.Endpoint
	for _, e := range Endpoints(x.Cluster) {
		if slices.Contains(names, e.Name) {
			out = append(out, e)
		}
	}
	return out
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// TunnelDialer dials a member directly and, if that fails, through the SSH
// connection of the host whose address it is; the way that worked is kept.
func TunnelDialer(hs *Hosts) etcdclient.Dialer {
	byAddr := map[string]remote.Transport{}
	for _, h := range hs.Order {
		if t := hs.T[h.Name]; t != nil {
			byAddr[net.ParseIP(h.Address).String()] = t
		}
	}
	var mu sync.Mutex
	viaSSH := map[string]bool{}
	direct := &net.Dialer{Timeout: 2 * time.Second}
	return func(ctx context.Context, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		t := byAddr[net.ParseIP(host).String()]
		mu.Lock()
		useSSH := viaSSH[addr]
		mu.Unlock()
		if !useSSH || t == nil {
			conn, derr := direct.DialContext(ctx, "tcp", addr)
			if derr == nil || t == nil {
				return conn, derr
			}
		}
		conn, err := t.Dial(ctx, "tcp", addr)
		if err == nil {
			mu.Lock()
			viaSSH[addr] = true
			mu.Unlock()
		}
		return conn, err
	}
}

// Summary counts the healthy members of a status.
func Summary(sts []etcdclient.MemberStatus) (healthy, total int) {
	for _, s := range sts {
		if s.Healthy {
			healthy++
		}
	}
	return healthy, len(sts)
}
