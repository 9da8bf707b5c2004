package apply

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdservice"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// memberRuntime carries out, on one host, the operations of a plan that
// start, stop and restart its member, the way its runtime (plan.Runtime)
// runs it: a static Pod of the kubelet, or a systemd service. Both find
// the member's process as the facts do, by who listens on etcd's client
// port, so that "is this the new process" is the same question for both.
type memberRuntime interface {
	// restart makes the member run as op says (OpRestartEtcd): a new
	// process, which before does not hold.
	restart(ctx context.Context, t remote.Transport, name string, op plan.Op, before []facts.Process) error
	// stop stops the member for good (OpStopEtcd), keeping what says how
	// it starts under the backup directory.
	stop(ctx context.Context, t remote.Transport, name string) error
	// rollBack puts a member that did not come up after a restart with a
	// Rollback back on what it ran before, and waits for it.
	rollBack(ctx context.Context, t remote.Transport, h config.Host, old plan.File, retry *plan.File, cause error) error
	// processes are the member's processes: etcd on the client port.
	processes(ctx context.Context, t remote.Transport) ([]facts.Process, error)
}

func (x *Executor) runtime() memberRuntime {
	if x.Cluster.Systemd() {
		return serviceRuntime{x}
	}
	return podRuntime{x}
}

// podRuntime runs a member as a static Pod: the manifest taken away and
// written back.
type podRuntime struct{ x *Executor }

func (r podRuntime) restart(ctx context.Context, t remote.Transport, name string, op plan.Op, before []facts.Process) error {
	return r.x.restartEtcd(ctx, t, name, op.Change.File, op.Retry, before)
}

func (r podRuntime) stop(ctx context.Context, t remote.Transport, name string) error {
	return r.x.stopEtcd(ctx, t, name)
}

func (r podRuntime) rollBack(ctx context.Context, t remote.Transport, h config.Host, old plan.File, retry *plan.File, cause error) error {
	return r.x.rollBack(ctx, t, h, old, retry, cause)
}

func (podRuntime) processes(ctx context.Context, t remote.Transport) ([]facts.Process, error) {
	return facts.Processes(ctx, t, manifests.ClientPort)
}

// serviceRuntime runs a member as etcd.service.
type serviceRuntime struct{ x *Executor }

func (serviceRuntime) processes(ctx context.Context, t remote.Transport) ([]facts.Process, error) {
	return facts.Processes(ctx, t, manifests.ClientPort)
}

// restart writes the environment file when it changes, then has systemd
// restart the service (enabled for the next boot): without blocking, as
// etcd tells systemd it is ready only once it joined its cluster, which
// the health gate after it waits for.
func (r serviceRuntime) restart(ctx context.Context, t remote.Transport, name string, op plan.Op, _ []facts.Process) error {
	x := r.x
	if ch := op.Change; ch != nil && (ch.Kind == plan.Create || ch.Kind == plan.Update) {
		f := ch.File
		if _, err := t.WriteFile(ctx, remote.File{Path: f.Path, Mode: f.Mode, Data: f.Data}, x.BackupDir); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
		x.Log.Host(name, "wrote %s (%s)", f.Path, ch.Kind)
	}
	cmd := op.Command
	if cmd == "" {
		cmd = plan.CmdRestartEtcd
	}
	x.Log.Host(name, "restarting etcd")
	if _, err := t.Run(ctx, cmd, nil); err != nil {
		return fmt.Errorf("restart etcd: %w", err)
	}
	x.Log.Host(name, "ran %s", cmd)
	x.record(name, func(r *HostResult) { r.Ran = append(r.Ran, cmd) })
	return nil
}

// stop stops and disables the service, waits until its etcd has exited,
// and moves the environment file under the backup directory. A host whose
// unit file is gone only has the service stopped.
func (r serviceRuntime) stop(ctx context.Context, t remote.Transport, name string) error {
	x := r.x
	before, err := r.processes(ctx, t)
	if err != nil {
		return err
	}
	q := shell.Quote
	script := fmt.Sprintf("if [ -e %s ]; then %s; else systemctl stop %s 2>/dev/null || true; fi", q(etcdservice.UnitPath), plan.CmdStopEtcd, q(etcdservice.Unit))
	x.Log.Host(name, "stopping etcd")
	if _, err := t.Run(ctx, script, nil); err != nil {
		return fmt.Errorf("stop etcd: %w", err)
	}
	x.record(name, func(r *HostResult) { r.Ran = append(r.Ran, plan.CmdStopEtcd) })
	if err := x.waitGone(ctx, t, before, false); err != nil {
		return err
	}
	return x.backup(ctx, t, name, plan.RuntimeOf(x.Cluster).StartPath(x.Cluster))
}

