package facts

import (
	"encoding/binary"
	"errors"

	"google.golang.org/protobuf/encoding/protowire"
)

// WAL record types (etcd's server/storage/wal).
const (
	walMetadataType = 1
	walCRCType      = 4
)

// WALMetadata reads the member and cluster IDs from the start of a WAL file:
// every WAL file begins with a CRC record and a metadata record whose data
// is etcdserverpb.Metadata{NodeID, ClusterID}.
func WALMetadata(b []byte) (memberID, clusterID uint64, err error) {
	for len(b) >= 8 {
		lenField := binary.LittleEndian.Uint64(b[:8])
		size := lenField &^ (uint64(0xff) << 56)
		var pad uint64
		if lenField&(1<<63) != 0 {
			pad = (lenField >> 56) & 0x7
		}
		b = b[8:]
		if size == 0 || size+pad > uint64(len(b)) {
			break
		}
		typ, data, err := walRecord(b[:size])
		if err != nil {
			return 0, 0, err
		}
		b = b[size+pad:]
		switch typ {
		case walCRCType:
			continue
		case walMetadataType:
			return walIDs(data)
		default:
			return 0, 0, errors.New("the WAL does not start with its metadata")
		}
	}
	return 0, 0, errors.New("no metadata record in the WAL's first bytes")
}

// walRecord decodes walpb.Record{type = 1, crc = 2, data = 3}.
func walRecord(b []byte) (typ int64, data []byte, err error) {
	for len(b) > 0 {
		num, wt, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, nil, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 1 && wt == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, nil, protowire.ParseError(n)
			}
			typ, b = int64(v), b[n:]
		case num == 3 && wt == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, nil, protowire.ParseError(n)
			}
			data, b = v, b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, wt, b)
			if n < 0 {
				return 0, nil, protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	return typ, data, nil
}

// walIDs decodes etcdserverpb.Metadata{NodeID = 1, ClusterID = 2}.
func walIDs(b []byte) (memberID, clusterID uint64, err error) {
	for len(b) > 0 {
		num, wt, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, 0, protowire.ParseError(n)
		}
		b = b[n:]
		if wt != protowire.VarintType {
			n := protowire.ConsumeFieldValue(num, wt, b)
			if n < 0 {
				return 0, 0, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return 0, 0, protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case 1:
			memberID = v
		case 2:
			clusterID = v
		}
	}
	if memberID == 0 {
		return 0, 0, errors.New("the WAL's metadata has no member ID")
	}
	return memberID, clusterID, nil
}
