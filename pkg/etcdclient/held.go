package etcdclient

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A member sends a snapshot as bbolt's Tx.WriteTo writes it: the read
// transaction's two meta pages, then the database file's other pages as
// they are on disk, which the open transaction keeps from being reused
// until it ends. A HeldSnapshot receives only the start of that stream and
// stops reading: the member blocks on gRPC's flow control, its transaction
// still open, while the caller reads the rest of the database from the
// member's file on its host by another way (an SSH connection, at the
// wire's speed). The head and those bytes are the snapshot the member
// would have sent, as long as the transaction stays open until the file
// has been read: Confirm says whether it did.

// boltMagic is the magic number in a bbolt meta page.
const boltMagic = 0xED0CDAED

// heldWindow is the gRPC flow-control window of a held snapshot's
// connection: gRPC's least, fixed, so that the member cannot send far
// ahead of what was received.
const heldWindow = 64 << 10

// heldMargin bounds how far the member's transaction can have been read
// past what was received: the stream's window (64 KiB), gRPC's write quota
// (64 KiB) and the buffers of the member's message and pipe (32 KiB each),
// with room to spare. A database is held only when, past its head, it has
// four times that left, and what Confirm reads.
const heldMargin = 1 << 20

// ErrSnapshotTooSmall says that a database is too small to be worth
// holding; its snapshot is streamed instead.
var ErrSnapshotTooSmall = errors.New("the database is too small to hold its snapshot open: stream it")

// HeldSnapshot is a member's snapshot whose read transaction the member
// keeps open while the caller reads the database's file.
type HeldSnapshot struct {
	// Head is the start of the database as the member sent it: its meta
	// pages as the transaction sees them, and the pages after them in the
	// first messages.
	Head []byte
	// Size is the database's size in bytes, without the sha256 trailer
	// etcd appends to a streamed snapshot.
	Size int64
	// PageSize is the database's page size.
	PageSize int
	// Version is the member's storage version, as the stream says.
	Version string

	stream pb.Maintenance_SnapshotClient
	cancel context.CancelFunc
	cli    *clientv3.Client
}

// HoldSnapshot opens a snapshot of the member at clientURL and receives its
// head, on a connection of its own; the caller reads the database file's
// bytes from len(Head) to Size, then calls Confirm, and always Close.
// It returns ErrSnapshotTooSmall for a database under a few megabytes.
func (c *Client) HoldSnapshot(ctx context.Context, clientURL string) (*HeldSnapshot, error) {
	cli, err := c.connect(heldWindow, clientURL)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	h := &HeldSnapshot{cancel: cancel, cli: cli}
	h.stream, err = pb.NewMaintenanceClient(cli.ActiveConnection()).Snapshot(sctx, &pb.SnapshotRequest{})
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("snapshot from %s: %w", clientURL, err)
	}
	var remaining uint64
	for h.PageSize == 0 || len(h.Head) < 2*h.PageSize {
		resp, err := h.stream.Recv()
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("snapshot from %s: %w", clientURL, err)
		}
		if h.Version == "" {
			h.Version = resp.Version
		}
		h.Head = append(h.Head, resp.Blob...)
		remaining = resp.RemainingBytes
		if h.PageSize == 0 && len(h.Head) >= 28 {
			if h.PageSize, err = metaPageSize(h.Head); err != nil {
				h.Close()
				return nil, fmt.Errorf("snapshot from %s: %w", clientURL, err)
			}
		}
		if remaining == 0 {
			break
		}
	}
	h.Size = int64(len(h.Head)) + int64(remaining)
	if remaining < 4*heldMargin+2*heldWindow {
		h.Close()
		return nil, ErrSnapshotTooSmall
	}
	return h, nil
}

// metaPageSize reads the page size from the meta page at the start of a
// bbolt database, written in this machine's byte order: a member of
// another byte order is streamed instead.
func metaPageSize(head []byte) (int, error) {
	// A page's header is 16 bytes; the meta's magic, version and page
	// size follow it.
	magic := binary.NativeEndian.Uint32(head[16:20])
	size := int(binary.NativeEndian.Uint32(head[24:28]))
	if magic != boltMagic || size < 512 || size > 1<<20 || size&(size-1) != 0 {
		return 0, fmt.Errorf("the snapshot does not start with a bbolt meta page in this machine's byte order (magic %#x, page size %d)", magic, size)
	}
	return size, nil
}

// Confirm says whether the member still held the snapshot's transaction
// after the caller read the file: it receives what the member sends next,
// past what the stream can have held before (its window, and one message
// more that gRPC asks for ahead), so the member sent it after the file was
// read, and it had not read the transaction to its end by then. Call it
// once the file's bytes are all in.
func (h *HeldSnapshot) Confirm() error {
	var got int
	for got <= 2*heldWindow {
		resp, err := h.stream.Recv()
		if err != nil {
			return fmt.Errorf("the member's snapshot ended while its database file was read, so the file may have changed under it: %w", err)
		}
		if resp.RemainingBytes < heldMargin {
			return fmt.Errorf("the member read its snapshot to within %d bytes of its end while its file was read, so the file may have changed under it", resp.RemainingBytes)
		}
		got += len(resp.Blob)
	}
	return nil
}

// Close ends the stream, and with it the member's transaction, and the
// connection.
func (h *HeldSnapshot) Close() {
	h.cancel()
	_ = h.cli.Close()
}
