package e2e

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/test/lab"
)

// systemdStory is a lab whose members run as etcd.service, from a release
// tarball made of the lab's etcd and etcdctl.
type systemdStory struct {
	*story
	// release is the tarball's file name next to the inventory, sum its
	// sha256; etcdSum is the sha256 of the etcd binary in it.
	release, sum, etcdSum string
}

// TestIntegrationSystemd runs the members as systemd services on hosts
// whose kubelet never runs: etcd and etcdctl come from a release tarball
// (upstream's layout, made here of the lab's binaries, by sha256), the
// members are /usr/local/bin/etcd run by the hosts' systemctl from
// etcd.service and /etc/etcd/etcd.env, a re-apply restarts nothing, and a
// SAN change rolls them through their units one at a time, leader last,
// under a continuous writer.
func TestIntegrationSystemd(t *testing.T) {
	requireLab(t)
	bin := buildEtcdadm(t)
	l := upLab(t, lab.Options{Hosts: 3, Dir: "/var/tmp/etcdadm-e2e-systemd", NamePrefix: "esd", Subnet: 12})
	dir := t.TempDir()
	s := &systemdStory{story: &story{bin: bin, lab: l, dir: dir, known: filepath.Join(dir, "known_hosts"), file: filepath.Join(dir, "cluster.yaml")}}
	copyFile(t, l.KnownHostsFile, s.known)
	s.release, s.sum, s.etcdSum = writeLabRelease(t, dir, "3.7.0", l.Artifacts.Etcd, l.Artifacts.Etcdctl)
	s.writeInventory(t, false)
	defer func() {
		t.Logf("continuous writers:\n%s", strings.Join(s.gaps, "\n"))
	}()
	steps := []struct {
		name string
		run  func(*testing.T, *systemdStory)
	}{
		{"the kubelet is stopped on every host", stepNoKubelet},
		{"apply brings up 3 healthy members run by etcd.service from /usr/local/bin/etcd", stepSystemdApply},
		{"a re-apply writes nothing and restarts nothing", stepSystemdIdempotent},
		{"a SAN change rolls the members through their units one at a time, leader last, under a writer", stepSystemdRollingSAN},
		{"a new release upgrades etcd one member at a time, leader last, after a snapshot, under a writer", stepSystemdUpgrade},
	}
	for _, st := range steps {
		if !t.Run(st.name, func(t *testing.T) { st.run(t, s) }) {
			t.Fatalf("stopping the story after %q failed", st.name)
		}
	}
}

