package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/test/lab"
)

// sickStory is a lab of three members made sick on purpose: a database
// filled to its quota, then one defragmented under a writer.
type sickStory struct {
	*story
	members []*lab.Host
	// stalls are the longest write stalls measured, for the summary.
	stalls []string
}

// TestIntegrationSick: a cluster whose database is full (NOSPACE) is a
// healthy quorum with an alarm, not a cluster without quorum: status shows
// the alarm, disarm is refused while over quota, raising the quota rolls
// the members one at a time (two of three etcd processes alive
// throughout), then disarm lets writes in again. Then, under a continuous
// writer, defrag halves every member's database, the leader last and
// never while it leads, with no stall over 2s and no acknowledged write
// lost; a plain `etcdctl defrag` of the leader is measured for comparison.
func TestIntegrationSick(t *testing.T) {
	requireLab(t)
	bin := buildEtcdadm(t)
	l := upLab(t, lab.Options{Hosts: 3, Dir: "/var/tmp/etcdadm-e2e-sick", NamePrefix: "sck", Subnet: 20})
	dir := t.TempDir()
	s := &sickStory{
		story:   &story{bin: bin, lab: l, dir: dir, known: filepath.Join(dir, "known_hosts"), file: filepath.Join(dir, "cluster.yaml")},
		members: l.Hosts,
	}
	copyFile(t, l.KnownHostsFile, s.known)
	defer func() {
		t.Logf("continuous writers:\n%s\nlongest write stalls:\n%s", strings.Join(s.gaps, "\n"), strings.Join(s.stalls, "\n"))
	}()
	steps := []struct {
		name string
		run  func(*testing.T, *sickStory)
	}{
		{"a cluster with a 16 MiB quota filled until NOSPACE: status and alarm list show the alarm, disarm is refused over quota", stepNoSpace},
		{"raising the quota restarts the members one at a time, 2 of 3 etcd processes alive throughout; disarm then lets writes in", stepRaiseQuota},
		{"defrag under a writer halves every database, the leader last and never while it leads, no stall over 2s", stepDefrag},
		{"a plain etcdctl defrag of the leader under a writer, for comparison", stepPlainDefrag},
	}
	for _, st := range steps {
		if !t.Run(st.name, func(t *testing.T) { st.run(t, s) }) {
			t.Fatalf("stopping the story after %q failed", st.name)
		}
	}
}

// withQuota sets every member's quota-backend-bytes.
func withQuota(bytes int) func(string) string {
	return func(inv string) string {
		return strings.Replace(inv, "  pki: {dir: pki", fmt.Sprintf("  etcd: {extraArgs: {quota-backend-bytes: \"%d\"}}\n  pki: {dir: pki", bytes), 1)
	}
}

// statusJSON is what the test reads of `etcdadm status -o json`.
type statusJSON struct {
	Members []struct {
		Name    string   `json:"name"`
		Alarms  []string `json:"alarms"`
		Healthy bool     `json:"healthy"`
	} `json:"members"`
	Alarms []etcdclient.Alarm `json:"alarms"`
}

