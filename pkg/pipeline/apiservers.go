package pipeline

import (
	"context"
	"sync"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/apiserver"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/gather"
	"github.com/etcdadm-io/etcdadm/pkg/hosts"
)

// APIServersReady asks every kube-apiserver the facts found (on a
// control-plane host, or a stacked member's) for /readyz once, through its
// host's SSH connection: nil for a ready one, by host. It changes nothing.
func (s *Session) APIServersReady(ctx context.Context, f *gather.Facts) map[string]error {
	var targets []config.Host
	for _, h := range s.Cluster.AllHosts() {
		if hf := f.Hosts[h.Name]; hf != nil && hf.APIServer != nil && hf.APIServer.Manifest != nil && hf.APIServer.Manifest.Err == "" && s.Hosts.T[h.Name] != nil {
			targets = append(targets, h)
		}
	}
	out := map[string]error{}
	var mu sync.Mutex
	_ = hosts.ForEach(ctx, targets, s.opts.Concurrency, func(ctx context.Context, h config.Host) error {
		t := s.Hosts.T[h.Name]
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		err := readyz(ctx, f.Hosts[h.Name].APIServer.Manifest, t.ReadFile, t.Dial)
		mu.Lock()
		out[h.Name] = err
		mu.Unlock()
		return nil
	})
	return out
}

// readyz asks the kube-apiserver of m for /readyz once.
func readyz(ctx context.Context, m *apiserver.Manifest, read func(context.Context, string) ([]byte, error), dial apiserver.Dialer) error {
	ep, err := apiserver.EndpointOf(ctx, m, read)
	if err != nil {
		return err
	}
	client, err := ep.Client(dial)
	if err != nil {
		return err
	}
	return apiserver.Ready(ctx, client, ep)
}
