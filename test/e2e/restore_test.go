package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	snap "github.com/etcdadm-io/etcdadm/pkg/snapshot"
	"github.com/etcdadm-io/etcdadm/test/lab"
)

// restoreStory is a lab of three members whose data is restored, once cut
// short on purpose.
type restoreStory struct {
	*story
	members []*lab.Host
	// saved is the snapshot restored.
	saved string
	// made is where the cut restore made its data directories.
	made string
}

// TestIntegrationRestore: a restore killed (SIGKILL, its whole process
// group) right after the first host's data was replaced, the two others
// held back on purpose before theirs: apply then refuses and starts
// nothing; the same restore run again finishes it, making only the data
// of the hosts not restored yet: one cluster ID on every member, the
// snapshot's keys, not the later ones, nothing staged or recorded left.
// Then, after runs with --keep-backups 1, the data each restore replaced
// is still under the backup directory.
func TestIntegrationRestore(t *testing.T) {
	requireLab(t)
	st := newStory(t, lab.Options{Hosts: 3, Dir: "/var/tmp/etcdadm-e2e-restore", NamePrefix: "rst", Subnet: 22})
	runSteps(t, st, &restoreStory{story: st, members: st.lab.Hosts}, []step[*restoreStory]{
		{"three members with keys, a snapshot saved private, keys written after it", stepRestoreBringUp},
		{"a restore killed once the first host's data is replaced: apply refuses and starts nothing", stepRestoreCut},
		{"the same restore again finishes it: one cluster ID, the snapshot's keys, nothing left behind", stepRestoreFinished},
		{"runs with --keep-backups 1 keep the data each restore replaced", stepRestoreBackupsKept},
	})
}

func stepRestoreBringUp(t *testing.T, s *restoreStory) {
	s.write(t, s.members, nil)
	if r := s.etcdadm(t, "apply", "-f", s.story.file); r.err != nil || !strings.Contains(r.stdout, "cluster: 3/3 members healthy") {
		t.Fatalf("bring-up: %v\n%s", r.err, r.stdout)
	}
	cli := s.kv(t)
	put(t, cli, "/restore/in-snapshot", "yes")
	r := s.etcdadm(t, "snapshot", "save", "-f", s.story.file)
	if r.err != nil {
		t.Fatal(r.err)
	}
	files, _ := filepath.Glob(filepath.Join(s.dir, "snapshots", "*.db"))
	if len(files) != 1 {
		t.Fatalf("snapshots: %v", files)
	}
	s.saved = files[0]
	dir := filepath.Dir(s.saved)
	for p, want := range map[string]os.FileMode{dir: 0o700, s.saved: 0o600} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: %v, mode %v; want %04o", p, err, st.Mode(), want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, ".gitignore")); err != nil || !strings.Contains(string(b), "\n*\n") {
		t.Errorf("snapshots/.gitignore: %q %v", b, err)
	}
	put(t, cli, "/restore/after-snapshot", "gone")
}

