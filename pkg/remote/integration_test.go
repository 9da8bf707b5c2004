//go:build linux

package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// client is the operator's side: a key and a known_hosts file.
type client struct {
	key        *testKey
	dir        string
	knownHosts string
}

func newClient(t *testing.T) *client {
	t.Helper()
	dir := t.TempDir()
	return &client{
		key:        newTestKey(t).write(t, filepath.Join(dir, "id_ed25519"), ""),
		dir:        dir,
		knownHosts: filepath.Join(dir, "known_hosts"),
	}
}

func (c *client) trust(t *testing.T, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(c.knownHosts, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		if _, err := fmt.Fprintln(f, l); err != nil {
			t.Fatal(err)
		}
	}
}

// config dials s as root with c's key, reading no ssh config and no agent.
func (c *client) config(t *testing.T, s *sshd) Config {
	t.Helper()
	log, _ := testLogger(t)
	return Config{
		Host:           "etcd-" + s.name,
		Address:        "127.0.0.1",
		Port:           s.port,
		User:           "root",
		IdentityFiles:  []string{c.key.path},
		KnownHostsFile: c.knownHosts,
		SSHConfigFile:  "none",
		AgentSocket:    "none",
		ConnectTimeout: 5 * time.Second,
		Attempts:       1,
		Logger:         log,
	}
}

func dial(t *testing.T, cfg Config) Transport {
	t.Helper()
	tr, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func mustRun(t *testing.T, tr Transport, cmd string) string {
	t.Helper()
	out, err := tr.Run(context.Background(), cmd, nil)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func TestIntegrationKeyAuthAndCommands(t *testing.T) {
	requireIntegration(t)
	c := newClient(t)
	s := startSSHD(t, "a", sshdOptions{authorized: []*testKey{c.key}})
	c.trust(t, s.knownHostsLine(0))
	cfg := c.config(t, s)
	var dials atomic.Int32
	cfg.netDial = countingDialer(&dials)
	tr := dial(t, cfg)
	ctx := context.Background()

	if tr.Host() != "etcd-a" {
		t.Errorf("Host() = %q", tr.Host())
	}
	if got := mustRun(t, tr, "id -u"); got != "0" {
		t.Errorf("id -u = %q, want 0", got)
	}
	out, err := tr.Run(ctx, `read line; printf '%s;%s' "$line" "$0"`, strings.NewReader("from stdin\n"))
	if err != nil || string(out) != "from stdin;sh" {
		t.Errorf("stdin and sh -c: out = %q, err = %v", out, err)
	}
	_, err = tr.Run(ctx, "echo to-stdout; echo 'unit etcd.service not found' | tr a-z A-Z >&2; exit 5", nil)
	var ce *CommandError
	if !errors.As(err, &ce) || ce.ExitCode != 5 || ce.Host != "etcd-a" || strings.TrimSpace(ce.Stderr) != "UNIT ETCD.SERVICE NOT FOUND" {
		t.Fatalf("failing command: err = %#v", err)
	}
	if strings.Count(err.Error(), "UNIT ETCD") != 1 || !strings.Contains(err.Error(), "on etcd-a: exit status 5") {
		t.Errorf("message = %q, want host, command, status and stderr once", err)
	}

	if _, err := tr.ReadFile(ctx, "/nonexistent/etcdadm"); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "etcd-a") {
		t.Errorf("ReadFile of a missing file: err = %v, want fs.ErrNotExist naming the host", err)
	}
	fi, err := tr.Stat(ctx, "/etc/passwd")
	if err != nil || fi.UID != 0 || fi.Mode != 0o644 || fi.Size == 0 {
		t.Errorf("Stat(/etc/passwd) = %+v, %v", fi, err)
	}
	got, err := tr.ReadFile(ctx, "/etc/passwd")
	local, _ := os.ReadFile("/etc/passwd")
	if err != nil || string(got) != string(local) {
		t.Errorf("ReadFile(/etc/passwd) = %d bytes, %v; want this machine's %d bytes", len(got), err, len(local))
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d TCP connections for commands and file operations, want 1", n)
	}
}

func TestIntegrationHostKeyUnknownRefused(t *testing.T) {
	requireIntegration(t)
	c := newClient(t)
	s := startSSHD(t, "a", sshdOptions{authorized: []*testKey{c.key}})
	_, err := Dial(context.Background(), c.config(t, s))
	var he *HostKeyError
	if !errors.Is(err, ErrHostKeyUnknown) || !errors.As(err, &he) {
		t.Fatalf("err = %v, want ErrHostKeyUnknown", err)
	}
	for _, want := range []string{"etcd-a", fmt.Sprintf("[127.0.0.1]:%d", s.port), ssh.FingerprintSHA256(s.hostKeys[0]), AcceptNewHostKeysFlag} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	if _, err := os.Stat(c.knownHosts); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("known_hosts was written: %v", err)
	}
	// Refused before authentication: no credential went to the server.
	if strings.Contains(s.log.String(), "publickey") {
		t.Error("the client authenticated to a server whose key it did not trust")
	}
}

