package plan

import (
	"fmt"
	"io/fs"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/images"
)

// Rollout says how a stage goes over its hosts.
type Rollout string

// Rollouts.
const (
	// AllAtOnce changes every host of the stage together, then waits: for a
	// cluster brought up from nothing, or one without quorum to protect.
	AllAtOnce Rollout = "all-at-once"
	// OneAtATime changes one host, waits until its member runs again and the
	// cluster is healthy, then goes on to the next; the leader comes last.
	OneAtATime Rollout = "one-at-a-time"
)

// Stage is a set of operations with a rollout.
type Stage struct {
	Name    string  `json:"name"`
	Rollout Rollout `json:"rollout"`
	// Why says what the stage is for.
	Why   string    `json:"why,omitempty"`
	Hosts []HostOps `json:"hosts"`
	// Wait, for an all-at-once stage, names the members that must be
	// healthy before the next stage; empty for none.
	Wait []string `json:"wait,omitempty"`
	// Quorum, when set, is the number of healthy voters the executor
	// checks is still there before touching each host of the stage.
	Quorum int `json:"quorum,omitempty"`
}

// HostOps are the operations on one host, in order.
type HostOps struct {
	Host string `json:"host"`
	Ops  []Op   `json:"ops"`
}

// OpKind names an operation.
type OpKind string

// Operations.
const (
	// OpMkdir creates a directory with its mode.
	OpMkdir OpKind = "mkdir"
	// OpWrite writes a file atomically, backing up the one it replaces.
	OpWrite OpKind = "write"
	// OpMark records pending work on the host before it starts; OpUnmark
	// removes the record once the work is done.
	OpMark   OpKind = "mark"
	OpUnmark OpKind = "unmark"
	// OpRun runs a command on the host.
	OpRun OpKind = "run"
	// OpRestartEtcd restarts the host's etcd member (its static Pod).
	OpRestartEtcd OpKind = "restart-etcd"
	// OpStopEtcd stops the host's etcd member for good, keeping its
	// manifest under the backup directory.
	OpStopEtcd OpKind = "stop-etcd"
	// OpBackup moves a path under the backup directory; a directory's
	// contents are moved and the directory kept.
	OpBackup OpKind = "backup"
	// OpAddLearner adds the member as a learner through a voting member.
	OpAddLearner OpKind = "add-learner"
	// OpPromote makes a learner that caught up a voting member.
	OpPromote OpKind = "promote"
	// OpRemoveMember removes a member by ID through another member.
	OpRemoveMember OpKind = "remove-member"
	// OpMoveLeader hands leadership to another healthy voter first.
	OpMoveLeader OpKind = "move-leader"
	// OpWaitMember is the health gate after a member changed: its new
	// process (when NewProcess), healthy, caught up with the leader.
	OpWaitMember OpKind = "wait-member"
	// OpWaitCluster waits until the named members are healthy.
	OpWaitCluster OpKind = "wait-cluster"
	// OpSnapshot saves a snapshot of the cluster on this machine, at Path.
	OpSnapshot OpKind = "snapshot"
	// OpPushData streams a data directory made on this machine (Source)
	// into Path on the host, replacing what was there.
	OpPushData OpKind = "push-data"
	// OpSwapData moves the data directory's contents (Path) under the backup
	// directory, then the pushed data (Source) in their place.
	OpSwapData OpKind = "swap-data"
	// OpImportImage pushes an image archive made available on this machine
	// (Source) to the host and imports it into containerd, then checks
	// that containerd holds Images with their digests.
	OpImportImage OpKind = "import-image"
)

// LocalHost is the name a stage gives this machine, for the operations that
// run here (a snapshot).
const LocalHost = "(this machine)"

