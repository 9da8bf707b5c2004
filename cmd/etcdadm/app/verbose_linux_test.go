package app

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// sshdHost starts OpenSSH's sshd on 127.0.0.1, letting root in with a new
// key, and writes an inventory of one host, infra0, that reaches it. It
// returns the inventory and the private key's PEM.
func sshdHost(t *testing.T) (inventory string, privateKey []byte) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	var missing string
	switch {
	case os.Geteuid() != 0:
		missing = "needs root: sshd only runs as root"
	case !executable("/usr/sbin/sshd"):
		missing = "needs OpenSSH's sshd at /usr/sbin/sshd (apt-get install openssh-server)"
	}
	if missing != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s; CI=true, so this is a failure, not a skip", missing)
		}
		t.Skip(missing)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: sshd reads authorized_keys as root, through a
	// directory others may enter.
	dir, err := os.MkdirTemp("", "etcdadm-sshd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeKey := func(name string) (ssh.PublicKey, []byte) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		block, err := ssh.MarshalPrivateKey(priv, "")
		if err != nil {
			t.Fatal(err)
		}
		data := pem.EncodeToMemory(block)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
		signer, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		return signer.PublicKey(), data
	}
	hostKey, _ := writeKey("host_ed25519")
	clientKey, privateKey := writeKey("id_ed25519")
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), ssh.MarshalAuthorizedKey(clientKey), 0o644); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	config := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %[2]s/host_ed25519
PidFile %[2]s/sshd.pid
AuthorizedKeysFile %[2]s/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
Subsystem sftp internal-sftp
`, port, dir)
	if err := os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	log := &screen{}
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("sshd log:\n%s", log)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(log.String(), "Server listening on"); time.Sleep(10 * time.Millisecond) {
		select {
		case <-exited:
			t.Fatalf("sshd exited:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd not listening after 10s:\n%s", log)
		}
	}

	addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
	line := knownhosts.Line([]string{knownhosts.Normalize(addr)}, hostKey)
	if err := os.WriteFile(filepath.Join(dir, "known_hosts"), []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	inventory = filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(inventory, []byte(fmt.Sprintf(`apiVersion: etcdadm/v1alpha1
kind: Cluster
metadata: {name: demo}
spec:
  ssh: {user: root, port: %d, identityFile: id_ed25519, knownHostsFile: known_hosts}
  pki: {keyAlgorithm: ECDSA-P256}
  hosts:
  - {name: infra0, address: 127.0.0.1}
`, port)), 0o600); err != nil {
		t.Fatal(err)
	}
	return inventory, privateKey
}

func executable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// etcdadm runs the command tree in this process.
func etcdadm(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := NewRootCommand(Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

var (
	traceLine = regexp.MustCompile(`(?m)^\[infra0\] (run|start) cmd="([^"\n]|\\")*"( lines=\d+)? took=\d+(\.\d+)?(µs|ms|s)( exit=\d+)?$`)
)

// Progress goes to stderr, the plan to stdout as one JSON document; with
// -v, stderr also shows each command run on the host, in short, with its
// duration, and no key.
func TestVerboseShowsRemoteCommands(t *testing.T) {
	inventory, privateKey := sshdHost(t)
	t.Setenv("SSH_AUTH_SOCK", "")
	t.Setenv("HOME", filepath.Dir(inventory))
	for _, verbose := range []bool{false, true} {
		args := []string{"diff", "-f", inventory, "-o", "json", "--ssh-config", "none"}
		if verbose {
			args = append(args, "-v")
		}
		// This machine has no kubelet: the plan is refused, and printed.
		stdout, stderr, err := etcdadm(t, args...)
		if err != nil && !strings.Contains(err.Error(), "kubelet is not installed") {
			t.Fatalf("-v=%v: %v\n%s", verbose, err, stderr)
		}
		var p struct {
			Cluster string
			Hosts   []struct{ Files []json.RawMessage }
		}
		if err := json.Unmarshal([]byte(stdout), &p); err != nil || p.Cluster != "demo" || len(p.Hosts) != 1 || len(p.Hosts[0].Files) == 0 {
			t.Errorf("-v=%v: stdout is not the plan in JSON (%v):\n%s", verbose, err, stdout)
		}
		if !strings.Contains(stderr, "[infra0] connected\n") || !strings.Contains(stderr, "[certs] infra0 etcd-server: would be created") {
			t.Errorf("-v=%v: no progress on stderr:\n%s", verbose, stderr)
		}
		runs := traceLine.FindAllString(stderr, -1)
		if !verbose {
			if len(runs) > 0 || strings.Contains(stderr, " took=") {
				t.Errorf("without -v, stderr shows the commands:\n%s", stderr)
			}
			continue
		}
		if len(runs) == 0 {
			t.Errorf("with -v, stderr shows no command with its duration:\n%s", stderr)
		}
		for _, r := range runs {
			cmd := r[strings.Index(r, `cmd="`)+5 : strings.LastIndex(r, `"`)]
			if n := len([]rune(strings.ReplaceAll(cmd, `\"`, `"`))); n > 81 {
				t.Errorf("a command shown in full (%d characters): %s", n, r)
			}
		}
		if !strings.Contains(stderr, "[infra0] connected user=root address=127.0.0.1:") {
			t.Errorf("with -v, stderr does not say how infra0 was reached:\n%s", stderr)
		}
		for _, line := range strings.Split(string(privateKey), "\n") {
			if line != "" && !strings.HasPrefix(line, "-----") && strings.Contains(stderr, line) {
				t.Errorf("stderr holds the SSH key's line %q", line)
			}
		}
	}
}

// status prints its table or JSON only; its progress shows with -v.
func TestStatusIsQuietUnlessVerbose(t *testing.T) {
	inventory, _ := sshdHost(t)
	t.Setenv("SSH_AUTH_SOCK", "")
	t.Setenv("HOME", filepath.Dir(inventory))
	for _, verbose := range []bool{false, true} {
		args := []string{"status", "-f", inventory, "-o", "json", "--ssh-config", "none"}
		if verbose {
			args = append(args, "--verbose")
		}
		stdout, stderr, err := etcdadm(t, args...)
		if err != nil {
			t.Fatalf("--verbose=%v: %v\n%s", verbose, err, stderr)
		}
		if !json.Valid([]byte(stdout)) {
			t.Errorf("--verbose=%v: stdout is not JSON:\n%s", verbose, stdout)
		}
		shown := strings.Contains(stderr, "[infra0] connected\n") && traceLine.MatchString(stderr)
		if shown != verbose {
			t.Errorf("--verbose=%v: stderr:\n%s", verbose, stderr)
		}
	}
}
