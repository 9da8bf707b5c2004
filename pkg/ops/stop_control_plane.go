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
)

// KindStopControlPlane stops the control plane's static Pods on the host.
const KindStopControlPlane Kind = "stop-control-plane"

// StopControlPlane moves the static Pods Names of the manifests directory
// Dir aside, each to its dotted held name (facts.HeldPath), which the
// kubelet does not read, and waits until their processes and Pods are
// gone. What is held already stays held: a cut run's stop goes on.
type StopControlPlane struct {
	Dir   string   `json:"dir"`
	Names []string `json:"names"`
	Why   string   `json:"why,omitempty"`
}

func (StopControlPlane) Kind() Kind   { return KindStopControlPlane }
func (o StopControlPlane) Meta() Meta { return Meta{Why: o.Why} }
func (o StopControlPlane) String() string {
	return fmt.Sprintf("stop %s (static Pods moved aside in %s), and wait until they are gone", strings.Join(o.Names, ", "), o.Dir)
}

// componentPorts are the ports kubeadm's control plane listens on by
// default, which a manifest's --secure-port overrides.
var componentPorts = map[string]int{
	apiserver.ManifestName:              apiserver.DefaultPort,
	apiserver.ControllerManagerManifest: 10257,
	apiserver.SchedulerManifest:         10259,
}

// componentPort is the port the static Pod data listens on.
func componentPort(name string, data []byte) int {
	for _, l := range strings.Split(string(data), "\n") {
		if _, v, ok := strings.Cut(l, "--secure-port="); ok {
			var p int
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d", &p); err == nil && p > 0 {
				return p
			}
		}
	}
	return componentPorts[name]
}

func stopControlPlane(ctx context.Context, e Env, o StopControlPlane) error {
	t, q := e.Transport(), shell.Quote
	type stopped struct {
		name   string
		port   int
		before []facts.Process
	}
	var gone []stopped
	start := time.Now()
	for _, name := range o.Names {
		p := path.Join(o.Dir, name)
		data, err := t.ReadFile(ctx, p)
		if err != nil {
			// Held already, or never there.
			continue
		}
		port := componentPort(name, data)
		before, err := facts.Processes(ctx, t, port)
		if err != nil {
			return err
		}
		if _, err := t.Run(ctx, fmt.Sprintf("mv -f %s %s", q(p), q(facts.HeldPath(o.Dir, name))), nil); err != nil {
			return fmt.Errorf("move %s aside: %w", p, err)
		}
		e.Log().Host(e.Host().Name, "moved %s aside to %s", p, facts.HeldPath(o.Dir, name))
		gone = append(gone, stopped{name, port, before})
	}
	for _, s := range gone {
		if err := WaitGoneOn(ctx, e, s.port, s.before, true); err != nil {
			return fmt.Errorf("stop %s: %w", s.name, err)
		}
	}
	if len(gone) > 0 {
		e.Log().Host(e.Host().Name, "the control plane is stopped (%s gone after %s)", strings.Join(names(gone, func(s stopped) string { return s.name }), ", "), time.Since(start).Round(time.Millisecond))
		e.Report(Done{Ran: "stop " + strings.Join(o.Names, ", ")})
	}
	return nil
}

func names[T any](xs []T, f func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}
