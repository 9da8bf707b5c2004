package ops

import (
	"context"

	"github.com/etcdadm-io/etcdadm/pkg/hostfile"
)

// KindRestartEtcd restarts the host's etcd member through its runtime.
const KindRestartEtcd Kind = "restart-etcd"

// RestartEtcd makes the host's member run as Change says: for a static
// Pod, the manifest taken out and written back (Retry, under another
// restart annotation, should the kubelet hold the first back); for a
// service, Command after the environment file is written.
type RestartEtcd struct {
	Path   string           `json:"path,omitempty"`
	Change *hostfile.Change `json:"change,omitempty"`
	Retry  *hostfile.File   `json:"-"`
	// Command is the systemctl command that restarts a member run by
	// systemd; empty for a static Pod.
	Command string `json:"command,omitempty"`
	// Rollback is what the member goes back to when it does not come up
	// healthy (an upgrade): the old manifest, or for a member run by
	// systemd the environment file, with the binaries the run replaced.
	// RollbackRetry is the old manifest under another restart annotation.
	Rollback      *hostfile.File `json:"-"`
	RollbackRetry *hostfile.File `json:"-"`
	// Binaries is set when the restart brings in new binaries (a release
	// upgrade under systemd): a rollback in a run that replaced none, the
	// run that did having been cut, puts back the copies it kept.
	Binaries   bool   `json:"binaries,omitempty"`
	Disruptive bool   `json:"disruptive,omitempty"`
	Why        string `json:"why,omitempty"`
}

func (RestartEtcd) Kind() Kind   { return KindRestartEtcd }
func (o RestartEtcd) Meta() Meta { return Meta{Why: o.Why, Disruptive: o.Disruptive} }

func (o RestartEtcd) String() string {
	switch {
	case o.Command != "" && o.Rollback != nil:
		return "restart etcd: $ " + o.Command + " (the binaries it replaced are put back if the member does not come up)"
	case o.Command != "":
		return "restart etcd: $ " + o.Command
	case o.Rollback != nil:
		return "restart etcd on the new manifest (static Pod out and back; the old one is put back if the member does not come up)"
	}
	return "restart etcd (static Pod out and back)"
}

func restartEtcd(ctx context.Context, e Env, o RestartEtcd) error {
	if err := e.Runtime().Restart(ctx, e, o); err != nil {
		return err
	}
	d := Done{RestartedEtcd: true}
	if o.Change != nil {
		d.Wrote = o.Change.File.Path
	}
	e.Report(d)
	return nil
}
