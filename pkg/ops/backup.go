package ops

import (
	"context"
	"fmt"
	"path"

	"github.com/etcdadm-io/etcdadm/internal/shell"
)

// KindBackup moves a path under the backup directory.
const KindBackup Kind = "backup"

// Backup moves Path under this run's backup directory, keeping its path; a
// directory's contents are moved and the directory kept (it may be a mount
// point).
type Backup struct {
	Path string `json:"path"`
	Why  string `json:"why,omitempty"`
}

func (Backup) Kind() Kind       { return KindBackup }
func (o Backup) Meta() Meta     { return Meta{Why: o.Why} }
func (o Backup) String() string { return fmt.Sprintf("move %s under the backup directory", o.Path) }

func backup(ctx context.Context, e Env, o Backup) error { return MoveToBackup(ctx, e, o.Path) }

// MoveToBackup moves p under this run's backup directory on the host (see
// Backup); nothing there is nothing to move.
func MoveToBackup(ctx context.Context, e Env, p string) error {
	dst := path.Join(e.BackupDir(), p)
	q := shell.Quote
	script := fmt.Sprintf(`umask 077; src=%s; dst=%s
if [ -d "$src" ] && [ ! -L "$src" ]; then
  mkdir -p "$dst" && find "$src" -mindepth 1 -maxdepth 1 -exec mv -t "$dst" {} +
elif [ -e "$src" ] || [ -L "$src" ]; then
  mkdir -p "$(dirname "$dst")" && mv "$src" "$dst"
else exit 0; fi && echo moved`, q(p), q(dst))
	out, err := e.Transport().Run(ctx, script, nil)
	if err != nil {
		return fmt.Errorf("move %s under %s: %w", p, e.BackupDir(), err)
	}
	if len(out) > 0 {
		e.Log().Host(e.Host().Name, "moved %s to %s", p, dst)
		e.Report(Done{Ran: "backup " + p})
	}
	return nil
}
