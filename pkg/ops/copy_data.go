package ops

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/shell"
)

// KindCopyData streams a stopped member's data directory from another host.
const KindCopyData Kind = "copy-data"

// CopyData streams the data directory Path of host From (the old host of a
// member that moves, where it is stopped) into Staging on this host,
// through this machine's two SSH connections: a gzip'd tar of its member
// directory, never stored here, whose sha256 the sending host, this
// machine and the receiving host each compute and must agree on.
type CopyData struct {
	From    string `json:"from"`
	Path    string `json:"path"`
	Staging string `json:"staging"`
	Why     string `json:"why,omitempty"`
}

func (CopyData) Kind() Kind   { return KindCopyData }
func (o CopyData) Meta() Meta { return Meta{Why: o.Why} }
func (o CopyData) String() string {
	return fmt.Sprintf("stream %s's %s here into %s (sha256 checked on both hosts)", o.From, o.Path, o.Staging)
}

// copySumName is where the sending host keeps the sha256 of what it sent,
// under its state directory, until it is read back.
const copySumName = "copy-data.sha256"

func copyData(ctx context.Context, e Env, o CopyData) error {
	src, dst, name := e.TransportOf(o.From), e.Transport(), e.Host().Name
	if src == nil {
		return fmt.Errorf("copy the data directory of %s: %s is not reachable", o.From, o.From)
	}
	sumPath := path.Join(e.StateDir(), copySumName)
	start := time.Now()
	p, err := src.Start(ctx, sendDataScript(o.Path, sumPath))
	if err != nil {
		return fmt.Errorf("send %s from %s: %w", o.Path, o.From, err)
	}
	h := sha256.New()
	var n countWriter
	out, err := dst.Run(ctx, receiveDataScript(o.Staging), io.TeeReader(p.Stdout, io.MultiWriter(h, &n)))
	if err != nil {
		_ = p.Close()
		return fmt.Errorf("receive %s from %s into %s: %w", o.Path, o.From, o.Staging, err)
	}
	if err := p.Wait(); err != nil {
		return fmt.Errorf("send %s from %s: %w", o.Path, o.From, err)
	}
	_ = p.Close()
	sentOut, err := src.Run(ctx, fmt.Sprintf("cat %[1]s; rm -f %[1]s", shell.Quote(sumPath)), nil)
	if err != nil {
		return fmt.Errorf("read what %s sent: %w", o.From, err)
	}
	sent, _, _ := strings.Cut(strings.TrimSpace(string(sentOut)), " ")
	passed := hex.EncodeToString(h.Sum(nil))
	received := ""
	for _, line := range strings.Split(string(out), "\n") {
		if s, ok := strings.CutPrefix(line, "received "); ok {
			received = strings.TrimSpace(s)
		}
	}
	if sent != passed || received != passed {
		return fmt.Errorf("copy %s from %s: the stream's sha256 differs: %s sent %q, this machine passed %q, %s received %q; run again", o.Path, o.From, o.From, sent, passed, name, received)
	}
	e.Log().Host(name, "received %s from %s into %s: %d bytes compressed, sha256 %s on both hosts, in %s", o.Path, o.From, o.Staging, int64(n), passed, time.Since(start).Round(time.Millisecond))
	e.Report(Done{Ran: "copy " + o.Path + " from " + o.From})
	return nil
}

// sendDataScript writes a gzip'd tar of dir's member directory to its
// output, and the sha256 of those bytes to sum. Failures of tar or gzip
// inside the pipeline are recorded next to sum, since the pipeline's
// status is tee's.
func sendDataScript(dir, sum string) string {
	return fmt.Sprintf(`set -e; umask 077; d=%s; sum=%s
rm -f "$sum" "$sum.fifo" "$sum.failed"; mkdir -p "$(dirname "$sum")"
[ -d "$d/member" ] || { echo "no member directory in $d" >&2; exit 1; }
mkfifo "$sum.fifo"
sha256sum < "$sum.fifo" > "$sum" &
{ tar -C "$d" -cf - member || echo tar >> "$sum.failed"; } | { gzip -1 || echo gzip >> "$sum.failed"; } | tee "$sum.fifo"
wait $!
rm -f "$sum.fifo"
if [ -e "$sum.failed" ]; then echo "$(cat "$sum.failed") failed" >&2; rm -f "$sum" "$sum.failed"; exit 1; fi`, shell.Quote(dir), shell.Quote(sum))
}

// receiveDataScript unpacks what arrives on its input into staging (made
// anew, 0700), hashing the bytes as they come, and prints "received SUM".
// The input is read to its end whatever tar does with it, so that the
// sum covers all of it.
func receiveDataScript(staging string) string {
	return fmt.Sprintf(`set -e; umask 077; s=%s; sum="$s/.etcdadm-sha256"
rm -rf "$s"; mkdir -p "$s"; chmod 0700 "$s"
mkfifo "$sum.fifo"
sha256sum < "$sum.fifo" > "$sum" &
tee "$sum.fifo" | { gzip -dc | tar -C "$s" --no-same-owner -xf - || echo failed > "$sum.failed"; cat > /dev/null; }
wait $!
rm -f "$sum.fifo"
if [ -e "$sum.failed" ]; then rm -f "$sum" "$sum.failed"; echo "the data could not be unpacked" >&2; exit 1; fi
[ -d "$s/member" ] || { echo "no member directory arrived" >&2; exit 1; }
echo "received $(cut -d' ' -f1 "$sum")"; rm -f "$sum"`, shell.Quote(staging))
}

// countWriter counts the bytes written to it.
type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}
