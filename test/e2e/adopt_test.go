package e2e

// Clusters etcdadm did not build, adopted: the kubeadm guide's external
// cluster and a stacked control plane, both made with kubeadm v1.37.2's own
// phases called as Go code (internal/kubeadmguide), run by the lab's real
// kubelets; and a host carrying another CA, refused.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/kubeadmguide"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/test/lab"
)

type adoptStory struct {
	*story
	guide []*lab.Host
	opts  kubeadmguide.Options
	// files are what kubeadm's phases and the guide put on each host.
	files map[string]map[string]kubeadmguide.File
	// adopted is the inventory adopt printed.
	adopted string
	figures []string
}

// TestIntegrationAdopt builds the guide's cluster on three lab hosts with
// kubeadm's phases and the guide's kubelet drop-in, refuses it while one
// host carries another CA, adopts it (nothing on a host changes, no etcd
// restarts), applies the printed inventory (no member restarts, etcd.yaml
// and certificates byte-identical), renews every member's certificates;
// then, on the same hosts cleaned, adopts and renews three stacked members,
// each beside the kube-apiserver kubeadm's control-plane phase writes.
func TestIntegrationAdopt(t *testing.T) {
	s := &adoptStory{story: newStory(t, lab.Options{Hosts: 3, Dir: "/var/tmp/etcdadm-e2e-adopt", NamePrefix: "adopt", Subnet: 27})}
	s.guide = s.lab.Hosts
	s.opts = kubeadmguide.Options{KubernetesVersion: lab.KubeletVersion, CgroupDriver: "cgroupfs", KubeletExtra: "failCgroupV1: false\n"}
	defer func() { t.Logf("figures:\n%s", strings.Join(s.figures, "\n")) }()
	runSteps(t, s.story, s, []step[*adoptStory]{
		{"GuideClusterWithKubeadm", stepAdoptGuideCluster},
		{"AnotherCARefused", stepAdoptAnotherCA},
		{"Adopt", stepAdopt},
		{"ApplyChangesNothing", stepAdoptApply},
		{"Renew", stepAdoptRenew},
		{"RotateCAAndSnapshot", stepAdoptRotateCA},
		{"Stacked", stepAdoptStacked},
	})
}

func (s *adoptStory) record(format string, args ...any) {
	s.figures = append(s.figures, fmt.Sprintf(format, args...))
}

func nodesOf(hosts []*lab.Host) []kubeadmguide.Node {
	var out []kubeadmguide.Node
	for _, h := range hosts {
		out = append(out, kubeadmguide.Node{Name: h.Name, Address: h.Address})
	}
	return out
}

// putGuideFiles writes what kubeadm and the guide leave on host h: the
// PKI and the kubelet's files, the kubelet restarted on them (as the guide
// does), then the manifest `kubeadm init phase etcd local` wrote.
func putGuideFiles(t *testing.T, h *lab.Host, files map[string]kubeadmguide.File) {
	t.Helper()
	ctx := context.Background()
	var paths []string
	for p := range files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		if p == kubeadmguide.Manifest {
			continue
		}
		if err := h.WriteFile(ctx, p, files[p].Data, files[p].Mode); err != nil {
			t.Fatalf("write %s on %s: %v", p, h.Name, err)
		}
	}
	if _, ok := files[kubeadmguide.KubeletConfPath]; ok {
		if _, err := h.Exec(ctx, "sh", "-c", "mkdir -p -m 0700 /etc/kubernetes/manifests && systemctl daemon-reload && systemctl restart kubelet"); err != nil {
			t.Fatalf("start the kubelet on %s: %v", h.Name, err)
		}
	}
	if m, ok := files[kubeadmguide.Manifest]; ok {
		if err := h.WriteFile(ctx, kubeadmguide.Manifest, m.Data, m.Mode); err != nil {
			t.Fatal(err)
		}
	}
}

// guideClient reaches the members with the first host's healthcheck-client
// certificate, as the guide's etcdctl check does.
func guideClient(t *testing.T, files map[string]kubeadmguide.File) *etcdclient.Client {
	t.Helper()
	tlsConfig, err := etcdclient.TLSConfig(files[kubeadmguide.PKIDir+"/etcd/ca.crt"].Data,
		files[kubeadmguide.PKIDir+"/etcd/healthcheck-client.crt"].Data, files[kubeadmguide.PKIDir+"/etcd/healthcheck-client.key"].Data)
	if err != nil {
		t.Fatal(err)
	}
	cli := etcdclient.New(tlsConfig, nil)
	t.Cleanup(cli.Close)
	return cli
}

