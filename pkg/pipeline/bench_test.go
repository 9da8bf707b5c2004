package pipeline_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/fakehost"
	"github.com/etcdadm-io/etcdadm/internal/testinv"
	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/pipeline"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// emptyHost answers the facts' script as a host with nothing of etcd does:
// root, its clock, no kubelet, nothing on etcd's ports, no file.
func emptyHost(name string) *fakehost.Host {
	h := fakehost.New(name)
	h.Handle(fakehost.Contains("uid"), func(context.Context, string, io.Reader) ([]byte, error) {
		now := time.Now()
		return fmt.Appendf(nil, "clock %d.%09d\nuid 0\nend\n", now.Unix(), now.Nanosecond()), nil
	})
	return h
}

// diffCluster is a stacked inventory of n hosts with its PKI saved: what
// `etcdadm diff` plans for hosts that hold nothing yet.
func diffCluster(tb testing.TB, n int) *config.Cluster {
	var inv strings.Builder
	inv.WriteString("apiVersion: etcdadm/v1alpha1\nkind: Cluster\nmetadata: {name: bench}\nspec:\n  topology: stacked\n  pki: {keyAlgorithm: ECDSA-P256}\n  hosts:\n")
	for i := range n {
		fmt.Fprintf(&inv, "  - {name: h%d, address: 198.18.60.%d}\n", i, i+10)
	}
	c := testinv.Parse(tb, inv.String(), tb.TempDir())
	if _, _, err := certs.Ensure(c, certs.Options{}); err != nil {
		tb.Fatal(err)
	}
	return c
}

// BenchmarkDiffInMemory is `etcdadm diff` on n hosts without SSH: the
// session opened on in-memory hosts (the PKI loaded and checked), the facts
// gathered and parsed, the plan built and printed. Its growth from 3 to 30
// hosts is etcdadm's own; the lab's BenchmarkDiff adds sshd and the hosts'
// commands, which share this machine's cores there.
func BenchmarkDiffInMemory(b *testing.B) {
	for _, n := range []int{3, 30} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			c := diffCluster(b, n)
			connect := func(_ context.Context, h config.Host) (remote.Transport, error) { return emptyHost(h.Name), nil }
			b.ResetTimer()
			for b.Loop() {
				s, err := pipeline.Open(context.Background(), c, pipeline.Options{Connect: connect, Concurrency: 32, ControlPlane: true})
				if err != nil {
					b.Fatal(err)
				}
				out, err := pipeline.Converge(context.Background(), s, pipeline.ConvergeOptions{DryRun: true}, pipeline.Hooks{})
				if err != nil {
					b.Fatal(err)
				}
				var text bytes.Buffer
				plan.WriteText(&text, out.Plan)
				if got := strings.Count(text.String(), "files would change"); got != n {
					b.Fatalf("%d hosts would change, want %d:\n%s", got, n, text.String())
				}
				s.Close()
			}
		})
	}
}
