package status

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/gather"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
)

// The status names every member and every inventory host: voters,
// learners, members the inventory does not know, hosts that are no member.
func TestStatusShowsEveryMemberAndHost(t *testing.T) {
	hosts := []config.Host{{Name: "a", Address: "192.0.2.1"}, {Name: "b", Address: "192.0.2.2"}, {Name: "c", Address: "192.0.2.3"}}
	c := &config.Cluster{Spec: config.Spec{Hosts: hosts}}
	member := func(id uint64, name string, h config.Host, learner bool) etcdclient.Member {
		return etcdclient.Member{ID: id, Name: name, PeerURLs: []string{manifests.PeerURL(h)}, ClientURLs: []string{manifests.ClientURL(h)}, Learner: learner}
	}
	ghost := config.Host{Name: "ghost", Address: "192.0.2.9"}
	e := &facts.Cluster{
		Members: []etcdclient.Member{member(9, "ghost", ghost, false), member(2, "b", hosts[1], true), member(1, "a", hosts[0], false)},
		Status: map[uint64]etcdclient.MemberStatus{
			1: {MemberID: 1, LeaderID: 1, Leader: true, Healthy: true, Version: "3.7.0"},
			2: {MemberID: 2, LeaderID: 1, Learner: true, Healthy: true, Version: "3.7.0"},
		},
		Unanswered: map[string]etcdclient.MemberStatus{manifests.ClientURL(ghost): {Error: "connection refused"}},
	}
	f := &gather.Facts{Hosts: map[string]*facts.Host{"a": {Name: "a", Files: map[string]facts.FileState{}}}, Etcd: e}
	r := Status(c, f, map[string]error{"c": errString("no route to host")}, time.Now())
	var got []string
	for _, m := range r.Members {
		got = append(got, m.Name+":"+string(m.Membership))
	}
	if want := "a:voter b:learner c:not a member ghost:not in inventory"; strings.Join(got, " ") != want {
		t.Errorf("rows %v, want %s", got, want)
	}
	if !r.Members[0].Leader || !r.Members[0].Healthy || r.Members[0].ID != "1" {
		t.Errorf("a: %+v", r.Members[0])
	}
	if r.Members[2].HostError != "no route to host" || r.Members[3].Error != "connection refused" {
		t.Errorf("c: %+v, ghost: %+v", r.Members[2], r.Members[3])
	}
	var out bytes.Buffer
	if err := WriteStatusTable(&out, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"learner", "not in inventory", "not a member", "missing etcd-ca"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }
