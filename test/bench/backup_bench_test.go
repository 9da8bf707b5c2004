package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/etcdadm-io/etcdadm/pkg/backup"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/test/lab"
)

// BenchmarkBackupRun times `etcdadm backup run --now` on the leader's host
// with a database of over 100 MB: its snapshot streamed, checked,
// age-encrypted and uploaded in parts to the lab's S3 server (versitygw,
// TLS), copied to its name, its manifest written and the bucket pruned;
// next to the floor of the same host sending the database file to the
// same server with one PUT of its own (curl, TLS).
func BenchmarkBackupRun(b *testing.B) {
	needLab(b)
	bin := buildEtcdadm(b)
	l := upLab(b, lab.Options{Hosts: 3, Dir: "/var/tmp/etcdadm-bench-backup", NamePrefix: "bbk", Subnet: 9})
	defer down(b, l)
	ctx := context.Background()
	s3, err := l.StartS3(ctx, 7070, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer s3.Stop()
	dir := b.TempDir()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		b.Fatal(err)
	}
	mustWrite(b, filepath.Join(dir, "s3.env"), s3.Credentials())
	ca, err := os.ReadFile(s3.CAFile)
	if err != nil {
		b.Fatal(err)
	}
	mustWrite(b, filepath.Join(dir, "s3-ca.crt"), ca)
	inv := writeInventory(b, l, dir, l.Hosts)
	data, _ := os.ReadFile(inv)
	mustWrite(b, inv, []byte(string(data)+fmt.Sprintf(`  backup:
    keep: 2
    encryption: {recipients: [%s]}
    s3: {endpoint: %q, bucket: bench, credentialsFile: s3.env, caFile: s3-ca.crt}
`, id.Recipient(), s3.URL)))
	etcdadm(b, bin, "apply", "-f", inv)
	c, _, client := loadCluster(b, inv)
	defer client.Close()
	fill(b, client, c, 110)
	src, err := ops.SnapshotSource(ctx, c, client, "", 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	h := l.Host(src.Name)
	b.Run("etcdadm-backup-run", func(b *testing.B) {
		for range b.N {
			out, err := h.Exec(ctx, "etcdadm", "backup", "run", "--now", "--config", backup.ConfigPath)
			if err != nil {
				b.Fatalf("%v\n%s", err, out)
			}
			var size int64
			for _, line := range strings.Split(string(out), "\n") {
				if n, ok := strings.CutPrefix(strings.TrimSpace(line), "size:"); ok {
					fmt.Sscanf(strings.TrimSpace(n), "%d", &size)
				}
			}
			b.SetBytes(size)
		}
	})
	b.Run("floor-curl-put-of-the-db-file", func(b *testing.B) {
		creds, _ := config.ParseCredentials(strings.NewReader(string(s3.Credentials())))
		for i := range b.N {
			script := fmt.Sprintf(`f=%s/member/snap/db; curl -sS --fail --cacert /etc/etcdadm/backup-ca.crt --aws-sigv4 aws:amz:us-east-1:s3 --user %s:%s -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -T "$f" %s/bench/floor-%d && stat -c %%s "$f"`,
				c.Spec.Etcd.DataDir, creds.AccessKeyID, creds.SecretAccessKey, s3.URL, i)
			out, err := h.Exec(ctx, "sh", "-c", script)
			if err != nil {
				b.Fatalf("%v\n%s", err, out)
			}
			var size int64
			fmt.Sscanf(strings.TrimSpace(string(out)), "%d", &size)
			b.SetBytes(size)
		}
	})
}
