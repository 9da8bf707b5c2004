package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/test/lab"
	"github.com/etcdadm-io/etcdadm/test/writer"
)

// story is one lab shared by the steps of an end-to-end story.
type story struct {
	bin   string
	lab   *lab.Lab
	dir   string
	known string
	// inv writes the inventory with the given hosts; file is its path.
	file string
	// gaps collects each writer's report, for the summary at the end.
	mu   sync.Mutex
	gaps []string
}

// newStory builds etcdadm and brings up a lab of opts for a story, its
// inventory and known_hosts in a directory of the test.
func newStory(t *testing.T, opts lab.Options) *story {
	t.Helper()
	requireLab(t)
	bin := buildEtcdadm(t)
	l := upLab(t, opts)
	dir := t.TempDir()
	s := &story{bin: bin, lab: l, dir: dir, known: filepath.Join(dir, "known_hosts"), file: filepath.Join(dir, "cluster.yaml")}
	copyFile(t, l.KnownHostsFile, s.known)
	return s
}

// step is one step of a story told with S.
type step[S any] struct {
	name string
	run  func(*testing.T, S)
}

// runSteps runs the steps in order, stopping the story at the first that
// fails, then logs every writer's report.
func runSteps[S any](t *testing.T, s *story, on S, steps []step[S]) {
	t.Helper()
	defer func() {
		t.Logf("continuous writers:\n%s", strings.Join(s.gaps, "\n"))
	}()
	for _, st := range steps {
		if !t.Run(st.name, func(t *testing.T) { st.run(t, on) }) {
			t.Fatalf("stopping the story after %q failed", st.name)
		}
	}
}

