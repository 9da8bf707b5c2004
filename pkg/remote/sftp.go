package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// sftpSession is an SFTP client over a pipe (an SSH session, or a local
// sudo process) with the write state tied to it.
type sftpSession struct {
	client *sftp.Client
	writer *fileWriter
	stop   func() // ends the pipe under the client, which unblocks every call
	done   chan struct{}
	broken atomic.Bool // closed, or a call saw the pipe fail before done was closed
	once   sync.Once
}

func newSFTPSession(r io.Reader, w io.WriteCloser, stop func(), chmodOnCreate bool, stamp string, log *slog.Logger) (*sftpSession, error) {
	c, err := sftp.NewClientPipe(r, w)
	if err != nil {
		return nil, err
	}
	s := &sftpSession{client: c, stop: stop, done: make(chan struct{})}
	s.writer = newFileWriter(sftpFS{c: c, chmodOnCreate: chmodOnCreate}, stamp, log)
	go func() {
		_ = c.Wait()
		close(s.done)
	}()
	return s, nil
}

func (s *sftpSession) alive() bool {
	if s.broken.Load() {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

func (s *sftpSession) close() {
	s.broken.Store(true)
	s.once.Do(func() {
		s.stop()
		_ = s.client.Close()
	})
}

// sftpSessions keeps one SFTP session per transport, started on first use
// and again after the previous one died (with its connection, say).
type sftpSessions struct {
	start func(ctx context.Context) (*sftpSession, error)
	// lost, if set, is told when a call failed because the pipe broke.
	lost func()

	mu  sync.Mutex
	cur *sftpSession
	// writeMu serialises writes, which sweep directories of temporary files.
	writeMu sync.Mutex
}

func (ss *sftpSessions) session(ctx context.Context) (*sftpSession, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.cur != nil && ss.cur.alive() {
		return ss.cur, nil
	}
	if ss.cur != nil {
		ss.cur.close()
		ss.cur = nil
	}
	s, err := ss.start(ctx)
	if err != nil {
		return nil, err
	}
	ss.cur = s
	return s, nil
}

// do runs fn on the session. SFTP calls take no context, so a cancelled ctx
// ends the session; the next call starts another one.
func (ss *sftpSessions) do(ctx context.Context, fn func(*sftpSession) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s, err := ss.session(ctx)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, s.close)
	err = fn(s)
	if !stop() {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	if isConnectionLoss(err) {
		// Close now rather than when the reader notices, so the next call starts afresh.
		s.close()
		if ss.lost != nil {
			ss.lost()
		}
	}
	return err
}

// isConnectionLoss recognises a failure of the pipe under SFTP, as opposed
// to an error the server reported.
func isConnectionLoss(err error) bool {
	return err != nil && (errors.Is(err, sftp.ErrSSHFxConnectionLost) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNRESET))
}

func (ss *sftpSessions) close() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.cur != nil {
		ss.cur.close()
		ss.cur = nil
	}
}

// startSSHSFTP starts an SFTP server as root on the other end of client: the
// sftp-server binary (through sudo for other users) with a 077 umask, or,
// for root when no binary is found, the sshd's sftp subsystem.
func startSSHSFTP(client *ssh.Client, sudo bool, host, user, stamp string, log *slog.Logger) (*sftpSession, error) {
	s, err := execSSHSFTP(client, wrapCommand(sftpServerScript, sudo), stamp, log)
	if err == nil {
		return s, nil
	}
	var ce *CommandError
	if !errors.As(err, &ce) {
		return nil, fmt.Errorf("start sftp-server: %w", err)
	}
	if sudo && isSudoPasswordFailure(ce.ExitCode, ce.Stderr) {
		return nil, sudoPasswordError(host, user, ce.Stderr)
	}
	if sudo || ce.ExitCode != 127 {
		return nil, fmt.Errorf("start sftp-server (exit %d): %s", ce.ExitCode, firstLine(ce.Stderr))
	}
	log.Debug("no sftp-server binary, using the sftp subsystem", "err", firstLine(ce.Stderr))
	sess, err := client.NewSession()
	if err != nil {
		return nil, err
	}
	stdin, stdout, err := sessionPipes(sess)
	if err != nil {
		sess.Close()
		return nil, err
	}
	if err := sess.RequestSubsystem("sftp"); err != nil {
		sess.Close()
		return nil, fmt.Errorf("start sftp subsystem: %w", err)
	}
	// The subsystem's umask is the sshd's: new files are chmod'ed before any write.
	s, err = newSFTPSession(stdout, stdin, func() { sess.Close() }, true, stamp, log)
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("start sftp subsystem: %w", err)
	}
	return s, nil
}

// execSSHSFTP runs cmd as an SFTP server. When it does not speak SFTP, the
// error is a *CommandError with its exit code and stderr.
func execSSHSFTP(client *ssh.Client, cmd, stamp string, log *slog.Logger) (*sftpSession, error) {
	sess, err := client.NewSession()
	if err != nil {
		return nil, err
	}
	stdin, stdout, err := sessionPipes(sess)
	if err != nil {
		sess.Close()
		return nil, err
	}
	stderr := &tailBuffer{max: 16 << 10}
	sess.Stderr = stderr
	if err := sess.Start(cmd); err != nil {
		sess.Close()
		return nil, err
	}
	s, err := newSFTPSession(stdout, stdin, func() { sess.Close() }, false, stamp, log)
	if err == nil {
		return s, nil
	}
	// The server exited before speaking: its status and stderr say why.
	code := -1
	waited := make(chan error, 1)
	go func() { waited <- sess.Wait() }()
	select {
	case werr := <-waited:
		var ee *ssh.ExitError
		if errors.As(werr, &ee) {
			code = ee.ExitStatus()
		}
	case <-time.After(5 * time.Second):
	}
	sess.Close()
	return nil, &CommandError{Cmd: "sftp-server", ExitCode: code, Stderr: stderr.String(), Err: err}
}

func sessionPipes(sess *ssh.Session) (io.WriteCloser, io.Reader, error) {
	stdin, err := sess.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	return stdin, stdout, nil
}

// tailBuffer keeps the last max bytes written to it: enough stderr to
// explain a failure, bounded whatever a command prints.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
