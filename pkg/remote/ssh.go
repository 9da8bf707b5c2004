package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/user"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// errClosed is returned by a Transport used after Close.
var errClosed = errors.New("transport closed")

// sshTransport is a Transport over one SSH connection, reopened if it drops.
type sshTransport struct {
	cfg   Config
	conn  *connector
	log   *slog.Logger
	sudo  bool
	stamp string
	files *sftpSessions

	mu     sync.Mutex
	cur    *sshConn
	closed bool
}

// Dial connects to the host described by cfg and checks that commands can
// run as root there. The connection is kept for the Transport's life (with
// SFTP on it, started on first use) and reopened if it drops.
func Dial(ctx context.Context, cfg Config) (Transport, error) {
	cfg = cfg.withDefaults()
	if cfg.Address == "" {
		return nil, errors.New("connect: no host given")
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("connect to %s: %d is not a TCP port", cfg.Host, cfg.Port)
	}
	log := newLogger(cfg.Logger, cfg.Host)
	home, _ := os.UserHomeDir()
	sc, err := loadSSHConfig(cfg.SSHConfigFile, home)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cfg.Host, err)
	}
	rt, err := resolver{cfg: cfg, sc: sc, home: home, localUser: localUserName(), getenv: os.Getenv}.resolve()
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cfg.Host, err)
	}
	t := &sshTransport{
		cfg:   cfg,
		conn:  &connector{cfg: cfg, rt: rt, home: home, log: log},
		log:   log,
		sudo:  rt.Target.User != "root",
		stamp: backupStamp(time.Now()),
	}
	t.files = &sftpSessions{start: t.startSFTP, lost: t.checkConnection}
	if t.cur, err = t.conn.connect(ctx); err != nil {
		return nil, err
	}
	if t.sudo {
		if err := t.checkSudo(ctx); err != nil {
			t.Close()
			return nil, err
		}
	}
	log.Debug("connected", "user", rt.Target.User, "address", rt.Target.addr(), "via", rt.via(), "sudo", t.sudo)
	return t, nil
}

func localUserName() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "root"
}

func (t *sshTransport) Host() string { return t.cfg.Host }

// client returns the live connection, reconnecting when it dropped.
func (t *sshTransport) client(ctx context.Context) (*sshConn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, fmt.Errorf("%s: %w", t.cfg.Host, errClosed)
	}
	if t.cur != nil && t.cur.alive() {
		return t.cur, nil
	}
	if t.cur != nil {
		t.log.Warn("connection lost, reconnecting")
		t.cur.close()
		t.cur = nil
	}
	c, err := t.conn.connect(ctx)
	if err != nil {
		return nil, err
	}
	t.cur = c
	return c, nil
}

// checkConnection closes the current connection if it does not answer a
// keep-alive, after a call failed in a way that suggests it is gone: the
// next call then reconnects instead of failing on a dead connection.
func (t *sshTransport) checkConnection() {
	t.mu.Lock()
	c := t.cur
	t.mu.Unlock()
	if c == nil || !c.alive() {
		return
	}
	answer := make(chan error, 1)
	go func() {
		_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
		answer <- err
	}()
	select {
	case err := <-answer:
		if err == nil {
			return
		}
	case <-c.done:
	case <-time.After(5 * time.Second):
	}
	t.log.Warn("connection lost")
	c.close()
}

func (t *sshTransport) checkSudo(ctx context.Context) error {
	c, err := t.client(ctx)
	if err != nil {
		return err
	}
	_, err = runSSH(ctx, c.client, t.cfg.Host, sudoCheckCommand, sudoCheckCommand, nil, nil)
	var ce *CommandError
	if errors.As(err, &ce) && isSudoPasswordFailure(ce.ExitCode, ce.Stderr) {
		return sudoPasswordError(t.cfg.Host, t.conn.rt.Target.User, ce.Stderr)
	}
	if err != nil {
		return fmt.Errorf("user %s on host %s is not root and cannot use sudo: %w", t.conn.rt.Target.User, t.cfg.Host, err)
	}
	return nil
}

