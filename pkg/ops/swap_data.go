package ops

import (
	"context"
	"fmt"
	"path"

	"github.com/etcdadm-io/etcdadm/internal/shell"
)

// KindSwapData puts pushed data in the place of a data directory's.
const KindSwapData Kind = "swap-data"

// SwapData moves the data directory's contents (Path) under the backup
// directory, then the pushed data (Source, on the host) in their place;
// the data directory itself stays (it may be a mount point).
type SwapData struct {
	Path   string `json:"path"`
	Source string `json:"source"`
	Why    string `json:"why,omitempty"`
}

func (SwapData) Kind() Kind   { return KindSwapData }
func (o SwapData) Meta() Meta { return Meta{Why: o.Why} }
func (o SwapData) String() string {
	return fmt.Sprintf("move %s's contents under the backup directory, and %s's in their place", o.Path, o.Source)
}

func swapData(ctx context.Context, e Env, o SwapData) error {
	q := shell.Quote
	bk := path.Join(e.BackupDir(), o.Path)
	script := fmt.Sprintf(`set -e; umask 077; dd=%s; src=%s; bk=%s
[ -d "$src/member" ] || { echo "no pushed data in $src" >&2; exit 1; }
mkdir -p "$dd" "$bk"; chmod 0700 "$dd"
find "$dd" -mindepth 1 -maxdepth 1 -exec mv -t "$bk" {} +
mv "$src/member" "$dd/member"; rmdir "$src"`, q(o.Path), q(o.Source), q(bk))
	if _, err := e.Transport().Run(ctx, script, nil); err != nil {
		return fmt.Errorf("swap %s for the data in %s: %w", o.Path, o.Source, err)
	}
	e.Log().Host(e.Host().Name, "moved the old data of %s to %s; the data from %s is in place", o.Path, bk, o.Source)
	e.Report(Done{Ran: "backup " + o.Path})
	return nil
}
