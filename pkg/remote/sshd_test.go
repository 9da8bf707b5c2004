//go:build linux

package remote

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

const sshdPath = "/usr/sbin/sshd"

// requireIntegration skips a test that needs a real sshd, unless CI=true,
// where a missing prerequisite is a failure.
func requireIntegration(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	var missing string
	switch {
	case os.Geteuid() != 0:
		missing = "needs root: sshd only runs as root, and the test creates users"
	case !isExecutable(sshdPath):
		missing = "needs OpenSSH's sshd at " + sshdPath + " (apt-get install openssh-server)"
	case !isExecutable("/usr/lib/openssh/sftp-server"):
		missing = "needs /usr/lib/openssh/sftp-server (apt-get install openssh-server)"
	case !isExecutable("/usr/bin/sudo"):
		missing = "needs sudo (apt-get install sudo)"
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s; CI=true, so this is a failure, not a skip", missing)
	}
	t.Skip(missing)
}

// syncBuffer collects output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testLogger keeps the transport's log and prints it if the test fails.
func testLogger(t *testing.T) (*slog.Logger, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("transport log:\n%s", buf)
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// sshd is a real OpenSSH server on 127.0.0.1, with its own host keys.
type sshd struct {
	name     string
	port     int
	dir      string
	hostKeys []ssh.PublicKey
	cmd      *exec.Cmd
	log      *syncBuffer
}

type sshdOptions struct {
	authorized []*testKey // accepted for every user
	rsaHostKey bool       // an RSA host key besides the ed25519 one
	// logLevel defaults to VERBOSE; at DEBUG levels sshd also writes debug
	// lines to the stderr of the commands it runs.
	logLevel string
	extra    string // more sshd_config lines
	// namespace, if set, is run by sh in a private mount namespace in which
	// sshd then starts; $SSHD_CONFIG names its config file.
	namespace string
}

func (s *sshd) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// knownHostsLine is the known_hosts entry for the server's key i.
func (s *sshd) knownHostsLine(i int) string {
	return knownhosts.Line([]string{s.addr()}, s.hostKeys[i])
}

func startSSHD(t *testing.T, name string, opts sshdOptions) *sshd {
	t.Helper()
	// sshd refuses to start without its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: sshd reads authorized_keys as the login user, who must get in.
	dir, err := os.MkdirTemp("", "sshd-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &sshd{name: name, dir: dir, log: &syncBuffer{}}

	var hostKeyLines []string
	addHostKey := func(file string, priv any) {
		block, err := ssh.MarshalPrivateKey(priv, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		signer, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		s.hostKeys = append(s.hostKeys, signer.PublicKey())
		hostKeyLines = append(hostKeyLines, "HostKey "+file)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	addHostKey(filepath.Join(dir, "host_ed25519"), edKey)
	if opts.rsaHostKey {
		rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		addHostKey(filepath.Join(dir, "host_rsa"), rsaKey)
	}

	var authorized strings.Builder
	for _, k := range opts.authorized {
		authorized.WriteString(k.authorizedLine())
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(authorized.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	if opts.logLevel == "" {
		opts.logLevel = "VERBOSE"
	}
	for attempt := 0; ; attempt++ {
		s.port = freePort(t)
		// sshd keeps the first value it reads: extra lines go first to win.
		config := fmt.Sprintf(`%s
Port %d
ListenAddress 127.0.0.1
%s
PidFile %s/sshd.pid
AuthorizedKeysFile %s/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
MaxAuthTries 6
Subsystem sftp /usr/lib/openssh/sftp-server
LogLevel %s
`, opts.extra, s.port, strings.Join(hostKeyLines, "\n"), dir, dir, opts.logLevel)
		cfgFile := filepath.Join(dir, "sshd_config")
		if err := os.WriteFile(cfgFile, []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
		s.log = &syncBuffer{}
		s.cmd = exec.Command(sshdPath, "-D", "-e", "-f", cfgFile)
		if opts.namespace != "" {
			s.cmd = exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-ec", opts.namespace+"\nexec \"$@\"", "sh", sshdPath, "-D", "-e", "-f", cfgFile)
			s.cmd.Env = append(os.Environ(), "SSHD_CONFIG="+cfgFile)
		}
		s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
		// Dies with the test binary, even when it is killed before its cleanups.
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := s.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(exited) }()
		if s.waitListening(exited) {
			t.Cleanup(func() {
				_ = s.cmd.Process.Kill()
				<-exited
				if t.Failed() {
					t.Logf("sshd %s log:\n%s", name, s.log)
				}
			})
			return s
		}
		_ = s.cmd.Process.Kill()
		<-exited
		// Another process may have taken the port between freePort and sshd.
		if attempt == 2 {
			t.Fatalf("sshd %s did not start:\n%s", name, s.log)
		}
	}
}

func (s *sshd) waitListening(exited <-chan struct{}) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(s.log.String(), "Server listening on") {
			return true
		}
		select {
		case <-exited:
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
	return false
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// pid is the sshd listener's process id.
func (s *sshd) pid() int { return s.cmd.Process.Pid }

// tcpClientOwners returns the processes that own an established TCP
// connection to the local port, read from /proc.
func tcpClientOwners(t *testing.T, port int) []int {
	t.Helper()
	return tcpOwners(t, func(_, remote int) bool { return remote == port })
}

// tcpOwners returns the processes owning an established TCP socket whose
// local and remote ports match.
func tcpOwners(t *testing.T, match func(local, remote int) bool) []int {
	t.Helper()
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "01" { // 01: ESTABLISHED
				continue
			}
			if match(hexPort(f[1]), hexPort(f[2])) {
				inodes["socket:["+f[9]+"]"] = true
			}
		}
	}
	var pids []int
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		for _, fd := range fds {
			if link, _ := os.Readlink(filepath.Join("/proc", p.Name(), "fd", fd.Name())); inodes[link] {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// hexPort reads the port of a /proc/net/tcp address, "0100007F:1F90".
func hexPort(addr string) int {
	p, err := strconv.ParseInt(addr[strings.LastIndex(addr, ":")+1:], 16, 32)
	if err != nil {
		return -1
	}
	return int(p)
}

// isDescendant reports whether pid is ancestor or one of its descendants.
func isDescendant(pid, ancestor int) bool {
	for pid > 1 {
		if pid == ancestor {
			return true
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return false
		}
		// The command name may hold spaces; fields after its ")" are fixed.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 2 {
			return false
		}
		if pid, err = strconv.Atoi(f[1]); err != nil {
			return false
		}
	}
	return false
}

// ensureUser creates a local user that logs in with keys (its password is
// "*", not locked "!", which sshd without PAM would refuse) and gives it the
// sudoers rule; both are idempotent.
func ensureUser(t *testing.T, name, sudoers string) {
	t.Helper()
	if err := exec.Command("id", name).Run(); err != nil {
		if out, err := exec.Command("useradd", "--create-home", "--shell", "/bin/sh", name).CombinedOutput(); err != nil {
			t.Fatalf("useradd %s: %v: %s", name, err, out)
		}
	}
	if out, err := exec.Command("usermod", "--password", "*", name).CombinedOutput(); err != nil {
		t.Fatalf("usermod %s: %v: %s", name, err, out)
	}
	file := "/etc/sudoers.d/" + name
	if err := os.WriteFile(file, []byte(sudoers+"\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(file) })
	if out, err := exec.Command("visudo", "-c", "-f", file).CombinedOutput(); err != nil {
		t.Fatalf("sudoers rule %q is invalid: %v: %s", sudoers, err, out)
	}
}
