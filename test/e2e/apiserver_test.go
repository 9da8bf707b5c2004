package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/test/lab"
)

// apiserverStory is a lab of three members, a spare host and two
// control-plane hosts of the external topology, each running kubeadm's
// kube-apiserver; a client creates a ConfigMap through whichever
// kube-apiserver answers, four times a second, while etcdadm changes the
// cluster under them.
type apiserverStory struct {
	*story
	members []*lab.Host
	spare   *lab.Host
	cps     []*lab.Host
	cp      *controlPlane
	// moved is members after n2 moved to the spare host's address.
	moved    []*lab.Host
	snapshot string
	// beforeSnapshot and afterSnapshot are ConfigMaps acknowledged before
	// the snapshot was saved and after.
	beforeSnapshot, afterSnapshot []string
	mu                            sync.Mutex
	figures                       []string
}

// TestIntegrationAPIServers: the kube-apiservers follow what etcdadm does to
// their etcd: a member added then removed, a client certificate renewed and
// the CA rotated, a member moved, a snapshot restored, and a stacked
// control plane renewed; each with every acknowledged ConfigMap readable
// afterwards, no more than 2 s without a successful create, and never both
// kube-apiservers down.
func TestIntegrationAPIServers(t *testing.T) {
	requireLab(t)
	bin := buildEtcdadm(t)
	l := upLab(t, lab.Options{Hosts: 6, Dir: "/var/tmp/etcdadm-e2e-apiserver", NamePrefix: "kas", Subnet: 26})
	dir := t.TempDir()
	s := &apiserverStory{
		story:   &story{bin: bin, lab: l, dir: dir, known: filepath.Join(dir, "known_hosts"), file: filepath.Join(dir, "cluster.yaml")},
		members: l.Hosts[:3],
		spare:   l.Hosts[3],
		cps:     l.Hosts[4:6],
	}
	copyFile(t, l.KnownHostsFile, s.known)
	start := time.Now()
	steps := []struct {
		name string
		run  func(*testing.T, *apiserverStory)
	}{
		{"three members and two control-plane hosts with kubeadm's kube-apiservers", stepAPIServersUp},
		{"a member added, then removed: every --etcd-servers and kubeadm's record follow", stepAPIServersAddRemove},
		{"certs renew apiserver-etcd-client and a whole CA rotation restart the kube-apiservers one at a time", stepAPIServersRenewRotate},
		{"member move: the kube-apiservers follow the new address", stepAPIServersMove},
		{"snapshot restore stops the control plane, and starts it on the restored data", stepAPIServersRestore},
		{"a stacked control plane renewed keeps serving", stepAPIServersStacked},
	}
	for _, st := range steps {
		if !t.Run(st.name, func(t *testing.T) { st.run(t, s) }) {
			t.Fatalf("stopping the story after %q failed", st.name)
		}
	}
	t.Logf("the story took %s:\n%s", time.Since(start).Round(time.Second), strings.Join(s.figures, "\n"))
}

func (s *apiserverStory) inventory(t *testing.T, members []*lab.Host) {
	t.Helper()
	s.write(t, members, func(inv string) string {
		inv += "  controlPlane:\n    hosts:\n"
		for _, h := range s.cps {
			inv += fmt.Sprintf("    - {name: %s, address: %s}\n", h.Name, h.Address)
		}
		return inv
	})
}

func (s *apiserverStory) apply(t *testing.T) run {
	t.Helper()
	r := s.etcdadm(t, "apply", "-f", s.file)
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r
}

// checkServers: every kube-apiserver's manifest, and kubeadm's record,
// name the members of hosts.
func (s *apiserverStory) checkServers(t *testing.T, hosts []*lab.Host) {
	t.Helper()
	var want []string
	for _, h := range hosts {
		want = append(want, manifests.ClientURL(config.Host{Name: h.Name, Address: h.Address}))
	}
	for _, cp := range s.cps {
		if got := etcdServers(t, cp); !sameSet(got, want) {
			t.Errorf("%s's kube-apiserver has --etcd-servers=%v, want %v", cp.Name, got, want)
		}
	}
	if got := s.cp.storedEndpoints(t); !sameSet(got, want) {
		t.Errorf("kubeadm-config holds etcd.external.endpoints %v, want %v", got, want)
	}
}

func sameSet(a, b []string) bool {
	return len(a) == len(b) && !slices.ContainsFunc(a, func(s string) bool { return !slices.Contains(b, s) })
}

func (s *apiserverStory) record(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.figures = append(s.figures, fmt.Sprintf(format, args...))
}

