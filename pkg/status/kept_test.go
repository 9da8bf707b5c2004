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
