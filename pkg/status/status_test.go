package status

import (
	"bytes"
	"encoding/json"
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

// Each member's alarms are in its row and its JSON; an alarm whose member
// is unknown (no quorum to read the alarm list) is told below the table.
func TestStatusShowsAlarms(t *testing.T) {
	hosts := []config.Host{{Name: "a", Address: "192.0.2.1"}, {Name: "b", Address: "192.0.2.2"}}
	c := &config.Cluster{Spec: config.Spec{Hosts: hosts}}
	var members []etcdclient.Member
	e := &facts.Cluster{Status: map[uint64]etcdclient.MemberStatus{}, Unanswered: map[string]etcdclient.MemberStatus{},
		Alarms: []etcdclient.Alarm{{MemberID: 2, Member: "b", Type: "NOSPACE"}}}
	for i, h := range hosts {
		id := uint64(i + 1)
		members = append(members, etcdclient.Member{ID: id, Name: h.Name, PeerURLs: []string{manifests.PeerURL(h)}, ClientURLs: []string{manifests.ClientURL(h)}})
		e.Status[id] = etcdclient.MemberStatus{MemberID: id, LeaderID: 1, Leader: id == 1, Healthy: true, Alarms: []string{"NOSPACE"}, DBSize: 16 << 20}
	}
	e.Members = members
	r := Status(c, &gather.Facts{Hosts: map[string]*facts.Host{}, Etcd: e}, nil, time.Now())
	var table bytes.Buffer
	if err := WriteStatusTable(&table, r); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(table.String(), "\n")
	if !strings.Contains(lines[0], "DB SIZE  ALARMS") || strings.Contains(lines[1], "NOSPACE") || !strings.Contains(lines[2], "16.8 MB  NOSPACE") {
		t.Errorf("table:\n%s", table.String())
	}
	if !strings.Contains(table.String(), "alarm NOSPACE raised for b: a database reached its quota") {
		t.Errorf("no line on the alarm:\n%s", table.String())
	}
	var js bytes.Buffer
	if err := WriteStatusJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Members []struct {
			Name   string   `json:"name"`
			Alarms []string `json:"alarms"`
		} `json:"members"`
		Alarms []etcdclient.Alarm `json:"alarms"`
	}
	if err := json.Unmarshal(js.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Members) != 2 || doc.Members[0].Alarms == nil || len(doc.Members[0].Alarms) != 0 || strings.Join(doc.Members[1].Alarms, ",") != "NOSPACE" ||
		len(doc.Alarms) != 1 || doc.Alarms[0].Member != "b" || !strings.Contains(js.String(), `"alarms": []`) {
		t.Errorf("JSON:\n%s", js.String())
	}

	// Without quorum: the alarm is known from the statuses, not its member.
	e.Alarms = []etcdclient.Alarm{{Type: "NOSPACE"}}
	e.QuorumLost, e.QuorumWhy = true, "no member named a leader in two reads 3s apart"
	table.Reset()
	if err := WriteStatusTable(&table, Status(c, &gather.Facts{Hosts: map[string]*facts.Host{}, Etcd: e}, nil, time.Now())); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"alarm NOSPACE raised (for which member cannot be read without quorum)", "quorum lost: no member named a leader"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}
