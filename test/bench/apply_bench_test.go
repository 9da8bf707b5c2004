package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/pipeline"
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

func down(b *testing.B, l *lab.Lab) {
	if err := l.Down(context.Background()); err != nil {
		b.Fatal(err)
	}
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

func loadCluster(b *testing.B, inv string) (*config.Cluster, *certs.PKI, *etcdclient.Client) {
	c, _, err := config.Load(inv)
	if err != nil {
		b.Fatal(err)
	}
	pki, _, err := certs.Ensure(c, certs.Options{})
	if err != nil {
		b.Fatal(err)
	}
	client, err := etcdclient.FromPKI(pki, c.Spec.Hosts[0].Name, nil)
	if err != nil {
		b.Fatal(err)
	}
	return c, pki, client
}

var freshLab = lab.Options{Hosts: 3, Dir: "/var/tmp/etcdadm-bench", NamePrefix: "bch", Subnet: 3}

// BenchmarkApplyFresh brings a 3-member cluster up on empty lab hosts with
// etcdadm apply, certificates included, next to the floor: every file
// already placed by hand on the hosts, then the three kubelets restarted at
// once, until the cluster is healthy. Each iteration gets a new lab (not
// timed).
func BenchmarkApplyFresh(b *testing.B) {
	needLab(b)
	bin := buildEtcdadm(b)
	b.Run("etcdadm-apply", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			l := upLab(b, freshLab)
			inv := writeInventory(b, l, b.TempDir(), l.Hosts)
			b.StartTimer()
			out := etcdadm(b, bin, "apply", "-f", inv)
			b.StopTimer()
			if !strings.Contains(out, "3/3 members healthy") {
				b.Fatalf("apply:\n%s", out)
			}
			down(b, l)
		}
	})
	b.Run("floor-files-placed-kubelets-restarted", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			l := upLab(b, freshLab)
			c, pki, client := loadCluster(b, writeInventory(b, l, b.TempDir(), l.Hosts))
			p, err := plan.Files(c, pipeline.RuntimeFor(c), pki, plan.Options{})
			if err != nil {
				b.Fatal(err)
			}
			for _, hp := range p.Hosts {
				place(b, l.Host(hp.Name), hp.Files)
			}
			b.StartTimer()
			restartKubelets(b, l.Hosts)
			if _, err := client.WaitHealthy(context.Background(), ops.Endpoints(c), time.Minute, nil); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			client.Close()
			down(b, l)
		}
	})
}

func place(b *testing.B, h *lab.Host, files []plan.File) {
	for _, f := range files {
		if err := h.WriteFile(context.Background(), f.Path, f.Data, f.Mode); err != nil {
			b.Fatal(err)
		}
	}
}

func restartKubelets(b *testing.B, hosts []*lab.Host) {
	var wg sync.WaitGroup
	errs := make([]error, len(hosts))
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = h.Exec(context.Background(), "sh", "-c", "systemctl daemon-reload && systemctl restart kubelet")
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyNoop re-applies an up-to-date 3-member cluster: connect,
// read every host and etcd, plan, nothing written.
func BenchmarkApplyNoop(b *testing.B) {
	needLab(b)
	bin := buildEtcdadm(b)
	l := upLab(b, freshLab)
	defer down(b, l)
	inv := writeInventory(b, l, b.TempDir(), l.Hosts)
	etcdadm(b, bin, "apply", "-f", inv)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if out := etcdadm(b, bin, "apply", "-f", inv); !strings.Contains(out, "nothing to do") {
			b.Fatalf("re-apply changed something:\n%s", out)
		}
	}
}

