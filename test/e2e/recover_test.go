package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/execute"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/test/lab"
	"github.com/etcdadm-io/etcdadm/test/writer"
)

// recoverStory is a lab of four hosts: three members, and a fourth machine
// a member moves to.
type recoverStory struct {
	*story
	// keys wrote every key before quorum was lost; verified after the
	// recovery and again after the move.
	keys *writer.Writer
	// kept is the member the recovery keeps, and its ID.
	kept   string
	keptID uint64
}

// TestIntegrationRecover: a cluster that lost two of its three members for
// good (their kubelets stopped, etcd killed, data wiped) is recovered from
// the third's data: three healthy voters, every key written before the
// loss. Then a member moves to the fourth machine under a writer: it keeps
// its ID and every key, no acknowledged write is lost, and apply then has
// nothing to do.
func TestIntegrationRecover(t *testing.T) {
	requireLab(t)
	bin := buildEtcdadm(t)
	l := upLab(t, lab.Options{Hosts: 4, Dir: "/var/tmp/etcdadm-e2e-recover", NamePrefix: "rcv", Subnet: 21})
	dir := t.TempDir()
	s := &recoverStory{story: &story{bin: bin, lab: l, dir: dir, known: filepath.Join(dir, "known_hosts"), file: filepath.Join(dir, "cluster.yaml")}}
	copyFile(t, l.KnownHostsFile, s.known)
	defer func() {
		t.Logf("continuous writers:\n%s", strings.Join(s.gaps, "\n"))
	}()
	steps := []struct {
		name string
		run  func(*testing.T, *recoverStory)
	}{
		{"three members with keys; recover is refused while they have quorum and nothing changes", stepRecoverBringUp},
		{"two members lost for good: recover --from the third gives three healthy voters with every key", stepRecover},
		{"member move keeps the member's ID and every key under a writer; apply then has nothing to do", stepMove},
		{"a host a recovery left out comes back with its old data: apply adds it again", stepRejoin},
	}
	for _, st := range steps {
		if !t.Run(st.name, func(t *testing.T) { st.run(t, s) }) {
			t.Fatalf("stopping the story after %q failed", st.name)
		}
	}
}

func stepRecoverBringUp(t *testing.T, s *recoverStory) {
	members := s.lab.Hosts[:3]
	s.write(t, members, nil)
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || !strings.Contains(r.stdout, "cluster: 3/3 members healthy") {
		t.Fatalf("bring-up: %v\n%s", r.err, r.stdout)
	}
	before := snapshots(t, s.lab.Hosts)
	etcdPIDs := pids(members, "etcd")
	r := s.etcdadm(t, "recover", "-f", s.file, "--from", members[2].Name, "--yes")
	if r.err == nil || !strings.Contains(r.stderr, "the cluster has quorum (3 of 3") {
		t.Errorf("recover with quorum: %v", r.err)
	}
	unchanged(t, before, s.lab.Hosts)
	if got := pids(members, "etcd"); fmt.Sprint(got) != fmt.Sprint(etcdPIDs) {
		t.Errorf("etcd PIDs changed: %v -> %v", etcdPIDs, got)
	}
	// Every acknowledged key is noted by the writer.
	s.keys = s.startWriterOn(t, members)
	time.Sleep(3 * time.Second)
	r0 := s.keys.Stop()
	t.Logf("keys written before the loss: %s", r0)
	if r0.Acknowledged < 100 {
		t.Fatalf("only %d keys acknowledged", r0.Acknowledged)
	}
}

