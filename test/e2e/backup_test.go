package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

	"github.com/etcdadm-io/etcdadm/pkg/backup"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	snap "github.com/etcdadm-io/etcdadm/pkg/snapshot"
	"github.com/etcdadm-io/etcdadm/test/lab"
)

// backupStory is a lab of three members backed up to a real S3 server
// (versitygw) on the lab's bridge.
type backupStory struct {
	*story
	s3       *lab.S3
	store    *backup.Store
	identity *age.X25519Identity
	idFile   string
	keep     int
}

const backupBucket = "etcd-backups"

// TestIntegrationBackup: apply installs the backups on every member
// (etcdadm itself, its configuration and the credentials 0600, the units,
// the timer enabled); firing the service on every member at once gives
// exactly one object, age-encrypted, whose snapshot holds the keys written
// before, and firing it again in the same period none; backups beyond
// keep are pruned; verify --latest passes and fails on one flipped byte,
// naming the object; snapshot restore from the bucket gives three healthy
// members with that backup's keys; with the S3 server down, backup run
// fails, the textfile says so, and no object is left behind; removing
// spec.backup takes it all away.
func TestIntegrationBackup(t *testing.T) {
	requireLab(t)
	bin := buildEtcdadm(t)
	l := upLab(t, lab.Options{Hosts: 3, Dir: "/var/tmp/etcdadm-e2e-backup", NamePrefix: "bkp", Subnet: 25})
	ctx := context.Background()
	s3, err := l.StartS3(ctx, 7070, backupBucket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s3.Stop)
	dir := t.TempDir()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	s := &backupStory{
		story:    &story{bin: bin, lab: l, dir: dir, known: filepath.Join(dir, "known_hosts"), file: filepath.Join(dir, "cluster.yaml")},
		s3:       s3,
		identity: id,
		idFile:   filepath.Join(dir, "backup.key"),
		keep:     28,
	}
	copyFile(t, l.KnownHostsFile, s.known)
	for p, data := range map[string][]byte{s.idFile: []byte(id.String() + "\n"), filepath.Join(dir, "s3.env"): s3.Credentials(), filepath.Join(dir, "s3-ca.crt"): mustRead(t, s3.CAFile)} {
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	creds, err := config.ParseCredentials(bytes.NewReader(s3.Credentials()))
	if err != nil {
		t.Fatal(err)
	}
	if s.store, err = backup.NewStore(config.S3{Endpoint: s3.URL, Bucket: backupBucket, Prefix: "lab/", Region: "us-east-1"}, creds, mustRead(t, s3.CAFile)); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		run  func(*testing.T, *backupStory)
	}{
		{"apply installs etcdadm, its configuration, the credentials 0600, the service and the timer, enabled, on every member", stepBackupInstall},
		{"the service fired on every member at once takes one encrypted backup holding the keys written before; again in the period, none", stepBackupOnePerFiring},
		{"backups beyond keep are pruned, the newest kept", stepBackupPrune},
		{"verify --latest restores and serves the newest; one flipped byte fails it, naming the object", stepBackupVerify},
		{"snapshot restore from the bucket gives three healthy members holding the backup's keys", stepBackupRestore},
		{"with the S3 server down, backup run fails, the textfile says so, and no object is left", stepBackupStoreDown},
		{"removing spec.backup stops the timer and moves the files under the backup directory", stepBackupRemoved},
	}
	for _, st := range steps {
		if !t.Run(st.name, func(t *testing.T) { st.run(t, s) }) {
			t.Fatalf("stopping the story after %q failed", st.name)
		}
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeInventory writes the inventory, with spec.backup unless off.
func (s *backupStory) writeInventory(t *testing.T, on bool) string {
	return s.write(t, s.lab.Hosts, func(inv string) string {
		if !on {
			return inv
		}
		return inv + fmt.Sprintf(`  backup:
    schedule: "*-*-* 00/6:00:00"
    keep: %d
    encryption: {recipients: [%s]}
    s3: {endpoint: %q, bucket: %s, prefix: lab/, credentialsFile: s3.env, caFile: s3-ca.crt}
`, s.keep, s.identity.Recipient(), s.s3.URL, backupBucket)
	})
}

func (s *backupStory) sh(t *testing.T, h *lab.Host, script string) string {
	t.Helper()
	out, err := h.Exec(context.Background(), "sh", "-c", script)
	if err != nil {
		t.Fatalf("%s: %s: %v\n%s", h.Name, script, err, out)
	}
	return strings.TrimSpace(string(out))
}

func stepBackupInstall(t *testing.T, s *backupStory) {
	inv := s.writeInventory(t, true)
	if r := s.etcdadm(t, "apply", "-f", inv); r.err != nil {
		t.Fatalf("apply: %v", r.err)
	}
	sum := sha256.Sum256(mustRead(t, s.bin))
	for _, h := range s.lab.Hosts {
		got := s.sh(t, h, "stat -c '%n %a %U' /usr/local/bin/etcdadm /etc/etcdadm /etc/etcdadm/backup.yaml /etc/etcdadm/backup-credentials.env /etc/etcdadm/backup-ca.crt /etc/systemd/system/etcdadm-backup.service /etc/systemd/system/etcdadm-backup.timer")
		want := "/usr/local/bin/etcdadm 755 root\n/etc/etcdadm 700 root\n/etc/etcdadm/backup.yaml 600 root\n/etc/etcdadm/backup-credentials.env 600 root\n/etc/etcdadm/backup-ca.crt 644 root\n/etc/systemd/system/etcdadm-backup.service 644 root\n/etc/systemd/system/etcdadm-backup.timer 644 root"
		if got != want {
			t.Errorf("%s: files:\n%s\nwant:\n%s", h.Name, got, want)
		}
		if bin := s.sh(t, h, "sha256sum /usr/local/bin/etcdadm"); !strings.HasPrefix(bin, hex.EncodeToString(sum[:])) {
			t.Errorf("%s: /usr/local/bin/etcdadm is not this build: %s", h.Name, bin)
		}
		if st := s.sh(t, h, "systemctl is-enabled etcdadm-backup.timer; systemctl is-active etcdadm-backup.timer"); st != "enabled\nactive" {
			t.Errorf("%s: the timer is %q, want enabled and active", h.Name, st)
		}
		if svc := s.sh(t, h, "cat /etc/systemd/system/etcdadm-backup.service"); !strings.Contains(svc, "Type=oneshot") || !strings.Contains(svc, "ExecStart=/usr/local/bin/etcdadm backup run --config /etc/etcdadm/backup.yaml") {
			t.Errorf("%s: the service:\n%s", h.Name, svc)
		}
	}
	r := s.etcdadm(t, "apply", "-f", inv, "-v")
	if r.err != nil || strings.Contains(r.stderr, "wrote ") || strings.Contains(r.stderr+r.stdout, s.s3.SecretKey) {
		t.Errorf("a re-apply wrote something, or printed the secret: %v", r.err)
	}
	r = s.etcdadm(t, "diff", "-f", inv, "-v")
	if strings.Contains(r.stderr+r.stdout, s.s3.SecretKey) {
		t.Error("diff -v printed the S3 secret")
	}
}

// objects are the bucket's backups of the cluster, whole or not.
func (s *backupStory) objects(t *testing.T) []backup.Backup {
	t.Helper()
	bs, incomplete, err := backup.Catalog(context.Background(), s.store, "e2e")
	if err != nil {
		t.Fatal(err)
	}
	if len(incomplete) > 0 {
		t.Errorf("uploads left under .incomplete/: %v", incomplete)
	}
	return bs
}

func (s *backupStory) put(t *testing.T, prefix string, n int) {
	t.Helper()
	c, _, client := s.cluster(t)
	cli, err := client.Connect(manifests.ClientURL(c.Spec.Hosts[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for i := range n {
		if _, err := cli.Put(context.Background(), fmt.Sprintf("%s/%03d", prefix, i), strings.Repeat("v", 512)); err != nil {
			t.Fatal(err)
		}
	}
}

// count is the number of keys under prefix.
func (s *backupStory) count(t *testing.T, prefix string) int64 {
	t.Helper()
	c, _, client := s.cluster(t)
	cli, err := client.Connect(manifests.ClientURL(c.Spec.Hosts[1]))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return r.Count
}

func (s *backupStory) fireAll(t *testing.T) {
	t.Helper()
	var wg sync.WaitGroup
	for _, h := range s.lab.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := h.Exec(context.Background(), "systemctl", "start", "etcdadm-backup.service"); err != nil {
				t.Errorf("%s: systemctl start etcdadm-backup.service: %v\n%s\n%s", h.Name, err, out, h.LogTail("etcdadm-backup.log", 30))
			}
		}()
	}
	wg.Wait()
	for _, h := range s.lab.Hosts {
		t.Logf("%s: etcdadm-backup.service's output:\n%s", h.Name, h.LogTail("etcdadm-backup.log", 15))
	}
}

func stepBackupOnePerFiring(t *testing.T, s *backupStory) {
	s.put(t, "/before", 100)
	s.fireAll(t)
	bs := s.objects(t)
	if len(bs) != 1 || !bs[0].Good() {
		t.Fatalf("after firing on every member: %d backups, want one whole: %+v", len(bs), bs)
	}
	b := bs[0]
	rc, _, err := s.store.Get(context.Background(), b.Key)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(enc, []byte("age-encryption.org/v1\n")) || !strings.HasSuffix(b.Key, ".db.age") {
		t.Fatalf("%s is not age-encrypted: %q", b.Key, enc[:min(40, len(enc))])
	}
	dec, err := age.Decrypt(bytes.NewReader(enc), s.identity)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(dec)
	p := filepath.Join(s.dir, "decrypted.db")
	if err := os.WriteFile(p, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	info, err := snap.Verify(p)
	if err != nil {
		t.Fatalf("decrypted, %s is not a valid snapshot: %v", b.Key, err)
	}
	served, err := snap.Drill(context.Background(), p, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := b.Manifest
	if info.Revision != m.Revision || info.Keys != m.Keys || served.Revision != m.Revision || served.Keys < 100 || info.SHA256 != m.SHA256 {
		t.Errorf("the snapshot (revision %d, %d keys, served %d keys) and its manifest %+v differ", info.Revision, info.Keys, served.Keys, m)
	}
	winners := 0
	for _, h := range s.lab.Hosts {
		tf := s.sh(t, h, "cat /var/lib/node_exporter/textfile_collector/etcdadm_backup.prom")
		if !strings.Contains(tf, `etcdadm_backup_last_run_success{cluster="e2e"} 1`) {
			t.Errorf("%s: textfile:\n%s", h.Name, tf)
		}
		if strings.Contains(tf, "etcdadm_backup_last_success_timestamp_seconds") {
			winners++
			if !strings.Contains(tf, fmt.Sprintf(`etcdadm_backup_last_revision{cluster="e2e"} %d`, m.Revision)) {
				t.Errorf("%s: the textfile does not name revision %d:\n%s", h.Name, m.Revision, tf)
			}
		}
	}
	if winners != 1 {
		t.Errorf("%d hosts record a backup, want 1", winners)
	}
	s.fireAll(t)
	if bs := s.objects(t); len(bs) != 1 {
		t.Errorf("firing again in the same period: %d backups, want still 1", len(bs))
	}
}

func stepBackupPrune(t *testing.T, s *backupStory) {
	s.keep = 3
	inv := s.writeInventory(t, true)
	if r := s.etcdadm(t, "apply", "-f", inv); r.err != nil {
		t.Fatalf("apply: %v", r.err)
	}
	for i := range 4 {
		r := s.etcdadm(t, "backup", "now", "-f", inv, "--member", s.lab.Hosts[i%3].Name)
		if r.err != nil || !strings.Contains(r.stdout, "backup taken: s3://"+backupBucket+"/lab/e2e/") {
			t.Fatalf("backup now: %v", r.err)
		}
		time.Sleep(1100 * time.Millisecond) // one object per second of a name
	}
	bs := s.objects(t)
	good := 0
	for _, b := range bs {
		if b.Good() {
			good++
		}
	}
	if len(bs) != s.keep || good != s.keep {
		t.Fatalf("after 5 backups with keep %d: %d remain (%d whole)", s.keep, len(bs), good)
	}
	r := s.etcdadm(t, "backup", "list", "-f", inv, "-o", "json")
	var list struct{ Backups []json.RawMessage }
	if r.err != nil || json.Unmarshal([]byte(r.stdout), &list) != nil || len(list.Backups) != s.keep {
		t.Errorf("backup list: %v, %d backups", r.err, len(list.Backups))
	}
	if r := s.etcdadm(t, "backup", "check", "-f", inv, "--max-age", "1h"); r.err != nil {
		t.Errorf("backup check --max-age 1h: %v", r.err)
	}
	if r := s.etcdadm(t, "backup", "check", "-f", inv, "--max-age", "1ms"); r.err == nil {
		t.Error("backup check --max-age 1ms passed")
	}
}

// objectFile is where the S3 server keeps key.
func (s *backupStory) objectFile(key string) string {
	return filepath.Join(s.s3.Dir, "data", backupBucket, filepath.FromSlash(key))
}

func stepBackupVerify(t *testing.T, s *backupStory) {
	inv := s.file
	r := s.etcdadm(t, "backup", "verify", "-f", inv, "--identity", s.idFile, "--latest")
	if r.err != nil || !strings.Contains(r.stdout, "restored: etcd serves revision") {
		t.Fatalf("verify --latest: %v", r.err)
	}
	latest := backup.Latest(s.objects(t))
	p := s.objectFile(latest.Key)
	orig := mustRead(t, p)
	bad := bytes.Clone(orig)
	bad[len(bad)/2] ^= 0x01
	if err := os.WriteFile(p, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	r = s.etcdadm(t, "backup", "verify", "-f", inv, "--identity", s.idFile, "s3://"+backupBucket+"/"+latest.Key)
	if err := os.WriteFile(p, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	if r.err == nil || !strings.Contains(r.stderr, latest.Key) {
		t.Errorf("verify of a backup with one byte flipped: %v, want a failure naming %s", r.err, latest.Key)
	}
}

func stepBackupRestore(t *testing.T, s *backupStory) {
	latest := backup.Latest(s.objects(t))
	s.put(t, "/after", 20)
	r := s.etcdadm(t, "snapshot", "restore", "-f", s.file, "--yes", "--identity", s.idFile, "s3://"+backupBucket+"/"+latest.Key)
	if r.err != nil || !strings.Contains(r.stdout, "3/3 members healthy") {
		t.Fatalf("restore from the bucket: %v", r.err)
	}
	if n := s.count(t, "/before"); n != 100 {
		t.Errorf("after the restore: %d keys under /before, want 100", n)
	}
	if n := s.count(t, "/after"); n != 0 {
		t.Errorf("after the restore: %d keys under /after, written after the backup, want 0", n)
	}
}

func stepBackupStoreDown(t *testing.T, s *backupStory) {
	before := s.objects(t)
	s.s3.Stop()
	h := s.lab.Hosts[0]
	out, err := h.Exec(context.Background(), "etcdadm", "backup", "run", "--now", "--config", "/etc/etcdadm/backup.yaml")
	t.Logf("backup run with the S3 server down:\n%s", out)
	if err == nil {
		t.Error("backup run with the S3 server down exited 0")
	}
	tf := s.sh(t, h, "cat /var/lib/node_exporter/textfile_collector/etcdadm_backup.prom")
	if !strings.Contains(tf, `etcdadm_backup_last_run_success{cluster="e2e"} 0`) || !strings.Contains(tf, `etcdadm_backup_failures_total{cluster="e2e"} 1`) {
		t.Errorf("the textfile does not record the failure:\n%s", tf)
	}
	if err := s.s3.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := s.objects(t)
	if len(after) != len(before) {
		t.Errorf("%d backups before the failed run, %d after", len(before), len(after))
	}
	for _, b := range after {
		if !b.Good() {
			t.Errorf("left behind: %s (%s)", b.Key, b.Problem)
		}
	}
}

func stepBackupRemoved(t *testing.T, s *backupStory) {
	inv := s.writeInventory(t, false)
	if r := s.etcdadm(t, "apply", "-f", inv); r.err != nil {
		t.Fatalf("apply without spec.backup: %v", r.err)
	}
	for _, h := range s.lab.Hosts {
		if st, _ := h.Exec(context.Background(), "systemctl", "is-active", "etcdadm-backup.timer"); strings.TrimSpace(string(st)) != "inactive" {
			t.Errorf("%s: the timer is %s", h.Name, st)
		}
		left := s.sh(t, h, "ls /usr/local/bin/etcdadm /etc/etcdadm/backup.yaml /etc/etcdadm/backup-credentials.env /etc/systemd/system/etcdadm-backup.timer 2>/dev/null || true")
		kept := s.sh(t, h, "find /var/lib/etcdadm/backup -name backup-credentials.env -perm 600 | head -1")
		if left != "" || kept == "" {
			t.Errorf("%s: left %q, kept %q", h.Name, left, kept)
		}
	}
}
