package ops

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/apiserver"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/hostfile"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// KindStartControlPlane starts the control plane's static Pods a stop held.
const KindStartControlPlane Kind = "start-control-plane"

// StartControlPlane puts the static Pods Names of Dir back from their held
// names, then waits until the kube-apiserver answers /readyz. APIServer,
// when set, is written instead of the held kube-apiserver Pod (its
// --etcd-servers changed). A Pod someone wrote meanwhile under its own
// name is kept, and the held one goes under the backup directory.
type StartControlPlane struct {
	Dir       string         `json:"dir"`
	Names     []string       `json:"names"`
	APIServer *hostfile.File `json:"apiserver,omitempty"`
	Why       string         `json:"why,omitempty"`
}

func (StartControlPlane) Kind() Kind   { return KindStartControlPlane }
func (o StartControlPlane) Meta() Meta { return Meta{Why: o.Why} }
func (o StartControlPlane) String() string {
	s := fmt.Sprintf("start %s again (static Pods put back in %s), and wait for the kube-apiserver's /readyz", strings.Join(o.Names, ", "), o.Dir)
	if o.APIServer != nil {
		s += fmt.Sprintf(" with --etcd-servers=%s", strings.Join(apiserver.Parse(o.APIServer.Data).EtcdServers, ","))
	}
	return s
}

func startControlPlane(ctx context.Context, e Env, o StartControlPlane) error {
	t, q := e.Transport(), shell.Quote
	start := time.Now()
	for _, name := range o.Names {
		p, held := path.Join(o.Dir, name), facts.HeldPath(o.Dir, name)
		if name == apiserver.ManifestName && o.APIServer != nil {
			if _, err := t.WriteFile(ctx, remote.File{Path: p, Mode: o.APIServer.Mode, Data: o.APIServer.Data}, ""); err != nil {
				return fmt.Errorf("write %s: %w", p, err)
			}
			if _, err := t.Run(ctx, "rm -f "+q(held), nil); err != nil {
				return fmt.Errorf("remove %s: %w", held, err)
			}
			continue
		}
		script := fmt.Sprintf(`held=%s; p=%s; bk=%s
[ -f "$held" ] || exit 0
if [ -e "$p" ]; then mkdir -p "$(dirname "$bk")" && mv -f "$held" "$bk"; else mv "$held" "$p"; fi`, q(held), q(p), q(path.Join(e.BackupDir(), held)))
		if _, err := t.Run(ctx, script, nil); err != nil {
			return fmt.Errorf("put %s back: %w", p, err)
		}
	}
	e.Log().Host(e.Host().Name, "put back %s", strings.Join(o.Names, ", "))
	e.Report(Done{Ran: "start " + strings.Join(o.Names, ", ")})
	data, err := t.ReadFile(ctx, apiserver.ManifestPath(o.Dir))
	if err != nil {
		// No kube-apiserver on this host to wait for.
		return nil
	}
	m := apiserver.Parse(data)
	if m.Err != "" {
		return fmt.Errorf("%s: %s", apiserver.ManifestPath(o.Dir), m.Err)
	}
	if err := AwaitAPIServer(ctx, e, m); err != nil {
		return err
	}
	e.Log().Host(e.Host().Name, "the kube-apiserver answers /readyz %s after its start", time.Since(start).Round(time.Millisecond))
	return nil
}
