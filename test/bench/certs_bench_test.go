// Package bench measures what users wait on, each next to a baseline run in
// the same process so that ratios, not absolute times, are compared.
package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	certsphase "k8s.io/kubernetes/cmd/kubeadm/app/phases/certs"
	configutil "k8s.io/kubernetes/cmd/kubeadm/app/util/config"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/kubeadmconfig"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/pipeline"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
)

func inventory(hosts int, alg string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: etcdadm/v1alpha1\nkind: Cluster\nmetadata: {name: bench}\nspec:\n  pki: {keyAlgorithm: %s}\n  hosts:\n", alg)
	for i := 0; i < hosts; i++ {
		fmt.Fprintf(&b, "  - {name: etcd%d, address: 10.%d.%d.%d}\n", i, i/65536, (i/256)%256, i%256+1)
	}
	return b.String()
}

func load(b *testing.B, hosts int, alg, dir string) *config.Cluster {
	c, _, err := config.Parse([]byte(inventory(hosts, alg)), "bench", dir)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkCertsGenerate makes a cluster's whole PKI from nothing: etcdadm's
// certs.Ensure, then kubeadm's own phases doing the same work the guide does
// (one etcd CA, then per host its kubeadmcfg.yaml loaded and four certificates).
func BenchmarkCertsGenerate(b *testing.B) {
	for _, hosts := range []int{3, 100} {
		for _, alg := range []string{"RSA-2048", "ECDSA-P256"} {
			b.Run(fmt.Sprintf("hosts=%d/%s/etcdadm", hosts, alg), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					c := load(b, hosts, alg, b.TempDir())
					if _, _, err := certs.Ensure(c, certs.Options{}); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(fmt.Sprintf("hosts=%d/%s/kubeadm", hosts, alg), func(b *testing.B) {
				c := load(b, hosts, alg, b.TempDir())
				cfgs := make([][]byte, len(c.Spec.Hosts))
				for i, h := range c.Spec.Hosts {
					data, err := kubeadmconfig.Build(c, h, manifests.InitialCluster(c.Spec.Hosts), manifests.StateNew).Marshal()
					if err != nil {
						b.Fatal(err)
					}
					cfgs[i] = data
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					kubeadmGenerate(b, cfgs, b.TempDir())
				}
			})
		}
	}
}

func kubeadmGenerate(b *testing.B, cfgs [][]byte, dir string) {
	// kubeadm's phases print progress to stdout, in the middle of the results.
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = devnull
	defer func() { os.Stdout = stdout; devnull.Close() }()
	caDir := filepath.Join(dir, "ca")
	first, err := configutil.BytesToInitConfiguration(cfgs[0], true)
	if err != nil {
		b.Fatal(err)
	}
	first.CertificatesDir = caDir
	if err := certsphase.CreateCACertAndKeyFiles(certsphase.KubeadmCertEtcdCA(), first); err != nil {
		b.Fatal(err)
	}
	ca, _ := os.ReadFile(filepath.Join(caDir, "etcd/ca.crt"))
	key, _ := os.ReadFile(filepath.Join(caDir, "etcd/ca.key"))
	for i, data := range cfgs {
		cfg, err := configutil.BytesToInitConfiguration(data, true)
		if err != nil {
			b.Fatal(err)
		}
		cfg.CertificatesDir = filepath.Join(dir, fmt.Sprint(i))
		mustWrite(b, filepath.Join(cfg.CertificatesDir, "etcd/ca.crt"), ca)
		mustWrite(b, filepath.Join(cfg.CertificatesDir, "etcd/ca.key"), key)
		for _, spec := range []*certsphase.KubeadmCert{
			certsphase.KubeadmCertEtcdServer(), certsphase.KubeadmCertEtcdPeer(),
			certsphase.KubeadmCertEtcdHealthcheck(), certsphase.KubeadmCertEtcdAPIClient(),
		} {
			if err := certsphase.CreateCertAndKeyFilesWithCA(spec, certsphase.KubeadmCertEtcdCA(), cfg); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkPlanRender builds and writes the plan of a cluster whose PKI exists.
func BenchmarkPlanRender(b *testing.B) {
	for _, hosts := range []int{3, 100} {
		b.Run(fmt.Sprintf("hosts=%d", hosts), func(b *testing.B) {
			c := load(b, hosts, "ECDSA-P256", b.TempDir())
			if _, _, err := certs.Ensure(c, certs.Options{}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, _, _, err := plan.Compute(c, pipeline.RuntimeFor(c), plan.Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func mustWrite(b *testing.B, p string, data []byte) {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		b.Fatal(err)
	}
}