func stepRecover(t *testing.T, s *recoverStory) {
	ctx := context.Background()
	members := s.lab.Hosts[:3]
	kept, lost := members[2], members[:2]
	c, _, client := s.cluster(t)
	old := s.members(t)
	s.kept, s.keptID = kept.Name, old[kept.Name].ID
	// The kept member has applied every entry the leader committed.
	sts := client.Status(ctx, ops.Endpoints(c), 3*time.Second)
	var committed uint64
	for _, st := range sts {
		committed = max(committed, st.RaftIndex)
	}
	waitFor(t, kept.Name+" to apply every entry", time.Minute, func() bool {
		st := client.Status(ctx, ops.Endpoints(c)[2:], 3*time.Second)[0]
		return st.RaftAppliedIndex >= committed
	})
	kill(t, lost...)
	for _, h := range lost {
		if _, err := h.Exec(ctx, "sh", "-c", "rm -rf /var/lib/etcd/*"); err != nil {
			t.Fatal(err)
		}
	}
	s.waitNoLeader(t, 2)
	start := time.Now()
	r := s.etcdadm(t, "recover", "-f", s.file, "--from", kept.Name, "--yes")
	took := time.Since(start)
	if r.err != nil {
		for _, h := range members {
			t.Logf("%s kubelet log:\n%s", h.Name, h.LogTail("kubelet.log", 30))
		}
		t.Fatal(r.err)
	}
	t.Logf("recover of 3 members took %s", took.Round(time.Millisecond))
	if !strings.Contains(r.stderr, "raft indexes: ") || !strings.Contains(r.stderr, kept.Name+" ") {
		t.Errorf("the members' raft indexes were not told:\n%s", r.stderr)
	}
	now := s.members(t)
	if len(now) != 3 {
		t.Fatalf("members after the recovery: %v", now)
	}
	for name, m := range now {
		switch {
		case m.Learner:
			t.Errorf("%s is a learner", name)
		case name == kept.Name && m.ID != s.keptID:
			t.Errorf("%s has member ID %s, was %s: the kept member keeps its ID", name, m.HexID(), etcdclient.FormatID(s.keptID))
		case name != kept.Name && m.ID == old[name].ID:
			t.Errorf("%s kept its lost member's ID %s", name, m.HexID())
		}
	}
	if healthy, total := execute.Summary(client.Status(ctx, ops.Endpoints(c), 3*time.Second)); healthy != 3 || total != 3 {
		t.Errorf("%d/%d healthy after the recovery", healthy, total)
	}
	v, err := s.keys.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("keys written before the loss, read back after the recovery: checked %d, missing %d, wrong %d", v.Checked, len(v.Missing), len(v.Wrong))
	if !v.OK() || v.Checked == 0 {
		t.Errorf("keys lost in the recovery: missing %v, wrong %v", head(v.Missing), head(v.Wrong))
	}
	if out, err := kept.Exec(ctx, "sh", "-c", "ls /var/lib/etcdadm/backup/*"+manifestPath+" && ls /var/lib/etcdadm/pending"); err != nil || strings.Contains(string(out), "recover") || strings.Contains(string(out), "rejoin") {
		t.Errorf("%s: its manifest must be under the backup directory and no record left: %v\n%s", kept.Name, err, out)
	}
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("apply after the recovery: %v\n%s", r.err, r.stdout)
	}
}

func stepMove(t *testing.T, s *recoverStory) {
	ctx := context.Background()
	oldHost, newHost := s.lab.Hosts[2], s.lab.Hosts[3]
	stay := s.lab.Hosts[:2]
	name := s.kept
	before := s.members(t)[name]
	moved := func(inv string) string {
		return strings.Replace(inv, fmt.Sprintf("{name: %s, address: %s}", name, oldHost.Address), fmt.Sprintf("{name: %s, address: %s}", name, newHost.Address), 1)
	}
	s.write(t, s.lab.Hosts[:3], moved)
	// apply names member move, and changes nothing (but for the lock it
	// takes on the new host).
	snaps := snapshots(t, s.lab.Hosts[:3])
	r := s.etcdadm(t, "apply", "-f", s.file)
	if r.err == nil || !strings.Contains(r.stderr, "etcdadm member move "+name) {
		t.Errorf("apply with %s's address moved: %v", name, r.err)
	}
	unchanged(t, snaps, s.lab.Hosts[:3])
	untouched(t, []*lab.Host{newHost})
	stayPIDs := pids(stay, "etcd")
	w := s.startWriterOn(t, stay)
	start := time.Now()
	r = s.etcdadm(t, "member", "move", name, "-f", s.file, "--yes")
	took := time.Since(start)
	rep := s.stopWriter(t, w)
	if r.err != nil {
		t.Logf("%s kubelet log:\n%s", newHost.Name, newHost.LogTail("kubelet.log", 30))
		t.Fatal(r.err)
	}
	t.Logf("the move took %s; the writer's longest stall %s", took.Round(time.Millisecond), rep.LongestGap.Round(time.Millisecond))
	if !strings.Contains(r.stderr, "sha256") || !strings.Contains(r.stderr, "on both hosts") {
		t.Errorf("no checked stream in the progress:\n%s", r.stderr)
	}
	after := s.members(t)
	m := after[name]
	if len(after) != 3 || m.ID != before.ID || m.Learner || !m.HasPeerURL("https://"+newHost.Address+":2380") {
		t.Errorf("%s after the move: %+v (was %s); members %v", name, m, before.HexID(), after)
	}
	v, err := s.keys.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("keys written before the loss, read back after the move: checked %d, missing %d", v.Checked, len(v.Missing))
	if !v.OK() {
		t.Errorf("keys lost in the move: missing %v, wrong %v", head(v.Missing), head(v.Wrong))
	}
	if len(newHost.PIDs("etcd")) == 0 || len(oldHost.PIDs("etcd")) > 0 {
		t.Errorf("etcd on the new host %v, on the old host %v", newHost.PIDs("etcd"), oldHost.PIDs("etcd"))
	}
	if out, err := oldHost.Exec(ctx, "sh", "-c", "ls -d /var/lib/etcdadm/backup/*/var/lib/etcd/member/wal /var/lib/etcdadm/backup/*"+manifestPath); err != nil {
		t.Errorf("%s: its data and manifest must be under the backup directory: %v\n%s", oldHost.Name, err, out)
	}
	if out, err := oldHost.Exec(ctx, "sh", "-c", "ls -A /var/lib/etcd; ls /etc/kubernetes/pki/etcd"); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("%s: etcd's files are left: %v\n%s", oldHost.Name, err, out)
	}
	if got := pids(stay, "etcd"); fmt.Sprint(got) != fmt.Sprint(stayPIDs) {
		t.Errorf("the members that stayed restarted: %v -> %v", stayPIDs, got)
	}
	hosts := append(append([]*lab.Host{}, stay...), newHost)
	etcdPIDs := pids(hosts, "etcd")
	r = s.etcdadm(t, "apply", "-f", s.file)
	if r.err != nil || !strings.Contains(r.stdout, "nothing to do") || strings.Contains(r.stderr, "wrote ") {
		t.Errorf("apply after the move: %v\n%s\n%s", r.err, r.stdout, r.stderr)
	}
	if got := pids(hosts, "etcd"); fmt.Sprint(got) != fmt.Sprint(etcdPIDs) {
		t.Errorf("apply after the move restarted etcd: %v -> %v", etcdPIDs, got)
	}
}

