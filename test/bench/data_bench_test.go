package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/hosts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
	"github.com/etcdadm-io/etcdadm/pkg/snapshot"
	"github.com/etcdadm-io/etcdadm/test/lab"
)

// fill writes about mb megabytes of incompressible values.
func fill(b *testing.B, client *etcdclient.Client, c *config.Cluster, mb int) {
	cli, err := client.Connect(manifests.ClientURL(c.Spec.Hosts[0]))
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	v := make([]byte, 1<<20)
	for i := range mb {
		if _, err := rand.Read(v); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := cli.Put(ctx, fmt.Sprintf("/bench/%04d", i), string(v))
		cancel()
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSnapshotSave saves a snapshot of a database of over 100 MB to
// this machine with etcdadm's save (fsync, the database's structure
// checked, rename): read from the leader's file through its SSH connection
// while the leader holds the snapshot open, and streamed by etcd (mTLS,
// the sha256 checked while it streams) through the leader's SSH connection
// and directly. Next to them, the baselines: the same bytes of the
// database file read over the same SSH connection into memory, and read
// and discarded; and the member's own floor: etcdctl on its host saving
// over loopback.
func BenchmarkSnapshotSave(b *testing.B) {
	needLab(b)
	bin := buildEtcdadm(b)
	l := upLab(b, lab.Options{Hosts: 3, Dir: "/var/tmp/etcdadm-bench-snap", NamePrefix: "bsn", Subnet: 7})
	defer down(b, l)
	dir := b.TempDir()
	inv := writeInventory(b, l, dir, l.Hosts)
	etcdadm(b, bin, "apply", "-f", inv)
	c, pki, client := loadCluster(b, inv)
	defer client.Close()
	fill(b, client, c, 110)
	ctx := context.Background()
	src, err := ops.SnapshotSource(ctx, c, client, "", 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	h, _ := c.Host(src.Name)
	hosts, err := hosts.Connect(ctx, []config.Host{h}, hosts.SSHConnector(c, remote.Config{}), 1, progress.NewLog(nil))
	if err != nil {
		b.Fatal(err)
	}
	defer hosts.Close()
	t := hosts.T[h.Name]
	kp, _ := pki.Leaf(c.Spec.Hosts[0].Name, certs.EtcdHealthcheckClient)
	tlsConfig, err := etcdclient.TLSConfig(pki.Trust, kp.CertPEM, kp.KeyPEM)
	if err != nil {
		b.Fatal(err)
	}
	viaSSH := etcdclient.New(tlsConfig, func(ctx context.Context, addr string) (net.Conn, error) { return t.Dial(ctx, "tcp", addr) })
	defer viaSSH.Close()
	out := filepath.Join(dir, "snaps")
	// saveOne saves one snapshot, its time taken, and removes it untimed.
	saveOne := func(b *testing.B, cli *etcdclient.Client, o ops.SaveOptions, read string) (time.Duration, int64) {
		p := filepath.Join(out, "s.db")
		start := time.Now()
		info, err := ops.SaveSnapshot(ctx, c, cli, src, p, o)
		took := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if meta, err := snapshot.ReadMeta(p); err != nil || meta.Read != read {
			b.Fatalf("the snapshot was not read as %s: %+v, %v", read, meta, err)
		}
		b.StopTimer()
		os.Remove(p)
		os.Remove(snapshot.MetaPath(p))
		b.StartTimer()
		return took, info.Size
	}
	save := func(b *testing.B, cli *etcdclient.Client, o ops.SaveOptions, read string) {
		for i := 0; i < b.N; i++ {
			_, size := saveOne(b, cli, o, read)
			b.SetBytes(size)
		}
	}
	// The same bytes as a snapshot's, the database up to its last page
	// (the file is longer: bbolt grows it ahead), read over the same
	// connection and discarded as they come: the wire alone.
	held, err := client.HoldSnapshot(ctx, src.Endpoint)
	if err != nil {
		b.Fatal(err)
	}
	size := held.Size
	held.Close()
	readDB := fmt.Sprintf("head -c %d %s/member/snap/db", size, c.Spec.Etcd.DataDir)
	discardOne := func(b *testing.B) time.Duration {
		start := time.Now()
		p, err := t.Start(ctx, readDB)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, p.Stdout)
		if err == nil {
			err = p.Wait()
		}
		if err != nil || n != size {
			b.Fatalf("read %d bytes, want %d: %v", n, size, err)
		}
		return time.Since(start)
	}
	heldSave := ops.SaveOptions{Host: t, Log: progress.NewLog(nil)}
	// etcdadm's default: the member holds its snapshot open while its
	// database file is read through the SSH connection.
	b.Run("etcdadm-save-held-file-through-ssh", func(b *testing.B) {
		save(b, viaSSH, heldSave, snapshot.ReadHeldFile)
	})
	// The held save and the read of the same bytes, taken in turns (each
	// first every other time), so that both meet the machine as it is at
	// that moment: their ratio is the save's cost over the wire's.
	b.Run("ratio-held-save-to-read-in-turns", func(b *testing.B) {
		var saves, reads time.Duration
		for i := 0; i < b.N; i++ {
			if i%2 == 0 {
				reads += discardOne(b)
			}
			took, _ := saveOne(b, viaSSH, heldSave, snapshot.ReadHeldFile)
			saves += took
			if i%2 == 1 {
				reads += discardOne(b)
			}
		}
		b.ReportMetric(float64(saves)/float64(reads), "save/read")
		b.ReportMetric(saves.Seconds()/float64(b.N), "s/save")
		b.ReportMetric(reads.Seconds()/float64(b.N), "s/read")
	})
	// etcd's own snapshot stream, through the SSH connection and directly.
	b.Run("etcdadm-save-stream-through-ssh", func(b *testing.B) { save(b, viaSSH, ops.SaveOptions{}, snapshot.ReadStream) })
	b.Run("etcdadm-save-stream-direct", func(b *testing.B) { save(b, client, ops.SaveOptions{}, snapshot.ReadStream) })
	// The member's own side, without SSH or this machine: etcdctl on the
	// host saving a snapshot from its member over loopback to the host's
	// disk.
	b.Run("floor-etcdctl-save-on-the-host", func(b *testing.B) {
		const file = "/var/lib/etcdadm-bench-snapshot.db"
		pki := manifests.CertificatesDir + "/etcd/"
		cmd := fmt.Sprintf("%s --endpoints https://127.0.0.1:2379 --cacert %sca.crt --cert %shealthcheck-client.crt --key %shealthcheck-client.key snapshot save %s >/dev/null && stat -c %%s %s && rm -f %s",
			l.Artifacts.Etcdctl, pki, pki, pki, file, file, file)
		for i := 0; i < b.N; i++ {
			out, err := t.Run(ctx, cmd, nil)
			if err != nil {
				b.Fatal(err)
			}
			n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
			if err != nil {
				b.Fatalf("the snapshot's size: %q: %v", out, err)
			}
			b.SetBytes(n)
		}
	})
	// Read into memory, as the command's output is (the floor this
	// benchmark had first).
	b.Run("baseline-read-db-through-ssh-into-memory", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			data, err := t.Run(ctx, readDB, nil)
			if err != nil || int64(len(data)) != size {
				b.Fatalf("read %d bytes, want %d: %v", len(data), size, err)
			}
			b.SetBytes(size)
		}
	})
	// Read and discarded as they come: the wire alone.
	b.Run("baseline-read-db-through-ssh", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			discardOne(b)
			b.SetBytes(size)
		}
	})
}

