package ops

import "context"

// KindRun runs a command on the host.
const KindRun Kind = "run"

// Commands the plans run on hosts.
const (
	CmdDaemonReload = "systemctl daemon-reload"
	CmdRestartKube  = "systemctl restart kubelet"
	CmdStartKube    = "systemctl start kubelet"
	CmdStopKube     = "systemctl stop kubelet"
)

// Run runs Command with sh as root; Path, when set, is what it changes.
type Run struct {
	Command string `json:"command"`
	Path    string `json:"path,omitempty"`
	Why     string `json:"why,omitempty"`
}

func (Run) Kind() Kind       { return KindRun }
func (o Run) Meta() Meta     { return Meta{Why: o.Why} }
func (o Run) String() string { return "$ " + o.Command }

func run(ctx context.Context, e Env, o Run) error {
	if _, err := e.Transport().Run(ctx, o.Command, nil); err != nil {
		return err
	}
	e.Log().Host(e.Host().Name, "ran %s", o.Command)
	e.Report(Done{Ran: o.Command, RestartedKubelet: o.Command == CmdRestartKube || o.Command == CmdStartKube})
	return nil
}
