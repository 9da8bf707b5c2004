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
	"os/exec"
	"sync"
	"time"
)

// localTransport runs on the machine etcdadm runs on.
type localTransport struct {
	host  string
	sudo  bool
	stamp string
	log   *slog.Logger

	// Without sudo the os package does the file work; with it, an sftp-server
	// started through sudo does, so that files are written as root.
	writeMu sync.Mutex
	writer  *fileWriter
	files   *sftpSessions
}

// NewLocal returns a Transport for the machine it runs on, named host in
// messages. With sudo, a process that is not root runs commands and file
// operations through passwordless sudo; as root, sudo is never used.
func NewLocal(host string, sudo bool) Transport {
	return newLocal(host, sudo && os.Geteuid() != 0)
}

func newLocal(host string, sudo bool) *localTransport {
	t := &localTransport{
		host:  host,
		sudo:  sudo,
		stamp: backupStamp(time.Now()),
		log:   newLogger(nil, host),
	}
	if t.sudo {
		t.files = &sftpSessions{start: t.startSFTP}
	} else {
		t.writer = newFileWriter(osFS{}, t.stamp, t.log)
	}
	return t
}

func (t *localTransport) Host() string { return t.host }

func (t *localTransport) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	c := exec.CommandContext(ctx, "sh", "-c", cmd)
	if t.sudo {
		c = exec.CommandContext(ctx, "sudo", "-n", "--", "sh", "-c", cmd)
	}
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: 64 << 10}
	c.Stdin, c.Stdout, c.Stderr = stdin, &stdout, stderr
	killGroupOnCancel(c)
	// Background children holding the pipes must not block the return.
	c.WaitDelay = 5 * time.Second
	err := c.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	ce := &CommandError{Host: t.host, Cmd: cmd, ExitCode: -1, Stderr: stderr.String(), Err: err}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() >= 0 && ctx.Err() == nil {
		ce.ExitCode = ee.ExitCode()
	}
	if ctx.Err() != nil {
		ce.Err = ctx.Err()
	}
	if t.sudo && isSudoPasswordFailure(ce.ExitCode, ce.Stderr) {
		ce.Err = sudoPasswordError(t.host, localUserName(), ce.Stderr)
	}
	return stdout.Bytes(), ce
}

func (t *localTransport) Start(ctx context.Context, cmd string) (*Process, error) {
	c := exec.Command("sh", "-c", cmd)
	if t.sudo {
		c = exec.Command("sudo", "-n", "--", "sh", "-c", cmd)
	}
	fail := func(err error) error { return &CommandError{Host: t.host, Cmd: cmd, ExitCode: -1, Err: err} }
	stdin, err := c.StdinPipe()
	if err != nil {
		return nil, fail(err)
	}
	// A pipe of our own: exec's would be closed by Wait as soon as the
	// command exits, losing what the reader has not read yet.
	stdout, w, err := os.Pipe()
	if err != nil {
		return nil, fail(err)
	}
	c.Stdout = w
	stderr := &tailBuffer{max: 64 << 10}
	c.Stderr = stderr
	// Its own process group, as Run's commands: a terminal's Ctrl-C is for etcdadm.
	setProcessGroup(c)
	err = c.Start()
	_ = w.Close()
	if err != nil {
		_ = stdout.Close()
		return nil, fail(err)
	}
	wait := func() error {
		err := c.Wait()
		if err == nil {
			return nil
		}
		ce := &CommandError{Host: t.host, Cmd: cmd, ExitCode: -1, Stderr: stderr.String(), Err: err}
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() >= 0 {
			ce.ExitCode = ee.ExitCode()
		}
		return ce
	}
	kill := func() {
		if err := killGroup(c); err != nil {
			_ = c.Process.Kill()
		}
	}
	return newProcess(stdin, &closeAtEOF{f: stdout}, wait, kill), nil
}

// closeAtEOF closes a pipe once it is read to its end, then keeps saying
// so; one never read to its end is closed when it is collected.
type closeAtEOF struct {
	f    *os.File
	done error
}

func (r *closeAtEOF) Read(p []byte) (int, error) {
	if r.done != nil {
		return 0, r.done
	}
	n, err := r.f.Read(p)
	if err != nil {
		r.done = err
		_ = r.f.Close()
	}
	return n, err
}

func (t *localTransport) startSFTP(context.Context) (*sftpSession, error) {
	c := exec.Command("sudo", "-n", "--", "sh", "-c", sftpServerScript)
	stdin, err := c.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := c.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr := &tailBuffer{max: 16 << 10}
	c.Stderr = stderr
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("start sftp-server through sudo on %s: %w", t.host, err)
	}
	stop := func() {
		_ = c.Process.Kill()
		go func() { _ = c.Wait() }()
	}
	s, err := newSFTPSession(stdout, stdin, stop, false, t.stamp, t.log)
	if err != nil {
		_ = c.Wait()
		code := c.ProcessState.ExitCode()
		if isSudoPasswordFailure(code, stderr.String()) {
			return nil, sudoPasswordError(t.host, localUserName(), stderr.String())
		}
		return nil, fmt.Errorf("start sftp-server through sudo on %s (exit %d): %s", t.host, code, firstLine(stderr.String()))
	}
	return s, nil
}

// fsDo runs fn with the file system and the writer of this host.
func (t *localTransport) fsDo(ctx context.Context, fn func(fileSystem, *fileWriter) error) error {
	if !t.sudo {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(osFS{}, t.writer)
	}
	return t.files.do(ctx, func(s *sftpSession) error { return fn(s.writer.fsys, s.writer) })
}

func (t *localTransport) ReadFile(ctx context.Context, p string) ([]byte, error) {
	var data []byte
	err := t.fsDo(ctx, func(fsys fileSystem, _ *fileWriter) (err error) {
		data, err = fsys.ReadFile(p)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read %s on %s: %w", p, t.host, err)
	}
	return data, nil
}

func (t *localTransport) Stat(ctx context.Context, p string) (FileInfo, error) {
	var fi FileInfo
	err := t.fsDo(ctx, func(fsys fileSystem, _ *fileWriter) (err error) {
		fi, err = fsys.Stat(p)
		return err
	})
	if err != nil {
		return FileInfo{}, fmt.Errorf("stat %s on %s: %w", p, t.host, err)
	}
	return fi, nil
}

func (t *localTransport) MkdirAll(ctx context.Context, p string, mode fs.FileMode) error {
	err := validateDir(p, mode)
	if err == nil {
		err = t.fsDo(ctx, func(fsys fileSystem, _ *fileWriter) error { return mkdirAll(fsys, p, mode) })
	}
	if err != nil {
		return fmt.Errorf("create directory %s on %s: %w", p, t.host, err)
	}
	return nil
}

func (t *localTransport) WriteFile(ctx context.Context, f File, backupDir string) (WriteResult, error) {
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	var res WriteResult
	err := t.fsDo(ctx, func(_ fileSystem, w *fileWriter) (err error) {
		res, err = w.write(f, backupDir)
		return err
	})
	if err != nil {
		return WriteResult{}, fmt.Errorf("write %s on %s: %w", f.Path, t.host, err)
	}
	return res, nil
}

func (t *localTransport) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", addr, t.host, err)
	}
	return conn, nil
}

func (t *localTransport) Close() error {
	if t.files != nil {
		t.files.close()
	}
	return nil
}