// BenchmarkRestore restores a 3-member cluster from a snapshot of about
// 20 MB with etcdadm snapshot restore (verify, data directories made here,
// pushed while the cluster runs, every member stopped, data swapped,
// started, healthy), next to the floor: the members already stopped and
// the restored data already in place on every host, then the three
// manifests put back until the cluster is healthy.
func BenchmarkRestore(b *testing.B) {
	needLab(b)
	bin := buildEtcdadm(b)
	l := upLab(b, lab.Options{Hosts: 3, Dir: "/var/tmp/etcdadm-bench-restore", NamePrefix: "brs", Subnet: 8})
	defer down(b, l)
	dir := b.TempDir()
	inv := writeInventory(b, l, dir, l.Hosts)
	etcdadm(b, bin, "apply", "-f", inv)
	c, _, client := loadCluster(b, inv)
	defer client.Close()
	fill(b, client, c, 20)
	file := filepath.Join(dir, "s.db")
	etcdadm(b, bin, "snapshot", "save", "-f", inv, "-o", file)
	ctx := context.Background()
	b.Run("etcdadm-snapshot-restore", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			out := etcdadm(b, bin, "snapshot", "restore", "-f", inv, "--yes", file)
			if !strings.Contains(out, "3/3 members healthy") {
				b.Fatalf("restore:\n%s", out)
			}
		}
	})
	b.Run("floor-manifests-back-on-restored-data", func(b *testing.B) {
		m := manifests.ManifestPath(c)
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			work := b.TempDir()
			var members []snapshot.RestoreMember
			for _, h := range c.Spec.Hosts {
				members = append(members, snapshot.RestoreMember{Name: h.Name, PeerURL: manifests.PeerURL(h)})
			}
			if err := snapshot.Prepare(file, work, members, fmt.Sprintf("floor-%d", i)); err != nil {
				b.Fatal(err)
			}
			for _, h := range l.Hosts {
				if out, err := h.Exec(ctx, "sh", "-c", "mv "+m+" /tmp/etcd.yaml.floor"); err != nil {
					b.Fatalf("%s: %v %s", h.Name, err, out)
				}
			}
			for _, h := range l.Hosts {
				for len(h.PIDs("etcd")) > 0 {
					time.Sleep(100 * time.Millisecond)
				}
				// The kubelet lets go of the stopped Pod before it starts another.
				time.Sleep(2 * time.Second)
				tgz := filepath.Join(work, h.Name+".tgz")
				f, err := os.Create(tgz)
				if err != nil {
					b.Fatal(err)
				}
				if err := snapshot.Archive(f, filepath.Join(work, h.Name)); err != nil {
					b.Fatal(err)
				}
				f.Close()
				data, err := os.ReadFile(tgz)
				if err != nil {
					b.Fatal(err)
				}
				if err := h.WriteFile(ctx, "/tmp/restored.tgz", data, 0o600); err != nil {
					b.Fatal(err)
				}
				if out, err := h.Exec(ctx, "sh", "-c", "rm -rf "+c.Spec.Etcd.DataDir+"/member && tar -C "+c.Spec.Etcd.DataDir+" -xzf /tmp/restored.tgz && rm /tmp/restored.tgz"); err != nil {
					b.Fatalf("%s: %v %s", h.Name, err, out)
				}
			}
			b.StartTimer()
			for _, h := range l.Hosts {
				if out, err := h.Exec(ctx, "mv", "/tmp/etcd.yaml.floor", m); err != nil {
					b.Fatalf("%s: %v %s", h.Name, err, out)
				}
			}
			if _, err := client.WaitHealthy(ctx, ops.Endpoints(c), 2*time.Minute, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
