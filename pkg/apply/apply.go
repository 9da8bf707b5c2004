package apply

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// DefaultBackupDir is where a file etcdadm replaces is first copied, on its host.
const DefaultBackupDir = "/var/lib/etcdadm/backup"

// Options tune Run.
type Options struct {
	Concurrency   int
	DryRun        bool
	BackupDir     string
	HealthTimeout time.Duration
	Log           *Log
}

// HostResult says what Run did on one host.
type HostResult struct {
	Host             string   `json:"host"`
	Written          []string `json:"written"`
	RestartedKubelet bool     `json:"restartedKubelet"`
}

// Result is the outcome of a run.
type Result struct {
	Diffs   []HostDiff                `json:"diff"`
	Hosts   []HostResult              `json:"hosts"`
	Members []etcdclient.MemberStatus `json:"members,omitempty"`
}

// Changed reports whether anything was (or, in a dry run, would be) written.
func (r *Result) Changed() bool {
	for _, d := range r.Diffs {
		if len(d.Changed()) > 0 {
			return true
		}
	}
	return false
}

// Run applies the plan: pre-flight on every host, diff, then the writes. A
// fresh cluster is brought up on all hosts at once (its members need each
// other to form a quorum); a running one is changed one host at a time, each
// waited for until the cluster is healthy again.
func Run(ctx context.Context, c *config.Cluster, p *plan.Plan, hs *Hosts, pki *certs.PKI, opts Options) (*Result, error) {
	log := opts.Log
	if log == nil {
		log = NewLog(nil)
	}
	if opts.BackupDir == "" {
		opts.BackupDir = DefaultBackupDir
	}
	if opts.HealthTimeout == 0 {
		opts.HealthTimeout = 5 * time.Minute
	}
	if err := Preflight(ctx, c, hs, opts.Concurrency, log); err != nil {
		return nil, err
	}
	diffs, err := Diff(ctx, p, hs, opts.Concurrency)
	if err != nil {
		return nil, err
	}
	res := &Result{Diffs: diffs}
	if opts.DryRun {
		return res, nil
	}
	client, err := newEtcdClient(pki, hs)
	if err != nil {
		return nil, err
	}
	members := Members(c)

	var newHosts, runningHosts []string
	for _, d := range diffs {
		for _, ch := range d.Changes {
			if ch.File.Part != plan.PartManifests {
				continue
			}
			if ch.Kind == Create {
				newHosts = append(newHosts, d.Host)
			} else {
				runningHosts = append(runningHosts, d.Host)
			}
		}
	}
	fresh := len(runningHosts) == 0
	if len(newHosts) > 0 && len(runningHosts) > 0 {
		// A member joining a running cluster must be added as a learner
		// first; starting it as for a new cluster would fail, and rewriting
		// every member's --initial-cluster would restart them all.
		return res, fmt.Errorf("%v have no etcd manifest but %v run etcd: adding members to a running cluster is not supported yet; remove the new hosts from the inventory (or restore their manifests) and apply again", newHosts, runningHosts)
	}
	results := make([]HostResult, len(diffs))
	push := func(ctx context.Context, i int) error {
		hp := p.Hosts[i]
		r, err := pushHost(ctx, hp, diffs[i], hs.T[hp.Name], opts.BackupDir, log)
		results[i] = r
		return err
	}
	if fresh || !anyChanged(diffs) {
		var order []config.Host
		for _, hp := range p.Hosts {
			order = append(order, config.Host{Name: hp.Name})
		}
		idx := map[string]int{}
		for i, hp := range p.Hosts {
			idx[hp.Name] = i
		}
		err := ForEach(ctx, order, opts.Concurrency, func(ctx context.Context, h config.Host) error {
			return push(ctx, idx[h.Name])
		})
		if err != nil {
			return nil, named(err, "apply")
		}
	} else {
		for i, d := range diffs {
			if len(d.Changed()) == 0 {
				continue
			}
			if err := push(ctx, i); err != nil {
				return nil, &HostsError{What: "apply", Errors: []*HostError{{Host: d.Host, Err: err}}}
			}
			log.Host(d.Host, "waiting for the cluster to be healthy before the next host")
			if _, err := client.WaitHealthy(ctx, members, opts.HealthTimeout, nil); err != nil {
				return nil, fmt.Errorf("after changing %s: %w", d.Host, err)
			}
		}
	}
	res.Hosts = results
	log.Printf("waiting for %d member(s) to be healthy (mTLS, healthcheck-client certificate)", len(members))
	sts, err := client.WaitHealthy(ctx, members, opts.HealthTimeout, nil)
	res.Members = sts
	if err != nil {
		return res, err
	}
	return res, nil
}