func TestIntegrationHostKeyAcceptNew(t *testing.T) {
	requireIntegration(t)
	c := newClient(t)
	s := startSSHD(t, "a", sshdOptions{authorized: []*testKey{c.key}})
	cfg := c.config(t, s)
	cfg.KnownHostsFile = filepath.Join(c.dir, "new", ".ssh", "known_hosts")
	cfg.AcceptNewHostKeys = true

	// Parallel first connections record the key once and do not tear the file.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr, err := Dial(context.Background(), cfg)
			if err == nil {
				tr.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(cfg.KnownHostsFile)
	if err != nil {
		t.Fatal(err)
	}
	if want := s.knownHostsLine(0) + "\n"; string(b) != want {
		t.Errorf("known_hosts = %q, want exactly %q", b, want)
	}
	for p, want := range map[string]fs.FileMode{cfg.KnownHostsFile: 0o600, filepath.Dir(cfg.KnownHostsFile): fs.ModeDir | 0o700} {
		if fi, err := os.Stat(p); err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v, %v; want %v", p, fi.Mode(), err, want)
		}
	}
	cfg.AcceptNewHostKeys = false
	tr := dial(t, cfg)
	if got := mustRun(t, tr, "echo ok"); got != "ok" {
		t.Errorf("second connection without the flag: %q", got)
	}
}

func TestIntegrationHostKeyChangedRefused(t *testing.T) {
	requireIntegration(t)
	c := newClient(t)
	s := startSSHD(t, "a", sshdOptions{authorized: []*testKey{c.key}})
	old := newEd25519PublicKey(t)
	c.trust(t, "# fleet keys", strings.Replace(s.knownHostsLine(0), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.hostKeys[0]))), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(old))), 1))
	before, _ := os.ReadFile(c.knownHosts)

	for _, accept := range []bool{false, true} {
		cfg := c.config(t, s)
		cfg.AcceptNewHostKeys = accept
		_, err := Dial(context.Background(), cfg)
		if !errors.Is(err, ErrHostKeyChanged) {
			t.Fatalf("accept-new=%v: err = %v, want ErrHostKeyChanged", accept, err)
		}
		for _, want := range []string{"CHANGED", ssh.FingerprintSHA256(s.hostKeys[0]), ssh.FingerprintSHA256(old), c.knownHosts + ":2", "delete line 2"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message %q lacks %q", err, want)
			}
		}
	}
	if after, _ := os.ReadFile(c.knownHosts); !bytes.Equal(before, after) {
		t.Errorf("known_hosts changed:\n%s", after)
	}
	if strings.Contains(s.log.String(), "publickey") {
		t.Error("the client authenticated to a server with a changed key")
	}
}

// A server with RSA and ed25519 keys, known only by its ed25519 key: the
// client must ask for ed25519, or the RSA key the ssh package prefers by
// default looks like a changed key.
func TestIntegrationHostKeyAlgorithmFromKnownHosts(t *testing.T) {
	requireIntegration(t)
	c := newClient(t)
	s := startSSHD(t, "a", sshdOptions{authorized: []*testKey{c.key}, rsaHostKey: true, logLevel: "DEBUG1"})
	c.trust(t, s.knownHostsLine(0))
	dial(t, c.config(t, s))
	if !strings.Contains(s.log.String(), "kex: host key algorithm: ssh-ed25519") {
		t.Error("the server did not use its ed25519 key")
	}
}

