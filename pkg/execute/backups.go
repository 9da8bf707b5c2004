package execute

import (
	"context"
	"fmt"
	"strings"

	"github.com/etcdadm-io/etcdadm/internal/shell"
)

// DefaultKeepBackups is how many runs' backups a host keeps.
const DefaultKeepBackups = 5

// pruneBackups keeps the newest keep run directories under the backup
// directory of every host this run changed, removing the older ones.
func (x *Executor) pruneBackups(ctx context.Context) {
	if x.KeepBackups <= 0 {
		return
	}
	q := shell.Quote
	script := fmt.Sprintf(`d=%s; [ -d "$d" ] || exit 0
ls -1 "$d" | grep -E '^[0-9]{8}T[0-9]{6}Z$' | sort -r | awk -v n=%d 'NR>n' | while read -r x; do rm -rf -- "$d/$x" && echo "$x"; done`, q(x.BackupDir), x.KeepBackups)
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
			x.Log.Host(h.Name, "removed %d old backup(s) from %s, keeping the newest %d: %s", len(gone), x.BackupDir, x.KeepBackups, strings.Join(gone, " "))
		}
	}
}
