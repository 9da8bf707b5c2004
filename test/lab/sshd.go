package lab

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// sshdConfig is each host's /etc/ssh/sshd_config. Authorized keys live under
// /etc/ssh (per host) so the machine's home directories are not touched.
// UsePAM is off because PAM session modules (loginuid, limits) need
// privileges a lab host may lack; sshd then refuses locked accounts, which
// is why the lab users get "*" rather than "!" as password.
const sshdConfig = `# etcdadm lab host %s
ListenAddress 0.0.0.0:22
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /run/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile /etc/ssh/authorized_keys/%%u
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
X11Forwarding no
PrintMotd no
AcceptEnv LANG LC_*
MaxStartups 200:30:400
MaxSessions 100
LogLevel VERBOSE
Subsystem sftp /usr/lib/openssh/sftp-server
`

// writeClientKey generates the lab's client key pair.
func (l *Lab) writeClientKey() error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate client key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "etcdadm-lab")
	if err != nil {
		return fmt.Errorf("encode client key: %w", err)
	}
	_ = os.Remove(l.KeyFile)
	if err := os.WriteFile(l.KeyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		return fmt.Errorf("write client key: %w", err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return fmt.Errorf("encode client key: %w", err)
	}
	l.AuthorizedKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " etcdadm-lab"
	if err := os.WriteFile(l.KeyFile+".pub", []byte(l.AuthorizedKey+"\n"), 0o644); err != nil {
		return fmt.Errorf("write client key: %w", err)
	}
	return nil
}

// newHostKey returns a fresh ed25519 host key in OpenSSH format and its
// public half.
func newHostKey(name string) (privPEM []byte, pub ssh.PublicKey, err error) {
	p, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "root@"+name)
	if err != nil {
		return nil, nil, fmt.Errorf("encode host key: %w", err)
	}
	pub, err = ssh.NewPublicKey(p)
	if err != nil {
		return nil, nil, fmt.Errorf("encode host key: %w", err)
	}
	return pem.EncodeToMemory(block), pub, nil
}

func (h *Host) knownHostsLine(pub ssh.PublicKey) string {
	return knownhosts.Line([]string{knownhosts.Normalize(net.JoinHostPort(h.Address, strconv.Itoa(h.SSHPort)))}, pub)
}

// writeSSHConfig writes sshd's files into the host's /etc layer.
func (h *Host) writeSSHConfig(etc string) error {
	dir := filepath.Join(etc, "ssh")
	if err := os.MkdirAll(filepath.Join(dir, "authorized_keys"), 0o755); err != nil {
		return fmt.Errorf("create /etc/ssh: %w", err)
	}
	priv, pub, err := newHostKey(h.Name)
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"sshd_config", []byte(fmt.Sprintf(sshdConfig, h.Name)), 0o644},
		{"ssh_host_ed25519_key", priv, 0o600},
		{"ssh_host_ed25519_key.pub", ssh.MarshalAuthorizedKey(pub), 0o644},
	}
	for _, u := range []string{"root", SudoUser, PasswordUser} {
		files = append(files, struct {
			name string
			data []byte
			mode os.FileMode
		}{"authorized_keys/" + u, []byte(h.lab.AuthorizedKey + "\n"), 0o644})
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("write /etc/ssh/%s: %w", f.name, err)
		}
	}
	h.KnownHostsLine = h.knownHostsLine(pub)
	return nil
}