func TestIntegrationPassphraseProtectedKey(t *testing.T) {
	requireIntegration(t)
	c := newClient(t)
	locked := newTestKey(t).write(t, filepath.Join(c.dir, "id_locked"), "correct horse")
	s := startSSHD(t, "a", sshdOptions{authorized: []*testKey{locked}})
	c.trust(t, s.knownHostsLine(0))
	cfg := c.config(t, s)
	cfg.IdentityFiles = []string{c.key.path, locked.path}
	cfg.PassphraseEnv = "ETCDADM_TEST_PASSPHRASE"
	t.Setenv(cfg.PassphraseEnv, "correct horse")
	dial(t, cfg)

	// A user slower to type the passphrase than the connect timeout is fine.
	slow := cfg
	slow.PassphraseEnv = ""
	slow.ConnectTimeout = 300 * time.Millisecond
	var prompts atomic.Int32
	slow.PassphrasePrompt = func(path string) ([]byte, error) {
		prompts.Add(1)
		time.Sleep(time.Second)
		return []byte("correct horse"), nil
	}
	dial(t, slow)
	if n := prompts.Load(); n != 1 {
		t.Errorf("prompted %d times, want once", n)
	}

	// Wrong passphrase: an authentication error, tried once.
	t.Setenv(cfg.PassphraseEnv, "wrong")
	var dials atomic.Int32
	cfg.netDial = countingDialer(&dials)
	cfg.Attempts = 4
	_, err := Dial(context.Background(), cfg)
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "$ETCDADM_TEST_PASSPHRASE") || strings.Contains(err.Error(), "wrong") {
		t.Errorf("err = %v, want ErrAuth naming the variable and not its value", err)
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d connection attempts, want 1: authentication errors are not retried", n)
	}
}

func TestIntegrationAgent(t *testing.T) {
	requireIntegration(t)
	c := newClient(t)
	inAgent := newTestKey(t)
	s := startSSHD(t, "a", sshdOptions{authorized: []*testKey{inAgent}})
	c.trust(t, s.knownHostsLine(0))
	t.Setenv("SSH_AUTH_SOCK", serveAgent(t, inAgent))
	cfg := c.config(t, s)
	cfg.AgentSocket = "" // from $SSH_AUTH_SOCK
	cfg.IdentityFiles = nil
	tr := dial(t, cfg)
	mustRun(t, tr, "true")
}

// An agent holding the right key behind others exhausts MaxAuthTries before
// reaching it, unless the configured key is offered first.
func TestIntegrationIdentityFileBeforeAgentKeys(t *testing.T) {
	requireIntegration(t)
	c := newClient(t)
	var noise []*testKey
	for range 8 {
		noise = append(noise, newTestKey(t))
	}
	s := startSSHD(t, "a", sshdOptions{authorized: []*testKey{c.key}, extra: "MaxAuthTries 3"})
	c.trust(t, s.knownHostsLine(0))
	cfg := c.config(t, s)
	cfg.AgentSocket = serveAgent(t, append(noise, c.key)...)
	tr := dial(t, cfg)
	mustRun(t, tr, "true")

	// Without the identity file, the same agent fails, as a control.
	cfg.IdentityFiles = nil
	_, err := Dial(context.Background(), cfg)
	if !errors.Is(err, ErrAuth) || !strings.Contains(strings.ToLower(err.Error()), "too many authentication failures") {
		t.Errorf("agent keys only: err = %v, want ErrAuth for too many failures", err)
	}
}

