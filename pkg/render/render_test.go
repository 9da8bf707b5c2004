package render

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/runtime/kubelet"
)

func examplePlan(t *testing.T) *plan.Plan {
	t.Helper()
	data, err := os.ReadFile("../../examples/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := config.Parse(data, "cluster.yaml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, _, _, err := plan.Compute(c, kubelet.Runtime{}, plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWriteLaysOutHostTreesWithModesAndIndex(t *testing.T) {
	p := examplePlan(t)
	out := filepath.Join(t.TempDir(), "bundles")
	if err := Write(p, out); err != nil {
		t.Fatal(err)
	}
	for _, h := range p.Hosts {
		var idx Index
		b, err := os.ReadFile(filepath.Join(out, h.Name, IndexFile))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &idx); err != nil {
			t.Fatal(err)
		}
		if idx.Host != h.Name || len(idx.Files) != len(h.Files) {
			t.Fatalf("index of %s: %+v", h.Name, idx)
		}
		sums, _ := os.ReadFile(filepath.Join(out, h.Name, SumsFile))
		for _, e := range idx.Files {
			p := filepath.Join(out, h.Name, e.Path)
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			if hex.EncodeToString(sum[:]) != e.SHA256 || len(data) != e.Size {
				t.Errorf("%s: index does not describe the file", p)
			}
			st, _ := os.Stat(p)
			if got := st.Mode().Perm(); formatMode(got) != e.Mode {
				t.Errorf("%s mode %o, index says %s", p, got, e.Mode)
			}
			if !strings.Contains(string(sums), e.SHA256+"  "+strings.TrimPrefix(e.Path, "/")+"\n") {
				t.Errorf("SHA256SUMS lacks %s", e.Path)
			}
		}
		st, err := os.Stat(filepath.Join(out, h.Name, "etc/kubernetes/manifests"))
		if err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("manifests dir mode %v, want 0700", st.Mode())
		}
		if _, err := os.Stat(filepath.Join(out, h.Name, "etc/kubernetes/pki/etcd/ca.key")); err == nil {
			t.Errorf("%s's bundle holds the CA key", h.Name)
		}
		if st, _ := os.Stat(filepath.Join(out, h.Name, "etc/kubernetes/pki/etcd/server.key")); st.Mode().Perm() != 0o600 {
			t.Errorf("server.key mode %o", st.Mode().Perm())
		}
	}
	if st, _ := os.Stat(out); st.Mode().Perm() != 0o700 {
		t.Errorf("bundle dir mode %o, want 0700: it holds keys", st.Mode().Perm())
	}
}

func formatMode(m os.FileMode) string {
	return fmt.Sprintf("%04o", m)
}

func TestRerenderReplacesStaleFilesAndRefusesForeignDirs(t *testing.T) {
	p := examplePlan(t)
	out := t.TempDir()
	if err := Write(p, out); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(out, "infra0/etc/kubernetes/pki/etcd/ca.key")
	if err := os.WriteFile(stale, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Error("a stale file survived a re-render")
	}

	foreign := t.TempDir()
	if err := os.MkdirAll(filepath.Join(foreign, "infra1"), 0o755); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(foreign, "infra1", "notes.txt")
	if err := os.WriteFile(mine, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Write(p, foreign)
	if err == nil || !strings.Contains(err.Error(), "was not written by etcdadm render") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(mine); err != nil {
		t.Error("a foreign file was removed")
	}
	if _, err := os.Stat(filepath.Join(foreign, "infra0")); err == nil {
		t.Error("another host was rendered although the target was refused")
	}
}