func endpointsOf(hosts []*lab.Host) []etcdclient.Endpoint {
	var out []etcdclient.Endpoint
	for _, h := range hosts {
		out = append(out, etcdclient.Endpoint{Name: h.Name, ClientURL: "https://" + h.Address + ":2379"})
	}
	return out
}

func allHealthy(cli *etcdclient.Client, hosts []*lab.Host) bool {
	sts := cli.Status(context.Background(), endpointsOf(hosts), 2*time.Second)
	n := 0
	for _, st := range sts {
		if st.Healthy {
			n++
		}
	}
	return n == len(hosts)
}

func stepAdoptGuideCluster(t *testing.T, s *adoptStory) {
	start := time.Now()
	var err error
	s.files, err = kubeadmguide.Build(t.TempDir(), nodesOf(s.guide), s.opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range s.guide {
		putGuideFiles(t, h, s.files[h.Name])
	}
	cli := guideClient(t, s.files[s.guide[0].Name])
	waitFor(t, "the guide's three members healthy", 3*time.Minute, func() bool { return allHealthy(cli, s.guide) })
	s.record("the guide's cluster, by kubeadm's phases, healthy in %s", time.Since(start).Round(time.Second))
	// The inventory the operator writes: the hosts, how to reach them.
	s.write(t, s.guide, nil)
}

// hostSums are the sha256 of a host's etcd.yaml and etcd certificates and keys.
func hostSums(t *testing.T, hosts []*lab.Host) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, h := range hosts {
		got, err := h.Exec(context.Background(), "sh", "-c", "sha256sum /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/pki/etcd/* /etc/kubernetes/pki/apiserver-etcd-client.*")
		if err != nil {
			t.Fatalf("sums on %s: %v", h.Name, err)
		}
		out[h.Name] = string(got)
	}
	return out
}

