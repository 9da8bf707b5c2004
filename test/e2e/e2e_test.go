// Package e2e drives the etcdadm binary against the lab: hosts with their own
// network and mount namespaces, real sshd, containerd, runc, kubelet and etcd.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/test/lab"
)

// requireLab skips without root or the lab's packages, except in CI, where
// that is a failure: CI installs them.
func requireLab(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("lab tests are skipped with -short")
	}
	reason := ""
	if os.Geteuid() != 0 {
		reason = "the lab needs root"
	}
	for _, bin := range []string{"/usr/sbin/sshd", "/usr/bin/containerd", "/usr/sbin/runc", "/usr/bin/ctr"} {
		if _, err := os.Stat(bin); err != nil && reason == "" {
			reason = bin + " is missing (apt-get install openssh-server containerd runc)"
		}
	}
	if reason == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(reason)
	}
	t.Skip(reason)
}

func buildEtcdadm(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "etcdadm")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/etcdadm-io/etcdadm/cmd/etcdadm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build etcdadm: %v\n%s", err, out)
	}
	return bin
}

type run struct {
	stdout, stderr string
	err            error
}

func etcdadm(t *testing.T, bin string, args ...string) run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	t.Logf("etcdadm %s\n--- stdout\n%s--- stderr\n%s", strings.Join(args, " "), out.String(), errOut.String())
	return run{out.String(), errOut.String(), err}
}

type inventory struct {
	dir        string
	knownHosts string
	user       string
	proxyJump  string
}

func (inv inventory) write(t *testing.T, l *lab.Lab, hosts []*lab.Host) string {
	t.Helper()
	p := filepath.Join(inv.dir, "cluster.yaml")
	data := l.Inventory(lab.InventoryOptions{Name: "e2e", User: inv.user, KnownHostsFile: inv.knownHosts, ProxyJump: inv.proxyJump, Hosts: hosts})
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// hostFiles lists the regular files etcdadm could have written on a host.
func hostFiles(t *testing.T, h *lab.Host) []string {
	t.Helper()
	out, err := h.Exec(context.Background(), "sh", "-c", "find /etc/kubernetes /etc/systemd/system/kubelet.service.d /var/lib/etcd -type f 2>/dev/null | sort")
	if err != nil {
		t.Fatalf("list files on %s: %v", h.Name, err)
	}
	return strings.Fields(string(out))
}

func upLab(t *testing.T, opts lab.Options) *lab.Lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, opts, testWriter{t})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return l
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationApply is one story on one lab of five hosts, in order:
// refusals that must leave every host untouched, reading commands that write
// nothing, a bring-up cut and finished, idempotence, host keys, sudo users,
// then day-2 work on the running cluster, each under a continuous writer:
// members added, removed (reachable or not), replaced and repaired; the
// guards that refuse; two runs at once; a connection cut during an upload.
func TestIntegrationApply(t *testing.T) {
	requireLab(t)
	bin := buildEtcdadm(t)
	l := upLab(t, lab.Options{Hosts: 5, Dir: "/var/tmp/etcdadm-e2e", NamePrefix: "e2e", Subnet: 1})
	dir := t.TempDir()
	s := &story{bin: bin, lab: l, dir: dir, known: filepath.Join(dir, "known_hosts"), file: filepath.Join(dir, "cluster.yaml")}
	copyFile(t, l.KnownHostsFile, s.known)
	defer func() {
		t.Logf("continuous writers:\n%s", strings.Join(s.gaps, "\n"))
	}()
	members := l.Hosts[:3]
	s.write(t, members, nil)
	steps := []struct {
		name string
		run  func(*testing.T, *story)
	}{
		{"unknown host keys are refused and nothing is written", stepUnknownHostKeys},
		{"an unreachable host is refused and no host is touched", stepUnreachable},
		{"diff, status and dry run write nothing, without a PKI too", stepReadOnlyWithoutPKI},
		{"a bring-up cut after the first manifest is finished by a re-run", stepCutBringUp},
		{"re-apply writes nothing and restarts nothing; reading commands leave the PKI as it was", stepIdempotent},
		{"a non-root user with passwordless sudo works; one needing a password is told why", stepSudoUsers},
		{"a changed host key is refused, even with --accept-new-host-keys", stepChangedHostKey},
		{"a 4th host added to the inventory joins as a learner and is promoted; the others keep their processes", stepAddMember},
		{"member remove of a reachable host removes it and cleans the host with a backup", stepRemoveReachable},
		{"member remove of a host whose sshd and etcd are down removes it by ID; reset cleans it later", stepRemoveUnreachable},
		{"member replace of a host whose data was wiped gives a healthy member with a new ID", stepReplace},
		{"a deleted manifest is restored by apply", stepRepairManifest},
		{"a kubelet restart a cut run recorded is finished by the next run", stepPendingRestart},
		{"one member down and a SAN change: refused, nothing written; apply then brings the member back", stepQuorumGuard},
		{"a SAN change rolls the members one at a time, leader last", stepRollingSAN},
		{"check-expiration --remote reads every host; --warn-within exits 1 only for what expires within it", stepCheckExpirationRemote},
		{"certs renew gives every leaf a new key and serial, the CA unchanged, one member at a time", stepRenew},
		{"leaves expired on every host, the cluster down: certs renew brings it back with its data", stepExpired},
		{"rotate-ca moves every host to a new CA in three rolling stages under the writer", stepRotateCA},
		{"rotate-ca killed after its first stage is finished by a re-run", stepRotateCAResumed},
		{"rotate-ca killed after its first stage and run with --abort goes back to the old CA", stepRotateCAAborted},
		{"without the local PKI, apply is refused and nothing is written anywhere", stepMissingPKI},
		{"two applies at once: one runs, the other is refused", stepConcurrent},
		{"a connection cut during an upload leaves no partial file and a re-run converges", stepConnectionCut},
		{"snapshot save reads a checked snapshot of the leader (its file, held open) to this machine under a writer", stepSnapshotSave},
		{"restore of a truncated, corrupted or foreign snapshot, unconfirmed or while a host is held, is refused and touches nothing", stepRestoreRefused},
		{"restore gives 3 healthy members with new IDs, the snapshot's keys and a revision bumped by 1e9", stepRestore},
		{"an image tag change upgrades etcd one member at a time, leader last, after a snapshot, under a writer", stepUpgrade},
		{"a tag that cannot start stops the roll after the first member, which is back on its old image", stepUpgradeBroken},
		{"an upgrade that skips a minor is refused and nothing is touched; backups do not pile up", stepUpgradeSkipsMinor},
	}
	for _, st := range steps {
		if !t.Run(st.name, func(t *testing.T) { st.run(t, s) }) {
			t.Fatalf("stopping the story after %q failed", st.name)
		}
	}
}

