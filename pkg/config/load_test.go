package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the expected messages of testdata/invalid")

// Every file in testdata/invalid must fail with exactly the message in its .err file.
func TestInvalidInventories(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no invalid inventories: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = Parse(data, filepath.Base(f), "/inventory")
			if err == nil {
				t.Fatal("accepted an invalid inventory")
			}
			golden := strings.TrimSuffix(f, ".yaml") + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(err.Error()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, rerr := os.ReadFile(golden)
			if rerr != nil {
				t.Fatalf("%v (run go test ./pkg/config -update to create it)", rerr)
			}
			if diff := cmp.Diff(strings.TrimSpace(string(want)), err.Error()); diff != "" {
				t.Errorf("message differs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidInventories(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.yaml")
	files = append(files, "../../examples/cluster.yaml")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, warnings, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Spec.Hosts) == 0 || c.Spec.Topology == "" || c.Spec.Kubelet.CgroupDriver == "" {
				t.Errorf("defaults not filled: %+v", c.Spec)
			}
			even := len(c.Spec.Hosts)%2 == 0
			if even != (len(warnings) == 1) {
				t.Errorf("even member count %v, warnings %v", even, warnings)
			}
		})
	}
}

func TestEvenMembersWarning(t *testing.T) {
	_, warnings, err := Load("testdata/valid/even-members.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := "spec.hosts: 4 members tolerate no more failures than 3: quorum is 3 of 4, so the cluster survives 1 lost member(s); use an odd number"
	if len(warnings) != 1 || warnings[0].String() != want {
		t.Errorf("warnings = %v, want %q", warnings, want)
	}
}

func TestDefaults(t *testing.T) {
	c, _, err := Load("testdata/valid/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("testdata/valid")
	checks := map[string][2]string{
		"topology":          {string(c.Spec.Topology), "external"},
		"kubernetesVersion": {c.Spec.KubernetesVersion, "v1.37.2"},
		"image":             {c.EtcdImage(), "registry.k8s.io/etcd:3.7.0-0"},
		"pause":             {c.PauseImage(), "registry.k8s.io/pause:3.10.2"},
		"dataDir":           {c.Spec.Etcd.DataDir, "/var/lib/etcd"},
		"pki dir":           {c.PKIDir(), filepath.Join(abs, "pki")},
		"key algorithm":     {string(c.Spec.PKI.KeyAlgorithm), "RSA-2048"},
		"validity":          {c.CertificateValidity().String(), "8760h0m0s"},
		"ca validity":       {c.CACertificateValidity().String(), "87600h0m0s"},
		"cgroup driver":     {c.Spec.Kubelet.CgroupDriver, "systemd"},
		"runtime":           {c.Spec.Kubelet.ContainerRuntimeEndpoint, "unix:///var/run/containerd/containerd.sock"},
		"ssh user":          {c.Spec.SSH.User, ""},
		"known hosts":       {c.Spec.SSH.KnownHostsFile, ""},
	}
	for name, got := range checks {
		if got[0] != got[1] {
			t.Errorf("%s = %q, want %q", name, got[0], got[1])
		}
	}
}

func TestEtcdImageTagPerVersion(t *testing.T) {
	for v, want := range map[string]string{"v1.37.2": "3.7.0-0", "v1.36.0": "3.7.0-0", "v1.37.0-rc.1": "3.7.0-0"} {
		got, err := EtcdImageTag(v)
		if err != nil || got != want {
			t.Errorf("EtcdImageTag(%s) = %q, %v; want %q", v, got, err, want)
		}
	}
	for _, v := range []string{"v1.35.9", "v1.38.0", "v2.37.0", "1.37"} {
		if _, err := EtcdImageTag(v); err == nil {
			t.Errorf("EtcdImageTag(%s) accepted an unsupported version", v)
		}
	}
}

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*/*.yaml")
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, _, err := Parse(data, "fuzz.yaml", "/inventory")
		if err == nil {
			if c == nil || len(c.Spec.Hosts) == 0 {
				t.Fatalf("accepted an inventory without hosts")
			}
			// A valid inventory must give usable values without panicking.
			_ = c.CertificateValidity()
			_ = c.EtcdImage()
			return
		}
		if c != nil {
			t.Fatalf("returned a cluster with an error")
		}
		if strings.TrimSpace(err.Error()) == "" {
			t.Fatalf("empty error message")
		}
	})
}