func stepAPIServersUp(t *testing.T, s *apiserverStory) {
	s.inventory(t, s.members)
	s.apply(t)
	c, _, _ := s.cluster(t)
	var endpoints []string
	for _, h := range c.Spec.Hosts {
		endpoints = append(endpoints, manifests.ClientURL(h))
	}
	s.cp = startControlPlane(t, c, s.lab, s.cps, endpoints)
	s.checkServers(t, s.members)
	// Nothing to do: the kube-apiservers use the members and started after
	// their files were written.
	if r := s.apply(t); !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("apply with the kube-apiservers running:\n%s", r.stdout)
	}
	r := s.etcdadm(t, "status", "-f", s.file)
	if r.err != nil {
		t.Fatal(r.err)
	}
	for _, cp := range s.cps {
		line := ""
		for _, l := range strings.Split(r.stdout, "\n") {
			if strings.HasPrefix(l, cp.Name+" ") {
				line = l
			}
		}
		if !strings.Contains(line, "yes") || !strings.HasSuffix(strings.TrimSpace(line), "ok") {
			t.Errorf("status has no ready kube-apiserver on the members for %s:\n%s", cp.Name, r.stdout)
		}
	}
}

func stepAPIServersAddRemove(t *testing.T, s *apiserverStory) {
	w := s.cp.startCreator(t, "add-remove")
	four := append(slices.Clone(s.members), s.spare)
	s.inventory(t, four)
	r := s.apply(t)
	if !strings.Contains(r.stderr, "the kube-apiserver answers /readyz") {
		t.Errorf("apply did not restart the kube-apiservers:\n%s", r.stderr)
	}
	s.checkServers(t, four)
	if r := s.etcdadm(t, "member", "remove", s.spare.Name, "-f", s.file, "--yes"); r.err != nil {
		t.Fatal(r.err)
	} else if i, j := strings.Index(r.stderr, "answers /readyz"), strings.Index(r.stderr, "removed member"); i < 0 || (j >= 0 && j < i) {
		t.Errorf("the member was removed before the kube-apiservers left it:\n%s", r.stderr)
	}
	s.inventory(t, s.members)
	s.checkServers(t, s.members)
	if r := s.apply(t); !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("apply after the removal:\n%s", r.stdout)
	}
	s.stopCreator(t, w, true)
}

func stepAPIServersRenewRotate(t *testing.T, s *apiserverStory) {
	w := s.cp.startCreator(t, "renew-rotate")
	before := pids(s.cps, "kube-apiserver")
	if r := s.etcdadm(t, "certs", "renew", "apiserver-etcd-client", "-f", s.file); r.err != nil {
		t.Fatal(r.err)
	}
	if after := pids(s.cps, "kube-apiserver"); slices.ContainsFunc(s.cps, func(h *lab.Host) bool { return fmt.Sprint(after[h.Name]) == fmt.Sprint(before[h.Name]) }) {
		t.Errorf("a kube-apiserver did not restart after its client certificate was renewed: %v -> %v", before, after)
	}
	r := s.etcdadm(t, "certs", "rotate-ca", "-f", s.file)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if n := strings.Count(r.stderr, "after its restart"); n < 2*3 {
		t.Errorf("%d kube-apiserver restarts in the rotation, want one per host and stage", n)
	}
	s.checkServers(t, s.members)
	// After stage (c) they trust the new CA alone, and still serve writes.
	time.Sleep(2 * time.Second)
	s.stopCreator(t, w, true)
	if r := s.apply(t); !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("apply after the rotation:\n%s", r.stdout)
	}
}

func stepAPIServersMove(t *testing.T, s *apiserverStory) {
	w := s.cp.startCreator(t, "move")
	n2 := s.members[2]
	// n2 keeps its name, at the spare host's address.
	moved := &lab.Host{Name: n2.Name, Address: s.spare.Address}
	s.moved = []*lab.Host{s.members[0], s.members[1], moved}
	s.inventory(t, s.moved)
	if r := s.etcdadm(t, "member", "move", n2.Name, "-f", s.file, "--yes"); r.err != nil {
		t.Fatal(r.err)
	}
	s.checkServers(t, s.moved)
	s.stopCreator(t, w, true)
}

