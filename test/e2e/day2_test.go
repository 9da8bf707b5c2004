package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/test/lab"
)

const manifestPath = "/etc/kubernetes/manifests/etcd.yaml"

func stepAddMember(t *testing.T, s *story) {
	members, joining := s.lab.Hosts[:3], s.lab.Hosts[3]
	etcdPIDs := pids(members, "etcd")
	before := snapshots(t, members)
	w := s.startWriter(t)
	s.write(t, s.lab.Hosts[:4], nil)
	start := time.Now()
	r := s.etcdadm(t, "apply", "-f", s.file)
	took := time.Since(start)
	s.stopWriter(t, w)
	if r.err != nil {
		t.Logf("%s kubelet log:\n%s", joining.Name, joining.LogTail("kubelet.log", 30))
		t.Fatal(r.err)
	}
	t.Logf("adding %s took %s", joining.Name, took.Round(time.Millisecond))
	for _, want := range []string{"added to etcd as learner", "promoted to voting member"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("apply did not say %q", want)
		}
	}
	if !strings.Contains(r.stdout, "cluster: 4/4 members healthy") {
		t.Errorf("summary:\n%s", r.stdout)
	}
	ms := s.members(t)
	if len(ms) != 4 {
		t.Errorf("members %v, want 4", ms)
	}
	for name, m := range ms {
		if m.Learner {
			t.Errorf("%s is still a learner", name)
		}
	}
	if got := pids(members, "etcd"); fmt.Sprint(got) != fmt.Sprint(etcdPIDs) {
		t.Errorf("the existing members' etcd PIDs changed: %v -> %v", etcdPIDs, got)
	}
	unchanged(t, before, members)
	m, err := joining.ReadFile(context.Background(), manifestPath)
	if err != nil || !bytes.Contains(m, []byte("--initial-cluster-state=existing")) {
		t.Errorf("%s's manifest does not join as existing: %v", joining.Name, err)
	}
}

func stepRemoveReachable(t *testing.T, s *story) {
	ctx := context.Background()
	leaving := s.lab.Hosts[3]
	before := snapshots(t, []*lab.Host{leaving})
	// Without a terminal and without --yes, nothing happens.
	r := s.etcdadm(t, "member", "remove", leaving.Name, "-f", s.file)
	if r.err == nil || !strings.Contains(r.stderr, "--yes") {
		t.Fatalf("remove without confirmation: %v", r.err)
	}
	unchanged(t, before, []*lab.Host{leaving})
	if _, ok := s.members(t)[leaving.Name]; !ok {
		t.Fatal("the member went away without confirmation")
	}
	w := s.startWriter(t)
	r = s.etcdadm(t, "member", "remove", leaving.Name, "-f", s.file, "--yes")
	s.stopWriter(t, w)
	if r.err != nil {
		t.Fatal(r.err)
	}
	ms := s.members(t)
	if _, ok := ms[leaving.Name]; ok || len(ms) != 3 {
		t.Errorf("members after remove: %v", ms)
	}
	if len(leaving.PIDs("etcd")) > 0 {
		t.Errorf("etcd still runs on %s", leaving.Name)
	}
	for _, p := range []string{manifestPath, "/etc/kubernetes/pki/etcd/server.key", "/etc/systemd/system/kubelet.service.d/20-etcd-service-manager.conf"} {
		if _, err := leaving.ReadFile(ctx, p); err == nil {
			t.Errorf("%s still has %s", leaving.Name, p)
		}
	}
	out, err := leaving.Exec(ctx, "sh", "-c", "ls -A /var/lib/etcd; echo ---; find /var/lib/etcdadm/backup -path '*/var/lib/etcd/member/wal/*' -o -path '*/etc/kubernetes/manifests/etcd.yaml' -o -path '*/pki/etcd/server.key'")
	if err != nil {
		t.Fatal(err)
	}
	data, backup, _ := strings.Cut(string(out), "---\n")
	if strings.TrimSpace(data) != "" {
		t.Errorf("the data directory on %s is not empty: %s", leaving.Name, data)
	}
	for _, want := range []string{"/var/lib/etcd/member/wal/", "/etc/kubernetes/manifests/etcd.yaml", "/pki/etcd/server.key"} {
		if !strings.Contains(backup, want) {
			t.Errorf("the backup on %s lacks %s:\n%s", leaving.Name, want, backup)
		}
	}
	// The inventory without the host applies cleanly.
	s.write(t, s.lab.Hosts[:3], nil)
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("apply without %s: %v\n%s", leaving.Name, r.err, r.stdout)
	}
}

