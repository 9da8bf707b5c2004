package status

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/gather"
)

// The backups a host keeps for good (a restore's, a recovery's) are in its
// JSON.
func TestStatusListsKeptBackups(t *testing.T) {
	c := &config.Cluster{Spec: config.Spec{Hosts: []config.Host{{Name: "a", Address: "192.0.2.1"}}}}
	kept := facts.Kept{Dir: "/var/lib/etcdadm/backup/20300101T000000Z", What: facts.KeptPreRestore, Path: "/var/lib/etcd", Ref: "restore-abc-tok"}
	f := &gather.Facts{Hosts: map[string]*facts.Host{"a": {Name: "a", Files: map[string]facts.FileState{}, Kept: []facts.Kept{kept}}}, Etcd: &facts.Cluster{}}
	r := Status(c, f, nil, time.Now())
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := `"kept":[{"dir":"/var/lib/etcdadm/backup/20300101T000000Z","what":"pre-restore","path":"/var/lib/etcd","ref":"restore-abc-tok"}]`; !strings.Contains(string(b), want) {
		t.Errorf("JSON lacks %s:\n%s", want, b)
	}
}

// The work a cut run left on a host is in its JSON, and the table says,
// after the members, what each marker is and which command finishes it.
func TestStatusSaysWhatACutRunLeft(t *testing.T) {
	c := &config.Cluster{Spec: config.Spec{Hosts: []config.Host{{Name: "a", Address: "192.0.2.1"}, {Name: "b", Address: "192.0.2.2"}}}}
	f := &gather.Facts{Hosts: map[string]*facts.Host{
		"a": {Name: "a", Files: map[string]facts.FileState{}, Pending: []string{"restore-abc-tok", facts.PendingRejoin + "b"}},
		"b": {Name: "b", Files: map[string]facts.FileState{}},
	}, Etcd: &facts.Cluster{}}
	r := Status(c, f, nil, time.Now())
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := `"pending":["restore-abc-tok","rejoin-b"]`; !strings.Contains(string(b), want) || strings.Count(string(b), `"pending"`) != 1 {
		t.Errorf("JSON lacks %s on a alone:\n%s", want, b)
	}
	var out strings.Builder
	if err := WriteStatusTable(&out, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"a: an unfinished snapshot restore (restore-abc-tok): the same `etcdadm snapshot restore FILE --yes` again finishes it",
		"a: a recovery dropped b's member: `etcdadm apply` adds it again",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "\nb: ") {
		t.Errorf("b has no pending work:\n%s", out.String())
	}
}