// BenchmarkDiff compares the plan with 30 SSH-only hosts, next to 3. The
// inventory is stacked: SSH-only hosts have no kubelet, which an external
// member's plan would refuse.
func BenchmarkDiff(b *testing.B) {
	needLab(b)
	bin := buildEtcdadm(b)
	l := upLab(b, lab.Options{Hosts: 30, Dir: "/var/tmp/etcdadm-bench-diff", NamePrefix: "dif", Subnet: 4, SSHOnly: true})
	defer down(b, l)
	for _, n := range []int{3, 30} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			inv := writeInventory(b, l, b.TempDir(), l.Hosts[:n])
			stacked(b, inv)
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

func stacked(b *testing.B, inv string) {
	data, err := os.ReadFile(inv)
	if err != nil {
		b.Fatal(err)
	}
	data = []byte(strings.Replace(string(data), "spec:\n", "spec:\n  topology: stacked\n", 1))
	if err := os.WriteFile(inv, data, 0o644); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAddMember adds a 4th member to a running cluster with etcdadm
// apply (files, learner, catch-up, promotion), next to the floor: its files
// placed by hand, a voting member added through the API and its etcd
// started directly with --initial-cluster-state=existing, until the four are
// healthy. Each iteration gets a new lab with 3 members (not timed).
func BenchmarkAddMember(b *testing.B) {
	needLab(b)
	bin := buildEtcdadm(b)
	opts := lab.Options{Hosts: 4, Dir: "/var/tmp/etcdadm-bench-add", NamePrefix: "bad", Subnet: 5}
	setup := func(b *testing.B) (*lab.Lab, string) {
		l := upLab(b, opts)
		dir := b.TempDir()
		etcdadm(b, bin, "apply", "-f", writeInventory(b, l, dir, l.Hosts[:3]))
		// etcd refuses a member add until every peer has been connected for
		// five seconds: both sides start from a settled cluster.
		time.Sleep(6 * time.Second)
		return l, writeInventory(b, l, dir, l.Hosts)
	}
	b.Run("etcdadm-apply", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			l, inv := setup(b)
			b.StartTimer()
			out := etcdadm(b, bin, "apply", "-f", inv)
			b.StopTimer()
			if !strings.Contains(out, "4/4 members healthy") {
				b.Fatalf("apply:\n%s", out)
			}
			down(b, l)
		}
	})
	// What the kubelet adds: the member's files, its manifest and the
	// kubelet's own placed by hand, a learner added through the API, the
	// kubelet restarted, until the four are healthy.
	b.Run("floor-member-add-kubelet-restarted-by-hand", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			l, c, client, h, hp := fourthMember(b, setup, plan.AllParts)
			ctx := context.Background()
			lh := l.Host(h.Name)
			var manifest []plan.File
			for _, f := range hp.Files {
				if f.Part == plan.PartManifests {
					manifest = append(manifest, f)
				} else {
					place(b, lh, []plan.File{f})
				}
			}
			b.StartTimer()
			if _, _, err := client.AddLearner(ctx, []string{manifests.ClientURL(c.Spec.Hosts[0])}, manifests.PeerURL(h), 5*time.Second, 10*time.Second); err != nil {
				b.Fatal(err)
			}
			place(b, lh, manifest)
			restartKubelets(b, []*lab.Host{lh})
			if _, err := client.WaitHealthy(ctx, ops.Endpoints(c), time.Minute, nil); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			client.Close()
			down(b, l)
		}
	})
	b.Run("floor-member-add-etcd-started-directly", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			l, c, client, h, hp := fourthMember(b, setup, []plan.Part{plan.PartCerts, plan.PartManifests})
			ctx := context.Background()
			lh := l.Host(h.Name)
			var cmd []string
			for _, f := range hp.Files {
				if f.Part == plan.PartCerts {
					place(b, lh, []plan.File{f})
				} else {
					cmd = etcdCommand(f.Data)
				}
			}
			cmd[0] = l.Artifacts.Etcd
			cli, err := client.Connect(manifests.ClientURL(c.Spec.Hosts[0]))
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			actx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err = cli.MemberAdd(actx, []string{manifests.PeerURL(h)})
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			start := append([]string{"setsid", "-f", "sh", "-c", `exec "$@" >/var/log/etcd-floor.log 2>&1`, "etcd"}, cmd...)
			if out, err := lh.Exec(ctx, start...); err != nil {
				b.Fatalf("start etcd on %s: %v\n%s", h.Name, err, out)
			}
			if _, err := client.WaitHealthy(ctx, ops.Endpoints(c), time.Minute, nil); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			cli.Close()
			client.Close()
			down(b, l)
		}
	})
}

