package execute

import (
	"context"
	"fmt"
	"strings"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
)

// DefaultKeepBackups is how many runs' backups a host keeps.
const DefaultKeepBackups = 5

// pruneBackups keeps the newest keep run directories under the backup
// directory of every host this run changed, removing the older ones. A
// directory marked as holding data a restore or a recovery replaced
// (facts.KeptFile) is never removed, and does not count among the keep.
func (x *Executor) pruneBackups(ctx context.Context) {
	if x.KeepBackups <= 0 {
		return
	}
	script := PruneScript(x.BackupDir, x.KeepBackups)
	for _, h := range x.Cluster.AllHosts() {
		if _, ok := x.res[h.Name]; !ok {
			continue
		}
		t := x.Hosts.T[h.Name]
		if t == nil {
			continue
		}
		out, err := t.Run(ctx, script, nil)
		if err != nil {
			x.Log.Warn(h.Name, "could not prune old backups in %s: %v", x.BackupDir, err)
			continue
		}
		if gone := strings.Fields(string(out)); len(gone) > 0 {
			x.Log.Host(h.Name, "removed %d old backup(s) from %s, keeping the newest %d and those a restore or a recovery made: %s", len(gone), x.BackupDir, x.KeepBackups, strings.Join(gone, " "))
		}
	}
}

// PruneScript removes the run directories of dir but the newest keep and
// those with a facts.KeptFile, printing each one it removed.
func PruneScript(dir string, keep int) string {
	return fmt.Sprintf(`d=%s; [ -d "$d" ] || exit 0
n=0
ls -1 "$d" | grep -E '^[0-9]{8}T[0-9]{6}Z$' | sort -r | while read -r x; do
  [ -f "$d/$x/%s" ] && continue
  n=$((n+1)); [ "$n" -le %d ] && continue
  rm -rf -- "$d/$x" && echo "$x"
done`, shell.Quote(dir), facts.KeptFile, keep)
}