func (t *sshTransport) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	c, err := t.client(ctx)
	if err != nil {
		return nil, &CommandError{Host: t.cfg.Host, Cmd: cmd, ExitCode: -1, Err: err}
	}
	group := &groupWriter{}
	wire := wrapCommand(groupPrelude+cmd, t.sudo)
	out, err := runSSH(ctx, c.client, t.cfg.Host, cmd, wire, stdin, group)
	if errors.Is(err, errNoSession) && ctx.Err() == nil {
		// The connection may have died unnoticed (or right after a
		// reconnect); the command did not start, so it is safe to repeat.
		if t.checkConnection(); !c.alive() {
			if c, err = t.client(ctx); err != nil {
				return nil, &CommandError{Host: t.cfg.Host, Cmd: cmd, ExitCode: -1, Err: err}
			}
			out, err = runSSH(ctx, c.client, t.cfg.Host, cmd, wire, stdin, group)
		}
	}
	if ctx.Err() != nil {
		t.killGroup(c, group)
	}
	var ce *CommandError
	switch {
	case !errors.As(err, &ce):
	case t.sudo && isSudoPasswordFailure(ce.ExitCode, ce.Stderr):
		ce.Err = sudoPasswordError(t.cfg.Host, t.conn.rt.Target.User, ce.Stderr)
	case ce.ExitCode < 0 && ctx.Err() == nil:
		t.checkConnection()
	}
	return out, err
}

// errNoSession is a command that did not start: no session could be opened
// on the connection.
var errNoSession = errors.New("open session")

// runSSH runs wire (cmd as sent) in a new session. A cancelled ctx returns
// at once: the session is signalled and closed, but sshd may ignore the
// signal (it does for root logins) and let the command run to its end:
// the caller kills it by its process group, which group, when not nil,
// reads from the command's first line on stderr (groupPrelude).
func runSSH(ctx context.Context, client *ssh.Client, host, cmd, wire string, stdin io.Reader, group *groupWriter) ([]byte, error) {
	fail := func(code int, stderr string, err error) error {
		return &CommandError{Host: host, Cmd: cmd, ExitCode: code, Stderr: stderr, Err: err}
	}
	sess, err := client.NewSession()
	if err != nil {
		return nil, fail(-1, "", fmt.Errorf("%w: %w", errNoSession, err))
	}
	defer sess.Close()
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: 64 << 10}
	sess.Stdin, sess.Stdout, sess.Stderr = stdin, &stdout, stderr
	if group != nil {
		group.w = stderr
		sess.Stderr = group
	}
	if err := sess.Start(wire); err != nil {
		return nil, fail(-1, "", fmt.Errorf("start: %w", err))
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGKILL)
		sess.Close()
		return nil, fail(-1, stderr.String(), ctx.Err())
	}
	if err == nil {
		return stdout.Bytes(), nil
	}
	var ee *ssh.ExitError
	if errors.As(err, &ee) && ee.Signal() == "" {
		return stdout.Bytes(), fail(ee.ExitStatus(), stderr.String(), err)
	}
	return stdout.Bytes(), fail(-1, stderr.String(), err)
}

