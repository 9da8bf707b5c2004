package lab_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/etcdadm-io/etcdadm/test/lab"
)

// requireLab skips (or, under CI=true, fails) when this machine cannot run a
// lab.
func requireLab(t *testing.T, opts lab.Options) {
	t.Helper()
	if testing.Short() {
		t.Skip("lab integration test: skipped with -short")
	}
	err := lab.Check(opts)
	if err == nil {
		return
	}
	var missing *lab.MissingError
	if errors.Is(err, lab.ErrNotRoot) || errors.As(err, &missing) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI must be able to run the lab: %v", err)
		}
		t.Skipf("cannot run the lab here: %v", err)
	}
	t.Fatal(err)
}

// labDir returns a fresh lab directory, removed when the test passes and
// kept (with its logs) when it fails.
func labDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "etcdadm-lab-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("lab logs kept in %s/hosts/*/log", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
address: 127.0.0.1
containerRuntimeEndpoint: unix:///var/run/containerd/containerd.sock
staticPodPath: /etc/kubernetes/manifests
failCgroupV1: false
`

const dropIn = `[Service]
ExecStart=
ExecStart=/usr/bin/kubelet --config=/etc/systemd/system/kubelet.service.d/kubelet.conf
Restart=always
`

const etcdManifest = `apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
spec:
  hostNetwork: true
  priorityClassName: system-node-critical
  containers:
  - name: etcd
    image: %[1]s
    imagePullPolicy: IfNotPresent
    command:
    - etcd
    - --name=%[2]s
    - --data-dir=/var/lib/etcd
    - --listen-client-urls=http://%[3]s:2379
    - --advertise-client-urls=http://%[3]s:2379
    - --listen-peer-urls=http://%[3]s:2380
    - --initial-advertise-peer-urls=http://%[3]s:2380
    - --initial-cluster=%[2]s=http://%[3]s:2380
    - --listen-metrics-urls=http://127.0.0.1:2381
    volumeMounts:
    - name: etcd-data
      mountPath: /var/lib/etcd
  volumes:
  - name: etcd-data
    hostPath:
      path: /var/lib/etcd
      type: DirectoryOrCreate
`

// dial connects to h as user with the lab key, checking its host key
// against the lab's known_hosts with knownhosts, as etcdadm does.
func dial(t *testing.T, l *lab.Lab, h *lab.Host, user string) (*ssh.Client, error) {
	t.Helper()
	key, err := os.ReadFile(l.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	hostKeys, err := knownhosts.New(l.KnownHostsFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hostKeys,
		Timeout:         10 * time.Second,
	}
	return ssh.Dial("tcp", net.JoinHostPort(h.Address, fmt.Sprint(h.SSHPort)), cfg)
}

func runSSH(c *ssh.Client, cmd string) (string, error) {
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	return string(out), err
}

// TestIntegrationLabEtcd brings up one host, makes its kubelet run an etcd
// static Pod the way etcdadm does (files over SFTP, systemctl over SSH), and
// checks etcd answers from the machine; then that Down leaves nothing.
func TestIntegrationLabEtcd(t *testing.T) {
	opts := lab.Options{Hosts: 1, NamePrefix: "labt", Subnet: 250}
	requireLab(t, opts)
	opts.Dir = labDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()

	l, err := lab.Up(ctx, opts, testLog{t})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	downed := false
	defer func() {
		if !downed {
			if err := l.Down(context.Background()); err != nil {
				t.Errorf("lab down: %v", err)
			}
		}
	}()
	h := l.Hosts[0]

	c, err := dial(t, l, h, "root")
	if err != nil {
		t.Fatalf("ssh to %s: %v", h.Name, err)
	}
	defer c.Close()
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatalf("sftp to %s: %v", h.Name, err)
	}
	defer sc.Close()
	files := map[string]string{
		"/etc/systemd/system/kubelet.service.d/kubelet.conf":                 kubeletConfig,
		"/etc/systemd/system/kubelet.service.d/20-etcd-service-manager.conf": dropIn,
		"/etc/kubernetes/manifests/etcd.yaml":                                fmt.Sprintf(etcdManifest, lab.EtcdImage, h.Name, h.Address),
	}
	for path, content := range files {
		if err := sc.MkdirAll(filepath.Dir(path)); err != nil {
			t.Fatalf("sftp mkdir %s: %v", filepath.Dir(path), err)
		}
		f, err := sc.Create(path)
		if err != nil {
			t.Fatalf("sftp create %s: %v", path, err)
		}
		if _, err := f.Write([]byte(content)); err != nil {
			t.Fatalf("sftp write %s: %v", path, err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("sftp close %s: %v", path, err)
		}
	}
	// The host sees the files; the machine does not.
	if got, err := h.ReadFile(ctx, "/etc/kubernetes/manifests/etcd.yaml"); err != nil || !bytes.Contains(got, []byte(h.Address)) {
		t.Fatalf("manifest on host: %q, %v", got, err)
	}
	if _, err := os.Stat("/etc/kubernetes/manifests/etcd.yaml"); err == nil {
		t.Fatal("the manifest leaked to the machine's /etc")
	}

	start := time.Now()
	if out, err := runSSH(c, "systemctl daemon-reload && systemctl restart kubelet"); err != nil {
		t.Fatalf("restart kubelet: %v\n%s", err, out)
	}
	url := fmt.Sprintf("http://%s:2379/health", h.Address)
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(3 * time.Minute)
	var last string
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`"health":"true"`)) {
				break
			}
			last = fmt.Sprintf("%s: %s", resp.Status, body)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			containers, _ := h.Exec(ctx, "ctr", "-n", "k8s.io", "containers", "ls")
			t.Fatalf("etcd not healthy at %s after 3m (last: %s)\nkubelet.log:\n%s\ncontainerd.log:\n%s\ncontainers:\n%s",
				url, last, h.LogTail("kubelet.log", 40), h.LogTail("containerd.log", 20), containers)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("etcd healthy at %s %s after systemctl restart kubelet", url, time.Since(start).Round(10*time.Millisecond))

	if pids := h.PIDs("etcd"); len(pids) != 1 {
		t.Errorf("etcd processes on %s: %v, want one", h.Name, pids)
	}
	metrics, err := h.Exec(ctx, "bash", "-c", `exec 3<>/dev/tcp/127.0.0.1/2381; printf 'GET /health HTTP/1.0\r\n\r\n' >&3; cat <&3`)
	if err != nil || !bytes.Contains(metrics, []byte(`"health":"true"`)) {
		t.Errorf("metrics endpoint on the host's loopback: %q, %v", metrics, err)
	}
	if out, err := runSSH(c, "systemctl is-active kubelet"); err != nil || strings.TrimSpace(out) != "active" {
		t.Errorf("systemctl is-active kubelet = %q, %v", out, err)
	}

	procs := l.Processes()
	if len(procs) == 0 {
		t.Fatal("no lab processes found")
	}
	c.Close()
	downed = true
	if err := l.Down(ctx); err != nil {
		t.Fatalf("lab down: %v", err)
	}
	for _, p := range procs {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p)); err == nil && !bytes.Contains(b, []byte(") Z ")) {
			t.Errorf("process %d still running after Down: %s", p, b)
		}
	}
	if _, err := os.Stat("/run/netns/" + h.NetNS); err == nil {
		t.Errorf("network namespace %s left behind", h.NetNS)
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/lab-" + h.Name); err == nil {
		t.Errorf("cgroup lab-%s left behind", h.Name)
	}
	if _, err := os.Stat("/sys/class/net/" + opts.NamePrefix + "br0"); err == nil {
		t.Error("bridge left behind")
	}
	if err := lab.Cleanup(ctx, opts.Dir, io.Discard); err != nil {
		t.Errorf("cleanup after down: %v", err)
	}
}

// TestIntegrationLabSSH checks what SSH tests rely on, behind a bastion:
// users and sudo, jump, host key rotation, cut connections, sshd restart.
func TestIntegrationLabSSH(t *testing.T) {
	opts := lab.Options{Hosts: 2, SSHOnly: true, Bastion: true, NamePrefix: "labs", Subnet: 251}
	requireLab(t, opts)
	opts.Dir = labDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, opts, testLog{t})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	defer func() {
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("lab down: %v", err)
		}
	}()
	h := l.Hosts[0]

	// Only the bastion is reachable from the machine.
	var d net.Dialer
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
	if conn, err := d.DialContext(dctx, "tcp", net.JoinHostPort(h.Address, "22")); err == nil {
		conn.Close()
		t.Errorf("%s reachable without the bastion", h.Name)
	}
	dcancel()

	c, err := l.Dial(ctx, h, lab.SudoUser)
	if err != nil {
		t.Fatalf("ssh through the bastion: %v", err)
	}
	if out, err := runSSH(c, "hostname && sudo -n id -u"); err != nil || out != h.Name+"\n0\n" {
		t.Errorf("labsudo: %q, %v", out, err)
	}
	c.Close()
	c, err = l.Dial(ctx, h, lab.PasswordUser)
	if err != nil {
		t.Fatalf("ssh as %s: %v", lab.PasswordUser, err)
	}
	if out, err := runSSH(c, "sudo -n true"); err == nil {
		t.Errorf("sudo -n as %s succeeded: %q", lab.PasswordUser, out)
	}
	if out, err := runSSH(c, "echo "+lab.PasswordUserPassword+" | sudo -S -p '' id -u"); err != nil || strings.TrimSpace(out) != "0" {
		t.Errorf("sudo with password as %s: %q, %v", lab.PasswordUser, out, err)
	}
	if out, err := runSSH(c, "systemctl is-active kubelet"); err == nil || strings.TrimSpace(out) != "inactive" {
		t.Errorf("systemctl is-active kubelet on an SSH-only host: %q, %v", out, err)
	}
	// Like systemd: no unit at all, then a unit without ExecStart=.
	out, err := runSSH(c, "echo "+lab.PasswordUserPassword+" | sudo -S -p '' systemctl restart kubelet")
	var exit *ssh.ExitError
	if !errors.As(err, &exit) || exit.ExitStatus() != 5 || !strings.Contains(out, "Unit kubelet.service not found.") {
		t.Errorf("restart kubelet without a unit: %q, %v", out, err)
	}
	if err := h.WriteFile(ctx, "/etc/systemd/system/kubelet.service.d/10-x.conf", []byte("[Service]\nRestart=always\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runSSH(c, "echo "+lab.PasswordUserPassword+" | sudo -S -p '' systemctl restart kubelet")
	if !errors.As(err, &exit) || exit.ExitStatus() != 1 || !strings.Contains(out, "bad unit file setting") {
		t.Errorf("restart kubelet without ExecStart: %q, %v", out, err)
	}

	// A killed session breaks the client's connection.
	if n := h.KillSSHSessions(); n == 0 {
		t.Error("KillSSHSessions killed nothing")
	}
	if _, err := runSSH(c, "true"); err == nil {
		t.Error("connection survived KillSSHSessions")
	}
	c.Close()

	// Host key rotation: known_hosts still has the old key.
	if _, err := l.Bastion.RotateHostKey(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = dial(t, l, l.Bastion, "root")
	var keyErr *knownhosts.KeyError
	if !errors.As(err, &keyErr) || len(keyErr.Want) == 0 {
		t.Errorf("dial after key rotation: %v, want a known_hosts key mismatch", err)
	}

	if err := h.StopSSHD(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := l.Bastion.Exec(ctx, "bash", "-c", "exec 3<>/dev/tcp/"+h.Address+"/22"); err == nil {
		t.Errorf("sshd still answering after StopSSHD: %q", out)
	}
	if err := h.StartSSHD(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := l.Hosts[1].Exec(ctx, "bash", "-c", "exec 3<>/dev/tcp/"+h.Address+"/22; head -c 4 <&3"); err != nil || string(out) != "SSH-" {
		t.Errorf("sshd after StartSSHD: %q, %v", out, err)
	}
}