// Op is one operation.
type Op struct {
	Kind OpKind `json:"op"`
	// Path is the file or directory (write, mkdir, backup).
	Path string      `json:"path,omitempty"`
	Mode fs.FileMode `json:"-"`
	// Change is the file change a write makes.
	Change *Change `json:"change,omitempty"`
	// Retry is the manifest a restart writes instead when the kubelet holds
	// the first one back: another restart annotation, so another Pod.
	Retry *File `json:"-"`
	// Command runs on the host (run); for restart-etcd and stop-etcd of a
	// member run by systemd, it is the systemctl command that does it.
	Command string `json:"command,omitempty"`
	// Marker names the pending work (mark, unmark).
	Marker string `json:"marker,omitempty"`
	// Member, MemberID and PeerURL name the member of a cluster call.
	Member   string `json:"member,omitempty"`
	MemberID string `json:"memberID,omitempty"`
	PeerURL  string `json:"peerURL,omitempty"`
	// NewProcess makes OpWaitMember wait for another etcd process than the
	// one that ran before the host's operations.
	NewProcess bool `json:"newProcess,omitempty"`
	// Members are the members OpWaitCluster waits for.
	Members []string `json:"members,omitempty"`
	// Rollback is the manifest a restart puts back when the member does not
	// come up healthy on the new one (an upgrade); for a member run by
	// systemd, the environment file, with the binaries the run replaced.
	Rollback *File `json:"-"`
	// RollbackRetry is Rollback under another restart annotation, written
	// should the kubelet hold the first back.
	RollbackRetry *File `json:"-"`
	// Version is the etcd version OpWaitMember waits for the member to report.
	Version string `json:"version,omitempty"`
	// Source is a path on this machine (push-data) or on the host (swap-data).
	Source string `json:"source,omitempty"`
	// Images are what an import brings, from Archive; Snapshotter is the
	// one the CRI plugin unpacks images for (containerd's default if empty).
	Images      []ImageImport   `json:"images,omitempty"`
	Archive     *images.Archive `json:"-"`
	Snapshotter string          `json:"snapshotter,omitempty"`
	// Disruptive is set when the operation stops the host's running member.
	Disruptive bool `json:"disruptive,omitempty"`
	// Why explains the operation in a few words.
	Why string `json:"why,omitempty"`
}

// String describes the operation for people.
func (o Op) String() string {
	switch o.Kind {
	case OpMkdir:
		return fmt.Sprintf("mkdir %s (%04o)", o.Path, o.Mode.Perm())
	case OpWrite:
		return o.Change.String()
	case OpMark:
		return fmt.Sprintf("record pending %s", o.Marker)
	case OpUnmark:
		return fmt.Sprintf("clear pending %s", o.Marker)
	case OpRun:
		return "$ " + o.Command
	case OpRestartEtcd:
		if o.Command != "" && o.Rollback != nil {
			return "restart etcd: $ " + o.Command + " (the binaries it replaced are put back if the member does not come up)"
		}
		if o.Command != "" {
			return "restart etcd: $ " + o.Command
		}
		if o.Rollback != nil {
			return "restart etcd on the new manifest (static Pod out and back; the old one is put back if the member does not come up)"
		}
		return "restart etcd (static Pod out and back)"
	case OpStopEtcd:
		if o.Command != "" {
			return "stop etcd: $ " + o.Command + " (environment file moved under the backup directory)"
		}
		return "stop etcd (manifest moved under the backup directory)"
	case OpBackup:
		return fmt.Sprintf("move %s under the backup directory", o.Path)
	case OpAddLearner:
		return fmt.Sprintf("etcd: add %s (%s) as a learner", o.Member, o.PeerURL)
	case OpPromote:
		return fmt.Sprintf("etcd: promote %s once it caught up", o.Member)
	case OpRemoveMember:
		return fmt.Sprintf("etcd: remove member %s (%s)", o.Member, o.MemberID)
	case OpMoveLeader:
		return fmt.Sprintf("etcd: move leadership away from %s", o.Member)
	case OpSnapshot:
		return fmt.Sprintf("save a snapshot to %s", o.Path)
	case OpPushData:
		return fmt.Sprintf("push the data directory made from the snapshot to %s", o.Path)
	case OpImportImage:
		return o.importString()
	case OpSwapData:
		return fmt.Sprintf("move %s's contents under the backup directory, and %s's in their place", o.Path, o.Source)
	case OpWaitMember:
		if o.Version != "" {
			return fmt.Sprintf("wait for %s's new etcd process, reporting version %s, healthy and caught up", o.Member, o.Version)
		}
		if o.NewProcess {
			return fmt.Sprintf("wait for %s's new etcd process, healthy and caught up", o.Member)
		}
		return fmt.Sprintf("wait for %s healthy and caught up", o.Member)
	case OpWaitCluster:
		return fmt.Sprintf("wait for %v healthy", o.Members)
	}
	return string(o.Kind)
}

