//go:build linux

package facts_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// lockedBuffer collects a child's output written from exec's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// etcdBinary is the etcd the project builds for its lab.
func etcdBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts etcd: skipped with -short")
	}
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(filepath.Dir(file), "..", "..", "_output", "lab", "bin", "etcd")
	if fi, err := os.Stat(bin); err != nil || fi.Mode().Perm()&0o111 == 0 {
		msg := fmt.Sprintf("no etcd at %s (built by the project's lab targets)", bin)
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s; CI=true, so this is a failure, not a skip", msg)
		}
		t.Skip(msg)
	}
	return bin
}

// TestWALMetadataOfRealEtcd starts a one-member etcd, takes its member and
// cluster IDs from a Status header, stops it, and reads them back from its
// WAL: with WALMetadata on the file's first 4096 bytes, and through the
// script, as a host's data directory.
func TestWALMetadataOfRealEtcd(t *testing.T) {
	bin := etcdBinary(t)
	dataDir := filepath.Join(t.TempDir(), "etcd")
	client := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	metrics := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	out := &lockedBuffer{}
	cmd := exec.Command(bin,
		"--name=test",
		"--data-dir="+dataDir,
		"--listen-client-urls="+client,
		"--advertise-client-urls="+client,
		"--listen-peer-urls="+peer,
		"--initial-advertise-peer-urls="+peer,
		"--initial-cluster=test="+peer,
		"--initial-cluster-state=new",
		"--listen-metrics-urls="+metrics,
		"--log-level=warn",
	)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("etcd's output:\n%s", out.String())
		}
	})

	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{client},
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Put(ctx, "facts-test", "1")
		cancel()
		if err == nil {
			break
		}
		select {
		case werr := <-exited:
			stopped = true
			t.Fatalf("etcd exited: %v", werr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd did not take a write: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	st, err := cli.Status(ctx, client)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	memberID, clusterID := st.Header.MemberId, st.Header.ClusterId
	if memberID == 0 || clusterID == 0 {
		t.Fatalf("Status header: member %x cluster %x", memberID, clusterID)
	}
	_ = cli.Close()
	stop()

	wals, err := filepath.Glob(filepath.Join(dataDir, "member", "wal", "*.wal"))
	if err != nil || len(wals) == 0 {
		t.Fatalf("no WAL in %s: %v", dataDir, err)
	}
	sort.Strings(wals)
	f, err := os.Open(wals[0])
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 4096)
	n, err := io.ReadFull(f, head)
	f.Close()
	if err != nil && err != io.ErrUnexpectedEOF {
		t.Fatal(err)
	}
	m, c, err := facts.WALMetadata(head[:n])
	if err != nil {
		t.Fatalf("WALMetadata(%s): %v", wals[0], err)
	}
	if m != memberID || c != clusterID {
		t.Errorf("WALMetadata = member %x cluster %x, want %x %x", m, c, memberID, clusterID)
	}

	// The same through the script, as a host's facts.
	req := baseRequest(t.TempDir())
	req.DataDir = dataDir
	req.ClientPort = freePort(t)
	gctx, gcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer gcancel()
	h, _, err := facts.Gather(gctx, remote.NewLocal("local", false), req, "")
	if err != nil {
		t.Fatal(err)
	}
	want := facts.DataDir{Exists: true, Entries: 1, HasWAL: true, MemberID: memberID, ClusterID: clusterID}
	if h.DataDir != want {
		t.Errorf("DataDir = %+v, want %+v", h.DataDir, want)
	}

	// Not a WAL: garbage and zeros are errors.
	if _, _, err := facts.WALMetadata([]byte("this is not a write-ahead log, not at all")); err == nil {
		t.Errorf("WALMetadata accepted garbage")
	}
	if _, _, err := facts.WALMetadata(make([]byte, 4096)); err == nil {
		t.Errorf("WALMetadata accepted zeros")
	}
}
