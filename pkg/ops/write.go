package ops

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/hostfile"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// KindWrite writes a file atomically, backing up the one it replaces.
const KindWrite Kind = "write"

// Write makes the host's Path hold Change.File.
type Write struct {
	Path   string           `json:"path"`
	Change *hostfile.Change `json:"change"`
	Why    string           `json:"why,omitempty"`
}

func (Write) Kind() Kind       { return KindWrite }
func (o Write) Meta() Meta     { return Meta{Why: o.Why} }
func (o Write) String() string { return o.Change.String() }

func write(ctx context.Context, e Env, o Write) error {
	f := o.Change.File
	if f.Source != nil {
		return pushFile(ctx, e, o.Change)
	}
	res, err := e.Transport().WriteFile(ctx, remote.File{Path: f.Path, Mode: f.Mode, Data: f.Data}, e.BackupDir())
	if err != nil {
		return fmt.Errorf("write %s: %w", f.Path, err)
	}
	if res.BackupPath != "" {
		e.KeepReplaced(Replaced{Path: f.Path, Backup: res.BackupPath})
	}
	e.Log().Host(e.Host().Name, "wrote %s (%s)", f.Path, o.Change.Kind)
	e.Report(Done{Wrote: f.Path})
	return nil
}

// pushFile streams a large file (a release's binary) from this machine to
// the host: into a temporary file next to its path, whose size and sha256
// the host checks, given root's ownership and its mode, synced, then
// renamed over the path. A previous file that differs is first copied
// under this run's backup directory. Nothing is held in memory.
func pushFile(ctx context.Context, e Env, ch *hostfile.Change) error {
	f := ch.File
	src, err := f.Source.Open()
	if err != nil {
		return err
	}
	defer src.Close()
	bk := path.Join(e.BackupDir(), f.Path)
	script := pushScript(f.Path, bk, f.Source.Size, f.Source.SHA256, f.Mode.Perm())
	start := time.Now()
	out, err := e.Transport().Run(ctx, script, io.LimitReader(src, f.Source.Size+1))
	if err != nil {
		return fmt.Errorf("push %s (%s from %s): %w", f.Path, f.Source.Entry, f.Source.Archive, err)
	}
	if !strings.Contains(string(out), "pushed\n") {
		return fmt.Errorf("push %s: the host did not confirm it", f.Path)
	}
	if strings.Contains(string(out), "kept "+bk+"\n") {
		e.KeepReplaced(Replaced{Path: f.Path, Backup: bk})
	}
	e.Log().Host(e.Host().Name, "wrote %s (%s, %d bytes streamed from %s, sha256 checked, in %s)", f.Path, ch.Kind, f.Source.Size, path.Base(f.Source.Archive), time.Since(start).Round(time.Millisecond))
	e.Report(Done{Wrote: f.Path})
	return nil
}

// pushScript receives size bytes on stdin into a temporary file next to
// dst and installs it when its sha256 is sum. Temporary files a cut run
// left there go first: the run holds the host's lock.
func pushScript(dst, backup string, size int64, sum string, mode fs.FileMode) string {
	q := shell.Quote
	dir, base := path.Split(dst)
	return fmt.Sprintf(`set -e; umask 077; dst=%[1]s; dir=%[2]s; bk=%[3]s
(umask 022; mkdir -p "$dir")
rm -f "$dir"/.%[4]s.etcdadm-*.tmp
tmp="$dir/.%[4]s.etcdadm-$$.tmp"
trap 'rm -f "$tmp"' EXIT
trap 'exit 1' HUP INT TERM
cat > "$tmp"
n=$(wc -c < "$tmp")
[ "$n" -eq %[5]d ] || { echo "received $n of %[5]d bytes" >&2; exit 1; }
got=$(sha256sum "$tmp"); got=${got%%%% *}
[ "$got" = %[6]s ] || { echo "received sha256 $got, not %[6]s: the release tarball changed since it was read; run again" >&2; exit 1; }
if [ "$(id -u)" = 0 ]; then chown 0:0 "$tmp"; fi
chmod %04[7]o "$tmp"; sync "$tmp" 2>/dev/null || sync
if [ -f "$dst" ]; then old=$(sha256sum "$dst"); old=${old%%%% *}
  if [ "$old" != %[6]s ]; then mkdir -p "$(dirname "$bk")"; cp -p "$dst" "$bk"; echo "kept $bk"; fi
fi
mv -f "$tmp" "$dst"
echo pushed
`, q(dst), q(strings.TrimSuffix(dir, "/")), q(backup), SafeName(base), size, q(sum), uint32(mode.Perm()))
}

// SafeName keeps letters, digits, dots, dashes and underscores of a file
// name, for a name written inside double quotes.
func SafeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}
