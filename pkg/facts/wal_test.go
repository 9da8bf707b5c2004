package facts_test

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/etcdadm-io/etcdadm/pkg/facts"
)

// WAL record types, as etcd's server/storage/wal numbers them.
const (
	walMetadata = 1
	walEntry    = 2
	walState    = 3
	walCRC      = 4
	walSnapshot = 5
)

// walFrame frames a record as etcd's encoder does: a little-endian length
// whose top byte, when the record is padded to 8 bytes, is 0x80|padding.
func walFrame(rec []byte) []byte {
	pad := (8 - len(rec)%8) % 8
	lenField := uint64(len(rec))
	if pad != 0 {
		lenField |= uint64(0x80|pad) << 56
	}
	b := binary.LittleEndian.AppendUint64(nil, lenField)
	b = append(b, rec...)
	return append(b, make([]byte, pad)...)
}

// walRecord is walpb.Record{Type: 1, Crc: 2, Data: 3}.
func walRecord(typ int64, crc uint32, data []byte) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(typ))
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(crc))
	if data != nil {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendBytes(b, data)
	}
	return b
}

// walMeta is etcdserverpb.Metadata{NodeID: 1, ClusterID: 2}.
func walMeta(node, cluster uint64) []byte {
	var b []byte
	if node != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, node)
	}
	if cluster != 0 {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, cluster)
	}
	return b
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func TestWALMetadata(t *testing.T) {
	const node, cluster = uint64(0x8e9e05c52164694d), uint64(0xcdf818194e3a8c32)
	head := cat(walFrame(walRecord(walCRC, 0, nil)), walFrame(walRecord(walMetadata, 0xdeadbeef, walMeta(node, cluster))))
	// Like a real file: the records, then the rest of a preallocated segment.
	file := cat(head, walFrame(walRecord(walSnapshot, 1, []byte{8, 0})), make([]byte, 4096))[:4096]
	withExtra := walMeta(node, cluster)
	withExtra = protowire.AppendTag(withExtra, 9, protowire.BytesType)
	withExtra = protowire.AppendBytes(withExtra, []byte("future field"))

	rng := rand.New(rand.NewPCG(1, 2))
	garbage := make([]byte, 4096)
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}

	ok := map[string]struct {
		b                []byte
		member, clusterI uint64
	}{
		"crc then metadata":     {head, node, cluster},
		"first 4096 bytes":      {file, node, cluster},
		"metadata first":        {walFrame(walRecord(walMetadata, 0, walMeta(1, 2))), 1, 2},
		"no cluster ID":         {cat(walFrame(walRecord(walCRC, 0, nil)), walFrame(walRecord(walMetadata, 0, walMeta(7, 0)))), 7, 0},
		"unknown metadata data": {walFrame(walRecord(walMetadata, 0, withExtra)), node, cluster},
		"two CRC records":       {cat(walFrame(walRecord(walCRC, 1, nil)), walFrame(walRecord(walCRC, 2, nil)), walFrame(walRecord(walMetadata, 0, walMeta(3, 4)))), 3, 4},
	}
	for name, tc := range ok {
		t.Run(name, func(t *testing.T) {
			m, c, err := facts.WALMetadata(tc.b)
			if err != nil || m != tc.member || c != tc.clusterI {
				t.Errorf("WALMetadata = %x, %x, %v; want %x, %x", m, c, err, tc.member, tc.clusterI)
			}
		})
	}

	bad := map[string][]byte{
		"nil":                   nil,
		"shorter than a frame":  {1, 2, 3},
		"zero-filled":           make([]byte, 4096),
		"garbage":               garbage,
		"all ones":              []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"cut in the metadata":   head[:len(head)-4],
		"crc only":              walFrame(walRecord(walCRC, 0, nil)),
		"entry first":           cat(walFrame(walRecord(walCRC, 0, nil)), walFrame(walRecord(walEntry, 0, []byte{1}))),
		"state first":           walFrame(walRecord(walState, 0, nil)),
		"metadata without ID":   walFrame(walRecord(walMetadata, 0, walMeta(0, 5))),
		"metadata empty":        walFrame(walRecord(walMetadata, 0, nil)),
		"bad protobuf record":   walFrame([]byte{0x0a, 0xff}),
		"bad protobuf metadata": walFrame(walRecord(walMetadata, 0, []byte{0x08})),
	}
	for name, b := range bad {
		t.Run(name, func(t *testing.T) {
			if m, c, err := facts.WALMetadata(b); err == nil {
				t.Errorf("WALMetadata = %x, %x, want an error", m, c)
			}
		})
	}
}

// The "wal" line of the script: the IDs come from the WAL's first bytes; an
// unreadable WAL still means a member is there.
func TestParseWALLine(t *testing.T) {
	head := cat(walFrame(walRecord(walCRC, 0, nil)), walFrame(walRecord(walMetadata, 0, walMeta(11, 22))))
	for _, tc := range []struct {
		name      string
		wal       []byte
		want      facts.DataDir
		wantError bool
	}{
		{"readable", head, facts.DataDir{Exists: true, Entries: 1, HasWAL: true, MemberID: 11, ClusterID: 22}, false},
		{"zeros", make([]byte, 64), facts.DataDir{Exists: true, Entries: 1, HasWAL: true}, false},
		{"empty file", nil, facts.DataDir{Exists: true, Entries: 1, HasWAL: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := facts.Parse(lines("datadir 1", "wal "+b64(string(tc.wal)), "end"), t0, t0)
			if err != nil {
				t.Fatal(err)
			}
			if h.DataDir != tc.want {
				t.Errorf("DataDir = %+v, want %+v", h.DataDir, tc.want)
			}
		})
	}
}
