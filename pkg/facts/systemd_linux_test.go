//go:build linux

package facts_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/etcdservice"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// fakeSystemctl puts a systemctl first on PATH that says state for
// `is-active etcd` and records its arguments.
func fakeSystemctl(t *testing.T, state string) string {
	t.Helper()
	bin := t.TempDir()
	calls := filepath.Join(bin, "calls")
	writeFile(t, filepath.Join(bin, "systemctl"), []byte(`#!/bin/sh
echo "$*" >> "`+calls+`"
case "$*" in "is-active etcd") echo `+state+`; [ `+state+` = active ];; *) echo inactive; exit 3;; esac
`), 0o755)
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	return calls
}

// A host whose etcd runs as a systemd service: its environment file is
// read as the member's manifest, its unit's state is read, containerd is
// not.
func TestGatherSystemd(t *testing.T) {
	calls := fakeSystemctl(t, "failed")
	fakeContainerd(t, ctrList, "", configDump1)
	root := t.TempDir()
	req := baseRequest(root)
	req.ManifestPath = filepath.Join(root, "etc", "etcd", "etcd.env")
	req.EtcdUnit = etcdservice.Unit
	env, err := etcdservice.EnvFile("n0", []string{"--name=n0", "--data-dir=/var/lib/etcd", "--initial-cluster=n0=https://192.0.2.10:2380", "--initial-cluster-state=new", "--snapshot-count=10000"})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, req.ManifestPath, env, 0o644)
	script, err := facts.Script(req)
	if err != nil {
		t.Fatal(err)
	}
	for _, absent := range []string{"ctr ", "show manifest"} {
		if strings.Contains(script, absent) {
			t.Errorf("the script reads %q:\n%s", absent, script)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h, _, err := facts.Gather(ctx, remote.NewLocal("n0", false), req, "")
	if err != nil {
		t.Fatal(err)
	}
	if h.EtcdActive != "failed" {
		t.Errorf("EtcdActive = %q, want failed", h.EtcdActive)
	}
	if h.Containerd != nil {
		t.Errorf("containerd was read: %+v", h.Containerd)
	}
	m := h.Manifest
	if m == nil || m.Err != "" || m.Name != "n0" || m.InitialCluster != "n0=https://192.0.2.10:2380" || m.InitialClusterState != "new" || m.DataDir != "/var/lib/etcd" || m.Flags["snapshot-count"] != "10000" || m.Image != "" {
		t.Errorf("manifest %+v", m)
	}
	if b, _ := os.ReadFile(calls); !strings.Contains(string(b), "is-active etcd") {
		t.Errorf("systemctl calls: %q", b)
	}

	// A static Pod's request reads neither.
	h, _, err = facts.Gather(ctx, remote.NewLocal("n0", false), baseRequest(root), "")
	if err != nil {
		t.Fatal(err)
	}
	if h.EtcdActive != "" || h.Containerd == nil {
		t.Errorf("static Pod request: EtcdActive %q, containerd %v", h.EtcdActive, h.Containerd)
	}
}

func TestParseEnvFileNotOurs(t *testing.T) {
	m := facts.ParseEnvFile([]byte("ETCD_NAME=n0\n"))
	if m.Err == "" || m.Name != "" {
		t.Errorf("a foreign environment file: %+v", m)
	}
}
