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
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
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

// TestIntegrationApply is one story on one 3-host lab, in order: refusals
// that must leave every host untouched, bring-up, idempotence, host keys,
// sudo users, and a connection cut in the middle of an upload.
func TestIntegrationApply(t *testing.T) {
	requireLab(t)
	bin := buildEtcdadm(t)
	// Three members and a spare host that a later step tries to add.
	l := upLab(t, lab.Options{Hosts: 4, Dir: "/var/tmp/etcdadm-e2e", NamePrefix: "e2e", Subnet: 1})
	members, spare := l.Hosts[:3], l.Hosts[3]
	dir := t.TempDir()
	known := filepath.Join(dir, "known_hosts")
	copyFile(t, l.KnownHostsFile, known)
	inv := inventory{dir: dir, knownHosts: known, user: "root"}
	cluster := inv.write(t, l, members)

	untouched := func(t *testing.T) {
		t.Helper()
		for _, h := range l.Hosts {
			if files := hostFiles(t, h); len(files) > 0 {
				t.Errorf("%s was touched: %v", h.Name, files)
			}
		}
	}

	t.Run("unknown host keys are refused and nothing is written", func(t *testing.T) {
		empty := filepath.Join(dir, "empty_known_hosts")
		if err := os.WriteFile(empty, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		p := inventory{dir: t.TempDir(), knownHosts: empty, user: "root"}.write(t, l, members)
		r := etcdadm(t, bin, "apply", "-f", p)
		if r.err == nil || !strings.Contains(r.stderr, "--accept-new-host-keys") {
			t.Fatalf("apply with unknown host keys: err %v", r.err)
		}
		for _, h := range members {
			if !strings.Contains(r.stderr, h.Name) {
				t.Errorf("the error does not name %s", h.Name)
			}
		}
		untouched(t)
	})

	t.Run("an unreachable host fails pre-flight and no host is touched", func(t *testing.T) {
		down := members[2]
		if err := down.StopSSHD(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := down.StartSSHD(context.Background()); err != nil {
				t.Fatal(err)
			}
		}()
		r := etcdadm(t, bin, "apply", "-f", cluster, "--connect-timeout", "3s")
		if r.err == nil || !strings.Contains(r.stderr, down.Name) {
			t.Fatalf("apply with %s down: err %v", down.Name, r.err)
		}
		untouched(t)
	})

	t.Run("dry run shows every file and writes none", func(t *testing.T) {
		r := etcdadm(t, bin, "apply", "-f", cluster, "--dry-run")
		if r.err != nil {
			t.Fatal(r.err)
		}
		if strings.Count(r.stdout, "13 of 13 files would change") != 3 || !strings.Contains(r.stdout, "+ /etc/kubernetes/pki/etcd/server.key (mode 0600") {
			t.Errorf("dry run output:\n%s", r.stdout)
		}
		untouched(t)
	})

	var etcdPIDs, kubeletPIDs map[string][]int
	pids := func(name string) map[string][]int {
		out := map[string][]int{}
		for _, h := range members {
			p := h.PIDs(name)
			slices.Sort(p)
			out[h.Name] = p
		}
		return out
	}

	t.Run("fresh apply brings up a healthy cluster that replicates", func(t *testing.T) {
		start := time.Now()
		r := etcdadm(t, bin, "apply", "-f", cluster, "--health-timeout", "4m")
		if r.err != nil {
			for _, h := range members {
				t.Logf("%s kubelet log:\n%s", h.Name, h.LogTail("kubelet.log", 30))
			}
			t.Fatal(r.err)
		}
		t.Logf("fresh apply took %s", time.Since(start).Round(time.Millisecond))
		if !strings.Contains(r.stdout, "cluster: 3/3 members healthy") {
			t.Errorf("summary:\n%s", r.stdout)
		}
		for _, h := range members {
			files := hostFiles(t, h)
			if slices.Contains(files, "/etc/kubernetes/pki/etcd/ca.key") {
				t.Errorf("%s got the CA key", h.Name)
			}
			if len(h.PIDs("etcd")) == 0 {
				t.Errorf("no etcd process on %s", h.Name)
			}
		}
		// A key written through one member is read from the others.
		c, _, err := config.Load(cluster)
		if err != nil {
			t.Fatal(err)
		}
		client := clientFor(t, c)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		first, err := client.Connect(manifests.ClientURL(c.Spec.Hosts[0]))
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		if _, err := first.Put(ctx, "/e2e/greeting", "written through "+c.Spec.Hosts[0].Name); err != nil {
			t.Fatal(err)
		}
		for _, h := range c.Spec.Hosts[1:] {
			cli, err := client.Connect(manifests.ClientURL(h))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := cli.Get(ctx, "/e2e/greeting")
			cli.Close()
			if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "written through "+c.Spec.Hosts[0].Name {
				t.Errorf("read from %s: %v %v", h.Name, resp, err)
			}
		}
		etcdPIDs, kubeletPIDs = pids("etcd"), pids("kubelet")
	})

	t.Run("re-apply writes nothing and restarts nothing", func(t *testing.T) {
		r := etcdadm(t, bin, "apply", "-f", cluster)
		if r.err != nil {
			t.Fatal(r.err)
		}
		if !strings.Contains(r.stdout, "nothing to do") || strings.Contains(r.stderr, "wrote ") {
			t.Errorf("re-apply output:\n%s\n%s", r.stdout, r.stderr)
		}
		if got := pids("etcd"); fmt.Sprint(got) != fmt.Sprint(etcdPIDs) {
			t.Errorf("etcd PIDs changed: %v -> %v", etcdPIDs, got)
		}
		if got := pids("kubelet"); fmt.Sprint(got) != fmt.Sprint(kubeletPIDs) {
			t.Errorf("kubelet PIDs changed: %v -> %v", kubeletPIDs, got)
		}
		r = etcdadm(t, bin, "diff", "-f", cluster)
		if r.err != nil || strings.Count(r.stdout, "up to date (13 files)") != 3 {
			t.Errorf("diff after apply: %v\n%s", r.err, r.stdout)
		}
		r = etcdadm(t, bin, "status", "-f", cluster)
		if r.err != nil || strings.Count(r.stdout, "healthy") < 3 || !strings.Contains(r.stdout, "true") {
			t.Errorf("status: %v\n%s", r.err, r.stdout)
		}
	})

	t.Run("a non-root user with passwordless sudo works; one needing a password is told why", func(t *testing.T) {
		p := inventory{dir: dir, knownHosts: known, user: lab.SudoUser}.write(t, l, members)
		r := etcdadm(t, bin, "apply", "-f", p)
		if r.err != nil || !strings.Contains(r.stdout, "nothing to do") {
			t.Errorf("apply as %s: %v", lab.SudoUser, r.err)
		}
		p = inventory{dir: dir, knownHosts: known, user: lab.PasswordUser}.write(t, l, members)
		r = etcdadm(t, bin, "apply", "-f", p)
		if r.err == nil || !strings.Contains(r.stderr, "passwordless sudo") {
			t.Errorf("apply as %s: err %v", lab.PasswordUser, r.err)
		}
		inv.write(t, l, members)
	})

	t.Run("a changed host key is refused, even with --accept-new-host-keys", func(t *testing.T) {
		h := members[1]
		newLine, err := h.RotateHostKey(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		r := etcdadm(t, bin, "diff", "-f", cluster, "--accept-new-host-keys")
		if r.err == nil || !strings.Contains(r.stderr, h.Name) || !strings.Contains(strings.ToLower(r.stderr), "changed") {
			t.Errorf("changed key accepted: %v", r.err)
		}
		// The operator checks the new key out of band and records it.
		b, _ := os.ReadFile(known)
		var kept []string
		for _, line := range strings.Split(string(b), "\n") {
			if line != "" && !strings.Contains(line, h.Address+" ") && !strings.HasPrefix(line, h.Address+",") {
				kept = append(kept, line)
			}
		}
		kept = append(kept, strings.TrimSpace(newLine))
		if err := os.WriteFile(known, []byte(strings.Join(kept, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if r := etcdadm(t, bin, "diff", "-f", cluster); r.err != nil {
			t.Errorf("after recording the new key: %v", r.err)
		}
	})

	t.Run("a new host next to running members is refused and not touched", func(t *testing.T) {
		p := inventory{dir: dir, knownHosts: known, user: "root"}.write(t, l, l.Hosts)
		defer inv.write(t, l, members)
		r := etcdadm(t, bin, "apply", "-f", p)
		if r.err == nil || !strings.Contains(r.stderr, "adding members to a running cluster is not supported yet") {
			t.Fatalf("apply with a new host: err %v", r.err)
		}
		if files := hostFiles(t, spare); len(files) > 0 {
			t.Errorf("%s was touched: %v", spare.Name, files)
		}
	})

	t.Run("a connection cut during an upload leaves no partial file and a re-run converges", func(t *testing.T) {
		h := members[0]
		ctx := context.Background()
		// Someone breaks the host: its certificates are gone and its manifest
		// names an image that does not exist here, so its etcd stops (and the
		// slowed link below carries SSH alone, not raft traffic). The
		// re-apply must repair both.
		if _, err := h.Exec(ctx, "sh", "-c", "rm -f /etc/kubernetes/pki/etcd/*.crt /etc/kubernetes/pki/etcd/*.key && sed -i 's#image: .*#image: registry.k8s.io/etcd:0.0.0-missing#' /etc/kubernetes/manifests/etcd.yaml"); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(90 * time.Second); len(h.PIDs("etcd")) > 0; time.Sleep(time.Second) {
			if time.Now().After(deadline) {
				t.Fatalf("etcd on %s did not stop after its manifest was removed", h.Name)
			}
		}
		// Slow the link towards the host down (on the machine's end of its
		// veth) so that an upload is in flight long enough to cut it.
		veth := "e2ev0"
		if out, err := exec.Command("tc", "qdisc", "add", "dev", veth, "root", "tbf", "rate", "16kbit", "burst", "1600", "latency", "30s").CombinedOutput(); err != nil {
			t.Fatalf("shape %s: %v: %s", veth, err, out)
		}
		done := make(chan run, 1)
		go func() { done <- etcdadm(t, bin, "apply", "-f", cluster, "--health-timeout", "30s") }()
		cut := false
		deadline := time.Now().Add(2 * time.Minute)
		for !cut && time.Now().Before(deadline) {
			out, err := h.Exec(ctx, "find", "/etc/kubernetes/pki", "-name", "*.etcdadm-*.tmp")
			if err == nil && strings.TrimSpace(string(out)) != "" {
				t.Logf("upload in flight: %s", out)
				cut = h.KillSSHSessions() > 0
			}
			time.Sleep(20 * time.Millisecond)
		}
		r := <-done
		if out, err := exec.Command("tc", "qdisc", "del", "dev", veth, "root").CombinedOutput(); err != nil {
			t.Errorf("unshape: %v: %s", err, out)
		}
		if !cut {
			t.Fatal("never caught an upload in flight")
		}
		if r.err == nil {
			t.Error("apply succeeded although its connection was cut")
		}
		// Every target path holds the full planned content or nothing.
		c, _, err := config.Load(cluster)
		if err != nil {
			t.Fatal(err)
		}
		pki, _, err := certs.Ensure(c, certs.Options{})
		if err != nil {
			t.Fatal(err)
		}
		manifest, err := h.ReadFile(ctx, "/etc/kubernetes/manifests/etcd.yaml")
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
		r = etcdadm(t, bin, "apply", "-f", cluster, "--health-timeout", "3m")
		if r.err != nil || !strings.Contains(r.stdout, "cluster: 3/3 members healthy") {
			t.Fatalf("re-run did not converge: %v", r.err)
		}
		out, err := h.Exec(ctx, "find", "/etc/kubernetes", "-name", "*.etcdadm-*.tmp")
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("temporary files left: %s %v", out, err)
		}
	})
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
	r = etcdadm(t, bin, "diff", "-f", via)
	if r.err != nil || strings.Count(r.stdout, "13 of 13 files would change") != 2 {
		t.Fatalf("diff through the bastion: %v\n%s", r.err, r.stdout)
	}
}

func clientFor(t *testing.T, c *config.Cluster) *etcdclient.Client {
	t.Helper()
	pki, _, err := certs.Ensure(c, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	client, err := etcdclient.FromPKI(pki, c.Spec.Hosts[0].Name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return client
}
