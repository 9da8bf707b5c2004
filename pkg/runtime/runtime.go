// Package runtime is the seam between etcdadm and what runs a member on its
// host: a static Pod of the host's kubelet (runtime/kubelet) or a systemd
// service (runtime/systemd). One interface holds both halves of a runtime,
// what it plans (its files, how a host's member is brought to them) and
// how it runs (restart, stop, roll back, through ops.Runner). The rest of
// a plan (certificates, membership, health gates, guards) is the same for
// every runtime.
//
// runtime owns the interface and what the planner and the runtimes
// exchange; it must not import plan, gather, the executor or the runtimes
// themselves (they import it).
package runtime

import (
	"path"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/version"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/hostfile"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

// Runtime is how a member runs on its host.
type Runtime interface {
	// Runner restarts, stops and rolls back a member.
	ops.Runner
	// Name is the inventory's spec.etcd.runtime.
	Name() config.Runtime
	// Files are the files of part (PartKubelet or PartManifests) that run
	// host h's member, which starts as m.
	Files(c *config.Cluster, h config.Host, m Member, part hostfile.Part) ([]hostfile.File, error)
	// FilePaths are the paths of Files, without making their content:
	// what the facts of a host read.
	FilePaths(c *config.Cluster) []string
	// StartPath is the file that says how the member starts (its flags):
	// the static Pod, or the service's environment file. The facts read
	// it as the host's Manifest.
	StartPath(c *config.Cluster) string
	// HeldStartPath is where a restart parks the start file while the
	// member stops ("" for none): the facts read it as the host's Manifest
	// when the start file is missing, a restart cut in the middle.
	HeldStartPath(c *config.Cluster) string
	// Unit is the systemd unit that runs the member, "" for none: the
	// facts read its state.
	Unit() string
	// Work lists the operations that bring a host to its plan.
	Work(h *Host) (Work, error)
	// Preflight lists why the runtime cannot run a member on the host.
	Preflight(h *Host) []string
	// CleanOps stop and take away what runs the member, after the stop
	// and the backups of its files (paths).
	CleanOps(c *config.Cluster, backedUp []string) []ops.Op
	// StopOp stops the member for good.
	StopOp() ops.StopEtcd
	// StartOp starts a stopped member on the file of change ch (its
	// manifest or environment file); retry is how it starts should the
	// first start be held back.
	StartOp(c *config.Cluster, h config.Host, ch *hostfile.Change, retry Member) (ops.RestartEtcd, error)
	// Rollback is what a member whose new version does not come up goes
	// back to (see ops.RestartEtcd.Rollback); nil for none.
	Rollback(h *Host, retry bool) *hostfile.File
	// Target is the etcd the inventory asks for, and the version it names
	// (nil for none); Running what host h's member runs, "" when unknown.
	// A running member whose etcd is not the target upgrades.
	Target(c *config.Cluster) (string, *version.Version)
	Running(h *Host) string
}

// Member says how a member starts. etcd reads these flags only when its data
// directory is empty, so a running member's are kept as its host has them:
// rewriting them would restart it for nothing.
type Member struct {
	InitialCluster string `json:"initialCluster"`
	State          string `json:"initialClusterState"`
	// Restart is the manifest's restart annotation, kept as the host has it.
	Restart string `json:"restart,omitempty"`
	// KubeadmOrder keeps --initial-cluster and its state among kubeadm's
	// sorted defaults, where a member kubeadm init or join started has
	// them (its State may then be empty): moved, the manifest would change
	// and the member restart for nothing.
	KubeadmOrder bool `json:"kubeadmOrder,omitempty"`
	// ForceNewCluster starts the member's data as a cluster of that member
	// alone (etcd's --force-new-cluster): a recovery's first start, never
	// kept, since every later start would drop the members added since.
	ForceNewCluster bool `json:"forceNewCluster,omitempty"`
	// Why says where the values come from.
	Why string `json:"why,omitempty"`
}

// ForceNewClusterFlag is the flag a member with ForceNewCluster starts
// with, after the inventory's flags; the facts read it back as the flag
// "force-new-cluster".
const ForceNewClusterFlag = "--force-new-cluster=true"

// Flags are the flags m adds to the member's own (manifests.Flags).
func (m Member) Flags() []string {
	if m.ForceNewCluster {
		return []string{ForceNewClusterFlag}
	}
	return nil
}

// Host is what a runtime plans one host from.
type Host struct {
	Cluster *config.Cluster
	Config  config.Host
	Facts   *facts.Host
	// Member is how the host's member starts; Now stamps its restarts.
	Member Member
	Now    time.Time
	// Changes compare every planned file with the host's copy; operations
	// point into it.
	Changes []hostfile.Change
	// Prepare is what every runtime's work starts with: the images the
	// host lacks, the directories it lacks, the modes and owners of those
	// it has set right.
	Prepare []ops.Op
	// Status is what the member said of itself; nil when it did not.
	Status *etcdclient.MemberStatus
	// Platform is the hosts' os/architecture.
	Platform string
}

// Runs reports whether etcd runs on the host.
func (h *Host) Runs() bool { return h.Facts.RunsEtcd() }

// PartChanged reports whether a file of the part must be written.
func (h *Host) PartChanged(p hostfile.Part) bool {
	for _, c := range h.Changes {
		if c.File.Part == p && c.Kind != hostfile.Unchanged {
			return true
		}
	}
	return false
}

// Work is what one host needs: Prepare before its member (re)starts, Start
// to (re)start it.
type Work struct {
	Prepare []ops.Op
	Start   []ops.Op
	// Restarts is set when the member's process changes; Why says why.
	Restarts bool
	Why      []string
	// Kubelet is set when the kubelet restarts or starts.
	Kubelet bool
}

// Empty reports whether there is nothing to do.
func (w Work) Empty() bool { return len(w.Prepare) == 0 && len(w.Start) == 0 }

// Disruptive reports whether the work stops a running member.
func (w Work) Disruptive() bool {
	for _, op := range append(slices.Clone(w.Prepare), w.Start...) {
		if op.Meta().Disruptive {
			return true
		}
	}
	return false
}

// EtcdFiles are the files etcd reads at start or for its own connections:
// a change restarts the member, since etcd loads its CA only at start and
// keeps its peer streams on the old certificate.
func EtcdFiles() []string {
	var out []string
	for _, base := range []string{certs.CABaseName, "etcd/server", "etcd/peer"} {
		p := path.Join(manifests.CertificatesDir, base)
		out = append(out, p+".crt", p+".key")
	}
	return out
}

// RestartStamp is the restart annotation of a restart at now; retry makes
// another one, for a second Pod.
func RestartStamp(now time.Time, retry bool) string {
	stamp := now.UTC().Format(time.RFC3339)
	if retry {
		stamp += " (again)"
	}
	return stamp
}

// EtcdVersion reads the version an etcd image tag or server version names:
// "3.7.0-0" and "3.7.0" are 3.7.0; nil when it names none.
func EtcdVersion(s string) *version.Version {
	if i := strings.LastIndex(s, ":"); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimPrefix(s, "v")
	if i := strings.Index(s, "-"); i >= 0 {
		s = s[:i]
	}
	v, err := version.ParseGeneric(s)
	if err != nil {
		return nil
	}
	return v
}