// writeLabRelease writes etcd-v<version>-linux-<arch>.tar.gz into dir as
// etcd's project publishes it, with the etcd and etcdctl binaries given, and
// returns its name, its sha256 and the sha256 of its etcd.
func writeLabRelease(t *testing.T, dir, version, etcd, etcdctl string) (string, string, string) {
	t.Helper()
	top := "etcd-v" + version + "-linux-" + runtime.GOARCH
	name := top + ".tar.gz"
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sum := sha256.New()
	zw := gzip.NewWriter(io.MultiWriter(f, sum))
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: top + "/", Mode: 0o755, ModTime: time.Now()}); err != nil {
		t.Fatal(err)
	}
	var etcdSum string
	for _, b := range []struct{ name, path string }{{"etcd", etcd}, {"etcdctl", etcdctl}, {"README.md", ""}} {
		var data []byte
		if b.path != "" {
			if data, err = os.ReadFile(b.path); err != nil {
				t.Fatal(err)
			}
		} else {
			data = []byte("etcd, built for the lab\n")
		}
		if b.name == "etcd" {
			s := sha256.Sum256(data)
			etcdSum = hex.EncodeToString(s[:])
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: top + "/" + b.name, Mode: 0o755, Size: int64(len(data)), ModTime: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return name, hex.EncodeToString(sum.Sum(nil)), etcdSum
}

// writeInventory writes the lab's inventory with runtime systemd, and with
// san one more name in every server certificate.
func (s *systemdStory) writeInventory(t *testing.T, san bool) {
	t.Helper()
	etcd := fmt.Sprintf("  etcd:\n    runtime: systemd\n    release: {file: %s, sha256: %s}\n", s.release, s.sum)
	if san {
		etcd += "    serverCertSANs: [etcd.e2e.example]\n"
	}
	s.write(t, s.lab.Hosts, func(inv string) string {
		return strings.Replace(inv, "  pki: {dir: pki", etcd+"  pki: {dir: pki", 1)
	})
}

func stepNoKubelet(t *testing.T, s *systemdStory) {
	ctx := context.Background()
	for _, h := range s.lab.Hosts {
		if out, err := h.Exec(ctx, "sh", "-c", "systemctl disable --now kubelet; systemctl is-active kubelet || true"); err != nil || strings.TrimSpace(string(out)) != "inactive" {
			t.Errorf("%s: kubelet %q, %v", h.Name, out, err)
		}
	}
}

// unitPID is the MainPID systemctl reports for etcd.service on h.
func unitPID(t *testing.T, h *lab.Host) int {
	t.Helper()
	out, err := h.Exec(context.Background(), "systemctl", "show", "-p", "MainPID", "--value", "etcd")
	if err != nil {
		t.Fatalf("%s: systemctl show etcd: %v", h.Name, err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return pid
}

func stepSystemdApply(t *testing.T, s *systemdStory) {
	ctx := context.Background()
	r := s.etcdadm(t, "apply", "-f", s.file)
	if r.err != nil {
		for _, h := range s.lab.Hosts {
			t.Logf("%s etcd log:\n%s", h.Name, h.LogTail("etcd.log", 30))
		}
		t.Fatal(r.err)
	}
	if !strings.Contains(r.stdout, "cluster: 3/3 members healthy") {
		t.Errorf("summary:\n%s", r.stdout)
	}
	if strings.Contains(r.stderr, "systemctl restart kubelet") || strings.Contains(r.stderr, "imported ") {
		t.Errorf("apply ran the kubelet or imported an image:\n%s", r.stderr)
	}
	for _, h := range s.lab.Hosts {
		ps := h.PIDs("etcd")
		if len(ps) != 1 {
			t.Errorf("%s: etcd processes %v, want one", h.Name, ps)
			continue
		}
		exe, err := h.Exec(ctx, "readlink", fmt.Sprintf("/proc/%d/exe", ps[0]))
		if err != nil || strings.TrimSpace(string(exe)) != "/usr/local/bin/etcd" {
			t.Errorf("%s: etcd runs %q (%v), want /usr/local/bin/etcd", h.Name, exe, err)
		}
		if got := unitPID(t, h); got != ps[0] {
			t.Errorf("%s: etcd.service's MainPID is %d, etcd's PID %d", h.Name, got, ps[0])
		}
		if out, _ := h.Exec(ctx, "systemctl", "is-active", "etcd"); strings.TrimSpace(string(out)) != "active" {
			t.Errorf("%s: etcd.service is %q after READY=1", h.Name, out)
		}
		out, err := h.Exec(ctx, "sh", "-c", "sha256sum /usr/local/bin/etcd | cut -d' ' -f1; stat -c %a /usr/local/bin/etcd /usr/local/bin/etcdctl; test -e /etc/kubernetes/manifests/etcd.yaml && echo manifest; ls /etc/systemd/system/kubelet.service.d 2>/dev/null; ctr -n k8s.io containers ls -q; grep -c -- --name="+h.Name+" /etc/etcd/etcd.env; cat /proc/"+strconv.Itoa(ps[0])+"/cmdline | tr '\\0' ' '")
		if err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 5 || lines[0] != s.etcdSum || lines[1] != "755" || lines[2] != "755" || lines[3] != "1" {
			t.Errorf("%s: binary sha256, modes, manifest, kubelet drop-ins, containers, env:\n%s\nwant the release's etcd (%s), 755, nothing of a kubelet or a Pod", h.Name, out, s.etcdSum)
		}
		if cmdline := lines[len(lines)-1]; !strings.HasPrefix(cmdline, "/usr/local/bin/etcd --advertise-client-urls=") || !strings.Contains(cmdline, "--initial-cluster-state=new") {
			t.Errorf("%s: etcd's command line %q", h.Name, cmdline)
		}
	}
	ms := s.members(t)
	if len(ms) != 3 {
		t.Errorf("members %v", ms)
	}
}

func stepSystemdIdempotent(t *testing.T, s *systemdStory) {
	hosts := s.lab.Hosts
	etcdPIDs := pids(hosts, "etcd")
	before := systemdFiles(t, hosts)
	r := s.etcdadm(t, "apply", "-f", s.file)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !strings.Contains(r.stdout, "nothing to do") || strings.Contains(r.stderr, "wrote ") || strings.Contains(r.stderr, "restarting etcd") {
		t.Errorf("re-apply:\n%s\n%s", r.stdout, r.stderr)
	}
	if got := pids(hosts, "etcd"); fmt.Sprint(got) != fmt.Sprint(etcdPIDs) {
		t.Errorf("etcd PIDs changed: %v -> %v", etcdPIDs, got)
	}
	if got := systemdFiles(t, hosts); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("files changed:\nbefore:\n%v\nafter:\n%v", before, got)
	}
	if d := s.etcdadm(t, "diff", "-f", s.file); d.err != nil || strings.Count(d.stdout, "up to date (14 files)") != 3 {
		t.Errorf("diff after apply: %v\n%s", d.err, d.stdout)
	}
}

// systemdFiles is, per host, every file etcdadm could have written with its
// mode and sha256.
func systemdFiles(t *testing.T, hosts []*lab.Host) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, h := range hosts {
		b, err := h.Exec(context.Background(), "sh", "-c", "find /etc/kubernetes /etc/etcd /etc/systemd/system /usr/local/bin /var/lib/etcdadm -type f ! -path /var/lib/etcdadm/lock -exec sha256sum {} + 2>/dev/null | sort; find /etc/etcd /usr/local/bin -exec stat -c '%a %n' {} + | sort")
		if err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		out[h.Name] = string(b)
	}
	return out
}

func stepSystemdRollingSAN(t *testing.T, s *systemdStory) {
	ctx := context.Background()
	hosts := s.lab.Hosts
	c, _, client := s.cluster(t)
	leader := ""
	for _, st := range client.Status(ctx, ops.Endpoints(c), 3*time.Second) {
		if st.Leader {
			leader = st.Name
		}
	}
	etcdPIDs := pids(hosts, "etcd")
	w := s.startWriter(t)
	s.writeInventory(t, true)
	start := time.Now()
	r := s.etcdadm(t, "apply", "-f", s.file)
	took := time.Since(start)
	rep := s.stopWriter(t, w)
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("rolling restart of 3 members through their units took %s; longest write gap %s", took.Round(time.Millisecond), rep.LongestGap.Round(time.Millisecond))
	order := restartOrder(r.stderr)
	if len(order) != 3 || order[2] != leader || len(slices.Compact(slices.Sorted(slices.Values(order)))) != 3 {
		t.Errorf("restart order %v, want each member once with the leader %s last", order, leader)
	}
	if n := strings.Count(r.stderr, "ran systemctl enable etcd && systemctl restart --no-block etcd"); n != 3 {
		t.Errorf("%d restarts through systemctl, want 3:\n%s", n, r.stderr)
	}
	after := pids(hosts, "etcd")
	for _, h := range hosts {
		if len(after[h.Name]) != 1 || fmt.Sprint(after[h.Name]) == fmt.Sprint(etcdPIDs[h.Name]) {
			t.Errorf("etcd on %s was not restarted: %v -> %v", h.Name, etcdPIDs[h.Name], after[h.Name])
			continue
		}
		if got := unitPID(t, h); got != after[h.Name][0] {
			t.Errorf("%s: etcd.service's MainPID is %d, etcd's PID %v", h.Name, got, after[h.Name])
		}
		if !serverCertHasSAN(t, h, "etcd.e2e.example") {
			t.Errorf("%s's server certificate lacks the new SAN", h.Name)
		}
	}
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("apply after the roll: %v\n%s", r.err, r.stdout)
	}
}