func stepNoSpace(t *testing.T, s *sickStory) {
	s.write(t, s.members, withQuota(16<<20))
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || !strings.Contains(r.stdout, "cluster: 3/3 members healthy") {
		t.Fatalf("bring-up: %v\n%s", r.err, r.stdout)
	}
	kv := s.kv(t)
	value := strings.Repeat("x", 512<<10)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = kv.Put(ctx, fmt.Sprintf("/fill/%04d", i), value)
		cancel()
	}
	if !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("filling the database: %v, want NOSPACE", err)
	}

	r := s.etcdadm(t, "status", "-f", s.file, "-o", "json")
	var st statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &st); r.err != nil || err != nil {
		t.Fatalf("status: %v, %v", r.err, err)
	}
	raised := 0
	for _, m := range st.Members {
		if !m.Healthy || m.Alarms == nil {
			t.Errorf("%s: healthy %v, alarms %v: a member under NOSPACE answers reads", m.Name, m.Healthy, m.Alarms)
		}
		if slices.Contains(m.Alarms, "NOSPACE") {
			raised++
		}
	}
	if raised == 0 || len(st.Alarms) == 0 {
		t.Errorf("status JSON shows no NOSPACE alarm:\n%s", r.stdout)
	}
	if r := s.etcdadm(t, "status", "-f", s.file); !strings.Contains(r.stdout, "ALARMS") || !strings.Contains(r.stdout, "alarm NOSPACE raised for") {
		t.Errorf("status table:\n%s", r.stdout)
	}
	if r := s.etcdadm(t, "alarm", "list", "-f", s.file); r.err != nil || !strings.Contains(r.stdout, "NOSPACE") {
		t.Errorf("alarm list: %v\n%s", r.err, r.stdout)
	}
	// The full cluster is a healthy quorum: nothing to recover.
	if r := s.etcdadm(t, "apply", "-f", s.file, "--dry-run"); r.err != nil || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("apply --dry-run of the full cluster: %v\n%s", r.err, r.stdout)
	}
	before := snapshots(t, s.members)
	r = s.etcdadm(t, "alarm", "disarm", "-f", s.file, "--yes")
	if r.err == nil || !strings.Contains(r.stderr, "alarm disarm refused, nothing was changed") || !strings.Contains(r.stderr, "over 90% of its quota of 16.0 MiB") ||
		!strings.Contains(r.stderr, "etcdadm defrag") {
		t.Errorf("disarm over quota: %v\n%s", r.err, r.stderr)
	}
	unchanged(t, before, s.members)
	if r := s.etcdadm(t, "alarm", "list", "-f", s.file, "-o", "json"); !strings.Contains(r.stdout, `"type": "NOSPACE"`) {
		t.Errorf("the alarm is gone after a refused disarm:\n%s", r.stdout)
	}
}

// etcdAlive counts the hosts on which an etcd process runs.
func etcdAlive(hosts []*lab.Host) int {
	n := 0
	for _, h := range hosts {
		if len(h.PIDs("etcd")) > 0 {
			n++
		}
	}
	return n
}

func stepRaiseQuota(t *testing.T, s *sickStory) {
	c, _, client := s.cluster(t)
	leader := ""
	for _, st := range client.Status(context.Background(), ops.Endpoints(c), 3*time.Second) {
		if st.Leader {
			leader = st.Name
		}
	}
	etcdPIDs := pids(s.members, "etcd")
	s.write(t, s.members, withQuota(256<<20))

	// Every 100ms during the apply: how many hosts run an etcd.
	least, samples := len(s.members), 0
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			least, samples = min(least, etcdAlive(s.members)), samples+1
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	r := s.etcdadm(t, "apply", "-f", s.file)
	close(stop)
	<-done
	t.Logf("etcd processes alive during the apply: at least %d of %d, over %d samples 100ms apart", least, len(s.members), samples)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if least < 2 {
		t.Errorf("only %d etcd process(es) alive at one moment of the apply", least)
	}
	if strings.Contains(r.stderr, "recovery") || !strings.Contains(r.stderr, "stage 1/1: update members (one-at-a-time)") {
		t.Errorf("the quota change is not a rolling update:\n%s", r.stderr)
	}
	if order := restartOrder(r.stderr); len(order) != 3 || order[2] != leader {
		t.Errorf("restart order %v, want the leader %s last", order, leader)
	}
	after := pids(s.members, "etcd")
	for _, h := range s.members {
		if fmt.Sprint(after[h.Name]) == fmt.Sprint(etcdPIDs[h.Name]) {
			t.Errorf("etcd on %s was not restarted", h.Name)
		}
	}
	kv := s.kv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err := kv.Put(ctx, "/after-quota", "v")
	cancel()
	if !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Errorf("a write before the alarm is disarmed: %v, want NOSPACE", err)
	}
	r = s.etcdadm(t, "alarm", "disarm", "-f", s.file, "--yes")
	if r.err != nil || !strings.Contains(r.stdout, "alarms: none") {
		t.Fatalf("disarm: %v\n%s", r.err, r.stdout)
	}
	put(t, kv, "/after-disarm", "v")
	if r := s.etcdadm(t, "status", "-f", s.file); strings.Contains(r.stdout, "NOSPACE") {
		t.Errorf("status after disarming:\n%s", r.stdout)
	}
}

