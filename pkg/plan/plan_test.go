package plan

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/etcdadm-io/etcdadm/pkg/backup"
	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

func load(t *testing.T, inventory string) (*config.Cluster, *Plan) {
	c, p, _ := loadPKI(t, inventory)
	return c, p
}

func loadPKI(t *testing.T, inventory string) (*config.Cluster, *Plan, *certs.PKI) {
	t.Helper()
	data, err := os.ReadFile(inventory)
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := config.Parse(data, inventory, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, pki, _, err := Compute(c, rtOf(c), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c, p, pki
}

// The generated files (all but certificates and keys) are compared with
// reviewed golden copies; go test ./pkg/plan -update rewrites them.
func TestGoldenFiles(t *testing.T) {
	for _, inv := range []string{"../../examples/cluster.yaml", "testdata/stacked-ipv6.yaml", "testdata/external-cgroupfs.yaml"} {
		name := strings.TrimSuffix(filepath.Base(inv), ".yaml")
		if name == "cluster" {
			name = "example"
		}
		t.Run(name, func(t *testing.T) {
			_, p := load(t, inv)
			for _, h := range p.Hosts {
				var listing strings.Builder
				for _, d := range h.Dirs {
					fmt.Fprintf(&listing, "dir  %04o %s\n", d.Mode, d.Path)
				}
				for _, f := range h.Files {
					fmt.Fprintf(&listing, "file %04o %s (%s)\n", f.Mode, f.Path, f.Part)
				}
				golden(t, filepath.Join("testdata/golden", name, h.Name, "PLAN"), listing.String())
				for _, f := range h.Files {
					if f.Part == PartCerts {
						continue
					}
					golden(t, filepath.Join("testdata/golden", name, h.Name, f.Path), string(f.Data))
				}
			}
		})
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./pkg/plan -update creates it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-golden +got):\n%s", path, diff)
	}
}

func TestExternalHostsNeverGetTheCAKey(t *testing.T) {
	_, p := load(t, "../../examples/cluster.yaml")
	for _, h := range p.Hosts {
		for _, f := range h.Files {
			if strings.HasSuffix(f.Path, "/ca.key") {
				t.Errorf("%s gets %s", h.Name, f.Path)
			}
		}
		if !slices.ContainsFunc(h.Files, func(f File) bool { return f.Path == "/etc/kubernetes/pki/etcd/ca.crt" }) {
			t.Errorf("%s lacks ca.crt", h.Name)
		}
	}
}

func TestStackedHostsGetTheCAKeyAndNoKubeletFiles(t *testing.T) {
	_, p := load(t, "testdata/stacked-ipv6.yaml")
	for _, h := range p.Hosts {
		i := slices.IndexFunc(h.Files, func(f File) bool { return f.Path == "/etc/kubernetes/pki/etcd/ca.key" })
		if i < 0 || h.Files[i].Mode != 0o600 || !h.Files[i].Secret {
			t.Errorf("%s: stacked members need ca.key (0600, secret)", h.Name)
		}
		for _, f := range h.Files {
			if f.Part == PartKubelet {
				t.Errorf("%s: stacked member gets kubelet file %s", h.Name, f.Path)
			}
		}
	}
}

func TestEachHostGetsOnlyItsOwnKeys(t *testing.T) {
	_, p, pki := loadPKI(t, "../../examples/cluster.yaml")
	keys := 0
	owner := map[string]string{}
	for host, leaves := range pki.Hosts {
		for _, kp := range leaves {
			owner[string(kp.KeyPEM)] = host
		}
	}
	for _, h := range p.Hosts {
		for _, f := range h.Files {
			o, ok := owner[string(f.Data)]
			if ok && o != h.Name {
				t.Errorf("%s gets %s's key %s", h.Name, o, f.Path)
			}
			if ok {
				keys++
			}
		}
	}
	// Server, peer, healthcheck-client and apiserver-etcd-client keys on each of 3 hosts.
	if keys != 12 {
		t.Errorf("%d of the PKI's keys are in the plan, want 12", keys)
	}
}

func TestPartsNarrowThePlan(t *testing.T) {
	data, _ := os.ReadFile("../../examples/cluster.yaml")
	c, _, err := config.Parse(data, "x", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Without certificates, no PKI is needed.
	p, err := Files(c, rtOf(c), nil, Options{Parts: []Part{PartManifests}, Hosts: []string{"infra1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Hosts) != 1 || len(p.Hosts[0].Files) != 1 || p.Hosts[0].Files[0].Path != "/etc/kubernetes/manifests/etcd.yaml" {
		t.Errorf("plan %+v", p.Hosts)
	}
	if _, err := Files(c, rtOf(c), nil, Options{Parts: []Part{PartCerts}}); err == nil {
		t.Error("certificates without a PKI were accepted")
	}
}

// The paths the facts read are the paths of the files the plan makes, for
// every kind of host.
func TestPathsAreTheFilesPaths(t *testing.T) {
	ext := newWorld(t, 3).withControlPlane(t, false, "cp0")
	sd := newSystemdWorld(t, 3)
	st := newWorld(t, 3)
	st.c.Spec.Topology = config.TopologyStacked
	for _, w := range []*world{ext, sd, st} {
		for _, h := range w.c.AllHosts() {
			var hp Host
			var err error
			if cp, ok := w.c.ControlPlaneHost(h.Name); ok {
				hp, err = ControlPlaneFiles(w.c, w.pki, cp, AllParts)
			} else {
				hp, err = HostFiles(w.c, rtOf(w.c), w.pki, h, Bootstrap(w.c), AllParts)
			}
			if err != nil {
				t.Fatal(err)
			}
			var files, dirs []string
			for _, f := range hp.Files {
				files = append(files, f.Path)
			}
			for _, d := range hp.Dirs {
				dirs = append(dirs, d.Path)
			}
			if !w.c.IsControlPlaneHost(h.Name) {
				// Backup files are read to be taken away.
				files = append(files, backup.Paths()...)
			}
			gotFiles, gotDirs := Paths(w.c, rtOf(w.c), h)
			if diff := cmp.Diff(files, gotFiles); diff != "" {
				t.Errorf("%s %s: files (-planned +paths):\n%s", w.c.Spec.Topology, h.Name, diff)
			}
			if diff := cmp.Diff(dirs, gotDirs); diff != "" {
				t.Errorf("%s %s: directories (-planned +paths):\n%s", w.c.Spec.Topology, h.Name, diff)
			}
		}
	}
}
