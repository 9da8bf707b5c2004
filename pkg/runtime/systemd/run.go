package systemd

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/etcdservice"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
	"github.com/etcdadm-io/etcdadm/pkg/runtime"
)

// Restart writes the environment file when it changes, then has systemd
// restart the service (enabled for the next boot): without blocking, as
// etcd tells systemd it is ready only once it joined its cluster, which
// the health gate after it waits for.
func (Runtime) Restart(ctx context.Context, e ops.Env, op ops.RestartEtcd) error {
	t, name := e.Transport(), e.Host().Name
	if ch := op.Change; ch != nil && ch.Writes() {
		f := ch.File
		if _, err := t.WriteFile(ctx, remote.File{Path: f.Path, Mode: f.Mode, Data: f.Data}, e.BackupDir()); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
		e.Log().Host(name, "wrote %s (%s)", f.Path, ch.Kind)
	}
	cmd := op.Command
	if cmd == "" {
		cmd = CmdRestartEtcd
	}
	e.Log().Host(name, "restarting etcd")
	if _, err := t.Run(ctx, cmd, nil); err != nil {
		return fmt.Errorf("restart etcd: %w", err)
	}
	e.Log().Host(name, "ran %s", cmd)
	e.Report(ops.Done{Ran: cmd})
	return nil
}

// Stop stops and disables the service, waits until its etcd has exited,
// and moves the environment file under the backup directory. A host whose
// unit file is gone only has the service stopped.
func (Runtime) Stop(ctx context.Context, e ops.Env) error {
	t, name := e.Transport(), e.Host().Name
	before, err := ops.Processes(ctx, t)
	if err != nil {
		return err
	}
	q := shell.Quote
	script := fmt.Sprintf("if [ -e %s ]; then %s; else systemctl stop %s 2>/dev/null || true; fi", q(etcdservice.UnitPath), CmdStopEtcd, q(etcdservice.Unit))
	e.Log().Host(name, "stopping etcd")
	if _, err := t.Run(ctx, script, nil); err != nil {
		return fmt.Errorf("stop etcd: %w", err)
	}
	e.Report(ops.Done{Ran: CmdStopEtcd})
	if err := ops.WaitGone(ctx, e, before, false); err != nil {
		return err
	}
	return ops.MoveToBackup(ctx, e, etcdservice.EnvPath)
}

// RollBack puts back what this run replaced for the member (its binaries,
// its CA, server and peer certificates) from the copies it kept, and the
// environment file it ran with, then restarts it and waits for it: the
// roll stops either way. What systemd says of the unit is told first. An
// upgrade's restart in a run that replaced no binary (the run that did was
// cut) puts back the copies the newest earlier run kept under the backup
// directory.
func (r Runtime) RollBack(ctx context.Context, e ops.Env, op ops.RestartEtcd, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.HealthTimeout()+time.Minute)
	defer cancel()
	t, name, old := e.Transport(), e.Host().Name, op.Rollback
	if why := unitState(ctx, t); why != "" {
		cause = fmt.Errorf("%w; %s", cause, why)
	}
	e.Log().Host(name, "the member did not come up (%v): putting its old files back", cause)
	put, err := ops.PutBack(ctx, e, etcdFile)
	if err == nil && op.Binaries && !slices.ContainsFunc(put, isBinary) {
		var kept []ops.Replaced
		if kept, err = KeptBinaries(ctx, t, path.Dir(e.BackupDir()), binaryPaths()); err == nil && len(kept) > 0 {
			if err = restoreBinaries(ctx, t, kept); err == nil {
				for _, k := range kept {
					put = append(put, k.Path)
				}
			}
		}
	}
	if err == nil {
		_, err = t.WriteFile(ctx, remote.File{Path: old.Path, Mode: old.Mode, Data: old.Data}, "")
	}
	var now []facts.Process
	if err == nil {
		now, err = ops.Processes(ctx, t)
	}
	if err == nil {
		err = r.Restart(ctx, e, ops.RestartEtcd{Command: CmdRestartEtcd})
	}
	if err == nil {
		err = ops.AwaitMember(ctx, e, true, "", now)
	}
	if err == nil {
		// It runs what its files say: no restart is pending.
		err = ops.Execute(ctx, e, ops.Unmark{Marker: facts.PendingEtcdRestart})
	}
	what := "old environment file"
	if len(put) > 0 {
		what += " and " + strings.Join(put, ", ")
	}
	if err != nil {
		return fmt.Errorf("%w; putting its %s back failed too: %v; the run kept the old files under %s on the host", cause, what, err, e.BackupDir())
	}
	e.Log().Host(name, "back on its %s, healthy and caught up", what)
	return fmt.Errorf("%w; stopped here: %s is back on its %s and healthy, the members after it were not touched", cause, name, what)
}

