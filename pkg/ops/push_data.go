package ops

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/snapshot"
)

// KindPushData streams a data directory made on this machine to the host.
const KindPushData Kind = "push-data"

// PushData streams the data directory Source, made on this machine, into
// Path on the host, replacing what was there.
type PushData struct {
	Path   string `json:"path"`
	Source string `json:"source"`
	Why    string `json:"why,omitempty"`
}

func (PushData) Kind() Kind   { return KindPushData }
func (o PushData) Meta() Meta { return Meta{Why: o.Why} }
func (o PushData) String() string {
	return fmt.Sprintf("push the data directory made from the snapshot to %s", o.Path)
}

// pushData sends the directory as a compressed tar: whatever was at Path
// is removed first, the files land 0600 in 0700 directories.
func pushData(ctx context.Context, e Env, o PushData) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(snapshot.Archive(pw, o.Source)) }()
	script := fmt.Sprintf(`set -e; umask 077; dst=%s
rm -rf "$dst"; mkdir -p "$dst"; chmod 0700 "$dst"
tar -C "$dst" --no-same-owner -xzf -
echo pushed`, shell.Quote(o.Path))
	start := time.Now()
	out, err := e.Transport().Run(ctx, script, pr)
	pr.CloseWithError(io.ErrClosedPipe)
	if err != nil {
		return fmt.Errorf("push the restored data to %s: %w", o.Path, err)
	}
	if !strings.Contains(string(out), "pushed") {
		return fmt.Errorf("push the restored data to %s: the host did not confirm it", o.Path)
	}
	e.Log().Host(e.Host().Name, "pushed the restored data to %s in %s", o.Path, time.Since(start).Round(time.Millisecond))
	return nil
}
