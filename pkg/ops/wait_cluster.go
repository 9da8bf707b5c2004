package ops

import (
	"context"
	"fmt"
)

// KindWaitCluster waits until the named members are healthy.
const KindWaitCluster Kind = "wait-cluster"

// WaitCluster waits until Members are healthy.
type WaitCluster struct {
	Members []string `json:"members"`
	Why     string   `json:"why,omitempty"`
}

func (WaitCluster) Kind() Kind       { return KindWaitCluster }
func (o WaitCluster) Meta() Meta     { return Meta{Why: o.Why} }
func (o WaitCluster) String() string { return fmt.Sprintf("wait for %v healthy", o.Members) }

func waitCluster(ctx context.Context, e Env, o WaitCluster) error {
	e.Log().Host(e.Host().Name, "waiting for %v to be healthy", o.Members)
	_, err := e.Etcd().WaitHealthy(ctx, EndpointsOf(e.Cluster(), o.Members), e.HealthTimeout(), nil)
	return err
}
