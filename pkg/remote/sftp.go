package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"path"
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

// newSFTPSession speaks SFTP over r and w. umaskUnknown is for a server
// that creates files with a umask that may let others read them: the sshd's
// sftp subsystem, used for root logins only.
func newSFTPSession(r io.Reader, w io.WriteCloser, stop func(), umaskUnknown bool, stamp string, log *slog.Logger) (*sftpSession, error) {
	c, err := sftp.NewClientPipe(r, w)
	if err != nil {
		return nil, err
	}
	s := &sftpSession{client: c, stop: stop, done: make(chan struct{})}
	var fsys fileSystem = sftpFS{c: c}
	if umaskUnknown {
		fsys = newStagingFS(c, 0, log)
	}
	s.writer = newFileWriter(fsys, stamp, log)
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

// sftpServerScript starts OpenSSH's sftp-server where sshd finds it: the
// binary its "Subsystem sftp" line names (sshd -T, which needs root), then
// the paths distributions install it at. The umask makes new files 0600 from
// their creation, before any byte is written to them. It exits 127 when no
// binary is found, internal-sftp being none.
const sftpServerScript = `s=$(PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin" sshd -T 2>/dev/null | while read -r k n p _; do if [ "$k" = subsystem ] && [ "$n" = sftp ]; then echo "$p"; break; fi; done)
for p in "$s" /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server /usr/libexec/sftp-server /usr/libexec/ssh/sftp-server /usr/lib64/misc/sftp-server /usr/lib/ssh/sftp-server; do
	case $p in /*) if [ -x "$p" ]; then exec "$p" -u 0077; fi ;; esac
done
echo "no sftp-server binary: sshd -T names ${s:-none} for the sftp subsystem, and none is in /usr/lib/openssh, /usr/libexec/openssh, /usr/libexec, /usr/libexec/ssh, /usr/lib64/misc or /usr/lib/ssh" >&2
exit 127`

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
	if ce.ExitCode != 127 {
		return nil, fmt.Errorf("start sftp-server (exit %d): %s", ce.ExitCode, firstLine(ce.Stderr))
	}
	if sudo {
		return nil, fmt.Errorf("%s; the sftp subsystem would write files as %s, not root: install OpenSSH's sftp-server on %s "+
			"(package openssh-sftp-server or openssh-server), or log in as root", firstLine(ce.Stderr), user, host)
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
	// The subsystem's umask is the sshd's: files are staged in private directories.
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

// stagingFS is the file system of an SFTP server with an unknown umask: the
// sshd's sftp subsystem creates files with the sshd's, 0644 on most hosts,
// and this client cannot ask for a mode at creation. A chmod right after it
// would leave a round trip in which another user can open the file and read
// what is written next. So each temporary file is created inside a
// directory of its own that only the login user can enter, given its owner
// and mode there, then renamed into place.
type stagingFS struct {
	sftpFS
	owner int // uid the staging directories must have: the login user's
	log   *slog.Logger

	mu     sync.Mutex
	staged map[string]bool // temporary paths that are staging directories
}

func newStagingFS(c *sftp.Client, owner int, log *slog.Logger) *stagingFS {
	return &stagingFS{sftpFS: sftpFS{c: c, chmodOnCreate: true}, owner: owner, log: log, staged: map[string]bool{}}
}

// file is where the temporary file tmp is written: inside the staging
// directory of that name.
func (s *stagingFS) file(tmp string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.staged[tmp] {
		return path.Join(tmp, path.Base(tmp))
	}
	return tmp
}

func (s *stagingFS) CreateExclusive(tmp string) (tempFile, error) {
	if err := s.mkdirPrivate(tmp); err != nil {
		return nil, err
	}
	f, err := s.sftpFS.CreateExclusive(path.Join(tmp, path.Base(tmp)))
	if err != nil {
		_ = s.c.RemoveDirectory(tmp)
		return nil, err
	}
	s.mu.Lock()
	s.staged[tmp] = true
	s.mu.Unlock()
	return f, nil
}

// mkdirPrivate creates dir and makes sure that only the login user can
// enter it before anything is put in it. Mkdir takes no mode here, so the
// directory is created with the server's umask, empty, and narrowed.
func (s *stagingFS) mkdirPrivate(dir string) error {
	if err := s.c.Mkdir(dir); err != nil {
		return fmt.Errorf("create staging directory %s: %w", dir, err)
	}
	err := s.c.Chmod(dir, 0o700)
	if err == nil {
		var fi FileInfo
		if fi, err = s.sftpFS.Lstat(dir); err == nil && (!fi.IsDir() || fi.Mode.Perm() != 0o700 || fi.UID != s.owner) {
			err = fmt.Errorf("after chmod 0700 it is %v and owned by uid %d", fi.Mode, fi.UID)
		}
	}
	if err != nil {
		_ = s.c.RemoveDirectory(dir)
		return fmt.Errorf("the host has no sftp-server binary, and its sftp subsystem creates files others may read, "+
			"so files are staged in a directory only uid %d can enter, which failed: %s: %w; "+
			"install OpenSSH's sftp-server (package openssh-sftp-server or openssh-server)", s.owner, dir, err)
	}
	return nil
}

func (s *stagingFS) Chown(p string, uid, gid int) error { return s.sftpFS.Chown(s.file(p), uid, gid) }

func (s *stagingFS) Chmod(p string, mode fs.FileMode) error { return s.sftpFS.Chmod(s.file(p), mode) }

func (s *stagingFS) Rename(oldpath, newpath string) error {
	if err := s.sftpFS.Rename(s.file(oldpath), newpath); err != nil {
		return err
	}
	s.mu.Lock()
	staged := s.staged[oldpath]
	delete(s.staged, oldpath)
	s.mu.Unlock()
	if staged {
		if err := s.c.RemoveDirectory(oldpath); err != nil {
			s.log.Debug("empty staging directory left behind, removed when a later connection writes there", "path", oldpath, "err", err)
		}
	}
	return nil
}

// Remove also removes a staging directory with what it holds: this one's,
// or one a cut connection left behind.
func (s *stagingFS) Remove(p string) error {
	s.mu.Lock()
	delete(s.staged, p)
	s.mu.Unlock()
	if isTempName(path.Base(p)) {
		if fi, err := s.sftpFS.Lstat(p); err == nil && fi.IsDir() {
			names, err := s.sftpFS.ReadDir(p)
			if err != nil {
				return err
			}
			for _, name := range names {
				if err := s.c.Remove(path.Join(p, name)); err != nil {
					return err
				}
			}
			return s.c.RemoveDirectory(p)
		}
	}
	return s.sftpFS.Remove(p)
}
