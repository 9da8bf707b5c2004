package ops

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// Processes are the member's processes on the host: etcd on the client
// port, whatever runs it, so that "is this the new process" is the same
// question for every runtime.
func Processes(ctx context.Context, t remote.Transport) ([]facts.Process, error) {
	return facts.Processes(ctx, t, manifests.ClientPort)
}

// Running reports whether p is one of before: the same PID with the same
// start time.
func Running(before []facts.Process, p facts.Process) bool {
	return slices.ContainsFunc(before, p.Same)
}

// NewProcess reports whether now holds a process before does not.
func NewProcess(before, now []facts.Process) bool {
	return len(now) > 0 && !slices.ContainsFunc(now, func(p facts.Process) bool { return Running(before, p) })
}

// PodCleanupWait bounds the wait for the kubelet to let go of a stopped
// Pod; past it the Pod comes back anyway, only later.
const PodCleanupWait = 15 * time.Second

// WaitGone waits until none of the processes runs any more, then, with
// pod, until the kubelet is done with their Pod (its cgroup is gone): a
// static Pod that comes back before that starts only after the kubelet's
// retry delay (10s), or behind its restart back-off.
func WaitGone(ctx context.Context, e Env, before []facts.Process, pod bool) error {
	return WaitGoneOn(ctx, e, manifests.ClientPort, before, pod)
}

// WaitGoneOn is WaitGone for the processes listening on port.
func WaitGoneOn(ctx context.Context, e Env, port int, before []facts.Process, pod bool) error {
	t := e.Transport()
	deadline := time.Now().Add(e.HealthTimeout())
	for {
		now, err := facts.Processes(ctx, t, port)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(now, func(p facts.Process) bool { return Running(before, p) }) {
			// etcd closes its listeners first, then syncs its log and
			// database: gone is the process, not its port.
			alive, err := Alive(ctx, t, before)
			if err != nil {
				return err
			}
			if len(alive) == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			what := fmt.Sprintf("the process on port %d", port)
			if port == manifests.ClientPort {
				what = "etcd"
			}
			return fmt.Errorf("%s (pid %v) still runs %s after it was told to stop", what, before, e.HealthTimeout())
		}
		if err := Sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	var test strings.Builder
	for _, p := range before {
		if p.Cgroup != "" {
			fmt.Fprintf(&test, "[ -d %s ] && echo left; ", shell.Quote(p.Cgroup))
		}
	}
	if test.Len() == 0 || !pod {
		return nil
	}
	test.WriteString("true")
	podDeadline := time.Now().Add(PodCleanupWait)
	for time.Now().Before(podDeadline) {
		out, err := t.Run(ctx, test.String(), nil)
		if err != nil {
			return err
		}
		if len(out) == 0 {
			return nil
		}
		if err := Sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// Alive lists the processes that still run: the same PID with the same
// start time.
func Alive(ctx context.Context, t remote.Transport, ps []facts.Process) ([]int, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "if [ -r /proc/%[1]d/stat ]; then read -r st < /proc/%[1]d/stat; st=${st##*) }; set -- $st; [ \"${20}\" = %[2]d ] && echo %[1]d; fi; ", p.PID, p.Start)
	}
	b.WriteString("true")
	out, err := t.Run(ctx, b.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("look for etcd's process: %w", err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
