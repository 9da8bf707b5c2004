package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdadm-io/etcdadm/pkg/execute"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	snap "github.com/etcdadm-io/etcdadm/pkg/snapshot"
	"github.com/etcdadm-io/etcdadm/test/lab"
)

// kv is a client of the inventory's members with the healthcheck identity.
func (s *story) kv(t *testing.T) *clientv3.Client {
	t.Helper()
	c, _, client := s.cluster(t)
	cli, err := client.Connect(clientURLs(c)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func put(t *testing.T, cli *clientv3.Client, k, v string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := cli.Put(ctx, k, v)
	if err != nil {
		t.Fatalf("put %s: %v", k, err)
	}
	return r.Header.Revision
}

func get(t *testing.T, cli *clientv3.Client, k string) (string, bool, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, k)
	if err != nil {
		t.Fatalf("get %s: %v", k, err)
	}
	if len(r.Kvs) == 0 {
		return "", false, r.Header.Revision
	}
	return string(r.Kvs[0].Value), true, r.Header.Revision
}

// dataDirs lists each member's data directory with the member ID its WAL
// holds, and the running etcd's PIDs: what a refused restore must leave.
func dataState(t *testing.T, hosts []*lab.Host) string {
	t.Helper()
	var b strings.Builder
	for _, h := range hosts {
		out, err := h.Exec(context.Background(), "sh", "-c", "ls -la /var/lib/etcd /var/lib/etcd/member; ls -a /var/lib; ls /var/lib/etcdadm/backup 2>/dev/null")
		if err != nil {
			t.Fatalf("list %s: %v", h.Name, err)
		}
		fmt.Fprintf(&b, "%s:\n%s\npids %v\n", h.Name, out, h.PIDs("etcd"))
	}
	return b.String()
}

func stepSnapshotSave(t *testing.T, s *story) {
	cli := s.kv(t)
	put(t, cli, "/data/before", "kept")
	// Some 12 MB: big enough for the leader to hold its snapshot open
	// while its database file is read through its SSH connection, under
	// the writer.
	for i := range 48 {
		put(t, cli, fmt.Sprintf("/data/big/%02d", i), strings.Repeat(strconv.Itoa(i%10), 256<<10))
	}
	w := s.startWriter(t)
	out := filepath.Join(s.dir, "saved", "e2e.db")
	r := s.etcdadm(t, "snapshot", "save", "-f", s.file, "-o", out)
	s.stopWriter(t, w)
	if r.err != nil {
		t.Fatal(r.err)
	}
	st, err := os.Stat(out)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file: %v, mode %v; want 0600", err, st.Mode())
	}
	// The trailer, checked here without etcdadm's code.
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b[:len(b)-32])
	if len(b)%512 != 32 || !bytes.Equal(sum[:], b[len(b)-32:]) {
		t.Fatalf("the saved file's sha256 trailer does not match its %d bytes", len(b))
	}
	if !strings.Contains(r.stdout, fmt.Sprintf("sha256:   %x (checked)", sum)) || !regexp.MustCompile(`revision: \d+`).MatchString(r.stdout) || !strings.Contains(r.stdout, "member:   ") {
		t.Errorf("save should print revision, size, hash and member:\n%s", r.stdout)
	}
	meta, err := snap.ReadMeta(out)
	if err != nil || meta == nil || meta.Cluster != "e2e" || meta.SHA256 != fmt.Sprintf("%x", sum) || meta.Read != snap.ReadHeldFile {
		t.Fatalf("metadata next to the snapshot (read from the held file): %+v %v", meta, err)
	}
	if !strings.Contains(r.stdout, "read:     the member's database file") {
		t.Errorf("save should say how the database was read:\n%s", r.stdout)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(s.dir, "saved", ".*")); len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
	// The default name, through a named member.
	r = s.etcdadm(t, "snapshot", "save", "-f", s.file, "--member", s.lab.Hosts[2].Name)
	if r.err != nil || !strings.Contains(r.stdout, filepath.Join(s.dir, "snapshots", "e2e-")) || !strings.Contains(r.stdout, s.lab.Hosts[2].Name) {
		t.Errorf("save to the default place from %s: %v\n%s", s.lab.Hosts[2].Name, r.err, r.stdout)
	}
}