// holdFind makes the host's find wait, when it moves the data directory's
// contents away (the swap's first step), until the file hold is gone, then
// fail if fail is there: the host's swap starts and goes no further.
func holdFind(t *testing.T, h *lab.Host) {
	t.Helper()
	wrapper := `#!/bin/sh
case "$*" in
"/var/lib/etcd -mindepth 1 -maxdepth 1"*)
  while [ -e /tmp/etcdadm-e2e-hold ]; do sleep 0.1; done
  [ -e /tmp/etcdadm-e2e-fail ] && exit 1;;
esac
exec /usr/bin/find "$@"
`
	if err := h.WriteFile(context.Background(), "/tmp/etcdadm-e2e-hold", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteFile(context.Background(), "/usr/local/bin/find", []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
}

// releaseFind lets the held finds fail, and puts find back.
func releaseFind(t *testing.T, h *lab.Host) {
	t.Helper()
	if _, err := h.Exec(context.Background(), "sh", "-c", "touch /tmp/etcdadm-e2e-fail && rm -f /tmp/etcdadm-e2e-hold && sleep 1 && rm -f /usr/local/bin/find /tmp/etcdadm-e2e-fail"); err != nil {
		t.Fatal(err)
	}
}

// clusterIDs are the cluster IDs of each host's data directory, read from
// its write-ahead log (0: none).
func clusterIDs(t *testing.T, hosts []*lab.Host) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, h := range hosts {
		b, err := h.Exec(context.Background(), "sh", "-c", "for w in /var/lib/etcd/member/wal/*.wal; do [ -f \"$w\" ] && head -c 4096 \"$w\"; break; done")
		if err != nil {
			t.Fatal(err)
		}
		_, cid, _ := facts.WALMetadata(b)
		out[h.Name] = etcdclient.FormatID(cid)
	}
	return out
}

func stepRestoreCut(t *testing.T, s *restoreStory) {
	ctx := context.Background()
	first, held := s.members[0], s.members[1:]
	before := clusterIDs(t, s.members)
	for _, h := range held {
		holdFind(t, h)
	}
	cmd := exec.Command(s.bin, "snapshot", "restore", "-f", s.story.file, "--yes", s.saved)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, killed whole: nothing of it runs on.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	cut := false
	start := time.Now()
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		// The swap removes the staged directory once its data is in place.
		if _, err := first.Exec(ctx, "sh", "-c", "ls /var/lib/etcdadm/backup/*/KEPT && [ -d /var/lib/etcd/member ] && [ ! -e /var/lib/.etcd.etcdadm-restore ]"); err == nil {
			cut = syscall.Kill(-pgid, syscall.SIGKILL) == nil
			break
		}
	}
	_ = cmd.Wait()
	for _, h := range held {
		releaseFind(t, h)
	}
	t.Logf("the cut restore, killed after %s:\n%s", time.Since(start).Round(time.Millisecond), out.String())
	if !cut {
		t.Fatal("the first host's data was never replaced")
	}
	after := clusterIDs(t, s.members)
	if after[first.Name] == before[first.Name] {
		t.Fatalf("%s still holds cluster %s", first.Name, after[first.Name])
	}
	for _, h := range held {
		if after[h.Name] != before[h.Name] {
			t.Fatalf("%s holds cluster %s, not its old %s: the test proves nothing", h.Name, after[h.Name], before[h.Name])
		}
	}
	t.Logf("cluster IDs before %v, after the cut %v", before, after)
	// This machine's record names the data the killed run made here.
	rec, err := snap.ReadRecord(filepath.Dir(s.saved))
	if err != nil || rec == nil || rec.TempDir == "" {
		t.Fatalf("this machine's record: %+v %v", rec, err)
	}
	if _, err := os.Stat(rec.TempDir); err != nil {
		t.Fatalf("the killed run's data made here: %v", err)
	}
	s.made = rec.TempDir
	for _, h := range s.members {
		if pids := h.PIDs("etcd"); len(pids) != 0 {
			t.Errorf("%s runs etcd %v after the cut restore's stop", h.Name, pids)
		}
	}

	// apply refuses, names the restore and how to finish it, and starts
	// nothing; nothing on the hosts changes.
	hostsBefore := snapshots(t, s.members)
	r := s.etcdadm(t, "apply", "-f", s.story.file)
	if r.err == nil || !strings.Contains(r.stderr, "has not finished") || !strings.Contains(r.stderr, "etcdadm snapshot restore '"+s.saved+"' --yes") || !strings.Contains(r.stderr, "--abort") {
		t.Errorf("apply during the cut restore: %v", r.err)
	}
	time.Sleep(2 * time.Second)
	for _, h := range s.members {
		if pids := h.PIDs("etcd"); len(pids) != 0 {
			t.Errorf("%s runs etcd %v after the refused apply", h.Name, pids)
		}
	}
	unchanged(t, hostsBefore, s.members)
	// status reads on, and lists the old data the first host's swap kept
	// and, on every host, the unfinished restore.
	r = s.etcdadm(t, "status", "-f", s.story.file, "-o", "json")
	var st struct {
		Members []struct {
			Name    string       `json:"name"`
			Kept    []facts.Kept `json:"kept"`
			Pending []string     `json:"pending"`
		} `json:"members"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, r.stdout)
	}
	for _, m := range st.Members {
		if (m.Name == first.Name) != (len(m.Kept) == 1) {
			t.Errorf("%s keeps %+v", m.Name, m.Kept)
		}
		if !slices.ContainsFunc(m.Pending, func(p string) bool { return strings.HasPrefix(p, facts.PendingRestore) }) {
			t.Errorf("%s's pending work lacks the restore: %v", m.Name, m.Pending)
		}
	}
	r = s.etcdadm(t, "status", "-f", s.story.file)
	if got := strings.Count(r.stdout, "an unfinished snapshot restore"); got != len(s.members) {
		t.Errorf("status names the unfinished restore on %d hosts, want %d:\n%s", got, len(s.members), r.stdout)
	}
}

func stepRestoreFinished(t *testing.T, s *restoreStory) {
	ctx := context.Background()
	start := time.Now()
	r := s.etcdadm(t, "snapshot", "restore", "-f", s.story.file, "--yes", s.saved)
	took := time.Since(start)
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("the second restore took %s", took.Round(time.Millisecond))
	if !strings.Contains(r.stdout+r.stderr, "1 of 3 hosts hold their restored data already") || !strings.Contains(r.stderr, "made 2 data directories") {
		t.Errorf("the second restore must go on from the first host's data and make the two others' only")
	}
	ids := clusterIDs(t, s.members)
	for _, h := range s.members {
		if ids[h.Name] != ids[s.members[0].Name] || ids[h.Name] == "0" {
			t.Errorf("cluster IDs %v: want one", ids)
			break
		}
	}
	// Each member answers as a member of that cluster.
	c, _, client := s.cluster(t)
	for _, h := range c.Spec.Hosts {
		cli, err := client.Connect(manifests.ClientURL(h))
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := cli.MemberList(cctx)
		cancel()
		cli.Close()
		if err != nil || etcdclient.FormatID(resp.Header.ClusterId) != ids[h.Name] || len(resp.Members) != 3 {
			t.Errorf("%s: member list %v %v, want 3 members of cluster %s", h.Name, resp, err, ids[h.Name])
		}
	}
	cli := s.kv(t)
	for k, want := range map[string]bool{"/restore/in-snapshot": true, "/restore/after-snapshot": false} {
		if _, ok, _ := get(t, cli, k); ok != want {
			t.Errorf("%s present %v after the restore, want %v", k, ok, want)
		}
	}
	for _, h := range s.members {
		out, err := h.Exec(ctx, "sh", "-c", "ls -a /var/lib /var/lib/etcdadm/pending")
		if err != nil || strings.Contains(string(out), ".etcd.etcdadm-restore") || strings.Contains(string(out), facts.PendingRestore) {
			t.Errorf("%s: staged data or a record left: %v\n%s", h.Name, err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(s.saved), snap.RecordName)); err == nil {
		t.Error("this machine's record is left")
	}
	if _, err := os.Stat(s.made); err == nil {
		t.Errorf("the data the killed run made here is left: %s", s.made)
	}
	if r := s.etcdadm(t, "apply", "-f", s.story.file); r.err != nil || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("apply after the restore: %v\n%s", r.err, r.stdout)
	}
}

func stepRestoreBackupsKept(t *testing.T, s *restoreStory) {
	ctx := context.Background()
	for i := range 3 {
		if r := s.etcdadm(t, "certs", "renew", "-f", s.story.file, "--keep-backups", "1", "etcd-healthcheck-client"); r.err != nil {
			t.Fatalf("renew %d: %v", i, r.err)
		}
		time.Sleep(time.Second) // one run directory a second
	}
	for _, h := range s.members {
		out, err := h.Exec(ctx, "sh", "-c", `cd /var/lib/etcdadm/backup && for d in *; do if [ -f "$d/KEPT" ]; then echo "kept $d $(cat "$d/KEPT" | tr '\n' ' ')"; [ -d "$d/var/lib/etcd/member/wal" ] && echo "data $d"; else echo "run $d"; fi; done`)
		if err != nil {
			t.Fatal(err)
		}
		text := string(out)
		t.Logf("%s backups:\n%s", h.Name, text)
		if n := strings.Count("\n"+text, "\nrun "); n != 1 {
			t.Errorf("%s keeps %d other run directories, want 1", h.Name, n)
		}
		if !strings.Contains(text, "pre-restore /var/lib/etcd "+facts.PendingRestore) || !strings.Contains(text, "data ") {
			t.Errorf("%s: the data a restore replaced is gone", h.Name)
		}
	}
	r := s.etcdadm(t, "status", "-f", s.story.file, "-o", "json")
	if r.err != nil || strings.Count(r.stdout, fmt.Sprintf("%q", facts.KeptPreRestore)) < 3 {
		t.Errorf("status -o json lists the kept data of fewer than 3 hosts: %v\n%s", r.err, r.stdout)
	}
}
