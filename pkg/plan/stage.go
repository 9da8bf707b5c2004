package plan

import (
	"encoding/json"

	"github.com/etcdadm-io/etcdadm/pkg/hostfile"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
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
	// QuorumLost, for an all-at-once stage that starts several members
	// because the cluster has no quorum, says what the plan saw. The
	// executor asks the members again right before the stage, and stops
	// with nothing started if one names a leader.
	QuorumLost string `json:"quorumLost,omitempty"`
}

// HostOps are the operations on one host, in order.
type HostOps struct {
	Host string `json:"host"`
	Ops  []Op   `json:"ops"`
}

// Op is one operation of a stage; see package ops for the kinds.
type Op = ops.Op

// LocalHost is the name a stage gives this machine, for the operations that
// run here (a snapshot).
const LocalHost = ops.LocalHost

// MarshalJSON writes each operation with its kind under "op".
func (h HostOps) MarshalJSON() ([]byte, error) {
	type hostOps struct {
		Host string            `json:"host"`
		Ops  []json.RawMessage `json:"ops"`
	}
	out := hostOps{Host: h.Host, Ops: []json.RawMessage{}}
	for _, op := range h.Ops {
		b, err := json.Marshal(op)
		if err != nil {
			return nil, err
		}
		fields := map[string]json.RawMessage{}
		if err := json.Unmarshal(b, &fields); err != nil {
			return nil, err
		}
		kind, _ := json.Marshal(op.Kind())
		fields["op"] = kind
		if b, err = json.Marshal(fields); err != nil {
			return nil, err
		}
		out.Ops = append(out.Ops, b)
	}
	return json.Marshal(out)
}

// File, Change and the rest are hostfile's.
type (
	File        = hostfile.File
	Source      = hostfile.Source
	Dir         = hostfile.Dir
	Part        = hostfile.Part
	Change      = hostfile.Change
	ChangeKind  = hostfile.ChangeKind
	CertChange  = hostfile.CertChange
	CertSummary = hostfile.CertSummary
	DirChange   = hostfile.DirChange
)

// The parts and kinds of change, as hostfile names them.
const (
	PartCerts         = hostfile.PartCerts
	PartKubeadmConfig = hostfile.PartKubeadmConfig
	PartKubelet       = hostfile.PartKubelet
	PartManifests     = hostfile.PartManifests

	Create    = hostfile.Create
	Update    = hostfile.Update
	ModeOnly  = hostfile.ModeOnly
	OwnerOnly = hostfile.OwnerOnly
	Unchanged = hostfile.Unchanged
)

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