// ChangeKind says how a file differs from the plan.
type ChangeKind string

// Kinds of change.
const (
	Create    ChangeKind = "create"
	Update    ChangeKind = "update"
	ModeOnly  ChangeKind = "mode"
	OwnerOnly ChangeKind = "owner"
	Unchanged ChangeKind = "unchanged"
)

// Change compares one planned file with the host's copy.
type Change struct {
	File    File       `json:"-"`
	Path    string     `json:"path"`
	Kind    ChangeKind `json:"change"`
	Mode    string     `json:"mode"`
	OldMode string     `json:"oldMode,omitempty"`
	OldSHA  string     `json:"oldSHA256,omitempty"`
	NewSHA  string     `json:"sha256"`
	// Owner is uid:gid, root's; OldOwner the host copy's.
	Owner    string `json:"owner,omitempty"`
	OldOwner string `json:"oldOwner,omitempty"`
	// Cert describes old and new certificates, for .crt files that change.
	Cert *CertChange `json:"certificate,omitempty"`
}

// CertChange shows what a certificate change means.
type CertChange struct {
	Old *CertSummary `json:"old,omitempty"`
	New *CertSummary `json:"new"`
}

// CertSummary is what a reviewer checks in a certificate.
type CertSummary struct {
	Subject  string    `json:"subject"`
	Issuer   string    `json:"issuer,omitempty"`
	SANs     []string  `json:"sans,omitempty"`
	NotAfter time.Time `json:"notAfter"`
}

func (c Change) String() string {
	switch c.Kind {
	case Create:
		return fmt.Sprintf("+ %s (mode %s, sha256 %s)", c.Path, c.Mode, short(c.NewSHA))
	case Update:
		return fmt.Sprintf("~ %s (mode %s -> %s, sha256 %s -> %s%s)", c.Path, c.OldMode, c.Mode, short(c.OldSHA), short(c.NewSHA), c.ownerChange())
	case ModeOnly:
		return fmt.Sprintf("~ %s (mode %s -> %s%s, same content)", c.Path, c.OldMode, c.Mode, c.ownerChange())
	case OwnerOnly:
		return fmt.Sprintf("~ %s (owner %s -> %s, same content)", c.Path, c.OldOwner, c.Owner)
	}
	return fmt.Sprintf("  %s (unchanged)", c.Path)
}

func (c Change) ownerChange() string {
	if c.OldOwner == "" || c.OldOwner == c.Owner {
		return ""
	}
	return fmt.Sprintf(", owner %s -> %s", c.OldOwner, c.Owner)
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// Changed lists the files that must be written.
func (h *Host) Changed() []Change {
	var out []Change
	for _, c := range h.Changes {
		if c.Kind != Unchanged {
			out = append(out, c)
		}
	}
	return out
}

// PartChanged reports whether a file of the part must be written.
func (h *Host) PartChanged(p Part) bool {
	for _, c := range h.Changed() {
		if c.File.Part == p {
			return true
		}
	}
	return false
}

// Empty reports whether the plan has nothing to do.
func (p *Plan) Empty() bool {
	for _, s := range p.Stages {
		for _, h := range s.Hosts {
			if len(h.Ops) > 0 {
				return false
			}
		}
	}
	return true
}
