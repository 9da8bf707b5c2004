//go:build linux

package ops

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

func startTime(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b)[strings.LastIndex(string(b), ")")+2:])
	v, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A process is gone when it has exited, not when its port closed: etcd
// closes its listeners before it syncs its files.
func TestAliveIsTheProcess(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	p := facts.Process{PID: cmd.Process.Pid, Start: startTime(t, cmd.Process.Pid)}
	tr := remote.NewLocal("local", false)
	ctx := context.Background()
	if got, err := Alive(ctx, tr, []facts.Process{p}); err != nil || len(got) != 1 || got[0] != p.PID {
		t.Fatalf("a running process: %v %v", got, err)
	}
	if got, _ := Alive(ctx, tr, []facts.Process{{PID: p.PID, Start: p.Start + 1}}); len(got) != 0 {
		t.Errorf("another process under the same PID counts as the old one: %v", got)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if got, err := Alive(ctx, tr, []facts.Process{p}); err != nil || len(got) != 0 {
		t.Errorf("an exited process: %v %v", got, err)
	}
}
