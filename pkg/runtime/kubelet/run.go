package kubelet

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/hostfile"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
	"github.com/etcdadm-io/etcdadm/pkg/runtime"
)

// holdPath is where a restart parks the manifest: a dotted name in the same
// directory, which the kubelet does not read.
func holdPath(c *config.Cluster) string {
	return path.Join(c.Spec.Kubelet.StaticPodPath, "."+manifests.ManifestName+".etcdadm-restart")
}

// Restart takes the static Pod away, waits until its etcd has exited and
// the kubelet is done with its Pod, then writes the new manifest: the
// kubelet starts it at once, and the new process reads the CA and
// certificates anew. Written while the old Pod still terminates, the
// kubelet would start it only after its retry delay. A run cut in between
// leaves the manifest missing, which the next run's plan restores.
func (Runtime) Restart(ctx context.Context, e ops.Env, op ops.RestartEtcd) error {
	return restart(ctx, e, op.Change.File, op.Retry, e.Before())
}

func restart(ctx context.Context, e ops.Env, f hostfile.File, retry *hostfile.File, before []facts.Process) error {
	t, name, c := e.Transport(), e.Host().Name, e.Cluster()
	m, hold := manifests.ManifestPath(c), holdPath(c)
	e.Log().Host(name, "restarting etcd")
	start := time.Now()
	q := shell.Quote
	if _, err := t.Run(ctx, fmt.Sprintf("if [ -f %[1]s ]; then mv -f %[1]s %[2]s; fi", q(m), q(hold)), nil); err != nil {
		return fmt.Errorf("take the etcd manifest away: %w", err)
	}
	if err := ops.WaitGone(ctx, e, before, true); err != nil {
		return err
	}
	if _, err := t.WriteFile(ctx, remote.File{Path: f.Path, Mode: f.Mode, Data: f.Data}, ""); err != nil {
		return fmt.Errorf("write %s: %w", f.Path, err)
	}
	if _, err := t.Run(ctx, "rm -f "+q(hold), nil); err != nil {
		return fmt.Errorf("remove %s: %w", hold, err)
	}
	e.Log().Host(name, "wrote %s (the old etcd was gone and its Pod cleaned up after %s)", f.Path, time.Since(start).Round(time.Millisecond))
	if retry == nil {
		return nil
	}
	// A Pod that arrives while the kubelet still finishes the old one waits
	// for the kubelet's retry (10-15s); one under another name starts at once.
	for deadline := time.Now().Add(RetryAfter); time.Now().Before(deadline); {
		now, err := ops.Processes(ctx, t)
		if err != nil {
			return err
		}
		if ops.NewProcess(before, now) {
			return nil
		}
		if err := ops.Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	if _, err := t.WriteFile(ctx, remote.File{Path: retry.Path, Mode: retry.Mode, Data: retry.Data}, ""); err != nil {
		return fmt.Errorf("write %s: %w", retry.Path, err)
	}
	e.Log().Host(name, "no new etcd after %s: the kubelet held the Pod back; wrote it again with another restart annotation", RetryAfter)
	return nil
}

// RetryAfter is how long a restarted member's Pod may take to start before
// it is written again under another name.
const RetryAfter = 2 * time.Second

// Stop moves the manifest under the backup directory and waits until etcd
// has exited.
func (Runtime) Stop(ctx context.Context, e ops.Env) error {
	before, err := ops.Processes(ctx, e.Transport())
	if err != nil {
		return err
	}
	if err := ops.MoveToBackup(ctx, e, manifests.ManifestPath(e.Cluster())); err != nil {
		return err
	}
	e.Log().Host(e.Host().Name, "waiting for etcd to stop")
	// The member stays stopped: the kubelet may finish its Pod at leisure;
	// a manifest written later is a new Pod, which starts at once.
	return ops.WaitGone(ctx, e, before, false)
}

// RollBack puts a member that did not come up on its new manifest back on
// its old one, with the CA, server and peer certificates this run replaced
// put back from the copies it kept, and waits for it: the roll stops
// either way. Why the new Pod did not come up (its image missing, its
// container's exit) is told first. The old manifest is first kept under
// the run's backup directory (the restart that replaced it kept none), so
// that a rollback that fails too says where it is.
func (Runtime) RollBack(ctx context.Context, e ops.Env, op ops.RestartEtcd, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.HealthTimeout()+time.Minute)
	defer cancel()
	name, old := e.Host().Name, *op.Rollback
	if why := podState(ctx, e, op); why != "" {
		cause = fmt.Errorf("%w; %s", cause, why)
	}
	e.Log().Host(name, "the member did not come up on its new manifest (%v): putting its old manifest back", cause)
	image := facts.ParseManifest(old.Data).Image
	kept := path.Join(e.BackupDir(), manifests.ManifestPath(e.Cluster()))
	if _, err := e.Transport().WriteFile(ctx, remote.File{Path: kept, Mode: 0o600, DirMode: 0o700, Data: old.Data}, ""); err != nil {
		e.Log().Warn(name, "could not keep the old manifest at %s: %v", kept, err)
		kept = ""
	}
	put, err := ops.PutBack(ctx, e, func(p string) bool { return slices.Contains(runtime.EtcdFiles(), p) })
	var now []facts.Process
	if err == nil {
		now, err = ops.Processes(ctx, e.Transport())
	}
	if err == nil {
		err = restart(ctx, e, old, op.RollbackRetry, now)
	}
	if err == nil {
		err = ops.AwaitMember(ctx, e, true, "", now)
	}
	if err == nil {
		// It runs what its files say: no restart is pending.
		err = ops.Execute(ctx, e, ops.Unmark{Marker: facts.PendingEtcdRestart})
	}
	what := fmt.Sprintf("old manifest (%s)", image)
	if len(put) > 0 {
		what += " and " + strings.Join(put, ", ")
	}
	if err != nil {
		where := "a copy of the manifest is at " + kept + " on the host"
		if kept == "" {
			where = "no copy of the manifest could be kept on the host; the inventory that named " + image + " plans it again with `etcdadm apply`"
		}
		return fmt.Errorf("%w; putting its %s back failed too: %v; %s", cause, what, err, where)
	}
	e.Log().Host(name, "back on its %s, healthy and caught up", what)
	return fmt.Errorf("%w; stopped here: %s is back on its %s and healthy, the members after it were not touched", cause, name, what)
}

