package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/execute"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/test/lab"
)

// safeStory is a lab of four hosts: three members of the story's cluster,
// and on the fourth a cluster of one member of its own, "other", which
// the story's inventory reaches at that host's address.
type safeStory struct {
	*story
	// otherFile is the other cluster's inventory.
	otherFile string
}

// TestIntegrationSafeRun: what a run must never do, and what a run cut
// short leaves for the next. An inventory address that reaches another
// cluster's member is refused by reset, member remove and apply, and that
// member keeps running with its keys. A run whose SSH connection to a host
// is cut keeps that host's lock: a second run is refused while the first
// goes on. rotate-ca and a rolling apply, each SIGKILLed while a member
// restarts, are finished by the same command run again at once, without
// losing an acknowledged write. An upgrade to an image whose etcd exits at
// once stops after the first member, which is back on its old manifest,
// healthy, within about 90s of its restart.
func TestIntegrationSafeRun(t *testing.T) {
	s := &safeStory{story: newStory(t, lab.Options{Hosts: 4, Dir: "/var/tmp/etcdadm-e2e-safe", NamePrefix: "saf", Subnet: 23})}
	runSteps(t, s.story, s, []step[*safeStory]{
		{"three members here, one of another cluster on the fourth host", stepSafeBringUp},
		{"reset, member remove and apply of an address that reaches another cluster's member are refused; it keeps running with its keys", stepAnotherCluster},
		{"rotate-ca killed while a member restarts is finished by running it again at once", stepRotateCAKilledMidRestart},
		{"a rolling apply killed while a member restarts is finished by running it again at once", stepApplyKilledMidRestart},
		{"a run whose SSH connection is cut keeps its hosts: a second run is refused meanwhile", stepLockSurvivesCutConnection},
		{"an image whose etcd exits at once is rolled back on the first member, the others untouched", stepBrokenImage},
	})
}

func stepSafeBringUp(t *testing.T, s *safeStory) {
	members := s.lab.Hosts[:3]
	s.write(t, members, nil)
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || !strings.Contains(r.stdout, "cluster: 3/3 members healthy") {
		t.Fatalf("bring-up: %v\n%s", r.err, r.stdout)
	}
	// The other cluster: its own inventory, a copy of this cluster's PKI
	// (so that etcdadm can ask its member who it is), one member.
	s.otherFile = s.checkout(t, "other")
	inv := s.lab.Inventory(lab.InventoryOptions{Name: "other", KnownHostsFile: s.known, Hosts: s.lab.Hosts[3:]})
	if err := os.WriteFile(s.otherFile, []byte(inv), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := s.etcdadm(t, "apply", "-f", s.otherFile); r.err != nil || !strings.Contains(r.stdout, "cluster: 1/1 members healthy") {
		t.Fatalf("the other cluster: %v\n%s", r.err, r.stdout)
	}
	cli := s.otherKV(t)
	for i := range 20 {
		put(t, cli, fmt.Sprintf("/other/key-%02d", i), fmt.Sprint(i))
	}
}

// otherKV is a client of the other cluster's member.
func (s *safeStory) otherKV(t *testing.T) *clientv3.Client {
	t.Helper()
	c, _, client := clusterAt(t, s.otherFile)
	cli, err := client.Connect(manifests.ClientURL(c.Spec.Hosts[0]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func stepAnotherCluster(t *testing.T, s *safeStory) {
	members, stray := s.lab.Hosts[:3], s.lab.Hosts[3]
	strayPIDs := stray.PIDs("etcd")
	before := snapshots(t, members)
	// The inventory names the fourth host as a fourth member: its address
	// reaches the other cluster's member.
	s.write(t, s.lab.Hosts, nil)
	for _, args := range [][]string{
		{"reset", stray.Name, "-f", s.file, "--yes"},
		{"member", "remove", stray.Name, "-f", s.file, "--yes"},
		{"apply", "-f", s.file},
	} {
		r := s.etcdadm(t, args...)
		if r.err == nil || !strings.Contains(r.stderr, stray.Name+": runs a member of another cluster") || !strings.Contains(r.stderr, "check the inventory's address of "+stray.Name) {
			t.Errorf("%s: %v, want a refusal naming another cluster's member", args[0], r.err)
		}
		if args[0] == "apply" && strings.Contains(r.stderr, "etcdadm reset") {
			t.Errorf("apply offers reset for another cluster's member:\n%s", r.stderr)
		}
	}
	if got := stray.PIDs("etcd"); fmt.Sprint(got) != fmt.Sprint(strayPIDs) {
		t.Errorf("the other cluster's etcd on %s: pids %v -> %v", stray.Name, strayPIDs, got)
	}
	unchanged(t, before, members)
	cli := s.otherKV(t)
	for i := range 20 {
		if v, ok, _ := get(t, cli, fmt.Sprintf("/other/key-%02d", i)); !ok || v != fmt.Sprint(i) {
			t.Errorf("the other cluster's key %d: %q, %v", i, v, ok)
		}
	}
	s.write(t, members, nil)
}

// liveRun is etcdadm running in the background, its output read line by
// line as it comes, each line with the time it came.
type liveRun struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  []timedLine
	done chan error
	read chan struct{}
}

type timedLine struct {
	at   time.Time
	text string
}

func startLive(t *testing.T, bin string, args ...string) *liveRun {
	t.Helper()
	pr, pw := io.Pipe()
	r := &liveRun{cmd: exec.Command(bin, args...), done: make(chan error, 1), read: make(chan struct{})}
	r.cmd.Stdout, r.cmd.Stderr = pw, pw
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(r.read)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			r.mu.Lock()
			r.out = append(r.out, timedLine{time.Now(), sc.Text()})
			r.mu.Unlock()
		}
	}()
	go func() {
		err := r.cmd.Wait()
		pw.Close()
		r.done <- err
	}()
	return r
}

// line waits for a line holding s and returns it, with when it came.
func (r *liveRun) line(t *testing.T, s string, timeout time.Duration) (string, time.Time) {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		r.mu.Lock()
		for _, l := range r.out {
			if strings.Contains(l.text, s) {
				r.mu.Unlock()
				return l.text, l.at
			}
		}
		r.mu.Unlock()
	}
	t.Fatalf("no line %q after %s:\n%s", s, timeout, r.text())
	return "", time.Time{}
}

