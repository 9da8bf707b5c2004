package bench

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/execute"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/hosts"
	"github.com/etcdadm-io/etcdadm/pkg/images"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/pipeline"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
	"github.com/etcdadm-io/etcdadm/test/lab"
)

var imagesLab = lab.Options{Hosts: 3, Dir: "/var/tmp/etcdadm-bench-img", NamePrefix: "bim", Subnet: 10, NoImages: true}

// BenchmarkImages brings the etcd and pause images (the lab's OCI-archives,
// uncompressed) to the 3 hosts of a lab whose containerd has none, with
// etcdadm's import operations (each archive streamed over SSH to the three
// hosts at once, imported with ctr, the pushed file removed, the digests
// checked), next to the floor: `ctr images import` of the same archives,
// already on each host, the three hosts at once. Before each iteration the
// images are removed with their content (not timed). MB/s counts the bytes
// imported on all hosts.
func BenchmarkImages(b *testing.B) {
	needLab(b)
	l := upLab(b, imagesLab)
	defer down(b, l)
	ctx := context.Background()
	c, _, err := config.Parse([]byte(l.Inventory(lab.InventoryOptions{Name: "bench"})), "bench inventory", b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	hs, err := hosts.Connect(ctx, c.Spec.Hosts, hosts.SSHConnector(c, remote.Config{SSHConfigFile: "none"}), len(l.Hosts), progress.NewLog(nil))
	if err != nil {
		b.Fatal(err)
	}
	defer hs.Close()
	hf, _, err := facts.Gather(ctx, hs.T[l.Hosts[0].Name], facts.Request{DataDir: "/var/lib/etcd", ManifestPath: "/etc/kubernetes/manifests/etcd.yaml", CAPath: "/etc/kubernetes/pki/etcd/ca.crt"}, "")
	if err != nil || !hf.Containerd.Known() {
		b.Fatalf("containerd facts: %+v, %v", hf.Containerd, err)
	}
	snapshotter := hf.Containerd.Snapshotter
	var imports []ops.ImportImage
	var total int64
	for _, p := range []string{l.Artifacts.EtcdImage, l.Artifacts.PauseImage} {
		a, err := images.Read(p)
		if err != nil {
			b.Fatal(err)
		}
		imports = append(imports, ops.ImportImage{Source: p, Archive: a, Snapshotter: snapshotter,
			Images: []ops.ImageImport{{Ref: a.Images[0].Ref, Digest: a.Images[0].Digest}}})
		total += a.Size
	}
	st := plan.Stage{Name: "images", Rollout: plan.AllAtOnce}
	for _, h := range l.Hosts {
		st.Hosts = append(st.Hosts, plan.HostOps{Host: h.Name, Ops: []plan.Op{imports[0], imports[1]}})
	}
	p := &plan.Plan{Stages: []plan.Stage{st}}
	clear := func(b *testing.B) {
		for _, h := range l.Hosts {
			// The CRI plugin adds a reference by image ID to every image.
			if _, err := h.Exec(ctx, "sh", "-c", "ctr -n k8s.io images ls -q | xargs -r ctr -n k8s.io images rm --sync"); err != nil {
				b.Fatal(err)
			}
			out, err := h.Exec(ctx, "ctr", "-n", "k8s.io", "images", "ls", "-q")
			if err != nil || strings.TrimSpace(string(out)) != "" {
				b.Fatalf("%s still has images: %q (%v)", h.Name, out, err)
			}
		}
	}
	b.Run("etcdadm-push-and-import", func(b *testing.B) {
		b.SetBytes(total * int64(len(l.Hosts)))
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			clear(b)
			x := &execute.Executor{Cluster: c, Runtime: pipeline.RuntimeFor(c), Hosts: hs, Concurrency: len(l.Hosts)}
			b.StartTimer()
			res, err := x.Run(ctx, p)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			for _, hr := range res.Hosts {
				if len(hr.Imported) != 2 {
					b.Fatalf("%s imported %v", hr.Host, hr.Imported)
				}
			}
		}
	})
	b.Run("floor-ctr-import-of-the-archive-on-the-host", func(b *testing.B) {
		b.SetBytes(total * int64(len(l.Hosts)))
		var names []string
		for _, op := range imports {
			data, err := os.ReadFile(op.Source)
			if err != nil {
				b.Fatal(err)
			}
			name := "/root/" + op.Archive.Images[0].Ref[strings.LastIndex(op.Archive.Images[0].Ref, "/")+1:] + ".tar"
			names = append(names, name)
			for _, h := range l.Hosts {
				if err := h.WriteFile(ctx, name, data, 0o600); err != nil {
					b.Fatal(err)
				}
			}
		}
		script := ""
		for _, n := range names {
			script += fmt.Sprintf("ctr -n k8s.io images import --snapshotter %s %s >/dev/null && ", snapshotter, n)
		}
		script += "true"
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			clear(b)
			b.StartTimer()
			var wg sync.WaitGroup
			errs := make([]error, len(l.Hosts))
			for j, h := range l.Hosts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[j] = h.Exec(ctx, "sh", "-c", script)
				}()
			}
			wg.Wait()
			b.StopTimer()
			for _, err := range errs {
				if err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
