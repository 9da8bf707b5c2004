package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/execute"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
)

func summaryStreams() (Streams, *bytes.Buffer, *bytes.Buffer) {
	var out, errOut bytes.Buffer
	return Streams{Out: &out, ErrOut: &errOut, log: progress.New(&errOut, nil)}, &out, &errOut
}

func runTwoStages(sum *summary) error {
	sum.warn([]string{"infra2 is not in the inventory"})
	sum.add(&execute.Result{Hosts: []execute.HostResult{{Host: "infra0", Written: []string{"/etc/kubernetes/pki/etcd/ca.crt"}, RestartedEtcd: true}}})
	sum.add(&execute.Result{Hosts: []execute.HostResult{{Host: "infra0", Written: []string{"/etc/kubernetes/pki/etcd/server.crt"}}, {Host: "infra1", Ran: []string{"systemctl restart kubelet"}, RestartedKubelet: true}}})
	sum.members([]etcdclient.MemberStatus{{Name: "infra0", Healthy: true}})
	sum.printf("cluster: %d/%d members healthy", 1, 1)
	return sum.done(errors.New("stage 3 failed"))
}

// As text, the summary is stdout's; warnings are on stderr.
func TestSummaryText(t *testing.T) {
	streams, out, errOut := summaryStreams()
	if err := runTwoStages(newSummary(streams, "text")); err == nil || err.Error() != "stage 3 failed" {
		t.Fatalf("err = %v", err)
	}
	want := "infra0: 1 file(s) written, etcd restarted\ninfra0: 1 file(s) written\ninfra1: kubelet restarted\ncluster: 1/1 members healthy\n"
	if out.String() != want {
		t.Errorf("stdout %q, want %q", out.String(), want)
	}
	if errOut.String() != "warning: infra2 is not in the inventory\n" {
		t.Errorf("stderr %q", errOut.String())
	}
}

// With -o json, stdout holds one JSON document, even when the run failed,
// and the lines go to stderr.
func TestSummaryJSON(t *testing.T) {
	streams, out, errOut := summaryStreams()
	if err := runTwoStages(newSummary(streams, "json")); err == nil || err.Error() != "stage 3 failed" {
		t.Fatalf("err = %v", err)
	}
	var res execute.Result
	dec := json.NewDecoder(out)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&res); err != nil || dec.More() {
		t.Fatalf("stdout is not one JSON document (%v):\n%s", err, out.String())
	}
	if len(res.Hosts) != 2 || len(res.Hosts[0].Written) != 2 || !res.Hosts[0].RestartedEtcd || !res.Hosts[1].RestartedKubelet ||
		len(res.Members) != 1 || len(res.Warnings) != 1 {
		t.Errorf("result %+v", res)
	}
	want := "warning: infra2 is not in the inventory\ninfra0: 1 file(s) written, etcd restarted\ninfra0: 1 file(s) written\ninfra1: kubelet restarted\ncluster: 1/1 members healthy\n"
	if errOut.String() != want {
		t.Errorf("stderr %q, want %q", errOut.String(), want)
	}
}

// A run with nothing to do prints an empty list of hosts, not null.
func TestSummaryJSONNothingDone(t *testing.T) {
	streams, out, _ := summaryStreams()
	sum := newSummary(streams, "json")
	sum.printf("nothing to do")
	if err := sum.done(nil); err != nil {
		t.Fatal(err)
	}
	if out.String() != "{\n  \"hosts\": []\n}\n" {
		t.Errorf("stdout %q", out.String())
	}
}
