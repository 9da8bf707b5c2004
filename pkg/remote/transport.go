package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strings"
	"time"
)

// Transport reaches one host. Implementations are safe for concurrent use.
type Transport interface {
	// Host is the inventory name of the host; every error carries it.
	Host() string
	// Run runs cmd with sh -c as root and returns its stdout. A command that
	// fails returns a *CommandError carrying its exit code and stderr.
	Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error)
	// ReadFile returns the content of path; the error wraps fs.ErrNotExist
	// when there is no such file.
	ReadFile(ctx context.Context, path string) ([]byte, error)
	// Stat describes path, following symbolic links; the error wraps
	// fs.ErrNotExist when there is no such file.
	Stat(ctx context.Context, path string) (FileInfo, error)
	// MkdirAll creates path and its missing parents with mode; directories
	// that already exist are left as they are.
	MkdirAll(ctx context.Context, path string, mode fs.FileMode) error
	// WriteFile makes f.Path hold exactly f.Data with f's mode and owner,
	// atomically: readers see the old content or the new, never a part.
	// When backupDir is not empty, a previous content that differs is first
	// copied under backupDir (see WriteResult.BackupPath).
	WriteFile(ctx context.Context, f File, backupDir string) (WriteResult, error)
	// Start runs cmd as Run does but returns once it has started, for a
	// command that lives as long as the caller needs it (a lock held on
	// the host). Closing the Process's stdin ends such a command, and so
	// does a lost connection, since the host then sees its input end.
	Start(ctx context.Context, cmd string) (*Process, error)
	// Dial opens a connection from the host to addr, so that the operator
	// can reach ports (such as etcd's 2379) that only the host can.
	Dial(ctx context.Context, network, addr string) (net.Conn, error)
	// Close releases the connection; the Transport cannot be used afterwards.
	Close() error
}

// DefaultDirMode is the mode of parent directories WriteFile creates when
// File.DirMode is zero.
const DefaultDirMode fs.FileMode = 0o755

// File is the desired state of one file on a host.
type File struct {
	// Path is absolute and clean.
	Path string
	// Mode holds the permission bits (setuid, setgid and sticky allowed).
	Mode fs.FileMode
	Data []byte
	// UID and GID own the file; the zero value is root.
	UID, GID int
	// DirMode is given to missing parent directories; zero means DefaultDirMode.
	DirMode fs.FileMode
}

// FileInfo describes a file on a host.
type FileInfo struct {
	Path    string
	Mode    fs.FileMode
	UID     int
	GID     int
	Size    int64
	ModTime time.Time
}

// IsDir reports whether the file is a directory.
func (fi FileInfo) IsDir() bool { return fi.Mode.IsDir() }

// WriteAction says what WriteFile did.
type WriteAction string

// What WriteFile can do.
const (
	WriteCreated   WriteAction = "created"
	WriteReplaced  WriteAction = "replaced"
	WriteMetadata  WriteAction = "metadata" // same content, mode or owner fixed in place
	WriteUnchanged WriteAction = "unchanged"
)

// WriteResult reports what WriteFile did.
type WriteResult struct {
	Action WriteAction
	// BackupPath is where the previous content was copied, on the host:
	// backupDir/<time the Transport was opened, UTC>/<original path>.
	// Empty when nothing was backed up.
	BackupPath string
}

// Changed reports whether anything on the host changed.
func (r WriteResult) Changed() bool { return r.Action != WriteUnchanged }

// Errors that callers tell apart with errors.Is; none of them is retried.
var (
	// ErrHostKeyUnknown: the host's key is not in known_hosts (see HostKeyError).
	ErrHostKeyUnknown = errors.New("unknown host key")
	// ErrHostKeyChanged: known_hosts holds another key for the host, or the key is revoked.
	ErrHostKeyChanged = errors.New("host key changed")
	// ErrAuth: the server accepted none of the credentials, or a key could not be decrypted.
	ErrAuth = errors.New("authentication failed")
	// ErrSudoPassword: the login user cannot run sudo without a password.
	ErrSudoPassword = errors.New("passwordless sudo required")
)

// CommandError is a command that ran on a host and failed. Its message holds
// the host, the command and the command's stderr, so that printing the error
// once shows everything.
type CommandError struct {
	Host string
	Cmd  string
	// ExitCode is -1 when the command did not exit by itself (signal, lost
	// connection, cancelled context).
	ExitCode int
	Stderr   string
	// Err is the underlying cause (exit status, connection error, context).
	Err error
}

func (e *CommandError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "run %q on %s: ", e.Cmd, e.Host)
	if errors.Is(e.Err, ErrSudoPassword) {
		// That message already quotes sudo's.
		b.WriteString(e.Err.Error())
		return b.String()
	}
	if e.ExitCode >= 0 {
		fmt.Fprintf(&b, "exit status %d", e.ExitCode)
	} else if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString("command did not exit")
	}
	if s := strings.TrimSpace(e.Stderr); s != "" {
		b.WriteString(": ")
		b.WriteString(s)
	}
	return b.String()
}

func (e *CommandError) Unwrap() error { return e.Err }

// Process is a command started on a host.
type Process struct {
	// Stdin feeds the command; Close closes it.
	Stdin io.WriteCloser
	// Stdout is the command's output as it comes.
	Stdout io.Reader
	wait   func() error
	kill   func()
	done   chan struct{}
	err    error
}

// NewProcess is for other Transport implementations: wait blocks until the
// command ends and returns its error, kill ends it at once.
func NewProcess(stdin io.WriteCloser, stdout io.Reader, wait func() error, kill func()) *Process {
	return newProcess(stdin, stdout, wait, kill)
}

func newProcess(stdin io.WriteCloser, stdout io.Reader, wait func() error, kill func()) *Process {
	p := &Process{Stdin: stdin, Stdout: stdout, wait: wait, kill: kill, done: make(chan struct{})}
	go func() {
		p.err = p.wait()
		close(p.done)
	}()
	return p
}

// Wait waits for the command to end and returns its error, a *CommandError
// when it failed.
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// Close ends the command's input and waits a moment for it to end, then
// kills it.
func (p *Process) Close() error {
	_ = p.Stdin.Close()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.kill()
		<-p.done
	}
	return p.err
}