func stepUnknownHostKeys(t *testing.T, s *story) {
	empty := filepath.Join(t.TempDir(), "empty_known_hosts")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	p := inventory{dir: t.TempDir(), knownHosts: empty, user: "root"}.write(t, s.lab, s.lab.Hosts[:3])
	r := s.etcdadm(t, "apply", "-f", p)
	if r.err == nil || !strings.Contains(r.stderr, "--accept-new-host-keys") {
		t.Fatalf("apply with unknown host keys: err %v", r.err)
	}
	for _, h := range s.lab.Hosts[:3] {
		if !strings.Contains(r.stderr, h.Name) {
			t.Errorf("the error does not name %s", h.Name)
		}
	}
	untouched(t, s.lab.Hosts)
}

func untouched(t *testing.T, hosts []*lab.Host) {
	t.Helper()
	for _, h := range hosts {
		if files := hostFiles(t, h); len(files) > 0 {
			t.Errorf("%s was touched: %v", h.Name, files)
		}
	}
}

func stepUnreachable(t *testing.T, s *story) {
	down := s.lab.Hosts[2]
	if err := down.StopSSHD(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := down.StartSSHD(context.Background()); err != nil {
			t.Fatal(err)
		}
	}()
	r := s.etcdadm(t, "apply", "-f", s.file, "--connect-timeout", "3s")
	if r.err == nil || !strings.Contains(r.stderr, down.Name) {
		t.Fatalf("apply with %s down: err %v", down.Name, r.err)
	}
	untouched(t, s.lab.Hosts)
}

func stepReadOnlyWithoutPKI(t *testing.T, s *story) {
	pki := filepath.Join(s.dir, "pki")
	for _, args := range [][]string{{"diff", "-f", s.file}, {"apply", "-f", s.file, "--dry-run"}, {"apply", "-f", s.file, "--dry-run", "-o", "json"}, {"status", "-f", s.file}} {
		r := s.etcdadm(t, args...)
		if r.err != nil {
			t.Errorf("%v: %v", args, r.err)
		}
		if got := pkiDigest(t, pki); got != "absent" {
			t.Errorf("%v created the PKI:\n%s", args, got)
		}
		if args[0] == "apply" && len(args) == 4 && (strings.Count(r.stdout, "13 of 13 files would change") != 3 || !strings.Contains(r.stdout, "+ /etc/kubernetes/pki/etcd/server.key (mode 0600")) {
			t.Errorf("dry run output:\n%s", r.stdout)
		}
		if len(args) == 6 && !strings.Contains(r.stdout, `"stages"`) {
			t.Errorf("JSON plan:\n%s", r.stdout)
		}
	}
	untouched(t, s.lab.Hosts)
}