func anyChanged(diffs []HostDiff) bool {
	for _, d := range diffs {
		if len(d.Changed()) > 0 {
			return true
		}
	}
	return false
}

// pushHost writes a host's changed files in plan order (certificates, kubeadm
// configuration, kubelet files, manifest last), restarting the kubelet only
// when its files changed, before the manifest.
func pushHost(ctx context.Context, hp plan.Host, d HostDiff, t remote.Transport, backupDir string, log *Log) (HostResult, error) {
	r := HostResult{Host: hp.Name}
	changed := d.Changed()
	if len(changed) == 0 {
		log.Host(hp.Name, "up to date, nothing written")
		return r, nil
	}
	for _, dir := range hp.Dirs {
		if err := t.MkdirAll(ctx, dir.Path, dir.Mode); err != nil {
			return r, fmt.Errorf("create %s: %w", dir.Path, err)
		}
	}
	write := func(part plan.Part) error {
		for _, ch := range changed {
			if ch.File.Part != part {
				continue
			}
			f := ch.File
			if _, err := t.WriteFile(ctx, remote.File{Path: f.Path, Mode: f.Mode, Data: f.Data}, backupDir); err != nil {
				return fmt.Errorf("write %s: %w", f.Path, err)
			}
			r.Written = append(r.Written, f.Path)
			log.Host(hp.Name, "wrote %s (%s)", f.Path, ch.Kind)
		}
		return nil
	}
	for _, part := range []plan.Part{plan.PartCerts, plan.PartKubeadmConfig, plan.PartKubelet} {
		if err := write(part); err != nil {
			return r, err
		}
	}
	for _, s := range hp.Steps {
		if s.Command == "" || !triggered(s, d) {
			continue
		}
		if _, err := t.Run(ctx, s.Command, nil); err != nil {
			return r, err
		}
		if s.Kind == plan.StepRestartKubelet {
			r.RestartedKubelet = true
		}
		log.Host(hp.Name, "ran %s", s.Command)
	}
	if err := write(plan.PartManifests); err != nil {
		return r, err
	}
	return r, nil
}

func triggered(s plan.Step, d HostDiff) bool {
	if len(s.When) == 0 {
		return true
	}
	for _, p := range s.When {
		if d.PartChanged(p) {
			return true
		}
	}
	return false
}

// Members lists the cluster's members for the etcd client.
func Members(c *config.Cluster) []etcdclient.Member {
	out := make([]etcdclient.Member, len(c.Spec.Hosts))
	for i, h := range c.Spec.Hosts {
		out[i] = etcdclient.Member{Name: h.Name, ClientURL: manifests.ClientURL(h)}
	}
	return out
}

// newEtcdClient authenticates with the first host's healthcheck-client
// certificate, from the operator's PKI, and reaches each member directly
// or, when that fails, through its host's SSH connection.
func newEtcdClient(pki *certs.PKI, hs *Hosts) (*etcdclient.Client, error) {
	if pki == nil || len(hs.Order) == 0 {
		return nil, errors.New("no PKI to authenticate to etcd with")
	}
	return etcdclient.FromPKI(pki, hs.Order[0].Name, TunnelDialer(hs))
}

// TunnelDialer dials a member directly and, if that fails, through the SSH
// connection of the host whose address it is; the way that worked is kept.
func TunnelDialer(hs *Hosts) etcdclient.Dialer {
	byAddr := map[string]remote.Transport{}
	for _, h := range hs.Order {
		byAddr[net.ParseIP(h.Address).String()] = hs.T[h.Name]
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
