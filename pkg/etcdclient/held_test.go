package etcdclient_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/etcdadm-io/etcdadm/internal/etcdtest"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
)

// A held snapshot receives the database's meta pages and its size, and the
// member keeps sending while held: Confirm passes. Once the stream is
// cut, Confirm says the file may have changed; a small database is not
// held at all.
func TestHeldSnapshot(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 1)
	m := c.Members[0]
	// The held snapshot's connection, to be cut.
	var mu sync.Mutex
	var conns []net.Conn
	var d net.Dialer
	cli := c.Client(t, func(ctx context.Context, addr string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, "tcp", addr)
		mu.Lock()
		conns = append(conns, conn)
		mu.Unlock()
		return conn, err
	})
	if _, err := cli.HoldSnapshot(t.Context(), m.ClientURL); !errors.Is(err, etcdclient.ErrSnapshotTooSmall) {
		t.Fatalf("an empty database held: %v", err)
	}
	kv, err := cli.Connect(m.ClientURL)
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	for i := range 40 {
		if _, err := kv.Put(t.Context(), fmt.Sprintf("/big/%d", i), strings.Repeat("x", 256<<10)); err != nil {
			t.Fatal(err)
		}
	}
	h, err := cli.HoldSnapshot(t.Context(), m.ClientURL)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.PageSize != 4096 || len(h.Head) < 2*h.PageSize || h.Size < 10<<20 || h.Size > 16<<20 || h.Size%int64(h.PageSize) != 0 {
		t.Fatalf("held: page size %d, head %d bytes, size %d, version %q", h.PageSize, len(h.Head), h.Size, h.Version)
	}
	if err := h.Confirm(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	for _, conn := range conns {
		if conn != nil {
			conn.Close()
		}
	}
	mu.Unlock()
	if err := h.Confirm(); err == nil || !strings.Contains(err.Error(), "may have changed") {
		t.Fatalf("Confirm after the connection was cut: %v", err)
	}
}
