package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/adopt"
	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/hosts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
)

// AdoptOptions say how to adopt a cluster.
type AdoptOptions struct {
	Options
	// Confirm is asked, with what was read, before the PKI is written; an
	// error stops there with nothing written. nil agrees.
	Confirm func(*Adoption) error
	// DryRun writes nothing: the adoption is only read and compared.
	DryRun bool
}

// Adoption is a running cluster read for etcdadm to take over.
type Adoption struct {
	*adopt.Result
	// Differences are what runs against what the given inventory would
	// write, as unified diffs; "" when it writes what runs.
	Differences string
	// Members are etcd's member list.
	Members []etcdclient.Member
	// Saved is set once spec.pki.dir holds the hosts' PKI.
	Saved bool
}

// Adopt reads every host of c (its etcd CA and key, the members' leaves,
// how etcd runs) and etcd's member list, refuses what etcdadm could not
// run, and otherwise writes the hosts' PKI, unchanged, into spec.pki.dir.
// No host is written to; nothing is written here before every check passed.
func Adopt(ctx context.Context, c *config.Cluster, o AdoptOptions) (*Adoption, error) {
	if o.Log == nil {
		return nil, fmt.Errorf("adopt needs a log")
	}
	release, err := certs.Lock(c.PKIDir())
	if err != nil {
		return nil, err
	}
	defer release()
	hs, err := hosts.Connect(ctx, c.AllHosts(), o.Connect, o.Concurrency, o.Log)
	if err != nil {
		return nil, err
	}
	defer hs.Close()
	read, err := readHosts(ctx, c, hs, o.Concurrency)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	res, err := adopt.Analyze(c, read, now)
	if err != nil {
		return nil, err
	}
	pki, err := certs.Adopted(res.Inventory, res.CA, res.Leaves, now)
	if err != nil {
		return nil, err
	}
	client, err := etcdclient.FromPKI(pki, res.Inventory.Spec.Hosts[0].Name, hosts.TunnelDialer(hs))
	if err != nil {
		return nil, err
	}
	defer client.Close()
	var urls []string
	for _, h := range res.Inventory.Spec.Hosts {
		urls = append(urls, manifests.ClientURL(h))
	}
	timeout := o.EtcdTimeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	list, err := client.MemberList(ctx, urls, timeout)
	if err != nil {
		return nil, fmt.Errorf("ask etcd for its members with the hosts' healthcheck-client certificate: %w", err)
	}
	if err := adopt.CheckMembers(res.Inventory, list.Members); err != nil {
		return nil, err
	}
	a := &Adoption{Result: res, Members: list.Members}
	if a.Differences, err = adopt.Differences(c, res, read); err != nil {
		return nil, err
	}
	if o.DryRun {
		return a, nil
	}
	if o.Confirm != nil {
		if err := o.Confirm(a); err != nil {
			return a, err
		}
	}
	if err := pki.Save(); err != nil {
		return a, err
	}
	a.Saved = true
	return a, nil
}

// readHosts reads adopt.Paths on every host (the control-plane hosts'
// too), one file at a time; a missing file is left out.
func readHosts(ctx context.Context, c *config.Cluster, hs *hosts.Hosts, concurrency int) ([]adopt.Host, error) {
	var mu sync.Mutex
	got := map[string]adopt.Host{}
	err := hosts.ForEach(ctx, c.AllHosts(), concurrency, func(ctx context.Context, h config.Host) error {
		t := hs.T[h.Name]
		files := map[string][]byte{}
		for _, p := range adopt.Paths(c) {
			b, err := t.ReadFile(ctx, p)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", p, err)
			}
			files[p] = b
		}
		mu.Lock()
		got[h.Name] = adopt.Host{Name: h.Name, Files: files}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, hosts.Named(err, "reading the hosts")
	}
	out := make([]adopt.Host, 0, len(got))
	for _, h := range c.AllHosts() {
		out = append(out, got[h.Name])
	}
	return out, nil
}