func stepAPIServersRestore(t *testing.T, s *apiserverStory) {
	ctx := context.Background()
	s.snapshot = filepath.Join(s.dir, "before.db")
	w := s.cp.startCreator(t, "before-snapshot")
	time.Sleep(time.Second)
	s.beforeSnapshot = s.stopCreator(t, w, true)
	if r := s.etcdadm(t, "snapshot", "save", "-f", s.file, "-o", s.snapshot); r.err != nil {
		t.Fatal(r.err)
	}
	w = s.cp.startCreator(t, "after-snapshot")
	time.Sleep(time.Second)
	s.afterSnapshot = s.stopCreator(t, w, true)
	mon := s.cp.startCreator(t, "during-restore")
	r := s.etcdadm(t, "snapshot", "restore", "-f", s.file, s.snapshot, "--yes")
	if r.err != nil {
		t.Fatal(r.err)
	}
	rep := mon.stop()
	s.record("restore: both kube-apiservers down in %d of %d samples (expected: they are stopped), restore took %s", rep.bothDown, rep.samples, rep.duration.Round(time.Second))
	if rep.bothDown == 0 {
		t.Errorf("the kube-apiservers never were both down during the restore")
	}
	for i := range s.cps {
		if err := s.cp.ready(i); err != nil {
			t.Errorf("%s's kube-apiserver is not ready after the restore: %v", s.cps[i].Name, err)
		}
	}
	list, err := s.cp.client(t, 0).CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list through the API after the restore: %v", err)
	}
	have := map[string]bool{}
	for _, cm := range list.Items {
		have[cm.Name] = true
	}
	for _, n := range s.beforeSnapshot {
		if !have[n] {
			t.Errorf("%s, created before the snapshot, is gone", n)
		}
	}
	for _, n := range s.afterSnapshot {
		if have[n] {
			t.Errorf("%s, created after the snapshot, is still there", n)
		}
	}
	for _, cp := range s.cps {
		out, _ := cp.Exec(ctx, "sh", "-c", "ls -A /etc/kubernetes/manifests; ls -A /var/lib/etcdadm/pending 2>/dev/null")
		if got := strings.Fields(string(out)); !slices.Equal(got, []string{"kube-apiserver.yaml"}) {
			t.Errorf("%s has %v after the restore, want its kube-apiserver back and no held Pod or record", cp.Name, got)
		}
	}
}

// stepAPIServersStacked makes the control-plane hosts and n2's old host a
// stacked cluster of their own, kubeadm's kube-apiservers on the two
// control-plane hosts reaching their own member on loopback, and renews
// every certificate under the client, which must go on creating.
func stepAPIServersStacked(t *testing.T, s *apiserverStory) {
	ctx := context.Background()
	hosts := []*lab.Host{s.cps[0], s.cps[1], s.members[2]}
	for _, h := range hosts {
		if _, err := h.Exec(ctx, "sh", "-c", "rm -f /etc/kubernetes/manifests/kube-apiserver.yaml; while ss -Hltn 'sport = :6443' | grep -q .; do sleep 0.2; done; rm -rf /etc/kubernetes /var/lib/etcdadm; find /var/lib/etcd -mindepth 1 -delete"); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(s.dir, "stacked")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	st := &apiserverStory{story: &story{bin: s.bin, lab: s.lab, dir: dir, known: s.known, file: filepath.Join(dir, "cluster.yaml")}}
	st.write(t, hosts, func(inv string) string { return strings.Replace(inv, "spec:\n", "spec:\n  topology: stacked\n", 1) })
	c, _, err := config.Load(st.file)
	if err != nil {
		t.Fatal(err)
	}
	// The kubelet of a stacked host is kubeadm's: here the guide's, on the
	// manifests directory, started before etcdadm writes the members.
	for _, h := range hosts {
		startKubelet(t, c, h)
	}
	if r := st.etcdadm(t, "apply", "-f", st.file); r.err != nil {
		t.Fatal(r.err)
	}
	st.cp = startControlPlane(t, c, s.lab, hosts[:2], nil)
	for _, h := range hosts[:2] {
		if got := etcdServers(t, h); !slices.Equal(got, []string{"https://127.0.0.1:2379"}) {
			t.Fatalf("%s's stacked kube-apiserver has --etcd-servers=%v", h.Name, got)
		}
	}
	w := st.cp.startCreator(t, "stacked")
	r := st.etcdadm(t, "certs", "renew", "-f", st.file)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if n := strings.Count(r.stderr, "after its restart"); n != 2 {
		t.Errorf("%d kube-apiserver restarts, want one per control-plane host", n)
	}
	// Each stacked kube-apiserver reaches its own member alone: while the
	// leader restarts, the election fails both their /readyz for a moment,
	// yet writes go on.
	st.stopCreator(t, w, false)
	s.figures = append(s.figures, st.figures...)
	for _, h := range hosts[:2] {
		if got := etcdServers(t, h); !slices.Equal(got, []string{"https://127.0.0.1:2379"}) {
			t.Errorf("%s's stacked kube-apiserver has --etcd-servers=%v after the renewal", h.Name, got)
		}
	}
}

// creator creates a ConfigMap through whichever kube-apiserver answers,
// every 250ms, and samples both kube-apiservers' /readyz as often.
type creator struct {
	cp      *controlPlane
	clients []*kubernetes.Clientset
	prefix  string
	stopCh  chan struct{}
	wg      sync.WaitGroup

	mu       sync.Mutex
	acked    []string
	failed   int
	lastAck  time.Time
	longest  time.Duration
	gapAt    time.Time
	start    time.Time
	samples  int
	bothDown int
	downAt   []time.Time
}

type creatorReport struct {
	acked, failed     int
	longest           time.Duration
	gapAt             time.Time
	samples, bothDown int
	downAt            []time.Time
	duration          time.Duration
	names             []string
}

func (cp *controlPlane) startCreator(t *testing.T, prefix string) *creator {
	t.Helper()
	w := &creator{cp: cp, prefix: prefix, stopCh: make(chan struct{}), start: time.Now()}
	for i := range cp.hosts {
		cfg := rest.CopyConfig(cp.admins[i])
		cfg.Timeout = 700 * time.Millisecond
		c, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		w.clients = append(w.clients, c)
	}
	w.lastAck = w.start
	w.wg.Add(2)
	go w.create()
	go w.monitor()
	return w
}

func (w *creator) create() {
	defer w.wg.Done()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	prefer := 0
	for n := 0; ; n++ {
		name := fmt.Sprintf("%s-%05d", w.prefix, n)
		for try := range w.clients {
			i := (prefer + try) % len(w.clients)
			ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
			_, err := w.clients[i].CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"n": fmt.Sprint(n)}}, metav1.CreateOptions{})
			cancel()
			now := time.Now()
			w.mu.Lock()
			if err == nil {
				if gap := now.Sub(w.lastAck); gap > w.longest {
					w.longest, w.gapAt = gap, w.lastAck
				}
				w.lastAck = now
				w.acked = append(w.acked, name)
				w.mu.Unlock()
				prefer = i
				break
			}
			w.failed++
			w.mu.Unlock()
		}
		select {
		case <-w.stopCh:
			return
		case <-tick.C:
		}
	}
}