// stepCutBringUp kills the first apply once the first host has its
// manifest, while the two others' uploads crawl over a slowed link; the
// re-run must finish the bring-up, with the same --initial-cluster.
func stepCutBringUp(t *testing.T, s *story) {
	ctx := context.Background()
	members := s.lab.Hosts[:3]
	unshape := []func(){shape(t, 1, "48kbit"), shape(t, 2, "48kbit")}
	cmd, out := startEtcdadm(t, s.bin, "apply", "-f", s.file)
	cut := false
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := members[0].ReadFile(ctx, "/etc/kubernetes/manifests/etcd.yaml"); err == nil {
			cut = cmd.Process.Kill() == nil
			break
		}
	}
	_ = cmd.Wait()
	for _, u := range unshape {
		u()
	}
	t.Logf("the cut apply:\n%s", out.String())
	if !cut {
		t.Fatal("the first manifest never appeared")
	}
	for _, h := range members[1:] {
		if _, err := h.ReadFile(ctx, "/etc/kubernetes/manifests/etcd.yaml"); err == nil {
			t.Fatalf("%s got its manifest before the cut; the test proves nothing", h.Name)
		}
		if _, err := h.ReadFile(ctx, "/etc/kubernetes/pki/etcd/server.crt"); err != nil {
			t.Errorf("%s lacks its other files, which come before any manifest: %v", h.Name, err)
		}
	}
	start := time.Now()
	r := s.etcdadm(t, "apply", "-f", s.file, "--health-timeout", "4m")
	if r.err != nil {
		for _, h := range members {
			t.Logf("%s kubelet log:\n%s", h.Name, h.LogTail("kubelet.log", 30))
		}
		t.Fatal(r.err)
	}
	t.Logf("the re-run took %s", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(r.stdout, "cluster: 3/3 members healthy") || !strings.Contains(r.stderr, "start the members") {
		t.Errorf("re-run:\n%s\n%s", r.stdout, r.stderr)
	}
	first, _ := members[0].ReadFile(ctx, "/etc/kubernetes/manifests/etcd.yaml")
	want := regexp.MustCompile(`--initial-cluster=\S+`).Find(first)
	for _, h := range members {
		m, err := h.ReadFile(ctx, "/etc/kubernetes/manifests/etcd.yaml")
		if err != nil || !bytes.Contains(m, want) || !bytes.Contains(m, []byte("--initial-cluster-state=new")) {
			t.Errorf("%s's manifest does not start it with %s as new: %v", h.Name, want, err)
		}
		if files := hostFiles(t, h); slices.Contains(files, "/etc/kubernetes/pki/etcd/ca.key") {
			t.Errorf("%s got the CA key", h.Name)
		}
		if tmp := tempFiles(t, h); tmp != "" {
			t.Errorf("temporary files left on %s: %s", h.Name, tmp)
		}
	}
	// A key written through one member is read from the others.
	c, _, client := s.cluster(t)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cli, err := client.Connect(manifests.ClientURL(c.Spec.Hosts[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "/e2e/greeting", "written through "+c.Spec.Hosts[0].Name); err != nil {
		t.Fatal(err)
	}
	for _, h := range c.Spec.Hosts[1:] {
		other, err := client.Connect(manifests.ClientURL(h))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := other.Get(ctx, "/e2e/greeting")
		other.Close()
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "written through "+c.Spec.Hosts[0].Name {
			t.Errorf("read from %s: %v %v", h.Name, resp, err)
		}
	}
}

func stepIdempotent(t *testing.T, s *story) {
	members := s.lab.Hosts[:3]
	etcdPIDs, kubeletPIDs := pids(members, "etcd"), pids(members, "kubelet")
	pki := pkiDigest(t, filepath.Join(s.dir, "pki"))
	start := time.Now()
	r := s.etcdadm(t, "apply", "-f", s.file)
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("no-op apply took %s", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(r.stdout, "nothing to do") || strings.Contains(r.stderr, "wrote ") {
		t.Errorf("re-apply output:\n%s\n%s", r.stdout, r.stderr)
	}
	before := snapshots(t, members)
	for _, args := range [][]string{{"diff", "-f", s.file}, {"status", "-f", s.file}, {"status", "-f", s.file, "-o", "json"}, {"apply", "--dry-run", "-f", s.file}, {"certs", "check-expiration", "-f", s.file}, {"certs", "check-expiration", "--remote", "-f", s.file}} {
		r := s.etcdadm(t, args...)
		if r.err != nil {
			t.Errorf("%v: %v", args, r.err)
		}
		switch {
		case args[0] == "diff" && strings.Count(r.stdout, "up to date (13 files)") != 3:
			t.Errorf("diff after apply:\n%s", r.stdout)
		case args[0] == "status" && len(args) == 3 && (strings.Count(r.stdout, " voter ") != 3 || strings.Count(r.stdout, "healthy") < 3 || !strings.Contains(r.stdout, "true")):
			t.Errorf("status:\n%s", r.stdout)
		}
	}
	if got := pkiDigest(t, filepath.Join(s.dir, "pki")); got != pki {
		t.Errorf("the PKI changed:\nbefore:\n%s\nafter:\n%s", pki, got)
	}
	unchanged(t, before, members)
	if got := pids(members, "etcd"); fmt.Sprint(got) != fmt.Sprint(etcdPIDs) {
		t.Errorf("etcd PIDs changed: %v -> %v", etcdPIDs, got)
	}
	if got := pids(members, "kubelet"); fmt.Sprint(got) != fmt.Sprint(kubeletPIDs) {
		t.Errorf("kubelet PIDs changed: %v -> %v", kubeletPIDs, got)
	}
}

func stepSudoUsers(t *testing.T, s *story) {
	members := s.lab.Hosts[:3]
	p := inventory{dir: s.dir, knownHosts: s.known, user: lab.SudoUser}.write(t, s.lab, members)
	r := s.etcdadm(t, "apply", "-f", p)
	if r.err != nil || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("apply as %s: %v", lab.SudoUser, r.err)
	}
	p = inventory{dir: s.dir, knownHosts: s.known, user: lab.PasswordUser}.write(t, s.lab, members)
	r = s.etcdadm(t, "apply", "-f", p)
	if r.err == nil || !strings.Contains(r.stderr, "passwordless sudo") {
		t.Errorf("apply as %s: err %v", lab.PasswordUser, r.err)
	}
	s.write(t, members, nil)
}

func stepChangedHostKey(t *testing.T, s *story) {
	h := s.lab.Hosts[1]
	newLine, err := h.RotateHostKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r := s.etcdadm(t, "diff", "-f", s.file, "--accept-new-host-keys")
	if r.err == nil || !strings.Contains(r.stderr, h.Name) || !strings.Contains(strings.ToLower(r.stderr), "changed") {
		t.Errorf("changed key accepted: %v", r.err)
	}
	// The operator checks the new key out of band and records it.
	b, _ := os.ReadFile(s.known)
	var kept []string
	for _, line := range strings.Split(string(b), "\n") {
		if line != "" && !strings.Contains(line, h.Address+" ") && !strings.HasPrefix(line, h.Address+",") {
			kept = append(kept, line)
		}
	}
	kept = append(kept, strings.TrimSpace(newLine))
	if err := os.WriteFile(s.known, []byte(strings.Join(kept, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := s.etcdadm(t, "diff", "-f", s.file); r.err != nil {
		t.Errorf("after recording the new key: %v", r.err)
	}
}

// TestIntegrationJumpHost reaches hosts that only a bastion can reach.
func TestIntegrationJumpHost(t *testing.T) {
	requireLab(t)
	bin := buildEtcdadm(t)
	l := upLab(t, lab.Options{Hosts: 2, Dir: "/var/tmp/etcdadm-e2e-jump", NamePrefix: "jmp", Subnet: 2, SSHOnly: true, Bastion: true})
	dir := t.TempDir()
	known := filepath.Join(dir, "known_hosts")
	copyFile(t, l.KnownHostsFile, known)
	direct := inventory{dir: t.TempDir(), knownHosts: known, user: "root"}.write(t, l, l.Hosts)
	r := etcdadm(t, bin, "diff", "-f", direct, "--connect-timeout", "3s")
	if r.err == nil {
		t.Fatal("the inner hosts were reachable without the bastion; the test proves nothing")
	}
	via := inventory{dir: dir, knownHosts: known, user: lab.SudoUser, proxyJump: "root@" + l.Bastion.Address}.write(t, l, l.Hosts)
	// SSH-only hosts have no kubelet: as stacked members, they need none.
	b, err := os.ReadFile(via)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(via, bytes.Replace(b, []byte("spec:\n"), []byte("spec:\n  topology: stacked\n"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	r = etcdadm(t, bin, "diff", "-f", via)
	if r.err != nil || strings.Count(r.stdout, "13 of 13 files would change") != 2 {
		t.Fatalf("diff through the bastion: %v\n%s", r.err, r.stdout)
	}
}
