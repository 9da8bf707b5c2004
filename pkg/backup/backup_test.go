package backup

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdadm-io/etcdadm/internal/etcdtest"
	"github.com/etcdadm-io/etcdadm/pkg/snapshot"
)

// members are clients of each member of a 3-member cluster started in the
// test process.
func members(t *testing.T) (*etcdtest.Cluster, []*clientv3.Client) {
	t.Helper()
	c := etcdtest.Start(t, 3)
	var clis []*clientv3.Client
	for _, m := range c.Members {
		cli, err := c.Client(t, nil).Connect(m.ClientURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		clis = append(clis, cli)
	}
	return c, clis
}

// Members that run at once for the same period take one backup: the first
// to claim it; the others wait for it and find it taken. Another period,
// or a run on demand, takes another.
func TestElectOnePerPeriod(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	_, clis := members(t)
	ctx := context.Background()
	period := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	var taken, skipped []string
	var wg sync.WaitGroup
	for i, cli := range clis {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("m%d", i)
			turn, skip, err := Elect(ctx, cli, "prod", name, period, false, nil)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if turn == nil {
				skipped = append(skipped, skip)
				return
			}
			taken = append(taken, name)
			// Hold the turn a moment: the others wait, then find it taken.
			time.Sleep(300 * time.Millisecond)
			if err := turn.Holds(ctx); err != nil {
				t.Error(err)
			}
			if err := turn.Done(ctx, Last{Period: period, Member: name, Object: "k", At: time.Now()}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if len(taken) != 1 || len(skipped) != 2 {
		t.Fatalf("taken by %v, skipped %v: want one member", taken, skipped)
	}
	for _, s := range skipped {
		if !strings.Contains(s, "taken already") || !strings.Contains(s, "by "+taken[0]) {
			t.Errorf("skip reason %q", s)
		}
	}
	next := period.Add(6 * time.Hour)
	turn, skip, err := Elect(ctx, clis[1], "prod", "m1", next, false, nil)
	if err != nil || turn == nil {
		t.Fatalf("next period: %v %q", err, skip)
	}
	if err := turn.Done(ctx, Last{Period: next, Member: "m1"}); err != nil {
		t.Fatal(err)
	}
	turn, skip, err = Elect(ctx, clis[2], "prod", "m2", time.Time{}, true, nil)
	if err != nil || turn == nil {
		t.Fatalf("on demand: %v %q", err, skip)
	}
	turn.Release()
}

// A member that claims the turn and then fails (or dies: its lease ends)
// blocks nobody: a member waiting for it takes its turn.
func TestElectAfterFailureOrDeath(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	c, clis := members(t)
	ctx := context.Background()
	period := time.Date(2026, 3, 10, 18, 0, 0, 0, time.UTC)
	turn, _, err := Elect(ctx, clis[0], "prod", "m0", period, false, nil)
	if err != nil || turn == nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		waited := ""
		t2, skip, err := Elect(ctx, clis[1], "prod", "m1", period, false, func(h Claim) { waited = h.Member })
		if err != nil || t2 == nil {
			got <- fmt.Sprintf("error %v, skip %q", err, skip)
			return
		}
		t2.Release()
		got <- "took it after waiting for " + waited
	}()
	time.Sleep(200 * time.Millisecond)
	turn.Release()
	if s := <-got; s != "took it after waiting for m0" {
		t.Fatalf("after a failed member: %s", s)
	}

	// A member whose process dies keeps its claim until its lease ends.
	dead, _, err := Elect(ctx, clis[2], "prod", "m2", period, false, nil)
	if err != nil || dead == nil {
		t.Fatal(err)
	}
	dead.stop()
	start := time.Now()
	t3, skip, err := Elect(ctx, clis[1], "prod", "m1", period, false, nil)
	if err != nil || t3 == nil {
		t.Fatalf("after a dead member: %v %q", err, skip)
	}
	if waited := time.Since(start); waited > LeaseTTL+5*time.Second {
		t.Errorf("waited %s for a dead member's lease of %s", waited, LeaseTTL)
	}
	if err := dead.Holds(ctx); err == nil {
		t.Error("the dead member still holds its turn")
	}
	t3.Release()
	_ = c
}

// The stream pipeline: a snapshot encrypted for a recipient decrypts to
// the same bytes, with its revision and keys; one byte flipped anywhere in
// it is refused.
func TestEncode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	_, clis := members(t)
	ctx := context.Background()
	for i := range 300 {
		if _, err := clis[0].Put(ctx, fmt.Sprintf("/k/%03d", i), strings.Repeat("v", 400)); err != nil {
			t.Fatal(err)
		}
	}
	// A linearizable read through the follower waits until it has applied
	// every put above, so its snapshot holds all 300 keys.
	if _, err := clis[1].Get(ctx, "/k/299"); err != nil {
		t.Fatal(err)
	}
	resp, err := clis[1].SnapshotWithVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(resp.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	var enc bytes.Buffer
	info, err := Encode(&enc, bytes.NewReader(data), []age.Recipient{id.Recipient()})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(enc.Bytes(), []byte("age-encryption.org/v1\n")) {
		t.Errorf("not age: %q", enc.Bytes()[:30])
	}
	dec, err := age.Decrypt(&enc, id)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(dec)
	if !bytes.Equal(plain, data) {
		t.Fatal("decrypted, the snapshot differs")
	}
	p := filepath.Join(t.TempDir(), "s.db")
	writeFile(t, p, plain)
	want, err := snapshot.Verify(p)
	if err != nil {
		t.Fatal(err)
	}
	if info.Revision != want.Revision || info.Keys != want.Keys || info.Keys < 300 || info.SHA256 != want.SHA256 {
		t.Errorf("encode read %+v, etcdutl %+v", info, want)
	}
	for _, at := range []int{100, len(data) / 3, len(data) - 10} {
		bad := bytes.Clone(data)
		bad[at] ^= 0x01
		if _, err := Encode(io.Discard, bytes.NewReader(bad), []age.Recipient{id.Recipient()}); err == nil {
			t.Errorf("a byte flipped at %d: accepted", at)
		}
	}
}

func TestPrunable(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	whole := func(k string, age time.Duration) Backup {
		return Backup{Key: k, Object: &Object{Key: k, Size: 10, LastModified: now.Add(-age)}, Manifest: &Manifest{Object: k, ObjectSize: 10, TakenAt: now.Add(-age)}}
	}
	broken := func(b Backup, problem string) Backup { b.Problem = problem; return b }
	backups := []Backup{
		broken(Backup{Key: "p/c/5.db.age", Object: &Object{Size: 3, LastModified: now.Add(-time.Hour)}}, "no manifest"),
		whole("p/c/4.db.age", 2*time.Hour),
		broken(Backup{Key: "p/c/3.db.age", Object: &Object{Size: 3, LastModified: now.Add(-8 * time.Hour)}}, "no manifest"),
		whole("p/c/2.db.age", 12*time.Hour),
		whole("p/c/1.db.age", 18*time.Hour),
	}
	incomplete := []Object{{Key: "p/c/.incomplete/a", LastModified: now.Add(-time.Minute)}, {Key: "p/c/.incomplete/b", LastModified: now.Add(-7 * time.Hour)}}
	got := Prunable(backups, incomplete, 2, now)
	want := []string{"p/c/3.db.age", "p/c/1.db.age.json", "p/c/1.db.age", "p/c/.incomplete/b"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("keep 2: prune %v, want %v", got, want)
	}
	// The newest whole backup stays, whatever keep says and whatever
	// newer remains are there.
	for _, keep := range []int{0, 1} {
		for _, k := range Prunable(backups, nil, keep, now) {
			if strings.HasPrefix(k, "p/c/4.db.age") {
				t.Errorf("keep %d prunes the newest whole backup: %v", keep, k)
			}
		}
	}
	if got := Prunable(backups[:1], nil, 1, now); len(got) != 0 {
		t.Errorf("an upload an hour old is pruned: %v", got)
	}
}

func TestTextfile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "collector", "etcdadm_backup.prom")
	tf := ReadTextfile(p, "prod")
	end := time.Unix(1773144000, 0)
	tf.Success(end, 2500*time.Millisecond, 12345678, 9001)
	if err := tf.Write(p); err != nil {
		t.Fatal(err)
	}
	tf = ReadTextfile(p, "prod")
	tf.Failure(end.Add(time.Hour))
	tf.Failure(end.Add(2 * time.Hour))
	if err := tf.Write(p); err != nil {
		t.Fatal(err)
	}
	got := string(ReadTextfile(p, "prod").Bytes())
	for _, want := range []string{
		"# TYPE etcdadm_backup_failures_total counter\netcdadm_backup_failures_total{cluster=\"prod\"} 2\n",
		"etcdadm_backup_last_success_timestamp_seconds{cluster=\"prod\"} 1773144000\n",
		"etcdadm_backup_last_duration_seconds{cluster=\"prod\"} 2.5\n",
		"etcdadm_backup_last_size_bytes{cluster=\"prod\"} 12345678\n",
		"etcdadm_backup_last_revision{cluster=\"prod\"} 9001\n",
		"etcdadm_backup_last_run_success{cluster=\"prod\"} 0\n",
		"etcdadm_backup_last_run_timestamp_seconds{cluster=\"prod\"} 1773151200\n",
		"# HELP etcdadm_backup_last_success_timestamp_seconds When this host last took a backup",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the textfile lacks %q:\n%s", want, got)
		}
	}
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