// podState says why a new static Pod did not come up, as far as the host
// tells: the image missing from containerd, the exit of its etcd
// container (crictl, when the host has it), and the last lines the
// container logged (the kubelet's log of it, newer than its manifest).
func podState(ctx context.Context, e ops.Env, op ops.RestartEtcd) string {
	c := e.Cluster()
	image := ""
	if op.Change != nil {
		image = facts.ParseManifest(op.Change.File.Data).Image
	}
	q := shell.Quote
	out, _ := e.Transport().Run(ctx, fmt.Sprintf(`img=%[1]s; m=%[2]s
if [ -n "$img" ] && command -v ctr >/dev/null 2>&1; then
  if %[3]s images ls -q "name==$img" 2>/dev/null | grep -q .; then echo image-present; else echo image-missing; fi
fi
if command -v crictl >/dev/null 2>&1; then
  id=$(crictl ps -a --name '^etcd$' -q 2>/dev/null | head -n 1)
  [ -z "$id" ] || crictl inspect -o go-template --template 'exit {{.status.exitCode}} {{.status.reason}}{{"\n"}}' "$id" 2>/dev/null
fi
logs=$(find /var/log/pods -path '*_etcd-*/etcd/*.log' -newer "$m" 2>/dev/null)
[ -z "$logs" ] || tail -n 5 "$(ls -t $logs | head -n 1)" | sed -E 's/^[^ ]+ (stdout|stderr) [FP] //; s/^/| /'
true`, q(image), q(manifests.ManifestPath(c)), facts.CtrCommand(facts.ContainerdAddress(c.Spec.Kubelet.ContainerRuntimeEndpoint))), nil)
	var why, logged []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		switch {
		case l == "image-missing":
			why = append(why, fmt.Sprintf("the image %s is not in the host's containerd, and the kubelet could not pull it", image))
		case strings.HasPrefix(l, "exit "):
			why = append(why, "its etcd container exited with status "+strings.TrimSpace(strings.TrimPrefix(l, "exit ")))
		case strings.HasPrefix(l, "| "):
			logged = append(logged, strings.TrimPrefix(l, "| "))
		}
	}
	if len(logged) > 0 {
		why = append(why, "its etcd container logged: "+strings.Join(logged, " / "))
	}
	return strings.Join(why, "; ")
}
