package ops

import (
	"context"
	"fmt"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/apiserver"
)

// KindWaitAPIServer waits for the host's kube-apiserver to be ready.
const KindWaitAPIServer Kind = "wait-apiserver"

// WaitAPIServer waits until the kube-apiserver of the manifests directory
// Dir answers /readyz: on a stacked member's host, after its member
// restarted, before the next member is touched (that kube-apiserver
// reaches its own member alone).
type WaitAPIServer struct {
	Dir string `json:"dir"`
	Why string `json:"why,omitempty"`
}

func (WaitAPIServer) Kind() Kind   { return KindWaitAPIServer }
func (o WaitAPIServer) Meta() Meta { return Meta{Why: o.Why} }
func (o WaitAPIServer) String() string {
	return "wait for the kube-apiserver to answer /readyz"
}

func waitAPIServer(ctx context.Context, e Env, o WaitAPIServer) error {
	p := apiserver.ManifestPath(o.Dir)
	data, err := e.Transport().ReadFile(ctx, p)
	if err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	m := apiserver.Parse(data)
	if m.Err != "" {
		return fmt.Errorf("%s: %s", p, m.Err)
	}
	start := time.Now()
	if err := AwaitAPIServer(ctx, e, m); err != nil {
		return err
	}
	e.Log().Host(e.Host().Name, "the kube-apiserver answers /readyz after %s", time.Since(start).Round(time.Millisecond))
	return nil
}
