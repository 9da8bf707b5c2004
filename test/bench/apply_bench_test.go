package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/apply"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/test/lab"
)

func needLab(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("the lab needs root")
	}
}

func buildEtcdadm(b *testing.B) string {
	bin := filepath.Join(b.TempDir(), "etcdadm")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/etcdadm-io/etcdadm/cmd/etcdadm").CombinedOutput(); err != nil {
		b.Fatalf("build etcdadm: %v\n%s", err, out)
	}
	return bin
}

func upLab(b *testing.B, opts lab.Options) *lab.Lab {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, opts, nil)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

func writeInventory(b *testing.B, l *lab.Lab, dir string, hosts []*lab.Host) string {
	p := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(p, []byte(l.Inventory(lab.InventoryOptions{Name: "bench", Hosts: hosts})), 0o644); err != nil {
		b.Fatal(err)
	}
	return p
}

func etcdadm(b *testing.B, bin string, args ...string) string {
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		b.Fatalf("etcdadm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// BenchmarkApplyFresh brings a 3-member cluster up on empty lab hosts with
// etcdadm apply, next to the floor: the same three etcd commands started
// directly on the hosts, with the certificates already in place, until the
// cluster is healthy. Each iteration gets a new lab (not timed).
func BenchmarkApplyFresh(b *testing.B) {
	needLab(b)
	bin := buildEtcdadm(b)
	opts := lab.Options{Hosts: 3, Dir: "/var/tmp/etcdadm-bench", NamePrefix: "bch", Subnet: 3}
	b.Run("etcdadm-apply", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			l := upLab(b, opts)
			inv := writeInventory(b, l, b.TempDir(), l.Hosts)
			etcdadm(b, bin, "certs", "generate", "-f", inv)
			b.StartTimer()
			out := etcdadm(b, bin, "apply", "-f", inv)
			b.StopTimer()
			if !strings.Contains(out, "3/3 members healthy") {
				b.Fatalf("apply:\n%s", out)
			}
			if err := l.Down(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("floor-etcd-started-directly", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			l := upLab(b, opts)
			c, p, client := floorSetup(b, l)
			b.StartTimer()
			for _, hp := range p.Hosts {
				h := l.Host(hp.Name)
				cmd := etcdCommand(b, hp)
				cmd[0] = l.Artifacts.Etcd
				start := append([]string{"setsid", "-f", "sh", "-c", `exec "$@" >/var/log/etcd-floor.log 2>&1`, "etcd"}, cmd...)
				if out, err := h.Exec(context.Background(), start...); err != nil {
					b.Fatalf("start etcd on %s: %v\n%s", h.Name, err, out)
				}
			}
			if _, err := client.WaitHealthy(context.Background(), apply.Endpoints(c), time.Minute, nil); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := l.Down(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// floorSetup puts each host's certificates in place, as apply would have,
// and returns the plan whose etcd commands the floor runs.
func floorSetup(b *testing.B, l *lab.Lab) (*config.Cluster, *plan.Plan, *etcdclient.Client) {
	inv := writeInventory(b, l, b.TempDir(), l.Hosts)
	c, _, err := config.Load(inv)
	if err != nil {
		b.Fatal(err)
	}
	p, pki, _, err := plan.Compute(c, plan.Options{})
	if err != nil {
		b.Fatal(err)
	}
	for _, hp := range p.Hosts {
		h := l.Host(hp.Name)
		for _, f := range hp.Files {
			if f.Part == plan.PartCerts {
				if err := h.WriteFile(context.Background(), f.Path, f.Data, f.Mode); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	client, err := etcdclient.FromPKI(pki, c.Spec.Hosts[0].Name, nil)
	if err != nil {
		b.Fatal(err)
	}
	return c, p, client
}

// etcdCommand is the command of the host's static Pod.
func etcdCommand(b *testing.B, hp plan.Host) []string {
	for _, f := range hp.Files {
		if f.Part != plan.PartManifests {
			continue
		}
		var cmd []string
		for _, line := range strings.Split(string(f.Data), "\n") {
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, "- etcd") || strings.HasPrefix(line, "- --") {
				cmd = append(cmd, strings.TrimPrefix(line, "- "))
			}
		}
		return cmd
	}
	b.Fatal("no manifest in the plan")
	return nil
}

// BenchmarkApplyNoop re-applies an up-to-date 3-member cluster: connect,
// pre-flight, diff, health check, nothing written.
func BenchmarkApplyNoop(b *testing.B) {
	needLab(b)
	bin := buildEtcdadm(b)
	l := upLab(b, lab.Options{Hosts: 3, Dir: "/var/tmp/etcdadm-bench", NamePrefix: "bch", Subnet: 3})
	defer l.Down(context.Background())
	inv := writeInventory(b, l, b.TempDir(), l.Hosts)
	etcdadm(b, bin, "apply", "-f", inv)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if out := etcdadm(b, bin, "apply", "-f", inv); !strings.Contains(out, "nothing to do") {
			b.Fatalf("re-apply changed something:\n%s", out)
		}
	}
}

// BenchmarkDiff compares the plan with 30 SSH-only hosts, next to 3.
func BenchmarkDiff(b *testing.B) {
	needLab(b)
	bin := buildEtcdadm(b)
	l := upLab(b, lab.Options{Hosts: 30, Dir: "/var/tmp/etcdadm-bench-diff", NamePrefix: "dif", Subnet: 4, SSHOnly: true})
	defer l.Down(context.Background())
	for _, n := range []int{3, 30} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			inv := writeInventory(b, l, b.TempDir(), l.Hosts[:n])
			etcdadm(b, bin, "certs", "generate", "-f", inv)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				out := etcdadm(b, bin, "diff", "-f", inv)
				if strings.Count(out, "files would change") != n {
					b.Fatalf("diff:\n%s", out)
				}
			}
		})
	}
}