// rollBack puts back the binaries this run replaced on the host, from the
// copies it kept, and the environment file the member ran with, then
// restarts it and waits for it: the roll stops either way.
func (r serviceRuntime) rollBack(ctx context.Context, t remote.Transport, h config.Host, old plan.File, _ *plan.File, cause error) error {
	x := r.x
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), x.HealthTimeout+time.Minute)
	defer cancel()
	x.mu.Lock()
	replaced := x.replaced[h.Name]
	x.mu.Unlock()
	if len(replaced) == 0 {
		return fmt.Errorf("%w; stopped here: this run replaced no binary of %s, so it has none to put back", cause, h.Name)
	}
	x.Log.Host(h.Name, "the member did not come up on its new binaries (%v): putting its old ones back", cause)
	err := r.restoreBinaries(ctx, t, replaced)
	if err == nil {
		_, err = t.WriteFile(ctx, remote.File{Path: old.Path, Mode: old.Mode, Data: old.Data}, "")
	}
	var now []facts.Process
	if err == nil {
		now, err = r.processes(ctx, t)
	}
	if err == nil {
		err = r.restart(ctx, t, h.Name, plan.Op{Kind: plan.OpRestartEtcd, Command: plan.CmdRestartEtcd}, now)
	}
	if err == nil {
		err = x.waitMember(ctx, t, h, true, "", now)
	}
	var olds []string
	for _, b := range replaced {
		olds = append(olds, b.backup)
	}
	if err != nil {
		return fmt.Errorf("%w; putting the old binaries back failed too: %v; they are kept at %s on the host", cause, err, strings.Join(olds, ", "))
	}
	x.Log.Host(h.Name, "back on its old binaries, healthy and caught up")
	return fmt.Errorf("%w; stopped here: %s is back on its old binaries and healthy, the members after it were not touched", cause, h.Name)
}

// restoreBinaries copies each kept binary back over the new one,
// atomically (a copy next to it, renamed).
func (serviceRuntime) restoreBinaries(ctx context.Context, t remote.Transport, replaced []replacedFile) error {
	q := shell.Quote
	var b strings.Builder
	b.WriteString("set -e\n")
	for _, f := range replaced {
		tmp := path.Join(path.Dir(f.path), "."+path.Base(f.path)+".etcdadm-rollback.tmp")
		fmt.Fprintf(&b, "cp -p %s %s && mv -f %s %s\n", q(f.backup), q(tmp), q(tmp), q(f.path))
	}
	if _, err := t.Run(ctx, b.String(), nil); err != nil {
		return fmt.Errorf("put the old binaries back: %w", err)
	}
	return nil
}

// replacedFile is a file a run replaced on a host, and where it kept the
// previous one.
type replacedFile struct{ path, backup string }

// pushFile streams a large file (a release's binary) from this machine to
// the host: into a temporary file next to its path, whose size and sha256
// the host checks, given root's ownership and its mode, synced, then
// renamed over the path. A previous file that differs is first copied
// under this run's backup directory. Nothing is held in memory.
func (x *Executor) pushFile(ctx context.Context, t remote.Transport, name string, ch *plan.Change) error {
	f := ch.File
	src, err := f.Source.Open()
	if err != nil {
		return err
	}
	defer src.Close()
	bk := path.Join(x.BackupDir, x.stamp, f.Path)
	script := pushScript(f.Path, bk, f.Source.Size, f.Source.SHA256, f.Mode.Perm())
	start := time.Now()
	out, err := t.Run(ctx, script, io.LimitReader(src, f.Source.Size+1))
	if err != nil {
		return fmt.Errorf("push %s (%s from %s): %w", f.Path, f.Source.Entry, f.Source.Archive, err)
	}
	if !strings.Contains(string(out), "pushed\n") {
		return fmt.Errorf("push %s: the host did not confirm it", f.Path)
	}
	if strings.Contains(string(out), "kept "+bk+"\n") {
		x.mu.Lock()
		if x.replaced == nil {
			x.replaced = map[string][]replacedFile{}
		}
		x.replaced[name] = append(x.replaced[name], replacedFile{path: f.Path, backup: bk})
		x.mu.Unlock()
	}
	x.Log.Host(name, "wrote %s (%s, %d bytes streamed from %s, sha256 checked, in %s)", f.Path, ch.Kind, f.Source.Size, path.Base(f.Source.Archive), time.Since(start).Round(time.Millisecond))
	x.record(name, func(r *HostResult) { r.Written = append(r.Written, f.Path) })
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
`, q(dst), q(strings.TrimSuffix(dir, "/")), q(backup), safeName(base), size, q(sum), uint32(mode.Perm()))
}