// KeptBinaries finds, for each of paths, the copy the newest run kept
// under the backup directory root that differs from the file there now:
// what a run cut after replacing the binaries left to go back to.
func KeptBinaries(ctx context.Context, t remote.Transport, root string, paths []string) ([]ops.Replaced, error) {
	q := shell.Quote
	var b strings.Builder
	fmt.Fprintf(&b, "r=%s; [ -d \"$r\" ] || exit 0\n", q(root))
	for _, p := range paths {
		fmt.Fprintf(&b, `p=%s; for d in $(ls -1 "$r" | grep -E '^[0-9]{8}T[0-9]{6}Z$' | sort -r); do f="$r/$d$p"; if [ -f "$f" ] && [ "$(sha256sum < "$f")" != "$(sha256sum < "$p" 2>/dev/null)" ]; then printf 'kept %%s %%s\n' "$p" "$f"; break; fi; done
`, q(p))
	}
	out, err := t.Run(ctx, b.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("look for the binaries an earlier run kept: %w", err)
	}
	var kept []ops.Replaced
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "kept" {
			kept = append(kept, ops.Replaced{Path: f[1], Backup: f[2]})
		}
	}
	return kept, nil
}

// restoreBinaries copies each kept binary back over the new one,
// atomically (a copy next to it, renamed).
func restoreBinaries(ctx context.Context, t remote.Transport, replaced []ops.Replaced) error {
	q := shell.Quote
	var b strings.Builder
	b.WriteString("set -e\n")
	for _, f := range replaced {
		tmp := path.Join(path.Dir(f.Path), "."+path.Base(f.Path)+".etcdadm-rollback.tmp")
		fmt.Fprintf(&b, "cp -p %s %s && mv -f %s %s\n", q(f.Backup), q(tmp), q(tmp), q(f.Path))
	}
	if _, err := t.Run(ctx, b.String(), nil); err != nil {
		return fmt.Errorf("put the old binaries back: %w", err)
	}
	return nil
}

// binaryPaths are where the release's binaries go on a host.
func binaryPaths() []string {
	var out []string
	for _, b := range releaseBinaries {
		out = append(out, etcdservice.BinaryPath(b))
	}
	return out
}

func isBinary(p string) bool { return slices.Contains(binaryPaths(), p) }

// etcdFile reports whether a rollback puts p back: the release's binaries
// and the files etcd reads when it starts.
func etcdFile(p string) bool {
	for _, name := range releaseBinaries {
		if p == etcdservice.BinaryPath(name) {
			return true
		}
	}
	return slices.Contains(runtime.EtcdFiles(), p)
}

// unitState is what systemd says of the unit and the last lines of its
// journal, for a member that did not come up; "" when it says nothing.
func unitState(ctx context.Context, t remote.Transport) string {
	u := shell.Quote(etcdservice.Unit)
	out, _ := t.Run(ctx, fmt.Sprintf(`systemctl show %[1]s -p ActiveState -p SubState -p Result -p ExecMainStatus --no-pager 2>/dev/null
if command -v journalctl >/dev/null 2>&1; then journalctl -u %[1]s -n 5 --no-pager -o cat 2>/dev/null | sed 's/^/| /'; fi; true`, u), nil)
	var state, journal []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		switch {
		case strings.HasPrefix(l, "| "):
			journal = append(journal, strings.TrimPrefix(l, "| "))
		case strings.Contains(l, "=") && !strings.HasSuffix(l, "="):
			state = append(state, l)
		}
	}
	var why []string
	if len(state) > 0 {
		why = append(why, etcdservice.Unit+": "+strings.Join(state, " "))
	}
	if len(journal) > 0 {
		why = append(why, "its journal ends: "+strings.Join(journal, " / "))
	}
	return strings.Join(why, "; ")
}