func (t *sshTransport) Start(ctx context.Context, cmd string) (*Process, error) {
	fail := func(err error) error { return &CommandError{Host: t.cfg.Host, Cmd: cmd, ExitCode: -1, Err: err} }
	c, err := t.client(ctx)
	if err != nil {
		return nil, fail(err)
	}
	sess, err := c.client.NewSession()
	if err != nil {
		// As in Run: nothing started, so a dead connection is replaced
		// and the session opened again.
		if t.checkConnection(); c.alive() {
			return nil, fail(fmt.Errorf("%w: %w", errNoSession, err))
		}
		if c, err = t.client(ctx); err != nil {
			return nil, fail(err)
		}
		if sess, err = c.client.NewSession(); err != nil {
			return nil, fail(fmt.Errorf("%w: %w", errNoSession, err))
		}
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		sess.Close()
		return nil, fail(err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		sess.Close()
		return nil, fail(err)
	}
	stderr := &tailBuffer{max: 64 << 10}
	sess.Stderr = stderr
	if err := sess.Start(wrapCommand(cmd, t.sudo)); err != nil {
		sess.Close()
		return nil, fail(fmt.Errorf("start: %w", err))
	}
	wait := func() error {
		defer sess.Close()
		err := sess.Wait()
		if err == nil {
			return nil
		}
		ce := &CommandError{Host: t.cfg.Host, Cmd: cmd, ExitCode: -1, Stderr: stderr.String(), Err: err}
		var ee *ssh.ExitError
		if errors.As(err, &ee) && ee.Signal() == "" {
			ce.ExitCode = ee.ExitStatus()
		}
		if t.sudo && isSudoPasswordFailure(ce.ExitCode, ce.Stderr) {
			ce.Err = sudoPasswordError(t.cfg.Host, t.conn.rt.Target.User, ce.Stderr)
		}
		return ce
	}
	kill := func() {
		_ = sess.Signal(ssh.SIGKILL)
		sess.Close()
	}
	return newProcess(stdin, stdout, wait, kill), nil
}

func (t *sshTransport) startSFTP(ctx context.Context) (*sftpSession, error) {
	c, err := t.client(ctx)
	if err != nil {
		return nil, err
	}
	s, err := startSSHSFTP(c.client, t.sudo, t.cfg.Host, t.conn.rt.Target.User, t.stamp, t.log)
	if err != nil && !errors.Is(err, ErrSudoPassword) {
		// The connection may have died unnoticed; starting a session is safe to repeat.
		if t.checkConnection(); !c.alive() {
			if c, err = t.client(ctx); err != nil {
				return nil, err
			}
			s, err = startSSHSFTP(c.client, t.sudo, t.cfg.Host, t.conn.rt.Target.User, t.stamp, t.log)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open file session on %s: %w", t.cfg.Host, err)
	}
	// The session dies with its connection; a replaced connection gets a new one.
	go func() {
		select {
		case <-c.done:
			s.close()
		case <-s.done:
		}
	}()
	return s, nil
}

func (t *sshTransport) ReadFile(ctx context.Context, p string) ([]byte, error) {
	var data []byte
	err := t.files.do(ctx, func(s *sftpSession) (err error) {
		data, err = s.writer.fsys.ReadFile(p)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read %s on %s: %w", p, t.cfg.Host, err)
	}
	return data, nil
}

func (t *sshTransport) Stat(ctx context.Context, p string) (FileInfo, error) {
	var fi FileInfo
	err := t.files.do(ctx, func(s *sftpSession) (err error) {
		fi, err = s.writer.fsys.Stat(p)
		return err
	})
	if err != nil {
		return FileInfo{}, fmt.Errorf("stat %s on %s: %w", p, t.cfg.Host, err)
	}
	return fi, nil
}

func (t *sshTransport) MkdirAll(ctx context.Context, p string, mode fs.FileMode) error {
	if err := validateDir(p, mode); err != nil {
		return fmt.Errorf("create directory %s on %s: %w", p, t.cfg.Host, err)
	}
	err := t.files.do(ctx, func(s *sftpSession) error { return mkdirAll(s.writer.fsys, p, mode) })
	if err != nil {
		return fmt.Errorf("create directory %s on %s: %w", p, t.cfg.Host, err)
	}
	return nil
}

func (t *sshTransport) WriteFile(ctx context.Context, f File, backupDir string) (WriteResult, error) {
	t.files.writeMu.Lock()
	defer t.files.writeMu.Unlock()
	var res WriteResult
	err := t.files.do(ctx, func(s *sftpSession) (err error) {
		res, err = s.writer.write(f, backupDir)
		return err
	})
	if err != nil {
		return WriteResult{}, fmt.Errorf("write %s on %s: %w", f.Path, t.cfg.Host, err)
	}
	return res, nil
}

func (t *sshTransport) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := t.client(ctx)
	if err != nil {
		return nil, err
	}
	conn, err := c.client.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", addr, t.cfg.Host, err)
	}
	return conn, nil
}

func (t *sshTransport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	cur := t.cur
	t.cur = nil
	// Unlocked first: starting a file session takes the locks the other way round.
	t.mu.Unlock()
	t.files.close()
	if cur != nil {
		cur.close()
	}
	return nil
}
