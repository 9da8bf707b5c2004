package unit

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdservice"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
)

// etcdadm's etcd.service and environment file, read the way systemd reads
// them, run etcd with exactly the command of the member's static Pod.
func TestEtcdServiceRunsThePodsCommand(t *testing.T) {
	c := &config.Cluster{Spec: config.Spec{Etcd: config.Etcd{DataDir: "/var/lib/etcd",
		ExtraArgs: map[string]string{"quota-backend-bytes": "8589934592", "listen-metrics-urls": "http://[::]:2381", "auto-compaction-retention": "8"}}}}
	for _, h := range []config.Host{{Name: "infra0", Address: "10.0.0.6"}, {Name: "infra6", Address: "fd00::6"}} {
		ic := h.Name + "=" + manifests.PeerURL(h) + ",infra1=https://10.0.0.7:2380"
		pod := manifests.EtcdPod(c, h, ic, manifests.StateExisting).Spec.Containers[0].Command
		env, err := etcdservice.EnvFile(h.Name, manifests.Flags(c, h, ic, manifests.StateExisting))
		if err != nil {
			t.Fatal(err)
		}
		root := t.TempDir()
		write(t, root, etcdservice.UnitPath, string(etcdservice.UnitFile()))
		write(t, root, etcdservice.EnvPath, string(env))
		s, err := Load(root, SearchPath(), "etcd.service")
		if err != nil {
			t.Fatal(err)
		}
		vars, err := s.Env(root)
		if err != nil {
			t.Fatal(err)
		}
		cmd, err := s.Command(vars)
		if err != nil {
			t.Fatal(err)
		}
		want := append([]string{etcdservice.BinaryPath("etcd")}, pod[1:]...)
		if pod[0] != "etcd" || !reflect.DeepEqual(cmd.Argv, want) {
			t.Errorf("%s: the service runs\n  %q\nthe Pod runs\n  %q", h.Name, cmd.Argv, pod)
		}
		if s.Type != "notify" || s.Restart != "on-failure" || s.RestartDelay != 5*time.Second || s.StartTimeout != 0 {
			t.Errorf("%s: service %+v", h.Name, s)
		}
	}
}

func TestTimeoutStartAndType(t *testing.T) {
	root := t.TempDir()
	write(t, root, "etc/systemd/system/a.service", "[Service]\nExecStart=/bin/true\n")
	write(t, root, "etc/systemd/system/b.service", "[Service]\nExecStart=/bin/true\nTimeoutStartSec=infinity\n")
	write(t, root, "etc/systemd/system/c.service", "[Service]\nType=notify\nExecStart=/bin/true\nTimeoutStartSec=2min\n")
	write(t, root, "etc/systemd/system/d.service", "[Service]\nType=forking\nExecStart=/bin/true\n")
	for name, want := range map[string]time.Duration{"a": 90 * time.Second, "b": 0, "c": 2 * time.Minute} {
		s, err := Load(root, SearchPath(), name+".service")
		if err != nil {
			t.Fatal(err)
		}
		if s.StartTimeout != want || s.Validate() != nil {
			t.Errorf("%s: TimeoutStartSec %s (%v), want %s", name, s.StartTimeout, s.Validate(), want)
		}
	}
	s, err := Load(root, SearchPath(), "d.service")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "Type=forking") {
		t.Errorf("Type=forking: %v", err)
	}
}