func (s *story) write(t *testing.T, hosts []*lab.Host, edit func(string) string) string {
	t.Helper()
	data := s.lab.Inventory(lab.InventoryOptions{Name: "e2e", User: "root", KnownHostsFile: s.known, Hosts: hosts})
	if edit != nil {
		data = edit(data)
	}
	if err := os.WriteFile(s.file, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return s.file
}

func (s *story) etcdadm(t *testing.T, args ...string) run {
	t.Helper()
	return etcdadm(t, s.bin, args...)
}

// cluster loads the inventory and the PKI as they are, saving nothing.
func (s *story) cluster(t *testing.T) (*config.Cluster, *certs.PKI, *etcdclient.Client) {
	t.Helper()
	return clusterAt(t, s.file)
}

// clusterAt loads the inventory file and its PKI as they are, saving
// nothing, and makes a client of its members.
func clusterAt(t *testing.T, file string) (*config.Cluster, *certs.PKI, *etcdclient.Client) {
	t.Helper()
	c, _, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	pki, _, err := certs.Compute(c, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if pki.CACreated {
		t.Fatal("the test needs the cluster's PKI")
	}
	client, err := etcdclient.FromPKI(pki, c.Spec.Hosts[0].Name, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return c, pki, client
}

// members returns the member list by name, asked of any inventory host.
func (s *story) members(t *testing.T) map[string]etcdclient.Member {
	t.Helper()
	c, _, client := s.cluster(t)
	var urls []string
	for _, h := range c.Spec.Hosts {
		urls = append(urls, manifests.ClientURL(h))
	}
	list, err := client.MemberList(context.Background(), urls, 3*time.Second)
	if err != nil {
		t.Fatalf("member list: %v", err)
	}
	out := map[string]etcdclient.Member{}
	for _, m := range list.Members {
		out[m.Name] = m
	}
	return out
}

// startWriter writes continuously to the inventory's members with the
// apiserver-etcd-client identity, as a kube-apiserver would.
func (s *story) startWriter(t *testing.T) *writer.Writer {
	t.Helper()
	c, _, _ := s.cluster(t)
	var endpoints []string
	for _, h := range c.Spec.Hosts {
		endpoints = append(endpoints, manifests.ClientURL(h))
	}
	return s.startWriterTo(t, endpoints)
}

// startWriterTo is startWriter for the given client URLs only.
func (s *story) startWriterTo(t *testing.T, endpoints []string) *writer.Writer {
	t.Helper()
	c, pki, _ := s.cluster(t)
	kp, ok := pki.Leaf(c.Spec.Hosts[0].Name, certs.APIServerEtcdClient)
	if !ok {
		t.Fatal("no apiserver-etcd-client certificate")
	}
	tlsConfig, err := etcdclient.TLSConfig(pki.CA.CertPEM, kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	w, err := writer.Start(context.Background(), writer.Options{Endpoints: endpoints, TLS: tlsConfig, Rate: 100, Timeout: time.Second, Prefix: "/e2e-writer/" + t.Name() + "/"})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// stopWriter stops w and fails the test if an acknowledged write is missing
// or if fewer than 50 writes a second were acknowledged.
func (s *story) stopWriter(t *testing.T, w *writer.Writer) writer.Report {
	t.Helper()
	r := w.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v, err := w.Verify(ctx)
	if err != nil {
		t.Fatalf("verify the writer's keys: %v", err)
	}
	t.Logf("writer: %s; verified %d, missing %d, wrong %d", r, v.Checked, len(v.Missing), len(v.Wrong))
	if len(v.Missing) > 0 || len(v.Wrong) > 0 {
		t.Errorf("acknowledged writes lost: missing %v, wrong %v", head(v.Missing), head(v.Wrong))
	}
	if r.Rate < 50 {
		t.Errorf("the writer acknowledged %.1f writes/s, want at least 50", r.Rate)
	}
	s.mu.Lock()
	s.gaps = append(s.gaps, fmt.Sprintf("%-60s acked %5d, lost 0 of them: %v; longest gap %s", t.Name(), r.Acknowledged, len(v.Missing) == 0, r.LongestGap.Round(time.Millisecond)))
	s.mu.Unlock()
	return r
}

func head(s []string) []string {
	if len(s) > 5 {
		return s[:5]
	}
	return s
}

// snapshot is what etcdadm could have written on a host: every file under
// its directories with mode and sha256. Left out: etcd's own data, which
// changes by itself, and the lock file, which names the last run that
// held the host.
func snapshot(t *testing.T, h *lab.Host) string {
	t.Helper()
	const dirs = "/etc/kubernetes /etc/systemd/system/kubelet.service.d /var/lib/etcdadm"
	out, err := h.Exec(context.Background(), "sh", "-c", "find "+dirs+" -type f ! -path /var/lib/etcdadm/lock -exec sha256sum {} + 2>/dev/null | sort; find "+dirs+" ! -path /var/lib/etcdadm/lock -exec stat -c '%a %n' {} + 2>/dev/null | sort")
	if err != nil {
		t.Fatalf("snapshot %s: %v", h.Name, err)
	}
	return string(out)
}

func snapshots(t *testing.T, hosts []*lab.Host) map[string]string {
	out := map[string]string{}
	for _, h := range hosts {
		out[h.Name] = snapshot(t, h)
	}
	return out
}

func unchanged(t *testing.T, before map[string]string, hosts []*lab.Host) {
	t.Helper()
	for _, h := range hosts {
		if now := snapshot(t, h); now != before[h.Name] {
			t.Errorf("%s was changed:\nbefore:\n%s\nafter:\n%s", h.Name, before[h.Name], now)
		}
	}
}

// pkiDigest is every file of the local PKI with its mode and sha256, or
// "absent".
func pkiDigest(t *testing.T, dir string) string {
	t.Helper()
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return "absent"
	}
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%v %s", info.Mode(), p)
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			line += " " + hex.EncodeToString(sum[:])
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func pids(hosts []*lab.Host, name string) map[string][]int {
	out := map[string][]int{}
	for _, h := range hosts {
		p := h.PIDs(name)
		slices.Sort(p)
		out[h.Name] = p
	}
	return out
}

// waitFor polls until cond holds or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
	}
}

// tempFiles lists what an interrupted atomic write could leave on a host.
func tempFiles(t *testing.T, h *lab.Host) string {
	t.Helper()
	out, err := h.Exec(context.Background(), "find", "/etc/kubernetes", "/etc/systemd/system", "/var/lib/etcdadm", "-name", "*.etcdadm-*.tmp")
	if err != nil {
		t.Fatalf("look for temporary files on %s: %v", h.Name, err)
	}
	return strings.TrimSpace(string(out))
}

// shape slows the link towards host i down (on the machine's end of its veth).
func shape(t *testing.T, i int, rate string) func() {
	t.Helper()
	veth := fmt.Sprintf("e2ev%d", i)
	if out, err := exec.Command("tc", "qdisc", "add", "dev", veth, "root", "tbf", "rate", rate, "burst", "1600", "latency", "30s").CombinedOutput(); err != nil {
		t.Fatalf("shape %s: %v: %s", veth, err, out)
	}
	return func() {
		if out, err := exec.Command("tc", "qdisc", "del", "dev", veth, "root").CombinedOutput(); err != nil {
			t.Errorf("unshape %s: %v: %s", veth, err, out)
		}
	}
}

// startEtcdadm runs etcdadm in the background; the caller waits or kills it.
func startEtcdadm(t *testing.T, bin string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out
}

// restartOrder names the hosts whose etcd a run restarted, in order, from
// its progress on standard error.
func restartOrder(stderr string) []string {
	var order []string
	for _, line := range strings.Split(stderr, "\n") {
		if strings.HasSuffix(line, "restarting etcd") {
			order = append(order, strings.Trim(strings.Fields(line)[0], "[]"))
		}
	}
	return order
}

// checkUpgraded checks a rolling upgrade of 3 members: each restarted once,
// the leader last, each seen reporting version, and every member on it and
// healthy now.
func checkUpgraded(t *testing.T, stderr, leader, version string, client *etcdclient.Client, c *config.Cluster) {
	t.Helper()
	if order := restartOrder(stderr); len(order) != 3 || order[2] != leader {
		t.Errorf("upgrade order %v, want the leader %s last", order, leader)
	}
	if n := strings.Count(stderr, "reports version "+version); n != 3 {
		t.Errorf("%d members were seen reporting %s, want 3", n, version)
	}
	for _, st := range client.Status(context.Background(), ops.Endpoints(c), 3*time.Second) {
		if st.Version != version || !st.Healthy {
			t.Errorf("%s: version %s, healthy %v", st.Name, st.Version, st.Healthy)
		}
	}
}

// serverCertHasSAN reports whether the host's etcd server certificate
// names san.
func serverCertHasSAN(t *testing.T, h *lab.Host, san string) bool {
	t.Helper()
	crt, err := h.ReadFile(context.Background(), "/etc/kubernetes/pki/etcd/server.crt")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(crt)
	if block == nil {
		return false
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	return err == nil && slices.Contains(cert.DNSNames, san)
}