func (r *liveRun) text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, l := range r.out {
		b.WriteString(l.text + "\n")
	}
	return b.String()
}

// wait waits for the run to end, and returns its output and error.
func (r *liveRun) wait(t *testing.T) (string, error) {
	t.Helper()
	select {
	case err := <-r.done:
		<-r.read
		return r.text(), err
	case <-time.After(8 * time.Minute):
		_ = r.cmd.Process.Kill()
		t.Fatalf("etcdadm did not end:\n%s", r.text())
		return "", nil
	}
}

// killMidRestart starts etcdadm and SIGKILLs it while the first member it
// restarts is down: its manifest taken away, its etcd stopping.
func (s *safeStory) killMidRestart(t *testing.T, args ...string) string {
	t.Helper()
	r := startLive(t, s.bin, args...)
	line, _ := r.line(t, "restarting etcd", 4*time.Minute)
	host := strings.Trim(strings.Fields(line)[0], "[]")
	time.Sleep(400 * time.Millisecond)
	if err := r.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	out, _ := r.wait(t)
	t.Logf("the killed run (while %s restarted):\n%s", host, out)
	return host
}

func stepRotateCAKilledMidRestart(t *testing.T, s *safeStory) {
	members := s.lab.Hosts[:3]
	w := s.rotationWriter(t)
	host := s.killMidRestart(t, "certs", "rotate-ca", "-f", s.file)
	start := time.Now()
	r := s.etcdadm(t, "certs", "rotate-ca", "-f", s.file)
	took := time.Since(start)
	rep := s.stopWriter(t, w)
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("rotate-ca run again at once after a kill while %s restarted: %s; longest write gap %s", host, took.Round(time.Millisecond), rep.LongestGap.Round(time.Millisecond))
	now, _ := os.ReadFile(filepath.Join(s.dir, "pki", certs.CABaseName+".crt"))
	onlyCA(t, members, now)
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("apply after the rotation: %v\n%s", r.err, r.stdout)
	}
}

// withEtcd sets the inventory's spec.etcd to fields.
func withEtcd(fields string) func(string) string {
	return func(inv string) string {
		return strings.Replace(inv, "\n  hosts:\n", "\n  etcd: {"+fields+"}\n  hosts:\n", 1)
	}
}

func stepApplyKilledMidRestart(t *testing.T, s *safeStory) {
	members := s.lab.Hosts[:3]
	w := s.startWriter(t)
	s.write(t, members, withEtcd("serverCertSANs: [killed.e2e.example]"))
	host := s.killMidRestart(t, "apply", "-f", s.file)
	r := s.etcdadm(t, "apply", "-f", s.file)
	s.stopWriter(t, w)
	if r.err != nil || !strings.Contains(r.stdout, "cluster: 3/3 members healthy") {
		t.Fatalf("apply run again after a kill while %s restarted: %v", host, r.err)
	}
	for _, h := range members {
		if !serverCertHasSAN(t, h, "killed.e2e.example") {
			t.Errorf("%s's server certificate lacks the new SAN", h.Name)
		}
		if _, err := h.ReadFile(context.Background(), "/var/lib/etcdadm/pending/etcd-restart"); err == nil {
			t.Errorf("%s still has a pending restart", h.Name)
		}
	}
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("apply after the roll: %v\n%s", r.err, r.stdout)
	}
}

