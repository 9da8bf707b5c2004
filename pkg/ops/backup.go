package ops

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
)

// KindBackup moves a path under the backup directory.
const KindBackup Kind = "backup"

// Backup moves Path under this run's backup directory, keeping its path; a
// directory's contents are moved and the directory kept (it may be a mount
// point). Keep, when set, marks the run's backup directory as holding that
// data for good (facts.KeptFile: pruning never removes it), as Keep
// ("pre-recovery") replaced by Ref.
type Backup struct {
	Path string `json:"path"`
	Keep string `json:"keep,omitempty"`
	Ref  string `json:"ref,omitempty"`
	Why  string `json:"why,omitempty"`
}

func (Backup) Kind() Kind   { return KindBackup }
func (o Backup) Meta() Meta { return Meta{Why: o.Why} }
func (o Backup) String() string {
	if o.Keep != "" {
		return fmt.Sprintf("move %s under the backup directory, kept for good (%s)", o.Path, o.Keep)
	}
	return fmt.Sprintf("move %s under the backup directory", o.Path)
}

func backup(ctx context.Context, e Env, o Backup) error {
	return moveToBackup(ctx, e, o.Path, keptLine(o.Keep, o.Path, o.Ref))
}

// MoveToBackup moves p under this run's backup directory on the host (see
// Backup); nothing there is nothing to move.
func MoveToBackup(ctx context.Context, e Env, p string) error { return moveToBackup(ctx, e, p, "") }

// keptLine is the line of facts.KeptFile that records the old contents of
// p, what they were and what replaced them; "" for none.
func keptLine(what, p, ref string) string {
	if what == "" {
		return ""
	}
	return strings.TrimSpace(fmt.Sprintf("%s %s %s", what, p, ref))
}

// keepScript appends line to the run's facts.KeptFile when the directory
// "$src" holds something: the mark comes before the move, so that a run
// cut in between still keeps what it moved.
func keepScript(runDir, line string) string {
	if line == "" {
		return ":"
	}
	q := shell.Quote
	return fmt.Sprintf(`if [ -n "$(ls -A "$src")" ]; then mkdir -p %[1]s && printf '%%s\n' %[2]s >> %[3]s; fi`, q(runDir), q(line), q(path.Join(runDir, facts.KeptFile)))
}

func moveToBackup(ctx context.Context, e Env, p, kept string) error {
	dst := path.Join(e.BackupDir(), p)
	q := shell.Quote
	script := fmt.Sprintf(`umask 077; src=%s; dst=%s
if [ -d "$src" ] && [ ! -L "$src" ]; then
  %s && mkdir -p "$dst" && find "$src" -mindepth 1 -maxdepth 1 -exec mv -t "$dst" {} +
elif [ -e "$src" ] || [ -L "$src" ]; then
  mkdir -p "$(dirname "$dst")" && mv "$src" "$dst"
else exit 0; fi && echo moved`, q(p), q(dst), keepScript(e.BackupDir(), kept))
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