func stepSystemdUpgrade(t *testing.T, s *systemdStory) {
	ctx := context.Background()
	hosts := s.lab.Hosts
	c, _, client := s.cluster(t)
	leader := ""
	for _, st := range client.Status(ctx, ops.Endpoints(c), 3*time.Second) {
		if st.Leader {
			leader = st.Name
		}
	}
	oldSum := s.etcdSum
	s.release, s.sum, s.etcdSum = writeLabRelease(t, s.dir, lab.EtcdNextVersion, s.lab.Artifacts.EtcdNext, s.lab.Artifacts.Etcdctl)
	s.writeInventory(t, true)
	w := s.startWriter(t)
	start := time.Now()
	r := s.etcdadm(t, "apply", "-f", s.file)
	took := time.Since(start)
	rep := s.stopWriter(t, w)
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("rolling upgrade of 3 members to %s through their units took %s; longest write gap %s", lab.EtcdNextVersion, took.Round(time.Millisecond), rep.LongestGap.Round(time.Millisecond))
	if i, j := strings.Index(r.stderr, "snapshot saved"), strings.Index(r.stderr, "restarting etcd"); i < 0 || j < i {
		t.Errorf("the upgrade must save a snapshot before the first restart:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "upgrade etcd 3.7.0 -> "+lab.EtcdNextVersion) {
		t.Errorf("no upgrade stage:\n%s", r.stderr)
	}
	checkUpgraded(t, r.stderr, leader, lab.EtcdNextVersion, client, c)
	for _, h := range hosts {
		out, err := h.Exec(ctx, "sh", "-c", "sha256sum /usr/local/bin/etcd /var/lib/etcdadm/backup/*/usr/local/bin/etcd | cut -d' ' -f1")
		if lines := strings.Fields(string(out)); err != nil || len(lines) != 2 || lines[0] != s.etcdSum || lines[1] != oldSum {
			t.Errorf("%s: the new etcd and the old one kept under the backup directory: %q %v", h.Name, out, err)
		}
	}
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("apply after the upgrade: %v\n%s", r.err, r.stdout)
	}
}