func stepLockSurvivesCutConnection(t *testing.T, s *safeStory) {
	members := s.lab.Hosts[:3]
	w := s.startWriter(t)
	s.write(t, members, withEtcd("serverCertSANs: [lock.e2e.example]"))
	first := startLive(t, s.bin, "apply", "-f", s.file)
	line, _ := first.line(t, "waiting for the new etcd process", 4*time.Minute)
	name := strings.Trim(strings.Fields(line)[0], "[]")
	var cut *lab.Host
	for _, h := range members {
		if h.Name == name {
			cut = h
		}
	}
	if n := cut.KillSSHSessions(); n == 0 {
		t.Fatalf("no SSH session to cut on %s", name)
	}
	// Another operator's checkout: the same inventory and PKI, whose
	// local lock the first run does not hold.
	second := s.etcdadm(t, "apply", "-f", s.checkout(t, "second"))
	out, err := first.wait(t)
	s.stopWriter(t, w)
	t.Logf("the first run, whose connection to %s was cut:\n%s", name, out)
	if second.err == nil || !strings.Contains(second.stderr, "another etcdadm run holds the host") {
		t.Errorf("the second run: %v, want it refused while the first holds the hosts", second.err)
	}
	if err != nil || !strings.Contains(out, "cluster: 3/3 members healthy") {
		t.Errorf("the first run did not finish: %v", err)
	}
	if strings.Count(out, "restarting etcd") != 3 || strings.Contains(second.stderr, "restarting etcd") {
		t.Errorf("restarts: %d by the first run, want 3; the second: %v", strings.Count(out, "restarting etcd"), strings.Contains(second.stderr, "restarting etcd"))
	}
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("apply after both: %v\n%s", r.err, r.stdout)
	}
}

// checkout copies the inventory and its PKI to a directory of their own,
// as another operator's machine has them, and returns the inventory's path.
func (s *safeStory) checkout(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(s.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(s.dir, "pki"), s.file, dir).CombinedOutput(); err != nil {
		t.Fatalf("copy the inventory and the PKI: %v: %s", err, out)
	}
	return filepath.Join(dir, filepath.Base(s.file))
}

// brokenEtcd is a program that exits at once with status 1, saying so.
const brokenEtcd = `package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "etcd: this image is broken on purpose")
	os.Exit(1)
}
`

func stepBrokenImage(t *testing.T, s *safeStory) {
	ctx := context.Background()
	members := s.lab.Hosts[:3]
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte(brokenEtcd), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "etcd")
	build := exec.Command("go", "build", "-o", bin, src)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the broken etcd: %v\n%s", err, out)
	}
	const ref = "registry.k8s.io/etcd:3.7.0-9"
	tarball := filepath.Join(dir, "etcd-3.7.0-9.tar")
	if err := lab.EtcdImageOf(tarball, ref, bin); err != nil {
		t.Fatal(err)
	}
	for _, h := range members {
		if err := h.ImportImage(ctx, tarball); err != nil {
			t.Fatal(err)
		}
	}
	current := manifestImage(t, members[0])
	etcdPIDs := pids(members, "etcd")
	w := s.startWriter(t)
	s.write(t, members, withEtcd("serverCertSANs: [lock.e2e.example], imageTag: 3.7.0-9"))
	r := startLive(t, s.bin, "apply", "-f", s.file)
	line, restarted := r.line(t, "restarting etcd", 3*time.Minute)
	first := strings.Trim(strings.Fields(line)[0], "[]")
	_, back := r.line(t, "["+first+"] back on its old manifest", 4*time.Minute)
	out, err := r.wait(t)
	s.stopWriter(t, w)
	t.Logf("the upgrade to %s:\n%s", ref, out)
	took := back.Sub(restarted)
	t.Logf("%s was back on its old manifest, healthy, %s after its restart", first, took.Round(time.Millisecond))
	if err == nil {
		t.Fatal("apply of an image whose etcd exits succeeded")
	}
	if took > 90*time.Second {
		t.Errorf("%s was back %s after its restart, want about 90s at most", first, took.Round(time.Second))
	}
	for _, want := range []string{"its etcd container logged: etcd: this image is broken on purpose", "stopped here: " + first + " is back on its old manifest (" + current + ")"} {
		if !strings.Contains(out, want) {
			t.Errorf("the run's output lacks %q", want)
		}
	}
	if n := strings.Count(out, "restarting etcd"); n != 2 {
		t.Errorf("%d restarts, want the first member's and its rollback", n)
	}
	after := pids(members, "etcd")
	for _, h := range members {
		if img := manifestImage(t, h); img != current {
			t.Errorf("%s runs %s, want %s", h.Name, img, current)
		}
		if h.Name != first && fmt.Sprint(after[h.Name]) != fmt.Sprint(etcdPIDs[h.Name]) {
			t.Errorf("%s was restarted, but the roll stopped at %s", h.Name, first)
		}
	}
	c, _, client := s.cluster(t)
	if healthy, total := execute.Summary(client.Status(ctx, ops.Endpoints(c), 3*time.Second)); healthy != 3 || total != 3 {
		t.Errorf("%d/%d healthy after the rollback", healthy, total)
	}
	// Back on the tag the members run: nothing restarts.
	s.write(t, members, withEtcd("serverCertSANs: [lock.e2e.example]"))
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || strings.Contains(r.stdout, "etcd restarted") {
		t.Errorf("apply back on %s: %v\n%s", current, r.err, r.stdout)
	}
}