func (w *creator) monitor() {
	defer w.wg.Done()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		errs := make([]error, len(w.cp.hosts))
		var wg sync.WaitGroup
		for i := range w.cp.hosts {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = w.cp.ready(i) }()
		}
		wg.Wait()
		w.mu.Lock()
		w.samples++
		if !slices.Contains(errs, nil) {
			w.bothDown++
			w.downAt = append(w.downAt, time.Now())
		}
		w.mu.Unlock()
		select {
		case <-w.stopCh:
			return
		case <-tick.C:
		}
	}
}

func (w *creator) stop() creatorReport {
	close(w.stopCh)
	w.wg.Wait()
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if gap := now.Sub(w.lastAck); gap > w.longest {
		w.longest, w.gapAt = gap, w.lastAck
	}
	return creatorReport{acked: len(w.acked), failed: w.failed, longest: w.longest, gapAt: w.gapAt, samples: w.samples, bothDown: w.bothDown,
		downAt: w.downAt, duration: now.Sub(w.start), names: slices.Clone(w.acked)}
}

// stopCreator stops w and checks what it saw: every acknowledged ConfigMap
// is readable, the longest time without a create is at most 2s, and, with
// both, that the kube-apiservers were never down together. It returns the
// acknowledged names.
func (s *apiserverStory) stopCreator(t *testing.T, w *creator, both bool) []string {
	t.Helper()
	r := w.stop()
	s.record("%-16s %4d ConfigMaps acknowledged, %3d failed attempts, longest gap %s, both kube-apiservers down in %d of %d samples, %s",
		w.prefix, r.acked, r.failed, r.longest.Round(time.Millisecond), r.bothDown, r.samples, r.duration.Round(time.Second))
	t.Logf("creator %s: %d acknowledged, longest gap %s (from %s), both down %d/%d %v", w.prefix, r.acked, r.longest, r.gapAt.Format(time.RFC3339Nano), r.bothDown, r.samples, r.downAt)
	if r.longest > 2*time.Second {
		t.Errorf("%s: %s without a successful create (from %s), want at most 2s", w.prefix, r.longest.Round(time.Millisecond), r.gapAt.Format("15:04:05.000"))
	}
	if both && r.bothDown > 0 {
		t.Errorf("%s: both kube-apiservers were down in %d samples (%v)", w.prefix, r.bothDown, r.downAt)
	}
	list, err := w.clients[0].CoreV1().ConfigMaps("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		list, err = w.clients[1].CoreV1().ConfigMaps("default").List(context.Background(), metav1.ListOptions{})
	}
	if err != nil {
		t.Fatalf("list the ConfigMaps: %v", err)
	}
	have := map[string]bool{}
	for _, cm := range list.Items {
		have[cm.Name] = true
	}
	var lost []string
	for _, n := range r.names {
		if !have[n] {
			lost = append(lost, n)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%s: %d acknowledged ConfigMaps lost: %v", w.prefix, len(lost), head(lost))
	}
	return r.names
}