// fourthMember brings up a lab of setup and returns the files of parts
// its fourth host needs to join the three members as a new one.
func fourthMember(b *testing.B, setup func(*testing.B) (*lab.Lab, string), parts []plan.Part) (*lab.Lab, *config.Cluster, *etcdclient.Client, config.Host, plan.Host) {
	b.Helper()
	l, inv := setup(b)
	c, pki, client := loadCluster(b, inv)
	h := c.Spec.Hosts[3]
	list, err := client.MemberList(context.Background(), []string{manifests.ClientURL(c.Spec.Hosts[0])}, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	m := plan.Member{InitialCluster: etcdclient.InitialCluster(list.Members, h.Name, manifests.PeerURL(h)), State: manifests.StateExisting}
	hp, err := plan.HostFiles(c, pipeline.RuntimeFor(c), pki, h, m, parts)
	if err != nil {
		b.Fatal(err)
	}
	return l, c, client, h, hp
}

// etcdCommand is the command of a static Pod.
func etcdCommand(manifest []byte) []string {
	var cmd []string
	for _, line := range strings.Split(string(manifest), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "- etcd") || strings.HasPrefix(line, "- --") {
			cmd = append(cmd, strings.TrimPrefix(line, "- "))
		}
	}
	return cmd
}

// BenchmarkRenew renews every certificate of a running 3-member cluster
// with etcdadm certs renew (files, then one member restarted at a time,
// leader last, each healthy before the next), next to the floor: the three
// members restarted one after the other by hand, as kubeadm's guide says
// (the manifest moved out until etcd stopped, then back), each waited for
// until the cluster is healthy. Each iteration gets a new cluster (not timed).
func BenchmarkRenew(b *testing.B) {
	needLab(b)
	bin := buildEtcdadm(b)
	opts := lab.Options{Hosts: 3, Dir: "/var/tmp/etcdadm-bench-renew", NamePrefix: "brn", Subnet: 6}
	setup := func(b *testing.B) (*lab.Lab, string) {
		l := upLab(b, opts)
		inv := writeInventory(b, l, b.TempDir(), l.Hosts)
		etcdadm(b, bin, "apply", "-f", inv)
		return l, inv
	}
	b.Run("etcdadm-certs-renew", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			l, inv := setup(b)
			b.StartTimer()
			out := etcdadm(b, bin, "certs", "renew", "-f", inv)
			b.StopTimer()
			if !strings.Contains(out, "3/3 members healthy") {
				b.Fatalf("renew:\n%s", out)
			}
			down(b, l)
		}
	})
	b.Run("floor-three-restarts-by-hand", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			l, inv := setup(b)
			c, _, client := loadCluster(b, inv)
			ctx := context.Background()
			b.StartTimer()
			for _, h := range l.Hosts {
				before := h.PIDs("etcd")
				if _, err := h.Exec(ctx, "mv", "/etc/kubernetes/manifests/etcd.yaml", "/etc/kubernetes/etcd.yaml"); err != nil {
					b.Fatal(err)
				}
				for len(h.PIDs("etcd")) > 0 {
					time.Sleep(50 * time.Millisecond)
				}
				if _, err := h.Exec(ctx, "mv", "/etc/kubernetes/etcd.yaml", "/etc/kubernetes/manifests/etcd.yaml"); err != nil {
					b.Fatal(err)
				}
				for now := h.PIDs("etcd"); len(now) == 0 || fmt.Sprint(now) == fmt.Sprint(before); now = h.PIDs("etcd") {
					time.Sleep(50 * time.Millisecond)
				}
				if _, err := client.WaitHealthy(ctx, ops.Endpoints(c), 2*time.Minute, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			client.Close()
			down(b, l)
		}
	})
}