// kill stops the hosts' members for good: their kubelets stopped, etcd
// killed; their data stays.
func kill(t *testing.T, hosts ...*lab.Host) {
	t.Helper()
	for _, h := range hosts {
		if _, err := h.Exec(context.Background(), "systemctl", "stop", "kubelet"); err != nil {
			t.Fatal(err)
		}
		for _, pid := range h.PIDs("etcd") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, h := range hosts {
		waitFor(t, "etcd to stop on "+h.Name, time.Minute, func() bool { return len(h.PIDs("etcd")) == 0 })
	}
}

// waitNoLeader waits until the inventory's i-th member, alone, answers
// without a leader.
func (s *recoverStory) waitNoLeader(t *testing.T, i int) {
	t.Helper()
	c, _, client := s.cluster(t)
	waitFor(t, c.Spec.Hosts[i].Name+" to have no leader", time.Minute, func() bool {
		st := client.Status(context.Background(), ops.Endpoints(c)[i:i+1], 3*time.Second)[0]
		return st.Answered() && st.LeaderID == 0
	})
}

// stepRejoin loses quorum again, with one lost host unreachable: recover
// leaves it out and says how it comes back; once it is back, its old
// member crash-looping on its old data, apply moves that data aside and
// adds it again.
func stepRejoin(t *testing.T, s *recoverStory) {
	ctx := context.Background()
	back, other := s.lab.Hosts[1], s.lab.Hosts[0]
	old := s.members(t)
	kill(t, other, back)
	if err := back.StopSSHD(ctx); err != nil {
		t.Fatal(err)
	}
	s.waitNoLeader(t, 2)
	r := s.etcdadm(t, "recover", "-f", s.file, "--yes", "--connect-timeout", "3s")
	if err := back.StartSSHD(ctx); err != nil {
		t.Fatal(err)
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !strings.Contains(r.stderr, back.Name+" cannot be reached: it is left out") || !strings.Contains(r.stderr, "`etcdadm apply`") {
		t.Errorf("no warning saying how %s comes back:\n%s", back.Name, r.stderr)
	}
	if ms := s.members(t); len(ms) != 2 || ms[s.kept].ID != old[s.kept].ID {
		t.Fatalf("members after the recovery without %s: %v", back.Name, ms)
	}
	// It comes back: its kubelet starts its old member, which the others refuse.
	if _, err := back.Exec(ctx, "systemctl", "start", "kubelet"); err != nil {
		t.Fatal(err)
	}
	r = s.etcdadm(t, "apply", "-f", s.file)
	if r.err != nil {
		t.Logf("%s kubelet log:\n%s", back.Name, back.LogTail("kubelet.log", 30))
		t.Fatal(r.err)
	}
	if !strings.Contains(r.stdout, "cluster: 3/3 members healthy") || !strings.Contains(r.stderr, "added to etcd as learner") {
		t.Errorf("apply with %s back:\n%s\n%s", back.Name, r.stdout, r.stderr)
	}
	now := s.members(t)
	if m := now[back.Name]; len(now) != 3 || m.ID == old[back.Name].ID || m.Learner {
		t.Errorf("%s after apply: %+v (was %s); members %v", back.Name, m, old[back.Name].HexID(), now)
	}
	if out, err := back.Exec(ctx, "sh", "-c", "ls -d /var/lib/etcdadm/backup/*/var/lib/etcd/member/wal"); err != nil {
		t.Errorf("%s: its old data must be under the backup directory: %v\n%s", back.Name, err, out)
	}
	v, err := s.keys.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK() {
		t.Errorf("keys lost: missing %v, wrong %v", head(v.Missing), head(v.Wrong))
	}
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("apply again: %v\n%s", r.err, r.stdout)
	}
}

// startWriterOn writes continuously to the members of hosts only.
func (s *recoverStory) startWriterOn(t *testing.T, hosts []*lab.Host) *writer.Writer {
	t.Helper()
	var endpoints []string
	for _, h := range hosts {
		endpoints = append(endpoints, manifests.ClientURL(config.Host{Name: h.Name, Address: h.Address}))
	}
	return s.startWriterTo(t, endpoints)
}
