package ops

import (
	"context"
	"fmt"
	"path"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
)

// KindSwapData puts other data in the place of a data directory's.
const KindSwapData Kind = "swap-data"

// SwapData moves the data directory's contents (Path) under the backup
// directory, then the contents of Source, on the host, in their place; the
// data directory itself stays (it may be a mount point). Keep, when set,
// marks this run's backup directory as holding the old contents for good
// (facts.KeptFile), replaced by Ref. Release, when set, is the run's backup
// directory Source is in: once its data has left, its mark for Path goes.
type SwapData struct {
	Path    string `json:"path"`
	Source  string `json:"source"`
	Keep    string `json:"keep,omitempty"`
	Ref     string `json:"ref,omitempty"`
	Release string `json:"release,omitempty"`
	Why     string `json:"why,omitempty"`
}

func (SwapData) Kind() Kind   { return KindSwapData }
func (o SwapData) Meta() Meta { return Meta{Why: o.Why} }
func (o SwapData) String() string {
	return fmt.Sprintf("move %s's contents under the backup directory, and %s's in their place", o.Path, o.Source)
}

func swapData(ctx context.Context, e Env, o SwapData) error {
	q := shell.Quote
	bk := path.Join(e.BackupDir(), o.Path)
	release := ":"
	if o.Release != "" {
		// The other lines of the mark stay: that directory may keep more.
		k := path.Join(o.Release, facts.KeptFile)
		release = fmt.Sprintf(`k=%s; if [ -f "$k" ]; then awk -v p=%s '$2 != p' "$k" > "$k.tmp"; if [ -s "$k.tmp" ]; then mv "$k.tmp" "$k"; else rm -f "$k" "$k.tmp"; fi; fi`,
			q(k), q(o.Path))
	}
	script := fmt.Sprintf(`set -e; umask 077; dd=%s; src=%s; bk=%s
[ -d "$src/member" ] || { echo "no data in $src" >&2; exit 1; }
mkdir -p "$dd" "$bk"; chmod 0700 "$dd"
(src=$dd; %s)
find "$dd" -mindepth 1 -maxdepth 1 -exec mv -t "$bk" {} +
find "$src" -mindepth 1 -maxdepth 1 -exec mv -t "$dd" {} +
rmdir "$src"
%s`, q(o.Path), q(o.Source), q(bk), keepScript(e.BackupDir(), keptLine(o.Keep, o.Path, o.Ref)), release)
	if _, err := e.Transport().Run(ctx, script, nil); err != nil {
		return fmt.Errorf("swap %s for the data in %s: %w", o.Path, o.Source, err)
	}
	e.Log().Host(e.Host().Name, "moved the old data of %s to %s; the data from %s is in place", o.Path, bk, o.Source)
	e.Report(Done{Ran: "backup " + o.Path})
	return nil
}
