package ops

import (
	"context"
	"fmt"
	"strconv"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
)

// Endpoints are the inventory's members for the etcd client.
func Endpoints(c *config.Cluster) []etcdclient.Endpoint {
	out := make([]etcdclient.Endpoint, len(c.Spec.Hosts))
	for i, h := range c.Spec.Hosts {
		out[i] = etcdclient.Endpoint{Name: h.Name, ClientURL: manifests.ClientURL(h)}
	}
	return out
}

// ClientURLs are the inventory's members' client URLs.
func ClientURLs(c *config.Cluster) []string {
	var urls []string
	for _, e := range Endpoints(c) {
		urls = append(urls, e.ClientURL)
	}
	return urls
}

// EndpointsOf are the inventory's members of the given names, in
// inventory order.
func EndpointsOf(c *config.Cluster, names []string) []etcdclient.Endpoint {
	var out []etcdclient.Endpoint
	for _, e := range Endpoints(c) {
		for _, n := range names {
			if e.Name == n {
				out = append(out, e)
			}
		}
	}
	return out
}

// voters are the client URLs of the voting members, from a fresh member
// list, but the one with peer URL exclude; and the list.
func voters(ctx context.Context, e Env, exclude string) ([]string, []etcdclient.Member, error) {
	list, err := e.Etcd().MemberList(ctx, ClientURLs(e.Cluster()), etcdclient.DefaultCallTimeout)
	if err != nil {
		return nil, nil, err
	}
	var urls []string
	for _, m := range list.Members {
		if m.Learner || len(m.ClientURLs) == 0 || m.HasPeerURL(exclude) {
			continue
		}
		urls = append(urls, m.ClientURLs...)
	}
	return urls, list.Members, nil
}

// memberWithPeer is the member of a fresh list with peer URL u.
func memberWithPeer(ctx context.Context, e Env, u string) (etcdclient.Member, bool, error) {
	list, err := e.Etcd().MemberList(ctx, ClientURLs(e.Cluster()), etcdclient.DefaultCallTimeout)
	if err != nil {
		return etcdclient.Member{}, false, err
	}
	for _, m := range list.Members {
		if m.HasPeerURL(u) {
			return m, true, nil
		}
	}
	return etcdclient.Member{}, false, nil
}

// DefaultQuota is etcd's --quota-backend-bytes when none is set: 2 GiB.
const DefaultQuota = 2 << 30

// Quota is a member's database quota: what it reports (etcd 3.6 and
// later), else the inventory's quota-backend-bytes, else etcd's default.
func Quota(c *config.Cluster, st etcdclient.MemberStatus) int64 {
	if st.DBSizeQuota > 0 {
		return st.DBSizeQuota
	}
	if q, err := strconv.ParseInt(c.Spec.Etcd.ExtraArgs["quota-backend-bytes"], 10, 64); err == nil && q > 0 {
		return q
	}
	return DefaultQuota
}

// Bytes prints a size for people, in binary units as quotas are set.
func Bytes(n int64) string {
	switch {
	case n < 0:
		return "-" + Bytes(-n)
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
}
