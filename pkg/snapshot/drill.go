package snapshot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Served is what an etcd started on a restored snapshot serves.
type Served struct {
	Revision int64 `json:"revision"`
	Keys     int64 `json:"keys"`
}

// Drill restores the snapshot at p into a scratch data directory under
// dir, as etcd's own restore does (a single member, the revision as it
// is), starts a throwaway etcd on it in this process, on loopback ports
// nobody else uses, and reads the revision and number of keys it serves;
// then stops it.
func Drill(ctx context.Context, p, dir string) (*Served, error) {
	data := filepath.Join(dir, "drill.etcd")
	peer, err := loopbackURL()
	if err != nil {
		return nil, err
	}
	client, err := loopbackURL()
	if err != nil {
		return nil, err
	}
	err = etcdutl.NewV3(zap.NewNop()).Restore(etcdutl.RestoreConfig{
		SnapshotPath:        p,
		Name:                "drill",
		OutputDataDir:       data,
		PeerURLs:            []string{peer.String()},
		InitialCluster:      "drill=" + peer.String(),
		InitialClusterToken: "etcdadm-drill",
	})
	if err != nil {
		return nil, fmt.Errorf("restore %s into a scratch data directory: %w", p, err)
	}
	defer os.RemoveAll(data)
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = "drill", data
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = "drill=" + peer.String()
	cfg.InitialClusterToken = "etcdadm-drill"
	// Nobody else: no metrics, no other listener.
	cfg.ListenMetricsUrls = nil
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd on the restored data: %w", err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return nil, fmt.Errorf("etcd on the restored data: %w", err)
	case <-time.After(time.Minute):
		return nil, errors.New("etcd on the restored data did not start within a minute")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{client.String()}, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	resp, err := cli.Get(rctx, "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil {
		return nil, fmt.Errorf("read the restored etcd: %w", err)
	}
	return &Served{Revision: resp.Header.Revision, Keys: resp.Count}, nil
}

// loopbackURL is an http URL on a free loopback port.
func loopbackURL() (url.URL, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return url.URL{}, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return url.URL{Scheme: "http", Host: l.Addr().String()}, nil
}