// sizes are the members' database sizes, by name, and the leader, once
// every member applied what the leader committed: a follower a moment
// behind would show a smaller database.
func (s *sickStory) sizes(t *testing.T) (map[string]int64, string) {
	t.Helper()
	c, _, client := s.cluster(t)
	var sts []etcdclient.MemberStatus
	waitFor(t, "every member caught up", 30*time.Second, func() bool {
		sts = client.Status(context.Background(), ops.Endpoints(c), 3*time.Second)
		for _, st := range sts {
			if !st.Healthy || st.RaftAppliedIndex != sts[0].RaftAppliedIndex || st.RaftAppliedIndex < st.RaftIndex {
				return false
			}
		}
		return true
	})
	out, leader := map[string]int64{}, ""
	for _, st := range sts {
		out[st.Name] = st.DBSize
		if st.Leader {
			leader = st.Name
		}
	}
	return out, leader
}

// live writes n keys of 8 KiB under prefix, 64 to a transaction.
func live(t *testing.T, kv *clientv3.Client, prefix string, n int) {
	t.Helper()
	value := strings.Repeat("v", 8<<10)
	for i := 0; i < n; i += 64 {
		var puts []clientv3.Op
		for j := i; j < min(i+64, n); j++ {
			puts = append(puts, clientv3.OpPut(fmt.Sprintf("%s%05d", prefix, j), value))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := kv.Txn(ctx).Then(puts...).Commit()
		cancel()
		if err != nil {
			t.Fatalf("write %s: %v", prefix, err)
		}
	}
}

// liveKeys are the keys of 8 KiB the defrag steps keep: 16 MiB.
const liveKeys = 2048

func stepDefrag(t *testing.T, s *sickStory) {
	kv := s.kv(t)
	// 16 MiB live, and three times as much garbage: the full database's
	// keys, and the live keys' older revisions.
	for range 3 {
		live(t, kv, "/live/", liveKeys)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err := kv.Delete(ctx, "/fill/", clientv3.WithPrefix())
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	before, leader := s.sizes(t)
	w := s.startWriter(t)
	time.Sleep(500 * time.Millisecond)
	from := time.Now()
	r := s.etcdadm(t, "defrag", "-f", s.file, "--yes")
	to := time.Now()
	time.Sleep(500 * time.Millisecond)
	rep := s.stopWriter(t, w)
	if r.err != nil {
		t.Fatal(r.err)
	}
	after, _ := s.sizes(t)
	for _, h := range s.members {
		t.Logf("%s: database %s before the defrag, %s after", h.Name, ops.Bytes(before[h.Name]), ops.Bytes(after[h.Name]))
		if after[h.Name] > before[h.Name]/2 {
			t.Errorf("%s: database %d bytes after, %d before: not halved", h.Name, after[h.Name], before[h.Name])
		}
		if !slices.ContainsFunc(strings.Split(r.stdout, "\n"), func(l string) bool {
			return strings.HasPrefix(l, h.Name+": database ") && strings.Contains(l, " before, ") && strings.Contains(l, " after (")
		}) {
			t.Errorf("the summary lacks %s's sizes:\n%s", h.Name, r.stdout)
		}
	}
	s.stalls = append(s.stalls, fmt.Sprintf("etcdadm defrag (leader last, after moving its leadership): %s", rep.LongestGap.Round(time.Millisecond)))
	if rep.LongestGap > 2*time.Second {
		t.Errorf("writes stalled for %s during the defrag", rep.LongestGap)
	}

	// etcd's own logs: each member defragmented once, the leader last, and
	// none while it led.
	events := etcdLogEvents(t, s.members, from, to)
	var order []string
	var changes []time.Time
	leading := leader
	defragging := map[string]bool{}
	for _, ev := range events {
		switch ev.what {
		case "starting defragment":
			order = append(order, ev.host)
			defragging[ev.host] = true
			if ev.host == leading {
				t.Errorf("%s: defragment started at %s while it led", ev.host, ev.at.Format("15:04:05.000"))
			}
		case "finished defragment":
			defragging[ev.host] = false
		case "became leader":
			changes = append(changes, ev.at)
			leading = ev.host
			if defragging[ev.host] {
				t.Errorf("%s became leader at %s during its defragment", ev.host, ev.at.Format("15:04:05.000"))
			}
		}
	}
	t.Logf("defragmented in order %v; leadership changed at %v", order, changes)
	if len(order) != 3 || order[2] != leader {
		t.Errorf("defragment order %v, want each member once and the leader %s last", order, leader)
	}
	if len(changes) != 1 {
		t.Errorf("leadership changed %d times, want once, to a follower defragmented already", len(changes))
	}
	for _, f := range rep.FailedAt {
		if !slices.ContainsFunc(changes, func(c time.Time) bool {
			return f.After(c.Add(-1500*time.Millisecond)) && f.Before(c.Add(1500*time.Millisecond))
		}) {
			t.Errorf("a write that began at %s failed, away from any change of leadership %v", f.Format("15:04:05.000"), changes)
		}
	}
}

// logEvent is a line of a member's etcd log that the defrag check reads.
type logEvent struct {
	at   time.Time
	host string
	what string
}

// etcdLogEvents reads the etcd containers' logs the kubelets keep
// (/var/log/pods on each host, under the lab's directory) for the events
// between from and to, in time order: "starting defragment", "finished
// defragment", "became leader" (the member whose log it is).
func etcdLogEvents(t *testing.T, hosts []*lab.Host, from, to time.Time) []logEvent {
	t.Helper()
	var out []logEvent
	for _, h := range hosts {
		files, err := filepath.Glob(filepath.Join(h.Dir, "log", "pods", "*_etcd-*", "etcd", "*.log"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no etcd container log under %s: %v", h.Name, filepath.Join(h.Dir, "log", "pods"), err)
		}
		for _, f := range files {
			out = append(out, readEtcdLog(t, f, h.Name, from, to)...)
		}
	}
	slices.SortFunc(out, func(a, b logEvent) int { return a.at.Compare(b.at) })
	return out
}

func readEtcdLog(t *testing.T, file, host string, from, to time.Time) []logEvent {
	t.Helper()
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out []logEvent
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		// CRI's format: time, stream, tag, then etcd's JSON line.
		f := strings.SplitN(sc.Text(), " ", 4)
		if len(f) < 4 {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, f[0])
		if err != nil || at.Before(from) || at.After(to) {
			continue
		}
		var line struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal([]byte(f[3]), &line) != nil {
			continue
		}
		for _, what := range []string{"starting defragment", "finished defragment", "became leader"} {
			if line.Msg == what || what == "became leader" && strings.Contains(line.Msg, " became leader at term ") {
				out = append(out, logEvent{at: at, host: host, what: what})
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func stepPlainDefrag(t *testing.T, s *sickStory) {
	kv := s.kv(t)
	// The same live data as etcdadm's defrag had, and as much garbage.
	for range 3 {
		live(t, kv, "/live/", liveKeys)
	}
	_, leader := s.sizes(t)
	c, pki, _ := s.cluster(t)
	kp, ok := pki.Leaf(c.Spec.Hosts[0].Name, certs.EtcdHealthcheckClient)
	if !ok {
		t.Fatal("no healthcheck-client certificate")
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{"ca.crt": pki.CA.CertPEM, "client.crt": kp.CertPEM, "client.key": kp.KeyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var endpoint string
	for _, h := range s.members {
		if h.Name == leader {
			endpoint = "https://" + h.Address + ":2379"
		}
	}
	w := s.startWriter(t)
	time.Sleep(500 * time.Millisecond)
	cmd := exec.Command(s.lab.Artifacts.Etcdctl, "--endpoints="+endpoint, "--cacert="+filepath.Join(dir, "ca.crt"),
		"--cert="+filepath.Join(dir, "client.crt"), "--key="+filepath.Join(dir, "client.key"), "--command-timeout=60s", "defrag")
	out, err := cmd.CombinedOutput()
	time.Sleep(time.Second)
	rep := w.Stop()
	if err != nil {
		t.Fatalf("etcdctl defrag: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v, verr := w.Verify(ctx)
	if verr != nil || !v.OK() {
		t.Errorf("verify the writer's keys: %v, %s", verr, v)
	}
	t.Logf("etcdctl defrag of the leader %s: %s; writer: %s", leader, strings.TrimSpace(string(out)), rep)
	s.stalls = append(s.stalls, fmt.Sprintf("etcdctl defrag of the leader %s: %s (%d writes failed)", leader, rep.LongestGap.Round(time.Millisecond), rep.Failed))
}
