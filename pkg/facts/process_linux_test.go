//go:build linux

package facts_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

func TestProcessesNobodyListens(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr := remote.NewLocal("local", false)
	port := freePort(t)

	out, err := tr.Run(ctx, facts.ProcessScript(port), nil)
	if err != nil {
		t.Fatalf("ProcessScript(%d): %v", port, err)
	}
	if ps := facts.ParseProcesses(out); len(ps) != 0 {
		t.Errorf("ParseProcesses(%q) = %+v", out, ps)
	}
	ps, err := facts.Processes(ctx, tr, port)
	if err != nil || len(ps) != 0 {
		t.Errorf("Processes = %+v, %v", ps, err)
	}
}

func TestProcessesFindsThisTest(t *testing.T) {
	if !haveSS() {
		t.Skip("ss (iproute2) is not installed")
	}
	_, port := listen(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr := remote.NewLocal("local", false)

	ps, err := facts.Processes(ctx, tr, port)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 {
		t.Fatalf("Processes(%d) = %+v, want this test's process only", port, ps)
	}
	p := ps[0]
	if p.PID != os.Getpid() {
		t.Errorf("PID = %d, want %d", p.PID, os.Getpid())
	}
	if want := ownStart(t); p.Start != want || p.Start == 0 {
		t.Errorf("Start = %d, want %d (field 22 of /proc/self/stat)", p.Start, want)
	}
	if p.Cgroup != "" && (len(p.Cgroup) < len("/sys/fs/cgroup/") || p.Cgroup[:len("/sys/fs/cgroup/")] != "/sys/fs/cgroup/") {
		t.Errorf("Cgroup = %q", p.Cgroup)
	}
	if !p.Same(facts.Process{PID: os.Getpid(), Start: ownStart(t), Cgroup: "/elsewhere"}) {
		t.Errorf("Same ignores the cgroup")
	}

	// Another port is not this test's.
	ps2, err := facts.Processes(ctx, tr, freePort(t))
	if err != nil || len(ps2) != 0 {
		t.Errorf("another port: %+v, %v", ps2, err)
	}
}

func TestProcessScriptPort(t *testing.T) {
	for port, want := range map[int]string{0: "sport = :2379 )", 2379: "sport = :2379 )", 12379: "sport = :12379 )"} {
		if s := facts.ProcessScript(port); !strings.Contains(s, want) {
			t.Errorf("ProcessScript(%d) lacks %q:\n%s", port, want, s)
		}
	}
}

func TestParseProcesses(t *testing.T) {
	out := []byte("proc 1 2 -\n" +
		"proc 3 4 /sys/fs/cgroup/kubepods/burstable/pod1\n" +
		"junk\n" +
		"proc x 1 -\n" +
		"proc 5\n" +
		"process 6 7 -\n" +
		" proc 8 9 -\n" +
		"\n" +
		"proc 10 11")
	want := []facts.Process{{PID: 1, Start: 2}, {PID: 3, Start: 4, Cgroup: "/sys/fs/cgroup/kubepods/burstable/pod1"}, {PID: 10, Start: 11}}
	if diff := cmp.Diff(want, facts.ParseProcesses(out)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if ps := facts.ParseProcesses(nil); ps != nil {
		t.Errorf("nil output: %+v", ps)
	}
}

func TestProcessSame(t *testing.T) {
	a := facts.Process{PID: 10, Start: 100}
	for _, tc := range []struct {
		b    facts.Process
		same bool
	}{
		{facts.Process{PID: 10, Start: 100}, true},
		{facts.Process{PID: 10, Start: 100, Cgroup: "/x"}, true},
		{facts.Process{PID: 10, Start: 101}, false}, // the PID was reused
		{facts.Process{PID: 11, Start: 100}, false},
	} {
		if got := a.Same(tc.b); got != tc.same {
			t.Errorf("Same(%+v) = %v", tc.b, got)
		}
	}
}