func stepRemoveUnreachable(t *testing.T, s *story) {
	ctx := context.Background()
	h := s.lab.Hosts[3]
	// A cleaned host joins again.
	s.write(t, s.lab.Hosts[:4], nil)
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil {
		t.Fatalf("%s joining again: %v", h.Name, r.err)
	}
	// Its etcd and its sshd stop: a dead host.
	if _, err := h.Exec(ctx, "mv", manifestPath, "/root/etcd.yaml"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "etcd to stop on "+h.Name, 2*time.Minute, func() bool { return len(h.PIDs("etcd")) == 0 })
	if err := h.StopSSHD(ctx); err != nil {
		t.Fatal(err)
	}
	w := s.startWriter(t)
	r := s.etcdadm(t, "member", "remove", h.Name, "-f", s.file, "--yes", "--connect-timeout", "3s")
	s.stopWriter(t, w)
	if err := h.StartSSHD(ctx); err != nil {
		t.Fatal(err)
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !strings.Contains(r.stderr, "cannot be reached") || !strings.Contains(r.stderr, "etcdadm reset "+h.Name) {
		t.Errorf("no warning that %s was not cleaned:\n%s", h.Name, r.stderr)
	}
	if ms := s.members(t); len(ms) != 3 {
		t.Errorf("members after removing %s by ID: %v", h.Name, ms)
	}
	// The host comes back with its old member: apply refuses it, reset cleans it.
	if _, err := h.Exec(ctx, "mv", "/root/etcd.yaml", manifestPath); err != nil {
		t.Fatal(err)
	}
	r = s.etcdadm(t, "apply", "-f", s.file)
	if r.err == nil || !strings.Contains(r.stderr, "etcdadm reset "+h.Name) {
		t.Errorf("apply with the removed member's data on %s: %v", h.Name, r.err)
	}
	r = s.etcdadm(t, "reset", h.Name, "-f", s.file, "--yes")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if _, err := h.ReadFile(ctx, manifestPath); err == nil {
		t.Errorf("reset left the manifest on %s", h.Name)
	}
	waitFor(t, "etcd to stop on "+h.Name, time.Minute, func() bool { return len(h.PIDs("etcd")) == 0 })
	s.write(t, s.lab.Hosts[:3], nil)
}

func stepReplace(t *testing.T, s *story) {
	ctx := context.Background()
	h := s.lab.Hosts[2]
	old := s.members(t)[h.Name]
	w := s.startWriter(t)
	// The disk dies: etcd stops and its data is gone.
	if _, err := h.Exec(ctx, "mv", manifestPath, "/root/etcd.yaml"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "etcd to stop on "+h.Name, 2*time.Minute, func() bool { return len(h.PIDs("etcd")) == 0 })
	if _, err := h.Exec(ctx, "sh", "-c", "rm -rf /var/lib/etcd/* /root/etcd.yaml"); err != nil {
		t.Fatal(err)
	}
	r := s.etcdadm(t, "apply", "-f", s.file)
	if r.err == nil || !strings.Contains(r.stderr, "etcdadm member replace "+h.Name) {
		t.Errorf("apply on a member whose data is lost: %v", r.err)
	}
	r = s.etcdadm(t, "member", "replace", h.Name, "-f", s.file, "--yes")
	s.stopWriter(t, w)
	if r.err != nil {
		t.Logf("%s kubelet log:\n%s", h.Name, h.LogTail("kubelet.log", 30))
		t.Fatal(r.err)
	}
	now := s.members(t)[h.Name]
	if now.ID == 0 || now.ID == old.ID || now.Learner {
		t.Errorf("%s after replace: %+v (was %s)", h.Name, now, old.HexID())
	}
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || !strings.Contains(r.stdout, "cluster: 3/3 members healthy") {
		t.Errorf("apply after replace: %v\n%s", r.err, r.stdout)
	}
}

// stepPendingRestart leaves the marker a run writes before the kubelet's
// files change, as if that run had been cut right after writing them: the
// next run restarts the kubelet although no file differs, and etcd keeps
// running through it.
func stepPendingRestart(t *testing.T, s *story) {
	ctx := context.Background()
	h := s.lab.Hosts[0]
	marker := "/var/lib/etcdadm/pending/kubelet-restart"
	if err := h.WriteFile(ctx, marker, []byte("left by a cut run\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kubelet, etcd := h.PIDs("kubelet"), h.PIDs("etcd")
	r := s.etcdadm(t, "apply", "-f", s.file)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !strings.Contains(r.stderr, "["+h.Name+"] ran systemctl restart kubelet") || strings.Contains(r.stderr, "wrote ") {
		t.Errorf("the pending restart:\n%s", r.stderr)
	}
	if _, err := h.ReadFile(ctx, marker); err == nil {
		t.Error("the marker is still there")
	}
	if got := h.PIDs("kubelet"); fmt.Sprint(got) == fmt.Sprint(kubelet) {
		t.Errorf("the kubelet was not restarted (pids %v)", got)
	}
	if got := h.PIDs("etcd"); fmt.Sprint(got) != fmt.Sprint(etcd) {
		t.Errorf("etcd restarted with the kubelet: %v -> %v", etcd, got)
	}
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("the next run: %v\n%s", r.err, r.stdout)
	}
}

func stepRepairManifest(t *testing.T, s *story) {
	ctx := context.Background()
	h := s.lab.Hosts[1]
	w := s.startWriter(t)
	if _, err := h.Exec(ctx, "rm", manifestPath); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "etcd to stop on "+h.Name, 2*time.Minute, func() bool { return len(h.PIDs("etcd")) == 0 })
	r := s.etcdadm(t, "apply", "-f", s.file)
	s.stopWriter(t, w)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !strings.Contains(r.stderr, "["+h.Name+"] wrote "+manifestPath) || !strings.Contains(r.stdout, "cluster: 3/3 members healthy") {
		t.Errorf("repair:\n%s\n%s", r.stdout, r.stderr)
	}
}

// addSAN gives every member's server certificate one more name.
func addSAN(inv string) string {
	return strings.Replace(inv, "  pki: {dir: pki", "  etcd: {serverCertSANs: [etcd.e2e.example]}\n  pki: {dir: pki", 1)
}

func stepQuorumGuard(t *testing.T, s *story) {
	ctx := context.Background()
	members := s.lab.Hosts[:3]
	h := members[1]
	// The member stops for good: its kubelet stopped, its etcd killed.
	if _, err := h.Exec(ctx, "systemctl", "stop", "kubelet"); err != nil {
		t.Fatal(err)
	}
	for _, pid := range h.PIDs("etcd") {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	waitFor(t, "etcd to stop on "+h.Name, time.Minute, func() bool { return len(h.PIDs("etcd")) == 0 })
	before := snapshots(t, members)
	pki := pkiDigest(t, filepath.Join(s.dir, "pki"))
	s.write(t, members, addSAN)
	r := s.etcdadm(t, "apply", "-f", s.file)
	if r.err == nil || !strings.Contains(r.stderr, "below the quorum of 2") || !strings.Contains(r.stderr, h.Name) {
		t.Errorf("a SAN change with %s down: %v", h.Name, r.err)
	}
	unchanged(t, before, members)
	if got := pkiDigest(t, filepath.Join(s.dir, "pki")); got != pki {
		t.Errorf("the refused run saved certificates:\n%s", got)
	}
	// Without the change, apply brings the member back: its kubelet runs etcd.
	s.write(t, members, nil)
	w := s.startWriter(t)
	r = s.etcdadm(t, "apply", "-f", s.file)
	s.stopWriter(t, w)
	if r.err != nil || !strings.Contains(r.stderr, "ran systemctl start kubelet") || !strings.Contains(r.stdout, "cluster: 3/3 members healthy") {
		t.Errorf("bringing %s back: %v\n%s", h.Name, r.err, r.stderr)
	}
}

func stepRollingSAN(t *testing.T, s *story) {
	ctx := context.Background()
	members := s.lab.Hosts[:3]
	c, _, client := s.cluster(t)
	leader := ""
	for _, st := range client.Status(ctx, ops.Endpoints(c), 3*time.Second) {
		if st.Leader {
			leader = st.Name
		}
	}
	etcdPIDs := pids(members, "etcd")
	w := s.startWriter(t)
	s.write(t, members, addSAN)
	start := time.Now()
	r := s.etcdadm(t, "apply", "-f", s.file)
	took := time.Since(start)
	rep := s.stopWriter(t, w)
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("rolling restart of 3 members took %s; longest write gap %s", took.Round(time.Millisecond), rep.LongestGap.Round(time.Millisecond))
	order := restartOrder(r.stderr)
	if len(order) != 3 || order[2] != leader {
		t.Errorf("restart order %v, want the leader %s last", order, leader)
	}
	after := pids(members, "etcd")
	for _, h := range members {
		if fmt.Sprint(after[h.Name]) == fmt.Sprint(etcdPIDs[h.Name]) {
			t.Errorf("etcd on %s was not restarted", h.Name)
		}
		if !serverCertHasSAN(t, h, "etcd.e2e.example") {
			t.Errorf("%s's server certificate lacks the new SAN", h.Name)
		}
	}
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("apply after the roll: %v\n%s", r.err, r.stdout)
	}
}

func stepMissingPKI(t *testing.T, s *story) {
	members := s.lab.Hosts[:3]
	pki := filepath.Join(s.dir, "pki")
	if err := os.Rename(pki, pki+".elsewhere"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := os.Rename(pki+".elsewhere", pki); err != nil {
			t.Fatal(err)
		}
	}()
	before := snapshots(t, members)
	r := s.etcdadm(t, "apply", "-f", s.file)
	if r.err == nil || !strings.Contains(r.stderr, "copy the PKI directory from where it was created") {
		t.Errorf("apply without the PKI: %v", r.err)
	}
	if got := pkiDigest(t, pki); got != "absent" {
		t.Errorf("the refused run wrote a PKI:\n%s", got)
	}
	unchanged(t, before, members)
}

func stepConcurrent(t *testing.T, s *story) {
	ctx := context.Background()
	members := s.lab.Hosts[:3]
	// A run on this workstation holds the PKI: a second one is refused.
	c, _, _ := s.cluster(t)
	release, err := certs.Lock(c.PKIDir())
	if err != nil {
		t.Fatal(err)
	}
	r := s.etcdadm(t, "apply", "-f", s.file)
	release()
	if r.err == nil || !strings.Contains(r.stderr, "another etcdadm run is using the PKI") {
		t.Errorf("apply while the PKI is held: %v", r.err)
	}
	// Two workstations with the same cluster: a run that restarts every
	// kubelet, one host at a time, and another started while the first
	// holds the hosts.
	other := t.TempDir()
	if out, err := exec.Command("cp", "-a", filepath.Join(s.dir, "pki"), filepath.Join(other, "pki")).CombinedOutput(); err != nil {
		t.Fatalf("copy the PKI: %v %s", err, out)
	}
	kubelet := func(inv string) string {
		return strings.Replace(inv, "extraConfig: {failCgroupV1: false}", "extraConfig: {failCgroupV1: false, serializeImagePulls: false}", 1)
	}
	s.write(t, members, kubelet)
	otherFile := filepath.Join(other, "cluster.yaml")
	b, _ := os.ReadFile(s.file)
	if err := os.WriteFile(otherFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	w := s.startWriter(t)
	first, firstOut := startEtcdadm(t, s.bin, "apply", "-f", s.file)
	waitFor(t, "the first run to hold "+members[0].Name, time.Minute, func() bool {
		lock, err := members[0].ReadFile(ctx, "/var/lib/etcdadm/lock")
		return err == nil && bytes.Contains(lock, []byte(fmt.Sprintf("etcdadm pid %d ", first.Process.Pid)))
	})
	second := s.etcdadm(t, "apply", "-f", otherFile)
	firstErr := first.Wait()
	s.stopWriter(t, w)
	t.Logf("first run:\n%s", firstOut.String())
	if firstErr != nil {
		t.Errorf("the first run failed: %v", firstErr)
	}
	if second.err == nil || !strings.Contains(second.stderr, "another etcdadm run holds the host") || !strings.Contains(second.stderr, fmt.Sprintf("pid %d", first.Process.Pid)) {
		t.Errorf("the second run: %v", second.err)
	}
	for _, h := range members {
		if tmp := tempFiles(t, h); tmp != "" {
			t.Errorf("temporary files left on %s: %s", h.Name, tmp)
		}
	}
	if r := s.etcdadm(t, "apply", "-f", otherFile); r.err != nil || !strings.Contains(r.stdout, "nothing to do") || !strings.Contains(r.stdout, "3/3 members healthy") {
		t.Errorf("after both runs: %v\n%s", r.err, r.stdout)
	}
}

func stepConnectionCut(t *testing.T, s *story) {
	h := s.lab.Hosts[0]
	ctx := context.Background()
	// Someone breaks the host: its certificates are gone and its manifest
	// names an image that does not exist here, so its etcd stops (and the
	// slowed link below carries SSH alone, not raft traffic). The re-apply
	// must repair both.
	if _, err := h.Exec(ctx, "sh", "-c", "rm -f /etc/kubernetes/pki/etcd/*.crt /etc/kubernetes/pki/etcd/*.key && sed -i 's#image: .*#image: registry.k8s.io/etcd:0.0.0-missing#' "+manifestPath); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "etcd to stop on "+h.Name, 90*time.Second, func() bool { return len(h.PIDs("etcd")) == 0 })
	unshape := shape(t, 0, "16kbit")
	cmd, out := startEtcdadm(t, s.bin, "apply", "-f", s.file, "--health-timeout", "30s")
	cut := false
	for deadline := time.Now().Add(2 * time.Minute); !cut && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		found, err := h.Exec(ctx, "find", "/etc/kubernetes/pki", "-name", "*.etcdadm-*.tmp")
		if err == nil && strings.TrimSpace(string(found)) != "" {
			t.Logf("upload in flight: %s", found)
			cut = h.KillSSHSessions() > 0
		}
	}
	err := cmd.Wait()
	unshape()
	t.Logf("the cut run:\n%s", out.String())
	if !cut {
		t.Fatal("never caught an upload in flight")
	}
	if err == nil {
		t.Error("apply succeeded although its connection was cut")
	}
	// Every target path holds the full planned content or nothing.
	_, pki, _ := s.cluster(t)
	manifest, err := h.ReadFile(ctx, manifestPath)
	if err == nil && !bytes.Contains(manifest, []byte("status: {}")) {
		t.Errorf("the manifest on %s is partial", h.Name)
	}
	for _, kp := range pki.Hosts[h.Name] {
		for p, want := range map[string][]byte{
			"/etc/kubernetes/pki/" + kp.BaseName + ".crt": kp.CertPEM,
			"/etc/kubernetes/pki/" + kp.BaseName + ".key": kp.KeyPEM,
		} {
			got, err := h.ReadFile(ctx, p)
			if err == nil && !bytes.Equal(got, want) {
				t.Errorf("%s on %s is partial (%d of %d bytes)", p, h.Name, len(got), len(want))
			}
		}
	}
	r := s.etcdadm(t, "apply", "-f", s.file, "--health-timeout", "3m")
	if r.err != nil || !strings.Contains(r.stdout, "cluster: 3/3 members healthy") {
		t.Fatalf("re-run did not converge: %v", r.err)
	}
	if tmp := tempFiles(t, h); tmp != "" {
		t.Errorf("temporary files left: %s", tmp)
	}
}