func (h *Host) sshdPID() int {
	b, err := os.ReadFile(filepath.Join(h.Dir, "run", "sshd.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 || !alive(pid) || comm(pid) != "sshd" {
		return 0
	}
	return pid
}

// StartSSHD starts the host's sshd, if not running, and waits until it
// answers with its banner.
func (h *Host) StartSSHD(ctx context.Context) error {
	if h.sshdPID() != 0 {
		return nil
	}
	argv := []string{"/usr/sbin/sshd", "-D", "-f", "/etc/ssh/sshd_config", "-E", "/var/log/sshd.log"}
	pid, err := h.startDaemon(argv, "sshd.log")
	if err != nil {
		return fmt.Errorf("start sshd on %s: %w", h.Name, err)
	}
	probe := fmt.Sprintf("exec 3<>/dev/tcp/%s/%d && head -c 4 <&3", h.Address, h.SSHPort)
	err = waitFor(ctx, "sshd on "+h.Name, 15*time.Second, func() error {
		if !alive(pid) {
			return errors.New("sshd exited")
		}
		out, err := h.Exec(ctx, "timeout", "2", "bash", "-c", probe)
		if err != nil {
			return err
		}
		if string(out) != "SSH-" {
			return fmt.Errorf("unexpected banner %q", out)
		}
		return nil
	}, func() string { return "sshd.log:\n" + h.LogTail("sshd.log", 20) })
	if err != nil {
		return fmt.Errorf("start sshd on %s: %w", h.Name, err)
	}
	return h.recordUnit("ssh.service", pid, argv)
}

// StopSSHD stops the host's sshd listener; established sessions go on, as
// with `systemctl stop ssh`.
func (h *Host) StopSSHD(ctx context.Context) error {
	stopPID(ctx, h.sshdPID(), 5*time.Second)
	if pid := h.sshdPID(); pid != 0 {
		return fmt.Errorf("stop sshd on %s: pid %d still running", h.Name, pid)
	}
	return h.recordUnit("ssh.service", 0, nil)
}

// RotateHostKey gives the host a new host key and restarts sshd. The lab's
// known_hosts keeps the old key, so clients must see a changed key. It
// returns the known_hosts line of the new key.
func (h *Host) RotateHostKey(ctx context.Context) (string, error) {
	priv, pub, err := newHostKey(h.Name)
	if err != nil {
		return "", err
	}
	if err := h.WriteFile(ctx, "/etc/ssh/ssh_host_ed25519_key", priv, 0o600); err != nil {
		return "", fmt.Errorf("rotate host key of %s: %w", h.Name, err)
	}
	if err := h.WriteFile(ctx, "/etc/ssh/ssh_host_ed25519_key.pub", ssh.MarshalAuthorizedKey(pub), 0o644); err != nil {
		return "", fmt.Errorf("rotate host key of %s: %w", h.Name, err)
	}
	if err := h.StopSSHD(ctx); err != nil {
		return "", err
	}
	if err := h.StartSSHD(ctx); err != nil {
		return "", err
	}
	return h.knownHostsLine(pub), nil
}

// KillSSHSessions kills the host's sshd session processes (not the
// listener), cutting every established connection as a network failure
// would. It returns how many processes it killed.
func (h *Host) KillSSHSessions() int {
	listener := h.sshdPID()
	n := 0
	// OpenSSH 9.8 and later name session processes sshd-session.
	for _, pid := range append(h.PIDs("sshd"), h.PIDs("sshd-session")...) {
		if pid != listener && syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}

// ClientConfig returns an SSH client configuration for user with the lab
// key, verifying host keys against the lab's known_hosts.
func (l *Lab) ClientConfig(user string) (*ssh.ClientConfig, error) {
	b, err := os.ReadFile(l.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("read lab key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("parse lab key: %w", err)
	}
	hk, err := knownhosts.New(l.KnownHostsFile)
	if err != nil {
		return nil, fmt.Errorf("read lab known_hosts: %w", err)
	}
	return &ssh.ClientConfig{
		User:              user,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   hk,
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           10 * time.Second,
	}, nil
}

// Dial opens an SSH connection to h as user, through the bastion when the
// lab has one.
func (l *Lab) Dial(ctx context.Context, h *Host, user string) (*ssh.Client, error) {
	cfg, err := l.ClientConfig(user)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(h.Address, strconv.Itoa(h.SSHPort))
	if l.Bastion == nil || h == l.Bastion {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", h.Name, err)
		}
		c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("ssh to %s: %w", h.Name, err)
		}
		return ssh.NewClient(c, chans, reqs), nil
	}
	jump, err := l.Dial(ctx, l.Bastion, "root")
	if err != nil {
		return nil, err
	}
	conn, err := jump.DialContext(ctx, "tcp", addr)
	if err != nil {
		jump.Close()
		return nil, fmt.Errorf("dial %s through the bastion: %w", h.Name, err)
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		jump.Close()
		return nil, fmt.Errorf("ssh to %s through the bastion: %w", h.Name, err)
	}
	return ssh.NewClient(c, chans, reqs), nil
}

// ensureUsers creates the lab's users and their sudo rules on the machine
// (and so on every host); it is idempotent.
func ensureUsers(ctx context.Context, log io.Writer) error {
	// Labs started at once (test packages run in parallel) must not both
	// create the users or both write the sudoers file.
	lock, err := os.OpenFile("/run/etcdadm-lab-users.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("lock the lab's users: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock the lab's users: %w", err)
	}
	shadow, err := os.ReadFile("/etc/shadow")
	if err != nil {
		return fmt.Errorf("read /etc/shadow: %w", err)
	}
	for _, line := range strings.Split(string(shadow), "\n") {
		if f := strings.Split(line, ":"); len(f) > 1 && f[0] == "root" && strings.HasPrefix(f[1], "!") {
			return errors.New("root's account is locked (its /etc/shadow password starts with '!'): sshd without PAM refuses locked accounts; unlock it with `usermod -p '*' root`")
		}
	}
	for _, u := range []string{SudoUser, PasswordUser} {
		if err := exec.CommandContext(ctx, "id", "-u", u).Run(); err == nil {
			continue
		}
		fmt.Fprintf(log, "lab: creating user %s\n", u)
		if _, err := run(ctx, "useradd", "--create-home", "--shell", "/bin/bash", u); err != nil {
			return fmt.Errorf("create user %s: %w", u, err)
		}
	}
	// "*": no password, but not locked, so sshd lets key logins in.
	if _, err := run(ctx, "usermod", "-p", "*", SudoUser); err != nil {
		return fmt.Errorf("set up user %s: %w", SudoUser, err)
	}
	cmd := exec.CommandContext(ctx, "chpasswd")
	cmd.Stdin = strings.NewReader(PasswordUser + ":" + PasswordUserPassword + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("set password of %s: %w: %s", PasswordUser, err, bytes.TrimSpace(out))
	}
	const sudoers = "/etc/sudoers.d/etcdadm-lab"
	rules := fmt.Sprintf("# etcdadm lab users\n%s ALL=(ALL:ALL) NOPASSWD: ALL\n%s ALL=(ALL:ALL) ALL\n", SudoUser, PasswordUser)
	if cur, err := os.ReadFile(sudoers); err == nil && string(cur) == rules {
		return nil
	}
	tmp := sudoers + ".labtmp"
	if err := os.WriteFile(tmp, []byte(rules), 0o440); err != nil {
		return fmt.Errorf("write %s: %w", sudoers, err)
	}
	if _, err := run(ctx, "visudo", "-c", "-q", "-f", tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("check %s: %w", sudoers, err)
	}
	if err := os.Rename(tmp, sudoers); err != nil {
		return fmt.Errorf("write %s: %w", sudoers, err)
	}
	return nil
}
