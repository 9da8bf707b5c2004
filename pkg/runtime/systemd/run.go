package systemd

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/etcdservice"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/hostfile"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
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

// RollBack puts back the binaries this run replaced on the host, from the
// copies it kept, and the environment file the member ran with, then
// restarts it and waits for it: the roll stops either way. A run that
// replaced none goes on one cut after it replaced them: the copies the
// newest earlier run kept under the backup directory are put back.
func (r Runtime) RollBack(ctx context.Context, e ops.Env, old hostfile.File, _ *hostfile.File, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.HealthTimeout()+time.Minute)
	defer cancel()
	t, name := e.Transport(), e.Host().Name
	replaced := e.Replaced()
	if len(replaced) == 0 {
		var paths []string
		for _, b := range releaseBinaries {
			paths = append(paths, etcdservice.BinaryPath(b))
		}
		var err error
		if replaced, err = KeptBinaries(ctx, t, path.Dir(e.BackupDir()), paths); err != nil {
			return fmt.Errorf("%w; stopped here: %v", cause, err)
		}
	}
	if len(replaced) == 0 {
		return fmt.Errorf("%w; stopped here: no run replaced a binary of %s and kept it under %s, so there is none to put back", cause, name, path.Dir(e.BackupDir()))
	}
	e.Log().Host(name, "the member did not come up on its new binaries (%v): putting its old ones back", cause)
	err := restoreBinaries(ctx, t, replaced)
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
	var olds []string
	for _, b := range replaced {
		olds = append(olds, b.Backup)
	}
	if err != nil {
		return fmt.Errorf("%w; putting the old binaries back failed too: %v; they are kept at %s on the host", cause, err, strings.Join(olds, ", "))
	}
	e.Log().Host(name, "back on its old binaries, healthy and caught up")
	return fmt.Errorf("%w; stopped here: %s is back on its old binaries and healthy, the members after it were not touched", cause, name)
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