func TestIntegrationProxyJumpChain(t *testing.T) {
	requireIntegration(t)
	c := newClient(t)
	jumpKey1 := newTestKey(t).write(t, filepath.Join(c.dir, "jump1_key"), "")
	jumpKey2 := newTestKey(t).write(t, filepath.Join(c.dir, "jump2_key"), "")
	jump1 := startSSHD(t, "jump1", sshdOptions{authorized: []*testKey{jumpKey1}, logLevel: "DEBUG1"})
	jump2 := startSSHD(t, "jump2", sshdOptions{authorized: []*testKey{jumpKey2}, logLevel: "DEBUG1"})
	target := startSSHD(t, "target", sshdOptions{authorized: []*testKey{c.key}})
	c.trust(t, jump1.knownHostsLine(0), jump2.knownHostsLine(0), target.knownHostsLine(0))

	// Each jump host has its own key, found through the ssh config.
	sshConfig := filepath.Join(c.dir, "ssh_config")
	conf := fmt.Sprintf(`Host jump1
  HostName 127.0.0.1
  Port %d
  User root
  IdentityFile %s
Host jump2
  HostName 127.0.0.1
  Port %d
  User root
  IdentityFile %s
`, jump1.port, jumpKey1.path, jump2.port, jumpKey2.path)
	if err := os.WriteFile(sshConfig, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := c.config(t, target)
	cfg.SSHConfigFile = sshConfig
	cfg.ProxyJump = "jump1,jump2"
	tr := dial(t, cfg)
	mustRun(t, tr, "true")

	// The path, from the kernel's socket table: this process holds a connection
	// to jump1 only; the connection into jump2 belongs to jump1's sshd, the one
	// into the target to jump2's sshd.
	me := os.Getpid()
	if !slices.Contains(tcpClientOwners(t, jump1.port), me) {
		t.Error("no connection from this process to jump1")
	}
	for _, hop := range []struct{ from, to *sshd }{{jump1, jump2}, {jump2, target}} {
		owners := tcpClientOwners(t, hop.to.port)
		if len(owners) == 0 {
			t.Errorf("no connection into %s", hop.to.name)
		}
		for _, pid := range owners {
			if pid == me || !isDescendant(pid, hop.from.pid()) {
				t.Errorf("connection into %s owned by pid %d, not by %s's sshd (%d)", hop.to.name, pid, hop.from.name, hop.from.pid())
			}
		}
	}
	for _, hop := range []struct{ from, to *sshd }{{jump1, jump2}, {jump2, target}} {
		if want := fmt.Sprintf("target 127.0.0.1 port %d", hop.to.port); !strings.Contains(hop.from.log.String(), want) {
			t.Errorf("%s's log does not show a forwarding to %s (%q)", hop.from.name, hop.to.name, want)
		}
	}

	// Each hop's key is checked: an unknown jump2 is refused by name.
	if err := os.WriteFile(c.knownHosts, []byte(jump1.knownHostsLine(0)+"\n"+target.knownHostsLine(0)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Dial(context.Background(), cfg)
	if !errors.Is(err, ErrHostKeyUnknown) || !strings.Contains(err.Error(), "jump host jump2") {
		t.Errorf("unknown jump2: err = %v, want ErrHostKeyUnknown naming jump2", err)
	}
}

const (
	sudoUser   = "etcdadm-it-sudo"
	passwdUser = "etcdadm-it-passwd"
)

func TestIntegrationSudoUser(t *testing.T) {
	requireIntegration(t)
	ensureUser(t, sudoUser, sudoUser+" ALL=(ALL) NOPASSWD: ALL")
	c := newClient(t)
	s := startSSHD(t, "a", sshdOptions{authorized: []*testKey{c.key}})
	c.trust(t, s.knownHostsLine(0))
	cfg := c.config(t, s)
	cfg.User = sudoUser
	tr := dial(t, cfg)
	ctx := context.Background()

	if got := mustRun(t, tr, "id -un; id -u"); got != "root\n0" {
		t.Errorf("commands run as %q, want root", got)
	}
	out, err := tr.Run(ctx, "cat", strings.NewReader("piped through sudo"))
	if err != nil || string(out) != "piped through sudo" {
		t.Errorf("stdin through sudo: %q, %v", out, err)
	}

	root := t.TempDir()
	key := File{Path: filepath.Join(root, "etc/kubernetes/pki/etcd/peer.key"), Mode: 0o600, Data: []byte("secret"), DirMode: 0o700}
	conf := File{Path: filepath.Join(root, "etc/kubernetes/pki/etcd/peer.conf"), Mode: 0o640, Data: []byte("conf"), UID: 65534, GID: 65534}
	for _, f := range []File{key, conf} {
		if _, err := tr.WriteFile(ctx, f, ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []File{key, conf} {
		mode, uid, gid := readModeOwner(t, f.Path)
		if mode != f.Mode || uid != f.UID || gid != f.GID {
			t.Errorf("%s: %v %d:%d, want %v %d:%d", f.Path, mode, uid, gid, f.Mode, f.UID, f.GID)
		}
	}
	if m, uid, _ := readModeOwner(t, filepath.Dir(key.Path)); m != fs.ModeDir|0o700 || uid != 0 {
		t.Errorf("created directory: %v owned by %d, want 0700 root", m, uid)
	}
	if b, err := tr.ReadFile(ctx, key.Path); err != nil || string(b) != "secret" {
		t.Errorf("read back a root-only file: %q, %v", b, err)
	}
}

func TestIntegrationSudoNeedsPassword(t *testing.T) {
	requireIntegration(t)
	ensureUser(t, passwdUser, passwdUser+" ALL=(ALL) ALL")
	c := newClient(t)
	s := startSSHD(t, "a", sshdOptions{authorized: []*testKey{c.key}})
	c.trust(t, s.knownHostsLine(0))
	cfg := c.config(t, s)
	cfg.User = passwdUser
	cfg.Attempts = 3
	_, err := Dial(context.Background(), cfg)
	if !errors.Is(err, ErrSudoPassword) {
		t.Fatalf("err = %v, want ErrSudoPassword", err)
	}
	if want := fmt.Sprintf("user %s on host etcd-a needs passwordless sudo (sudo -n failed: sudo: a password is required)", passwdUser); !strings.Contains(err.Error(), want) {
		t.Errorf("message = %q, want it to contain %q", err, want)
	}
}

func TestIntegrationPasswordAuth(t *testing.T) {
	requireIntegration(t)
	ensureUser(t, passwdUser, passwdUser+" ALL=(ALL) ALL")
	const password = "Pw for the etcdadm test"
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(passwdUser + ":" + password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("usermod", "--password", "*", passwdUser).Run() })
	c := newClient(t)
	s := startSSHD(t, "a", sshdOptions{extra: "PasswordAuthentication yes"})
	c.trust(t, s.knownHostsLine(0))
	cfg := c.config(t, s)
	cfg.User = passwdUser
	var asked atomic.Int32
	cfg.Password = func(host, user string) ([]byte, error) {
		asked.Add(1)
		if host != "127.0.0.1" || user != passwdUser {
			t.Errorf("password asked for %s@%s", user, host)
		}
		return []byte(password), nil
	}
	if _, err := Dial(context.Background(), cfg); !errors.Is(err, ErrAuth) || asked.Load() != 0 {
		t.Errorf("password not allowed: err = %v after %d questions, want ErrAuth and none", err, asked.Load())
	}
	cfg.AllowPassword = true
	// Authenticated, then stopped by sudo, which this user may use only with a password.
	if _, err := Dial(context.Background(), cfg); !errors.Is(err, ErrSudoPassword) || asked.Load() != 1 {
		t.Errorf("password allowed: err = %v after %d questions, want ErrSudoPassword after 1", err, asked.Load())
	}
	if !strings.Contains(s.log.String(), "Accepted password for "+passwdUser) {
		t.Error("sshd did not accept the password")
	}
}

func TestIntegrationKeepAliveDetectsDeadPeer(t *testing.T) {
	requireIntegration(t)
	c := newClient(t)
	s := startSSHD(t, "a", sshdOptions{authorized: []*testKey{c.key}})
	c.trust(t, s.knownHostsLine(0))
	cfg := c.config(t, s)
	log, logs := testLogger(t)
	cfg.Logger = log
	cfg.KeepAliveInterval = 200 * time.Millisecond
	var dials atomic.Int32
	cfg.netDial = countingDialer(&dials)
	tr := dial(t, cfg)

	// Freeze the server's side of the connection: it stays open but never answers.
	frozen := descendantsOf(s.pid())
	for _, pid := range frozen {
		_ = syscall.Kill(pid, syscall.SIGSTOP)
	}
	t.Cleanup(func() {
		for _, pid := range frozen {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "no answer to three keep-alives") {
		if time.Now().After(deadline) {
			t.Fatal("the dead connection was not detected")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := mustRun(t, tr, "echo again"); got != "again" || dials.Load() < 2 {
		t.Errorf("after the dead connection: %q over %d connections, want a reconnection", got, dials.Load())
	}
}

func TestIntegrationAtomicWrites(t *testing.T) {
	requireIntegration(t)
	c := newClient(t)
	s := startSSHD(t, "a", sshdOptions{authorized: []*testKey{c.key}})
	c.trust(t, s.knownHostsLine(0))
	tr := dial(t, c.config(t, s))
	ctx := context.Background()
	root := t.TempDir()
	backups := filepath.Join(root, "backup")
	p := filepath.Join(root, "etc/kubernetes/manifests/etcd.yaml")
	// Left by an earlier run whose connection was cut.
	stale := filepath.Join(root, "etc/.kubelet.conf.etcdadm-deadbeef0000.tmp")
	if err := os.Mkdir(filepath.Dir(stale), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}

	res, err := tr.WriteFile(ctx, File{Path: p, Mode: 0o600, Data: []byte("v1")}, backups)
	if err != nil || res.Action != WriteCreated || res.BackupPath != "" {
		t.Fatalf("create: %+v, %v", res, err)
	}
	if m, uid, gid := readModeOwner(t, p); m != 0o600 || uid != 0 || gid != 0 {
		t.Errorf("created file: %v %d:%d", m, uid, gid)
	}
	if m, _, _ := readModeOwner(t, filepath.Dir(p)); m != fs.ModeDir|DefaultDirMode {
		t.Errorf("created directory mode %v, want %v", m, DefaultDirMode)
	}
	if _, err := tr.WriteFile(ctx, File{Path: filepath.Join(root, "etc/kubelet.conf"), Mode: 0o600, Data: []byte("x")}, ""); err != nil {
		t.Fatal(err)
	}

	res, err = tr.WriteFile(ctx, File{Path: p, Mode: 0o600, Data: []byte("v2")}, backups)
	if err != nil || res.Action != WriteReplaced {
		t.Fatalf("replace: %+v, %v", res, err)
	}
	if b, _ := os.ReadFile(p); string(b) != "v2" {
		t.Errorf("content %q, want v2", b)
	}
	if !strings.HasPrefix(res.BackupPath, backups+"/") || !strings.HasSuffix(res.BackupPath, p) {
		t.Errorf("backup path %q, want %s/<stamp>%s", res.BackupPath, backups, p)
	}
	if b, _ := os.ReadFile(res.BackupPath); string(b) != "v1" {
		t.Errorf("backup holds %q, want v1", b)
	}
	if m, _, _ := readModeOwner(t, res.BackupPath); m != 0o600 {
		t.Errorf("backup mode %v, want the old file's 0600", m)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Error("stale temporary file not removed")
	}

	before, _ := os.Stat(p)
	res, err = tr.WriteFile(ctx, File{Path: p, Mode: 0o600, Data: []byte("v2")}, backups)
	if err != nil || res.Action != WriteUnchanged || res.Changed() {
		t.Fatalf("identical rewrite: %+v, %v", res, err)
	}
	after, _ := os.Stat(p)
	if !os.SameFile(before, after) || !before.ModTime().Equal(after.ModTime()) {
		t.Error("identical rewrite replaced the file")
	}
	res, err = tr.WriteFile(ctx, File{Path: p, Mode: 0o644, Data: []byte("v2")}, backups)
	if err != nil || res.Action != WriteMetadata {
		t.Fatalf("mode change: %+v, %v", res, err)
	}
	if m, _, _ := readModeOwner(t, p); m != 0o644 {
		t.Errorf("mode %v, want 0644", m)
	}
	assertNoTemps(t, filepath.Dir(p))

	if err := tr.MkdirAll(ctx, filepath.Join(root, "var/lib/etcd"), 0o700); err != nil {
		t.Fatal(err)
	}
	if m, _, _ := readModeOwner(t, filepath.Join(root, "var/lib/etcd")); m != fs.ModeDir|0o700 {
		t.Errorf("data directory mode %v", m)
	}
}

// cutter is a dialer whose connection is closed once armed and a number of
// bytes more were sent: the network going away in the middle of an upload.
// When slow, each write waits a little, so an upload lasts long enough to
// be interrupted from outside.
type cutter struct {
	mu      sync.Mutex
	sent    int64
	cutAt   int64 // 0: not armed
	slow    atomic.Bool
	conns   []net.Conn
	cutDone chan struct{}
}

func (c *cutter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.conns = append(c.conns, conn)
	c.mu.Unlock()
	return &cutConn{Conn: conn, c: c}, nil
}

func (c *cutter) arm(after int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cutAt = c.sent + after
	c.cutDone = make(chan struct{})
}

type cutConn struct {
	net.Conn
	c *cutter
}

func (cc *cutConn) Write(p []byte) (int, error) {
	c := cc.c
	c.mu.Lock()
	c.sent += int64(len(p))
	cut := c.cutAt > 0 && c.sent >= c.cutAt
	if cut {
		c.cutAt = 0
		close(c.cutDone)
	}
	c.mu.Unlock()
	if cut {
		cc.Conn.Close()
		return 0, net.ErrClosed
	}
	if c.slow.Load() {
		time.Sleep(time.Millisecond)
	}
	return cc.Conn.Write(p)
}

// TestIntegrationCutConnectionDuringUpload cuts the connection in the middle
// of a 32 MiB upload, from the client side (the network) and from the server
// side (sshd's session process killed). The target keeps its old content,
// and the next write on the same Transport reconnects and cleans up.
func TestIntegrationCutConnectionDuringUpload(t *testing.T) {
	requireIntegration(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 2<<20)

	t.Run("network", func(t *testing.T) {
		c := newClient(t)
		s := startSSHD(t, "a", sshdOptions{authorized: []*testKey{c.key}})
		c.trust(t, s.knownHostsLine(0))
		cfg := c.config(t, s)
		cut := &cutter{}
		cfg.netDial = cut.dial
		tr := dial(t, cfg)
		dir := t.TempDir()
		uploadInterrupted(t, tr, dir, big, func() {
			cut.arm(8 << 20)
		}, func(err error) {
			select {
			case <-cut.cutDone:
			default:
				t.Fatalf("the connection was not cut, the write failed otherwise: %v", err)
			}
		})
		if n := len(cut.conns); n != 2 {
			t.Errorf("%d TCP connections, want 2 (one reconnection)", n)
		}
	})

	t.Run("server", func(t *testing.T) {
		c := newClient(t)
		s := startSSHD(t, "a", sshdOptions{authorized: []*testKey{c.key}})
		c.trust(t, s.knownHostsLine(0))
		cfg := c.config(t, s)
		throttle := &cutter{}
		cfg.netDial = throttle.dial
		tr := dial(t, cfg)
		dir := t.TempDir()
		var killed atomic.Int32
		killerDone := make(chan struct{})
		uploadInterrupted(t, tr, dir, big, func() {
			throttle.slow.Store(true)
			go func() {
				defer close(killerDone)
				// Once a few MiB have landed, kill sshd's per-connection processes.
				for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
					if tempBytes(dir) >= 4<<20 {
						for _, pid := range childrenOf(s.pid()) {
							if syscall.Kill(pid, syscall.SIGKILL) == nil {
								killed.Add(1)
							}
						}
						return
					}
				}
			}()
		}, func(err error) {
			throttle.slow.Store(false)
			// The write can fail before the killer has counted its kills.
			<-killerDone
			if killed.Load() == 0 {
				t.Fatalf("no sshd process was killed, the write failed otherwise: %v", err)
			}
		})
	})
}

// uploadInterrupted writes big over a small file while interrupt cuts the
// connection, then checks that the target was never partial and that the
// next write succeeds and sweeps the leftover.
func uploadInterrupted(t *testing.T, tr Transport, dir string, big []byte, interrupt func(), check func(error)) {
	t.Helper()
	ctx := context.Background()
	p := filepath.Join(dir, "snapshot.db")
	old := []byte("the old content\n")
	if err := os.WriteFile(p, old, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Stat(ctx, dir); err != nil { // the file session is up
		t.Fatal(err)
	}
	interrupt()
	_, err := tr.WriteFile(ctx, File{Path: p, Mode: 0o600, Data: big}, "")
	if err == nil {
		t.Fatal("upload succeeded although the connection was cut")
	}
	check(err)
	if b, _ := os.ReadFile(p); !bytes.Equal(b, old) {
		t.Fatalf("target holds %d bytes after the cut, want the old content", len(b))
	}
	var leftovers []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if isTempName(e.Name()) {
			fi, _ := e.Info()
			leftovers = append(leftovers, fmt.Sprintf("%s (%d bytes, %v)", e.Name(), fi.Size(), fi.Mode()))
		}
	}
	if len(leftovers) != 1 {
		t.Fatalf("leftover temporary files: %v, want the partial upload", leftovers)
	}
	t.Logf("cut: %v; partial upload left behind: %s", err, leftovers[0])

	// The same Transport reconnects; its first write there sweeps the leftover.
	res, err := tr.WriteFile(ctx, File{Path: p, Mode: 0o600, Data: big}, "")
	if err != nil || res.Action != WriteReplaced {
		t.Fatalf("write after the cut: %+v, %v", res, err)
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, big) {
		t.Error("target does not hold the new content")
	}
	assertNoTemps(t, dir)
}

// tempBytes is the size of the temporary files in dir.
func tempBytes(dir string) int64 {
	var n int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && isTempName(e.Name()) {
			n += fi.Size()
		}
	}
	return n
}

// descendantsOf lists the processes below ancestor.
func descendantsOf(ancestor int) []int {
	var pids []int
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if pid, err := strconv.Atoi(p.Name()); err == nil && pid != ancestor && isDescendant(pid, ancestor) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// childrenOf lists the direct children of a process.
func childrenOf(ppid int) []int {
	var pids []int
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", p.Name(), "stat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(ppid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestIntegrationDialFromHost(t *testing.T) {
	requireIntegration(t)
	c := newClient(t)
	s := startSSHD(t, "a", sshdOptions{authorized: []*testKey{c.key}})
	c.trust(t, s.knownHostsLine(0))
	tr := dial(t, c.config(t, s))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan int, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		peer <- conn.RemoteAddr().(*net.TCPAddr).Port
		_, _ = io.Copy(conn, conn)
	}()
	conn, err := tr.Dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("etcd")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "etcd" {
		t.Fatalf("echo through the host: %q, %v", buf, err)
	}
	// The listener's peer is the sshd's forwarding, not this process.
	port := <-peer
	owners := tcpOwners(t, func(local, _ int) bool { return local == port })
	if len(owners) != 1 || !isDescendant(owners[0], s.pid()) || owners[0] == os.Getpid() {
		t.Errorf("connection from local port %d owned by %v, want a process of sshd %d", port, owners, s.pid())
	}
	if _, err := tr.Dial(context.Background(), "tcp", "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "etcd-a") {
		t.Errorf("dial of a closed port: err = %v, want an error naming the host", err)
	}
}

func countingDialer(n *atomic.Int32) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		n.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
}

func TestIntegrationRetries(t *testing.T) {
	requireIntegration(t)
	c := newClient(t)
	s := startSSHD(t, "a", sshdOptions{authorized: []*testKey{newTestKey(t)}})
	c.trust(t, s.knownHostsLine(0))

	// A refused port is retried, with backoff, the configured number of times.
	var dials atomic.Int32
	cfg := c.config(t, s)
	cfg.Port = freePort(t)
	cfg.Attempts = 3
	cfg.RetryBackoff = 50 * time.Millisecond
	cfg.netDial = countingDialer(&dials)
	start := time.Now()
	_, err := Dial(context.Background(), cfg)
	if !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Errorf("refused port: err = %v", err)
	}
	if n := dials.Load(); n != 3 {
		t.Errorf("refused port: %d attempts, want 3", n)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("refused port: gave up after %v, want backoff of 50ms then 100ms", d)
	}

	// A key the server does not accept is not retried.
	dials.Store(0)
	cfg = c.config(t, s)
	cfg.Attempts = 5
	cfg.netDial = countingDialer(&dials)
	_, err = Dial(context.Background(), cfg)
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), c.key.path) {
		t.Errorf("wrong key: err = %v, want ErrAuth listing the key offered", err)
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("wrong key: %d attempts, want 1", n)
	}

	// Nor is an unknown host key.
	dials.Store(0)
	cfg.KnownHostsFile = filepath.Join(c.dir, "empty_known_hosts")
	_, err = Dial(context.Background(), cfg)
	if !errors.Is(err, ErrHostKeyUnknown) || dials.Load() != 1 {
		t.Errorf("unknown host key: err = %v after %d attempts, want ErrHostKeyUnknown after 1", err, dials.Load())
	}
}

// A command whose deadline passes returns at once, and is killed on the
// host, with what it started, for a root login (whose sshd does not pass
// signals on) as for a user going through sudo; the connection stays
// usable, and a command's stderr is as it printed it.
func TestIntegrationCommandContext(t *testing.T) {
	requireIntegration(t)
	ensureUser(t, sudoUser, sudoUser+" ALL=(ALL) NOPASSWD: ALL")
	c := newClient(t)
	s := startSSHD(t, "a", sshdOptions{authorized: []*testKey{c.key}})
	c.trust(t, s.knownHostsLine(0))
	for i, user := range []string{"root", sudoUser} {
		cfg := c.config(t, s)
		cfg.User = user
		tr := dial(t, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		start := time.Now()
		// A child of the command's shell, as a script's would be.
		mark := fmt.Sprintf("30.%d%d", os.Getpid(), i)
		_, err := tr.Run(ctx, "sleep "+mark+"; echo done", nil)
		cancel()
		var ce *CommandError
		if !errors.As(err, &ce) || ce.ExitCode != -1 || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: err = %v, want a CommandError wrapping the deadline", user, err)
		}
		if d := time.Since(start); d > 7*time.Second {
			t.Errorf("%s: Run returned after %v", user, d)
		}
		// The kill is sent before Run returns; on a loaded machine the
		// killed process may take a moment to be scheduled and exit.
		pids := processesWith(t, "sleep\x00"+mark)
		for wait := time.Now().Add(2 * time.Second); len(pids) > 0 && time.Now().Before(wait); pids = processesWith(t, "sleep\x00"+mark) {
			time.Sleep(20 * time.Millisecond)
		}
		if len(pids) > 0 {
			t.Errorf("%s: the command still runs 2 s after its deadline: pids %v", user, pids)
		}
		// The connection is still usable.
		if got := mustRun(t, tr, "echo "+strconv.Itoa(42)); got != "42" {
			t.Errorf("%s: after a timeout: %q", user, got)
		}
		if _, err := tr.Run(context.Background(), "echo first >&2; echo second >&2; exit 3", nil); !errors.As(err, &ce) || ce.Stderr != "first\nsecond\n" {
			t.Errorf("%s: stderr %q", user, ce.Stderr)
		}
	}
}

// processesWith lists the processes of this machine whose command line
// holds s (its arguments separated by NUL).
func processesWith(t *testing.T, s string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && strings.Contains(string(b), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}