func stepAdoptAnotherCA(t *testing.T, s *adoptStory) {
	ctx := context.Background()
	h := s.guide[2]
	other, err := kubeadmguide.Build(t.TempDir(), nodesOf(s.guide[:1]), s.opts)
	if err != nil {
		t.Fatal(err)
	}
	ca := kubeadmguide.PKIDir + "/etcd/ca.crt"
	if err := h.WriteFile(ctx, ca, other[s.guide[0].Name][ca].Data, 0o644); err != nil {
		t.Fatal(err)
	}
	before := snapshots(t, s.guide)
	r := s.etcdadm(t, "adopt", "-f", s.file, "--yes", "-o", "yaml")
	if r.err == nil {
		t.Fatal("adopt went on with a host carrying another CA")
	}
	if want := h.Name + ": " + ca + " is another CA"; !strings.Contains(r.stderr, want) {
		t.Errorf("the refusal does not say %q:\n%s", want, r.stderr)
	}
	if strings.Count(r.stderr, "error: ") != 1 || r.stdout != "" {
		t.Errorf("want one error and no inventory; stdout:\n%s", r.stdout)
	}
	if d := pkiDigest(t, filepath.Join(s.dir, "pki")); d != "absent" {
		t.Errorf("a refused adoption left a PKI directory:\n%s", d)
	}
	unchanged(t, before, s.guide)
	if err := h.WriteFile(ctx, ca, s.files[h.Name][ca].Data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func stepAdopt(t *testing.T, s *adoptStory) {
	before := snapshots(t, s.guide)
	pidsBefore := pids(s.guide, "etcd")
	start := time.Now()
	r := s.etcdadm(t, "adopt", "-f", s.file, "--yes", "-o", "yaml")
	if r.err != nil {
		t.Fatal(r.err)
	}
	s.record("adopt of 3 guide members: %s", time.Since(start).Round(10*time.Millisecond))
	unchanged(t, before, s.guide)
	if now := pids(s.guide, "etcd"); !equalPIDs(now, pidsBefore) {
		t.Errorf("etcd PIDs changed: %v, then %v", pidsBefore, now)
	}
	s.record("etcd PIDs before and after adopt: %v, %v", pidsBefore, pids(s.guide, "etcd"))
	// The lab's inventory lets etcd listen on loopback too: the difference shows.
	for _, want := range []string{"--- " + s.guide[0].Name + ":/etc/kubernetes/manifests/etcd.yaml (running)", "-    - --listen-client-urls=https://" + s.guide[0].Address + ":2379"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the differences lack %q", want)
		}
	}
	if strings.Contains(r.stdout, "PRIVATE KEY") || strings.Contains(r.stderr, "PRIVATE KEY") {
		t.Error("a key was printed")
	}
	pki := filepath.Join(s.dir, "pki")
	for rel, want := range map[string]kubeadmguide.File{
		"etcd/ca.crt": s.files[s.guide[0].Name][kubeadmguide.PKIDir+"/etcd/ca.crt"],
		"etcd/ca.key": s.files[s.guide[0].Name][kubeadmguide.PKIDir+"/etcd/ca.key"],
		"hosts/" + s.guide[1].Name + "/etcd/server.crt": s.files[s.guide[1].Name][kubeadmguide.PKIDir+"/etcd/server.crt"],
	} {
		got, err := os.ReadFile(filepath.Join(pki, rel))
		if err != nil || !bytes.Equal(got, want.Data) {
			t.Errorf("%s is not the hosts' (%v)", rel, err)
		}
	}
	if st, err := os.Stat(filepath.Join(pki, "etcd/ca.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("ca.key: %v, %v", st, err)
	}
	s.adopted = r.stdout
	if err := os.WriteFile(s.file, []byte(s.adopted), 0o644); err != nil {
		t.Fatal(err)
	}
	c, _, err := config.Load(s.file)
	if err != nil {
		t.Fatalf("the printed inventory does not load: %v\n%s", err, s.adopted)
	}
	if n := len(c.Spec.Hosts[0].ExtraArgs); n != 5 {
		t.Errorf("%d extraArgs on %s, want the guide's 5", n, c.Spec.Hosts[0].Name)
	}
	// Adopted again with its own inventory, there is no difference left.
	r = s.etcdadm(t, "adopt", "-f", s.file, "--dry-run")
	if r.err != nil || strings.Contains(r.stderr, "(running)") {
		t.Errorf("adopt with the printed inventory still finds differences (%v)", r.err)
	}
}

func equalPIDs(a, b map[string][]int) bool {
	for k, v := range a {
		if !slices.Equal(v, b[k]) || len(v) == 0 {
			return false
		}
	}
	return len(a) == len(b)
}

func stepAdoptApply(t *testing.T, s *adoptStory) {
	if r := s.etcdadm(t, "diff", "-f", s.file); r.err != nil {
		t.Fatal(r.err)
	} else if strings.Contains(r.stdout, "etcd.yaml") || strings.Contains(r.stdout, ".crt") || strings.Contains(r.stdout, "restart etcd") {
		t.Errorf("diff plans to change a manifest or a certificate:\n%s", r.stdout)
	}
	sums := hostSums(t, s.guide)
	pidsBefore := pids(s.guide, "etcd")
	w := s.startWriter(t)
	start := time.Now()
	r := s.etcdadm(t, "apply", "-f", s.file)
	if r.err != nil {
		t.Fatal(r.err)
	}
	s.record("apply of the adopted inventory: %s", time.Since(start).Round(10*time.Millisecond))
	s.stopWriter(t, w)
	if order := restartOrder(r.stderr); len(order) > 0 {
		t.Errorf("apply restarted %v", order)
	}
	if now := pids(s.guide, "etcd"); !equalPIDs(now, pidsBefore) {
		t.Errorf("etcd PIDs changed: %v, then %v", pidsBefore, now)
	}
	for h, sum := range hostSums(t, s.guide) {
		if sum != sums[h] {
			t.Errorf("%s: etcd.yaml or a certificate changed:\nbefore:\n%s\nafter:\n%s", h, sums[h], sum)
		}
	}
	s.record("etcd PIDs before and after apply: %v, %v; etcd.yaml and certificates byte-identical", pidsBefore, pids(s.guide, "etcd"))
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || !strings.Contains(r.stderr+r.stdout, "nothing to do") {
		t.Errorf("a second apply is not empty (%v)", r.err)
	}
}

func serverSums(t *testing.T, hosts []*lab.Host) map[string]string {
	out := map[string]string{}
	for _, h := range hosts {
		b, err := h.ReadFile(context.Background(), "/etc/kubernetes/pki/etcd/server.crt")
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		out[h.Name] = hex.EncodeToString(sum[:])
	}
	return out
}

func stepAdoptRenew(t *testing.T, s *adoptStory) {
	before := serverSums(t, s.guide)
	w := s.startWriter(t)
	start := time.Now()
	r := s.etcdadm(t, "certs", "renew", "-f", s.file)
	if r.err != nil {
		t.Fatal(r.err)
	}
	s.record("certs renew of 3 adopted members: %s, restarts %v", time.Since(start).Round(10*time.Millisecond), restartOrder(r.stderr))
	s.stopWriter(t, w)
	for h, sum := range serverSums(t, s.guide) {
		if sum == before[h] {
			t.Errorf("%s kept its server certificate", h)
		}
	}
	if order := restartOrder(r.stderr); len(order) != 3 {
		t.Errorf("restarts %v, want every member once", order)
	}
	_, _, client := s.cluster(t)
	healthy := 0
	for _, st := range client.Status(context.Background(), endpointsOf(s.guide), 3*time.Second) {
		if st.Healthy {
			healthy++
		}
	}
	if healthy != 3 {
		t.Errorf("%d healthy members after the renewal, want 3", healthy)
	}
}

// The rest of day 2 on the adopted cluster: a whole CA rotation under a
// writer that follows it, every host ending on the new CA alone (the one
// now in spec.pki.dir), then a snapshot.
func stepAdoptRotateCA(t *testing.T, s *adoptStory) {
	ctx := context.Background()
	const caPath = "/etc/kubernetes/pki/etcd/ca.crt"
	before := map[string][]byte{}
	for _, h := range s.guide {
		b, err := h.ReadFile(ctx, caPath)
		if err != nil {
			t.Fatal(err)
		}
		before[h.Name] = b
	}
	w := s.rotationWriter(t)
	start := time.Now()
	r := s.etcdadm(t, "certs", "rotate-ca", "-f", s.file)
	s.stopWriter(t, w)
	if r.err != nil {
		t.Fatal(r.err)
	}
	s.record("certs rotate-ca of 3 adopted members: %s", time.Since(start).Round(10*time.Millisecond))
	c, _, _ := s.cluster(t)
	local, err := os.ReadFile(filepath.Join(c.PKIDir(), "etcd", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range s.guide {
		b, err := h.ReadFile(ctx, caPath)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(b, before[h.Name]) || !bytes.Equal(b, local) {
			t.Errorf("%s's ca.crt is not the new CA alone after the rotation", h.Name)
		}
	}
	snap := filepath.Join(t.TempDir(), "adopted.db")
	if r := s.etcdadm(t, "snapshot", "save", "-f", s.file, "-o", snap); r.err != nil {
		t.Fatal(r.err)
	}
	if st, err := os.Stat(snap); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the snapshot: %v", err)
	}
}

// A stacked control plane as kubeadm makes it: the first member's static
// Pod from kubeadm init's etcd phase, the others joined as kubeadm join's
// etcd phase does (added as learners with kubeadm's etcd client, their
// Pods from its GetEtcdPodSpec, promoted), each next to the kube-apiserver
// kubeadm's control-plane phase writes, which reaches it on loopback.
func stepAdoptStacked(t *testing.T, s *adoptStory) {
	ctx := context.Background()
	hosts := s.guide
	for _, h := range hosts {
		if _, err := h.Exec(ctx, "sh", "-c", "rm -f /etc/kubernetes/manifests/etcd.yaml; while ss -Hltn 'sport = :2379' | grep -q .; do sleep 0.2; done; rm -rf /etc/kubernetes /var/lib/etcdadm; find /var/lib/etcd -mindepth 1 -delete"); err != nil {
			t.Fatal(err)
		}
	}
	o := s.opts
	o.KubeadmJoin = true
	work := t.TempDir()
	nodes := nodesOf(hosts)
	files, err := kubeadmguide.Build(work, nodes, o)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.dir, "stacked")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	st := &story{bin: s.bin, lab: s.lab, dir: dir, known: s.known, file: filepath.Join(dir, "cluster.yaml")}
	st.write(t, hosts, func(inv string) string { return strings.Replace(inv, "spec:\n", "spec:\n  topology: stacked\n", 1) })
	c, _, err := config.Load(st.file)
	if err != nil {
		t.Fatal(err)
	}
	// The kubelet of a stacked host is kubeadm's: here the lab's, on the
	// manifests directory.
	for _, h := range hosts {
		startKubelet(t, c, h)
		putGuideFiles(t, h, files[h.Name])
	}
	cli := guideClient(t, files[hosts[0].Name])
	waitFor(t, "the first stacked member healthy", 3*time.Minute, func() bool { return allHealthy(cli, hosts[:1]) })
	for i := 1; i < len(hosts); i++ {
		h := hosts[i]
		put := func(b []byte) error { return h.WriteFile(ctx, kubeadmguide.Manifest, b, 0o600) }
		if err := kubeadmguide.Join(work, nodes, i, o, put); err != nil {
			t.Fatalf("kubeadm join's etcd phase on %s: %v", h.Name, err)
		}
	}
	waitFor(t, "the stacked members healthy", 3*time.Minute, func() bool { return allHealthy(cli, hosts) })
	kubeadmOrder(t, hosts)
	startControlPlane(t, c, s.lab, hosts, nil)
	before := snapshots(t, hosts)
	pidsBefore := pids(hosts, "etcd")
	r := st.etcdadm(t, "adopt", "-f", st.file, "--yes", "-o", "yaml")
	if r.err != nil {
		t.Fatal(r.err)
	}
	unchanged(t, before, hosts)
	if !strings.Contains(r.stderr, "kubeadm stacked control plane") || !strings.Contains(r.stdout, "topology: stacked") {
		t.Errorf("not adopted as stacked:\n%s", r.stdout)
	}
	if err := os.WriteFile(st.file, []byte(r.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	sums := hostSums(t, hosts)
	a := st.etcdadm(t, "apply", "-f", st.file)
	if a.err != nil {
		t.Fatal(a.err)
	}
	if order := restartOrder(a.stderr); len(order) > 0 || !equalPIDs(pids(hosts, "etcd"), pidsBefore) {
		t.Errorf("apply of the adopted stacked inventory restarted %v", order)
	}
	for h, sum := range hostSums(t, hosts) {
		if sum != sums[h] {
			t.Errorf("%s: apply changed etcd.yaml or a certificate:\n%s\nthen\n%s", h, sums[h], sum)
		}
	}
	serverBefore := serverSums(t, hosts)
	start := time.Now()
	renew := st.etcdadm(t, "certs", "renew", "-f", st.file)
	if renew.err != nil {
		t.Fatal(renew.err)
	}
	for h, sum := range serverSums(t, hosts) {
		if sum == serverBefore[h] {
			t.Errorf("%s kept its server certificate", h)
		}
	}
	if order := restartOrder(renew.stderr); len(order) != 3 {
		t.Errorf("restarts %v, want every stacked member once", order)
	}
	// Restarted with a new restart annotation, each keeps kubeadm's order.
	kubeadmOrder(t, hosts)
	_, _, client := clusterAt(t, st.file)
	waitFor(t, "the stacked members healthy after the renewal", time.Minute, func() bool {
		n := 0
		for _, st := range client.Status(context.Background(), endpointsOf(hosts), 2*time.Second) {
			if st.Healthy {
				n++
			}
		}
		return n == 3
	})
	s.record("3 stacked members adopted and applied without a restart (etcd PIDs %v), renewed in %s", pidsBefore, time.Since(start).Round(10*time.Millisecond))
}

// kubeadmOrder checks that the stacked members' manifests are as kubeadm
// init and join write them: the first without --initial-cluster-state, the
// joined ones with "existing", among the sorted defaults (before --key-file).
func kubeadmOrder(t *testing.T, hosts []*lab.Host) {
	t.Helper()
	for i, h := range hosts {
		b, err := h.ReadFile(context.Background(), kubeadmguide.Manifest)
		if err != nil {
			t.Fatal(err)
		}
		m := string(b)
		ic, key := strings.Index(m, "- --initial-cluster="), strings.Index(m, "- --key-file=")
		state := strings.Contains(m, "--initial-cluster-state=existing")
		if ic < 0 || key < ic || (i == 0) == state || (i == 0 && strings.Contains(m, "--initial-cluster-state")) {
			t.Errorf("%s's etcd.yaml is not kubeadm %s's:\n%s", h.Name, map[bool]string{true: "init", false: "join"}[i == 0], m)
		}
	}
}
