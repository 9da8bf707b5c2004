//go:build linux

package facts_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

const testInventory = `apiVersion: etcdadm/v1alpha1
kind: Cluster
metadata:
  name: facts
spec:
  etcd:
    dataDir: /var/lib/etcd-facts
  hosts:
  - name: infra0
    address: 10.0.0.6
  - name: infra1
    address: 10.0.0.7
  - name: infra2
    address: 10.0.0.8
`

// TestGatherLocal builds a host under a temporary root and checks that one
// Gather through the local transport reads back every part of it.
func TestGatherLocal(t *testing.T) {
	root := t.TempDir()
	euid := os.Geteuid()

	// The data directory: two entries, a member directory without a WAL.
	dataDir := filepath.Join(root, "data")
	if err := os.MkdirAll(filepath.Join(dataDir, "member", "wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dataDir, ".hidden"), []byte("x"), 0o600)

	// The manifest, as etcdadm writes it.
	c, _, err := config.Parse([]byte(testInventory), "inventory", root)
	if err != nil {
		t.Fatal(err)
	}
	member := c.Spec.Hosts[1]
	initialCluster := manifests.InitialCluster(c.Spec.Hosts)
	pod := manifests.EtcdPod(c, member, initialCluster, manifests.StateExisting)
	const restart = "2026-01-02T03:04:05Z"
	pod.Annotations[manifests.RestartAnnotation] = restart
	podYAML, err := manifests.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	manifestPath := filepath.Join(root, "manifests", manifests.ManifestName)
	writeFile(t, manifestPath, podYAML, 0o600)

	// The CA file: two CAs, in this order.
	ca1, ca1PEM := newCA(t, "first CA")
	ca2, ca2PEM := newCA(t, "second CA")
	caData := append(append([]byte{}, ca1PEM...), ca2PEM...)
	caPath := filepath.Join(root, "pki", "ca.crt")
	writeFile(t, caPath, caData, 0o644)

	// Planned files and directories.
	pki := filepath.Join(root, "pki")
	type planned struct {
		path    string
		data    []byte
		mode    fs.FileMode // what chmod is given
		want    fs.FileMode // what FileState.Mode must be
		uid     int         // -1: leave the owner as created
		gid     int
		wantDat bool
	}
	files := []planned{
		{path: filepath.Join(pki, "server.key"), data: []byte("secret key\n"), mode: 0o600, want: 0o600, uid: 1234, gid: 5678},
		{path: filepath.Join(root, "conf", "kubeadmcfg.yaml"), data: []byte("kind: ClusterConfiguration\n"), mode: 0o644, want: 0o644, uid: -1},
		{path: filepath.Join(root, "bin", "helper"), data: []byte("#!/bin/sh\n"), mode: 0o755 | fs.ModeSetgid, want: 0o755 | fs.ModeSetgid, uid: -1},
		{path: filepath.Join(pki, "server.crt"), data: ca2PEM, mode: 0o644, want: 0o644, uid: -1, wantDat: true},
		// Quoting: a space, a quote, a dollar and a glob in the name.
		{path: filepath.Join(root, "conf", "it's $HOME *.conf"), data: []byte("q\n"), mode: 0o640, want: 0o640, uid: -1},
		// An empty certificate still has its (empty) content read.
		{path: filepath.Join(pki, "empty.crt"), data: nil, mode: 0o644, want: 0o644, uid: -1, wantDat: true},
	}
	for _, f := range files {
		writeFile(t, f.path, f.data, f.mode)
		if f.uid >= 0 && euid == 0 {
			if err := os.Chown(f.path, f.uid, f.gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	missingFile := filepath.Join(pki, "missing.crt")
	plannedDir := filepath.Join(root, "pki")
	if err := os.Chmod(plannedDir, 0o750); err != nil {
		t.Fatal(err)
	}
	missingDir := filepath.Join(root, "no-such-dir")

	// Pending work, plus a directory the markers' loop must skip.
	stateDir := filepath.Join(root, "state")
	for _, m := range []string{facts.PendingKubeletRestart, facts.PendingEtcdRestart} {
		writeFile(t, filepath.Join(stateDir, "pending", m), nil, 0o600)
	}
	if err := os.Mkdir(filepath.Join(stateDir, "pending", "not-a-marker"), 0o700); err != nil {
		t.Fatal(err)
	}
	stateBefore := entries(t, stateDir)

	// The client port: this test's own listener when ss can see it.
	_, port := listen(t)

	req := facts.Request{
		DataDir:      dataDir,
		ManifestPath: manifestPath,
		CAPath:       caPath,
		Dirs:         []string{plannedDir, missingDir},
		ClientPort:   port,
		StateDir:     stateDir,
	}
	for _, f := range files {
		req.Files = append(req.Files, f.path)
	}
	req.Files = append(req.Files, missingFile)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr := remote.NewLocal("local", false)
	defer tr.Close()
	h, lock, err := facts.Gather(ctx, tr, req, "")
	if err != nil {
		t.Fatal(err)
	}
	if lock != nil {
		t.Errorf("a read-only Gather returned a lock")
		lock.Release()
	}

	if h.Name != "local" {
		t.Errorf("Name = %q", h.Name)
	}
	if h.UID != euid {
		t.Errorf("UID = %d, want %d", h.UID, euid)
	}
	wantKubelet, _ := exec.LookPath("kubelet")
	if h.Kubelet != wantKubelet {
		t.Errorf("Kubelet = %q, want %q", h.Kubelet, wantKubelet)
	}
	fi, statErr := os.Stat("/usr/bin/kubelet")
	if wantBin := statErr == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0; h.KubeletBin != wantBin {
		t.Errorf("KubeletBin = %v, want %v", h.KubeletBin, wantBin)
	}

	// Listeners and etcd's process.
	if haveSS() {
		if h.NoSS {
			t.Errorf("NoSS set although ss is installed")
		}
		for _, l := range h.Listeners {
			if l.Port < 2379 || l.Port > 2381 || l.Line == "" || l.Process == "" {
				t.Errorf("listener %+v is not on one of etcd's ports", l)
			}
		}
		want := []facts.Process{{PID: os.Getpid(), Start: ownStart(t)}}
		got := slices.Clone(h.Etcd)
		for i := range got {
			got[i].Cgroup = "" // depends on where the tests run
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Etcd (the client port's listener is this test) (-want +got):\n%s", diff)
		}
		if !h.RunsEtcd() {
			t.Errorf("RunsEtcd() = false")
		}
	} else {
		if !h.NoSS || len(h.Listeners) != 0 || len(h.Etcd) != 0 {
			t.Errorf("without ss: NoSS %v, listeners %v, etcd %v", h.NoSS, h.Listeners, h.Etcd)
		}
	}

	// The data directory.
	if want := (facts.DataDir{Exists: true, Entries: 2}); h.DataDir != want {
		t.Errorf("DataDir = %+v, want %+v", h.DataDir, want)
	}
	if h.DataDir.Empty() {
		t.Errorf("DataDir.Empty() with two entries")
	}

	// The manifest.
	if h.Manifest == nil {
		t.Fatal("no manifest")
	}
	m := h.Manifest
	if m.Err != "" {
		t.Errorf("Manifest.Err = %s", m.Err)
	}
	gotM := map[string]string{
		"Name": m.Name, "InitialCluster": m.InitialCluster, "InitialClusterState": m.InitialClusterState,
		"Image": m.Image, "DataDir": m.DataDir, "Restart": m.Restart,
		"trusted-ca-file": m.Flags["trusted-ca-file"],
	}
	wantM := map[string]string{
		"Name": "infra1", "InitialCluster": initialCluster, "InitialClusterState": manifests.StateExisting,
		"Image": c.EtcdImage(), "DataDir": "/var/lib/etcd-facts", "Restart": restart,
		"trusted-ca-file": manifests.EtcdPKIDir + "/ca.crt",
	}
	if diff := cmp.Diff(wantM, gotM); diff != "" {
		t.Errorf("manifest (-want +got):\n%s", diff)
	}
	if initialCluster != "infra0=https://10.0.0.6:2380,infra1=https://10.0.0.7:2380,infra2=https://10.0.0.8:2380" {
		t.Errorf("unexpected initial cluster %s", initialCluster)
	}
	if !bytes.Equal(m.Data, podYAML) {
		t.Errorf("Manifest.Data differs from the file")
	}
	if names := facts.ParseInitialCluster(m.InitialCluster); len(names) != 3 || names["infra2"][0] != "https://10.0.0.8:2380" {
		t.Errorf("ParseInitialCluster(--initial-cluster) = %v", names)
	}

	// The CA.
	if !bytes.Equal(h.CAData, caData) {
		t.Errorf("CAData differs from the file")
	}
	if len(h.TrustedCAs) != 2 || !h.TrustedCAs[0].Equal(ca1) || !h.TrustedCAs[1].Equal(ca2) {
		var cns []string
		for _, c := range h.TrustedCAs {
			cns = append(cns, c.Subject.CommonName)
		}
		t.Errorf("TrustedCAs = %v, want [first CA, second CA]", cns)
	}

	// Files and directories.
	wantFiles := map[string]facts.FileState{}
	for _, f := range files {
		uid, gid := owner(t, f.path)
		if f.uid >= 0 && euid == 0 {
			uid, gid = f.uid, f.gid
		}
		st := facts.FileState{Mode: f.want, UID: uid, GID: gid, SHA256: sha256Hex(f.data)}
		if f.wantDat {
			st.Data = f.data
			if st.Data == nil {
				st.Data = []byte{}
			}
		}
		wantFiles[f.path] = st
	}
	uid, gid := owner(t, plannedDir)
	wantFiles[plannedDir] = facts.FileState{Mode: 0o750, UID: uid, GID: gid, Dir: true}
	if diff := cmp.Diff(wantFiles, h.Files); diff != "" {
		t.Errorf("Files (-want +got):\n%s", diff)
	}
	if st := h.Files[filepath.Join(pki, "server.key")]; euid == 0 && (st.UID != 1234 || st.GID != 5678) {
		t.Errorf("chowned file: uid %d gid %d, want 1234 5678", st.UID, st.GID)
	}
	if st := h.Files[filepath.Join(root, "bin", "helper")]; st.Mode&fs.ModeSetgid == 0 || st.Mode.Perm() != 0o755 {
		t.Errorf("setgid file: mode %v", st.Mode)
	}
	for _, p := range []string{missingFile, missingDir} {
		if _, ok := h.Files[p]; ok {
			t.Errorf("%s does not exist but is in Files", p)
		}
	}

	// Pending work, the clock.
	slices.Sort(h.Pending)
	if want := []string{facts.PendingEtcdRestart, facts.PendingKubeletRestart}; !slices.Equal(h.Pending, want) {
		t.Errorf("Pending = %q, want %q", h.Pending, want)
	}
	if !h.HasPending(facts.PendingKubeletRestart) || !h.HasPending(facts.PendingEtcdRestart) || h.HasPending("other") {
		t.Errorf("HasPending wrong for %q", h.Pending)
	}
	if h.ClockSkew < -time.Second || h.ClockSkew > time.Second {
		t.Errorf("ClockSkew = %v on the same machine", h.ClockSkew)
	}
	if h.ClockError <= 0 || h.ClockError > 20*time.Second {
		t.Errorf("ClockError = %v", h.ClockError)
	}
	if d := h.ClockSkew.Abs(); d > h.ClockError+10*time.Millisecond {
		t.Errorf("ClockSkew %v outside ClockError %v on the same machine", h.ClockSkew, h.ClockError)
	}

	// Reading wrote nothing.
	if after := entries(t, stateDir); !slices.Equal(after, stateBefore) {
		t.Errorf("state dir before %v, after %v", stateBefore, after)
	}
}

// TestGatherNothingThere: nothing exists; every optional part is
// absent rather than an error.
func TestGatherNothingThere(t *testing.T) {
	root := t.TempDir()
	req := baseRequest(root)
	req.Files = []string{root + "/a.crt", root + "/b.key"}
	req.Dirs = []string{root + "/d"}
	req.ClientPort = freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, _, err := facts.Gather(ctx, remote.NewLocal("n1", false), req, "")
	if err != nil {
		t.Fatal(err)
	}
	if h.DataDir != (facts.DataDir{}) || !h.DataDir.Empty() {
		t.Errorf("DataDir = %+v", h.DataDir)
	}
	if h.Manifest != nil || h.CAData != nil || h.TrustedCAs != nil || len(h.Files) != 0 || h.Pending != nil || h.RunsEtcd() {
		t.Errorf("got %+v", h)
	}
	if h.Files == nil {
		t.Errorf("Files is nil, callers index it")
	}
	if entries(t, root) != nil {
		t.Errorf("a read-only Gather created %v", entries(t, root))
	}
}

func TestScriptRejectsPaths(t *testing.T) {
	good := facts.Request{DataDir: "/var/lib/etcd", ManifestPath: "/etc/kubernetes/manifests/etcd.yaml", CAPath: "/etc/kubernetes/pki/etcd/ca.crt"}
	for name, mutate := range map[string]func(*facts.Request){
		"relative data dir":   func(r *facts.Request) { r.DataDir = "var/lib/etcd" },
		"empty data dir":      func(r *facts.Request) { r.DataDir = "" },
		"empty manifest":      func(r *facts.Request) { r.ManifestPath = "" },
		"relative CA":         func(r *facts.Request) { r.CAPath = "ca.crt" },
		"newline in a file":   func(r *facts.Request) { r.Files = []string{"/etc/a\nfile /etc/passwd"} },
		"relative file":       func(r *facts.Request) { r.Files = []string{"/etc/ok", "pki/ca.crt"} },
		"newline in a dir":    func(r *facts.Request) { r.Dirs = []string{"/etc/\n"} },
		"relative dir":        func(r *facts.Request) { r.Dirs = []string{"./x"} },
		"newline in data dir": func(r *facts.Request) { r.DataDir = "/var/lib/etcd\necho end" },
	} {
		t.Run(name, func(t *testing.T) {
			r := good
			mutate(&r)
			if s, err := facts.Script(r); err == nil {
				t.Errorf("Script accepted %+v:\n%s", r, s)
			}
			if _, _, err := facts.Gather(context.Background(), remote.NewLocal("x", false), r, ""); err == nil {
				t.Errorf("Gather accepted %+v", r)
			}
		})
	}
	s, err := facts.Script(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sport = :2379 ", "'/var/lib/etcdadm/pending'/*", "echo end\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("default script lacks %q", want)
		}
	}
}

// A planned file or directory reached through a symbolic link is described
// as its target: sha256, mode, owner and type of one and the same file.
func TestGatherSymlinkedPlannedFile(t *testing.T) {
	root := t.TempDir()
	target := filepath.Join(root, "real", "server.key")
	writeFile(t, target, []byte("key"), 0o600)
	link := filepath.Join(root, "pki", "server.key")
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	dirLink := filepath.Join(root, "pki-dir")
	if err := os.Symlink(filepath.Join(root, "real"), dirLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "real"), 0o750); err != nil {
		t.Fatal(err)
	}
	req := baseRequest(root)
	req.Files = []string{link}
	req.Dirs = []string{dirLink}
	req.ClientPort = freePort(t)
	h, _, err := facts.Gather(context.Background(), remote.NewLocal("local", false), req, "")
	if err != nil {
		t.Fatal(err)
	}
	st := h.Files[link]
	if st.SHA256 != sha256Hex([]byte("key")) {
		t.Errorf("SHA256 = %s, want the target's", st.SHA256)
	}
	if st.Mode != 0o600 {
		t.Errorf("Mode = %v for a link to a 0600 file whose SHA256 is reported", st.Mode)
	}
	if d := h.Files[dirLink]; !d.Dir || d.Mode != 0o750 {
		t.Errorf("a planned directory reached through a link: Dir %v, Mode %v", d.Dir, d.Mode)
	}
}

// A path holding a backslash comes back as it is: dash's echo would expand
// escapes in it.
func TestGatherPathWithBackslash(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, `a\tb.crt`)
	writeFile(t, p, []byte("pem"), 0o644)
	req := baseRequest(root)
	req.Files = []string{p}
	req.ClientPort = freePort(t)
	h, _, err := facts.Gather(context.Background(), remote.NewLocal("local", false), req, "")
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := h.Files[p]; !ok || string(st.Data) != "pem" {
		var got []string
		for k := range h.Files {
			got = append(got, k)
		}
		t.Errorf("planned file %q not reported as it is (Files has %q)", p, got)
	}
}

// A manifest a restart held back (a run cut in the middle of it) is read
// as the host's manifest while the manifest itself is missing; the
// manifest, when there, wins.
func TestGatherHeldManifest(t *testing.T) {
	root := t.TempDir()
	req := baseRequest(root)
	req.ManifestPath = filepath.Join(root, "manifests", "etcd.yaml")
	req.HeldManifestPath = filepath.Join(root, "manifests", ".etcd.yaml.etcdadm-restart")
	req.Files = []string{req.ManifestPath}
	req.ClientPort = freePort(t)
	pod := func(image string) []byte {
		return []byte("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: etcd\n    image: " + image + "\n")
	}
	if err := os.MkdirAll(filepath.Dir(req.ManifestPath), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, req.HeldManifestPath, pod("held"), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, _, err := facts.Gather(ctx, remote.NewLocal("n1", false), req, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, there := h.Files[req.ManifestPath]; h.Manifest == nil || h.Manifest.Image != "held" || there {
		t.Errorf("manifest %+v, file there %v; want the held one read, the manifest missing", h.Manifest, there)
	}
	writeFile(t, req.ManifestPath, pod("current"), 0o600)
	if h, _, err = facts.Gather(ctx, remote.NewLocal("n1", false), req, ""); err != nil || h.Manifest.Image != "current" {
		t.Errorf("both there: %+v, %v", h.Manifest, err)
	}
}