func stepRestoreRefused(t *testing.T, s *story) {
	members := s.lab.Hosts[:3]
	good := filepath.Join(s.dir, "saved", "e2e.db")
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(s.dir, "saved", "truncated.db")
	if err := os.WriteFile(truncated, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	corrupted := filepath.Join(s.dir, "saved", "corrupted.db")
	c := bytes.Clone(b)
	c[len(c)/3] ^= 0xff
	if err := os.WriteFile(corrupted, c, 0o600); err != nil {
		t.Fatal(err)
	}
	before, data := snapshots(t, members), dataState(t, members)
	for file, want := range map[string]string{truncated: "truncated or not a snapshot", corrupted: "sha256 mismatch"} {
		r := s.etcdadm(t, "snapshot", "restore", "-f", s.file, "--yes", file)
		if r.err == nil || !strings.Contains(r.stderr, want) {
			t.Errorf("restore of %s: %v, want %q", filepath.Base(file), r.err, want)
		}
	}
	// Another cluster's snapshot.
	other := filepath.Join(s.dir, "saved", "other.db")
	if err := os.WriteFile(other, b, 0o600); err != nil {
		t.Fatal(err)
	}
	meta, _ := os.ReadFile(snap.MetaPath(good))
	if err := os.WriteFile(snap.MetaPath(other), bytes.Replace(meta, []byte(`"cluster": "e2e"`), []byte(`"cluster": "prod"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := s.etcdadm(t, "snapshot", "restore", "-f", s.file, "--yes", other); r.err == nil || !strings.Contains(r.stderr, `snapshot of cluster "prod"`) || !strings.Contains(r.stderr, "--force") {
		t.Errorf("restore of another cluster's snapshot: %v", r.err)
	}
	// Without a terminal and without --yes.
	if r := s.etcdadm(t, "snapshot", "restore", "-f", s.file, good); r.err == nil || !strings.Contains(r.stderr, "without confirmation") {
		t.Errorf("restore without --yes: %v", r.err)
	}
	// Another run holds a host.
	ctx, cancel := context.WithCancel(context.Background())
	held := make(chan struct{})
	go func() {
		defer close(held)
		_, _ = members[1].Exec(ctx, "flock", facts.StateDir+"/lock", "sleep", "120")
	}()
	waitFor(t, "the lock on "+members[1].Name, 10*time.Second, func() bool {
		out, _ := members[1].Exec(context.Background(), "sh", "-c", "flock -n "+facts.StateDir+"/lock true || echo held")
		return strings.Contains(string(out), "held")
	})
	r := s.etcdadm(t, "snapshot", "restore", "-f", s.file, "--yes", good)
	cancel()
	<-held
	if r.err == nil || !strings.Contains(r.stderr, "another etcdadm run holds the host") || !strings.Contains(r.stderr, members[1].Name) {
		t.Errorf("restore while %s is held: %v", members[1].Name, r.err)
	}
	unchanged(t, before, members)
	if now := dataState(t, members); now != data {
		t.Errorf("the data directories changed:\nbefore:\n%s\nafter:\n%s", data, now)
	}
}

func stepRestore(t *testing.T, s *story) {
	members := s.lab.Hosts[:3]
	cli := s.kv(t)
	put(t, cli, "/data/in-snapshot", "yes")
	file := filepath.Join(s.dir, "saved", "restore.db")
	if r := s.etcdadm(t, "snapshot", "save", "-f", s.file, "-o", file); r.err != nil {
		t.Fatal(r.err)
	}
	after := put(t, cli, "/data/after-snapshot", "gone")
	old := s.members(t)
	start := time.Now()
	r := s.etcdadm(t, "snapshot", "restore", "-f", s.file, "--yes", file)
	took := time.Since(start)
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("restore of 3 members took %s", took.Round(time.Millisecond))
	cli = s.kv(t)
	for k, want := range map[string]bool{"/data/before": true, "/data/in-snapshot": true, "/data/after-snapshot": false} {
		if _, ok, _ := get(t, cli, k); ok != want {
			t.Errorf("%s present %v after the restore, want %v", k, ok, want)
		}
	}
	_, _, rev := get(t, cli, "/data/before")
	saved, err := snap.Verify(file)
	if err != nil {
		t.Fatal(err)
	}
	// Above the snapshot's by the bump, and above any revision a client saw.
	if rev < saved.Revision+snap.RevisionBump || rev <= after {
		t.Errorf("revision %d after the restore; the snapshot's was %d, the last one before the restore %d: want a jump of at least %d", rev, saved.Revision, after, int64(snap.RevisionBump))
	}
	now := s.members(t)
	if len(now) != 3 {
		t.Fatalf("members after the restore: %v", now)
	}
	for name, m := range now {
		if m.ID == old[name].ID {
			t.Errorf("%s kept its member ID %s", name, m.HexID())
		}
	}
	c, _, client := s.cluster(t)
	sts := client.Status(context.Background(), ops.Endpoints(c), 3*time.Second)
	if healthy, total := execute.Summary(sts); healthy != 3 || total != 3 {
		t.Errorf("%d/%d healthy after the restore", healthy, total)
	}
	for _, h := range members {
		out, err := h.Exec(context.Background(), "sh", "-c", "ls -d /var/lib/etcdadm/backup/*/var/lib/etcd/member/wal && ls -a /var/lib")
		if err != nil || strings.Contains(string(out), ".etcd.etcdadm-restore") {
			t.Errorf("%s: the old data must be under the backup directory and no staging left: %v\n%s", h.Name, err, out)
		}
	}
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("apply after the restore: %v\n%s", r.err, r.stdout)
	}
}

// manifestImage is the etcd image in a host's manifest.
func manifestImage(t *testing.T, h *lab.Host) string {
	t.Helper()
	b, err := h.ReadFile(context.Background(), "/etc/kubernetes/manifests/etcd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return facts.ParseManifest(b).Image
}

func withImageTag(tag string) func(string) string {
	return func(inv string) string {
		return strings.Replace(inv, "\n  hosts:\n", "\n  etcd: {imageTag: "+tag+"}\n  hosts:\n", 1)
	}
}

func stepUpgrade(t *testing.T, s *story) {
	ctx := context.Background()
	members := s.lab.Hosts[:3]
	for _, h := range members {
		if err := h.ImportImage(ctx, s.lab.Artifacts.EtcdNextImage); err != nil {
			t.Fatal(err)
		}
	}
	c, _, client := s.cluster(t)
	leader := ""
	for _, st := range client.Status(ctx, ops.Endpoints(c), 3*time.Second) {
		if st.Leader {
			leader = st.Name
		}
	}
	s.write(t, members, withImageTag(strings.TrimPrefix(lab.EtcdNextImage, "registry.k8s.io/etcd:")))
	if !strings.Contains(readFile(t, s.file), "imageTag: 3.7.3-0}") {
		t.Fatalf("the inventory has no image tag:\n%s", readFile(t, s.file))
	}
	w := s.startWriter(t)
	start := time.Now()
	r := s.etcdadm(t, "apply", "-f", s.file)
	took := time.Since(start)
	rep := s.stopWriter(t, w)
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("rolling upgrade of 3 members to %s took %s; longest write gap %s", lab.EtcdNextVersion, took.Round(time.Millisecond), rep.LongestGap.Round(time.Millisecond))
	m := regexp.MustCompile(`snapshot saved: (\S+) `).FindStringSubmatch(r.stderr)
	if m == nil || filepath.Dir(m[1]) != filepath.Join(s.dir, "snapshots") {
		t.Fatalf("the upgrade must save a snapshot under snapshots/ first and print its path:\n%s", r.stderr)
	}
	if _, err := snap.Verify(m[1]); err != nil {
		t.Errorf("the snapshot taken before the upgrade: %v", err)
	}
	if i, j := strings.Index(r.stderr, "snapshot saved"), strings.Index(r.stderr, "restarting etcd"); i < 0 || j < i {
		t.Errorf("the snapshot must come before the first restart")
	}
	checkUpgraded(t, r.stderr, leader, lab.EtcdNextVersion, client, c)
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("apply after the upgrade: %v\n%s", r.err, r.stdout)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func stepUpgradeBroken(t *testing.T, s *story) {
	ctx := context.Background()
	members := s.lab.Hosts[:3]
	current := manifestImage(t, members[0])
	etcdPIDs := pids(members, "etcd")
	// A tag no host has and no registry serves: the member cannot start.
	s.write(t, members, withImageTag("3.7.9-0"))
	w := s.startWriter(t)
	r := s.etcdadm(t, "apply", "-f", s.file, "--health-timeout", "40s")
	s.stopWriter(t, w)
	if r.err == nil || !strings.Contains(r.stderr, "back on its old manifest") {
		t.Fatalf("apply of a broken tag: %v, want the roll stopped and the member put back", r.err)
	}
	var first string
	for _, line := range strings.Split(r.stderr, "\n") {
		if strings.HasSuffix(line, "restarting etcd") && first == "" {
			first = strings.Trim(strings.Fields(line)[0], "[]")
		}
	}
	if n := strings.Count(r.stderr, "restarting etcd"); n != 2 {
		// the upgrade's restart, then the rollback's, on the first member only
		t.Errorf("%d restarts, want the first member's and its rollback", n)
	}
	after := pids(members, "etcd")
	c, _, client := s.cluster(t)
	sts := client.Status(ctx, ops.Endpoints(c), 3*time.Second)
	for _, h := range members {
		if img := manifestImage(t, h); img != current {
			t.Errorf("%s runs %s, want %s", h.Name, img, current)
		}
		if h.Name != first && fmt.Sprint(after[h.Name]) != fmt.Sprint(etcdPIDs[h.Name]) {
			t.Errorf("%s was restarted, but the roll stopped at %s", h.Name, first)
		}
	}
	if healthy, total := execute.Summary(sts); healthy != 3 || total != 3 {
		t.Errorf("%d/%d healthy after the rollback", healthy, total)
	}
	// Back to the tag the members run: only kubeadmcfg.yaml of the first
	// host differs, and nothing restarts.
	s.write(t, members, withImageTag(strings.TrimPrefix(current, "registry.k8s.io/etcd:")))
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || strings.Contains(r.stdout, "etcd restarted") {
		t.Errorf("apply back on %s: %v\n%s", current, r.err, r.stdout)
	}
}

func stepUpgradeSkipsMinor(t *testing.T, s *story) {
	members := s.lab.Hosts[:3]
	before := snapshots(t, members)
	snaps, _ := filepath.Glob(filepath.Join(s.dir, "snapshots", "*.db"))
	s.write(t, members, withImageTag("3.9.0-0"))
	r := s.etcdadm(t, "apply", "-f", s.file)
	if r.err == nil || !strings.Contains(r.stderr, "one minor version at a time") {
		t.Fatalf("apply skipping 3.8: %v", r.err)
	}
	unchanged(t, before, members)
	if now, _ := filepath.Glob(filepath.Join(s.dir, "snapshots", "*.db")); len(now) != len(snaps) {
		t.Errorf("a refused upgrade saved a snapshot: %v", now)
	}
	// Backups do not pile up: the story's runs made more than five. The
	// data the restore replaced is kept apart, and not counted.
	for _, h := range members {
		out, err := h.Exec(context.Background(), "sh", "-c", "cd /var/lib/etcdadm/backup && for d in *; do [ -f $d/KEPT ] || echo $d; done | wc -l; ls -d */var/lib/etcd/member/wal | wc -l")
		if err != nil {
			t.Fatal(err)
		}
		counts := strings.Fields(string(out))
		if n, _ := strconv.Atoi(counts[0]); n > 5 || n == 0 {
			t.Errorf("%s keeps %d backups, want 1 to 5", h.Name, n)
		}
		if kept, _ := strconv.Atoi(counts[1]); kept == 0 {
			t.Errorf("%s: the data the restore replaced was pruned", h.Name)
		}
	}
}
