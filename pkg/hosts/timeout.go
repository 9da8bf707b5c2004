package hosts

import (
	"context"
	"io"
	"io/fs"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// WithTimeout bounds every command and file operation on t, so that a host
// that stops answering fails the run instead of hanging it. Dial is left
// alone: etcd's client keeps its connections open.
func WithTimeout(t remote.Transport, d time.Duration) remote.Transport {
	if d <= 0 {
		return t
	}
	return &timeoutTransport{Transport: t, d: d}
}

type timeoutTransport struct {
	remote.Transport
	d time.Duration
}

func (t *timeoutTransport) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	return t.Transport.Run(ctx, cmd, stdin)
}

func (t *timeoutTransport) ReadFile(ctx context.Context, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	return t.Transport.ReadFile(ctx, path)
}

func (t *timeoutTransport) Stat(ctx context.Context, path string) (remote.FileInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	return t.Transport.Stat(ctx, path)
}

func (t *timeoutTransport) MkdirAll(ctx context.Context, path string, mode fs.FileMode) error {
	ctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	return t.Transport.MkdirAll(ctx, path, mode)
}

func (t *timeoutTransport) WriteFile(ctx context.Context, f remote.File, backupDir string) (remote.WriteResult, error) {
	ctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	return t.Transport.WriteFile(ctx, f, backupDir)
}
