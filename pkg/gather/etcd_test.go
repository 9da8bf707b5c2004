package gather

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/etcdtest"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
)

// listening is a host's facts with or without etcd on its client port.
func listening(name string, on bool) *facts.Host {
	hf := &facts.Host{Name: name}
	if on {
		hf.Listeners = []facts.Listener{{Port: manifests.ClientPort, Process: "etcd"}}
	}
	return hf
}

// No host runs etcd: the loss of quorum is confirmed without asking etcd.
func TestEtcdNoMemberRuns(t *testing.T) {
	c := &config.Cluster{Spec: config.Spec{Hosts: []config.Host{{Name: "a", Address: "192.0.2.1"}, {Name: "b", Address: "192.0.2.2"}}}}
	var dials atomic.Int32
	cli := etcdclient.New(&tls.Config{}, func(context.Context, string) (net.Conn, error) {
		dials.Add(1)
		return nil, errors.New("connection refused")
	})
	defer cli.Close()
	e := Etcd(context.Background(), c, &Facts{Hosts: map[string]*facts.Host{"a": listening("a", false), "b": listening("b", false)}}, cli, time.Second)
	if !e.QuorumLost || !strings.HasPrefix(e.QuorumWhy, "no member runs: nothing listens on port 2379 on a, b") || dials.Load() != 0 {
		t.Errorf("lost %v (%s) after %d dials", e.QuorumLost, e.QuorumWhy, dials.Load())
	}
}

// Against etcd: a healthy cluster is read once; with two members stopped
// (their hosts' ports closed), the one left is read twice and the loss of
// quorum confirmed.
func TestEtcdConfirmsLostQuorum(t *testing.T) {
	t.Parallel()
	ec := etcdtest.Start(t, 3)
	c := &config.Cluster{Spec: config.Spec{Hosts: ec.Hosts()}}
	cli := ec.Client(t, ec.Dialer())
	f := &Facts{Hosts: map[string]*facts.Host{}}
	for _, h := range c.Spec.Hosts {
		f.Hosts[h.Name] = listening(h.Name, true)
	}
	start := time.Now()
	if e := Etcd(context.Background(), c, f, cli, time.Second); !e.HasQuorum() || e.QuorumLost || time.Since(start) > facts.NoLeaderRecheck {
		t.Fatalf("healthy: quorum %v, lost %v, in %s", e.HasQuorum(), e.QuorumLost, time.Since(start))
	}
	etcdtest.StopMembers(ec.Members[0], ec.Members[1])
	f.Hosts["m0"], f.Hosts["m1"] = listening("m0", false), listening("m1", false)
	for deadline := time.Now().Add(5 * time.Second); ec.Members[2].Etcd.Server.Leader() != 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	start = time.Now()
	e := Etcd(context.Background(), c, f, cli, time.Second)
	if !e.QuorumLost || !strings.Contains(e.QuorumWhy, "(m2 answered without one)") || time.Since(start) < facts.NoLeaderRecheck {
		t.Errorf("two of three stopped: lost %v (%s) in %s", e.QuorumLost, e.QuorumWhy, time.Since(start))
	}
	if st := e.Unanswered[manifests.ClientURL(c.Spec.Hosts[0])]; !strings.Contains(st.Error, "etcd is not running") {
		t.Errorf("m0: %+v", st)
	}
}
