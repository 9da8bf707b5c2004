package ops

import "context"

// KindStopEtcd stops the host's etcd member for good.
const KindStopEtcd Kind = "stop-etcd"

// StopEtcd stops the host's member through its runtime, keeping what says
// how it starts (its manifest, or its service's environment file) under
// the backup directory. Command is the systemctl command for a member run
// by systemd.
type StopEtcd struct {
	Command    string `json:"command,omitempty"`
	Disruptive bool   `json:"disruptive,omitempty"`
	Why        string `json:"why,omitempty"`
}

func (StopEtcd) Kind() Kind   { return KindStopEtcd }
func (o StopEtcd) Meta() Meta { return Meta{Why: o.Why, Disruptive: o.Disruptive} }

func (o StopEtcd) String() string {
	if o.Command != "" {
		return "stop etcd: $ " + o.Command + " (environment file moved under the backup directory)"
	}
	return "stop etcd (manifest moved under the backup directory)"
}

func stopEtcd(ctx context.Context, e Env, _ StopEtcd) error {
	return e.Runtime().Stop(ctx, e)
}
