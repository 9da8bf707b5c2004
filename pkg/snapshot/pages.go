package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
)

// pageReader reads what a snapshot's bbolt database holds while it streams
// by, holding a few bytes per page and never the pages themselves: the
// revision and the number of keys etcdutl's status prints, for a snapshot
// that is never whole on this machine's disk or in its memory (a backup
// streamed to a bucket). Pages arrive in file order, and a page's place in
// the tree is known only once its parent is read, so each page is
// summarised when it passes (its element count, the revision its last key
// names, its children, the buckets it holds) and the trees are walked from
// the meta page's root once the stream ends: pages bbolt freed, stale but
// still in the file, are never reached.
//
// bbolt writes its pages in the host's byte order; etcd's platforms are
// little-endian.
type pageReader struct {
	pageSize int
	// win holds the bytes from page slot winSlot on, until each slot is
	// summarised (with its overflow pages, when it has some).
	win     []byte
	winSlot uint64
	meta    *boltMeta
	err     error

	kind    []byte   // per slot: 0 not a page, pageLeaf or pageBranch
	count   []uint16 // leaf: its elements
	lastRev []uint64 // leaf: the main revision its last key names
	// revs holds, for a leaf whose keys are all revisions (the key
	// bucket's), one word per element: a hash of the user key the
	// revision writes, its lowest bit set for a deletion (a tombstone).
	revs    []uint64
	revsAt  []uint32 // leaf: where its words start in revs
	revsLen []uint16
	// children and buckets are rare: branch pages, and the leaves of
	// the root bucket (etcd's buckets are all top-level).
	children map[uint64][]uint64
	buckets  map[uint64][]bucketRef
}

const (
	pageHeaderSize = 16
	elementSize    = 16
	pageBranch     = 0x01
	pageLeaf       = 0x02
	pageMeta       = 0x04
	bucketLeafFlag = 0x01
	boltMagic      = 0xED0CDAED
	// maxPageSpan bounds a page with its overflow pages (a value of many
	// MiB): a stale header claiming more is not a page.
	maxPageSpan = 64 << 20
)

type boltMeta struct {
	root, pgid uint64
}

// bucketRef is a bucket of the root bucket: its name and root page, 0 for
// a bucket inline in its parent's page.
type bucketRef struct {
	name string
	root uint64
}

func newPageReader() *pageReader {
	return &pageReader{children: map[uint64][]uint64{}, buckets: map[uint64][]bucketRef{}}
}

// Write takes the next bytes of the database (without etcd's trailer).
func (r *pageReader) Write(p []byte) (int, error) {
	if r.err != nil {
		return len(p), nil
	}
	r.win = append(r.win, p...)
	if r.pageSize == 0 {
		if len(r.win) < pageHeaderSize+64 {
			return len(p), nil
		}
		if err := r.readMeta(r.win); err != nil {
			r.err = err
			return len(p), nil
		}
	}
	r.consume(false)
	return len(p), nil
}

// readMeta reads meta page 0, which etcd's snapshot writes first.
func (r *pageReader) readMeta(b []byte) error {
	le := binary.LittleEndian
	m := b[pageHeaderSize:]
	if le.Uint16(b[8:]) != pageMeta || le.Uint32(m[0:]) != boltMagic {
		return errors.New("the stream does not start with a bbolt meta page")
	}
	sum := fnv.New64a()
	sum.Write(m[:56])
	if sum.Sum64() != le.Uint64(m[56:]) {
		return errors.New("the meta page's checksum does not match")
	}
	ps := int(le.Uint32(m[8:]))
	if ps < 1024 || ps > 1<<16 || ps&(ps-1) != 0 {
		return fmt.Errorf("page size %d in the meta page", ps)
	}
	r.pageSize = ps
	r.meta = &boltMeta{root: le.Uint64(m[16:]), pgid: le.Uint64(m[40:])}
	return nil
}

// consume summarises every slot whose page is whole in the window; at the
// end, the last ones too, with what there is.
func (r *pageReader) consume(end bool) {
	ps := r.pageSize
	off := 0
	for len(r.win)-off >= ps {
		b := r.win[off:]
		span := ps
		if id, flags, overflow := header(b); id == r.winSlot && (flags == pageLeaf || flags == pageBranch) {
			if s := (int(overflow) + 1) * ps; s <= maxPageSpan {
				span = s
			}
		}
		if len(b) < span && !end {
			break
		}
		r.summarise(b[:min(span, len(b))])
		off += ps
		r.winSlot++
	}
	// Keep the window small: move what remains to its start.
	r.win = append(r.win[:0], r.win[off:]...)
}

func header(b []byte) (id uint64, flags uint16, overflow uint32) {
	le := binary.LittleEndian
	return le.Uint64(b[0:]), le.Uint16(b[8:]), le.Uint32(b[12:])
}

// summarise records the page at slot r.winSlot, from its bytes b.
func (r *pageReader) summarise(b []byte) {
	slot := r.winSlot
	r.kind = append(r.kind, 0)
	r.count = append(r.count, 0)
	r.lastRev = append(r.lastRev, 0)
	r.revsAt = append(r.revsAt, 0)
	r.revsLen = append(r.revsLen, 0)
	id, flags, _ := header(b)
	if id != slot {
		return
	}
	switch flags {
	case pageBranch:
		kids, ok := branchChildren(b)
		if !ok {
			return
		}
		r.kind[slot], r.children[slot] = pageBranch, kids
	case pageLeaf:
		n, last, buckets, ok := leafSummary(b)
		if !ok {
			return
		}
		if words, isRevs := revisionWords(b, n); isRevs && len(r.revs) < 1<<32-n {
			r.revsAt[slot], r.revsLen[slot] = uint32(len(r.revs)), uint16(n)
			r.revs = append(r.revs, words...)
		}
		r.kind[slot], r.count[slot], r.lastRev[slot] = pageLeaf, uint16(n), last
		if len(buckets) > 0 {
			r.buckets[slot] = buckets
		}
	}
}

func branchChildren(b []byte) ([]uint64, bool) {
	le := binary.LittleEndian
	n := int(le.Uint16(b[10:]))
	if pageHeaderSize+n*elementSize > len(b) {
		return nil, false
	}
	kids := make([]uint64, n)
	for i := range kids {
		kids[i] = le.Uint64(b[pageHeaderSize+i*elementSize+8:])
	}
	return kids, true
}

// leafSummary reads a leaf page: its element count, the main revision its
// last key names (the key bucket's keys are revisions), and the buckets
// its elements hold.
func leafSummary(b []byte) (n int, lastRev uint64, buckets []bucketRef, ok bool) {
	le := binary.LittleEndian
	n = int(le.Uint16(b[10:]))
	if pageHeaderSize+n*elementSize > len(b) {
		return 0, 0, nil, false
	}
	for i := 0; i < n; i++ {
		e := pageHeaderSize + i*elementSize
		flags, pos, ksize, vsize := le.Uint32(b[e:]), int(le.Uint32(b[e+4:])), int(le.Uint32(b[e+8:])), int(le.Uint32(b[e+12:]))
		k := e + pos
		if pos < 0 || ksize < 0 || vsize < 0 || k+ksize+vsize > len(b) || k+ksize+vsize < k {
			return 0, 0, nil, false
		}
		key, val := b[k:k+ksize], b[k+ksize:k+ksize+vsize]
		if i == n-1 && len(key) >= 8 {
			lastRev = binary.BigEndian.Uint64(key)
		}
		if flags&bucketLeafFlag == 0 {
			continue
		}
		if len(val) < 16 {
			return 0, 0, nil, false
		}
		buckets = append(buckets, bucketRef{name: string(key), root: le.Uint64(val)})
	}
	return n, lastRev, buckets, true
}

// result walks the trees from the meta page's root to the key bucket's
// pages, in the order of their revisions: the last revision, and the user
// keys whose last revision is not a deletion, as etcdutl's status counts
// them.
func (r *pageReader) result() (revision int64, keys int, err error) {
	if r.err != nil {
		return 0, 0, r.err
	}
	if r.meta == nil {
		return 0, 0, errors.New("no bbolt meta page")
	}
	r.consume(true)
	seen := make([]bool, len(r.kind))
	var walk func(pg uint64, depth int, leaf func(uint64)) error
	walk = func(pg uint64, depth int, leaf func(uint64)) error {
		switch {
		case pg >= uint64(len(r.kind)):
			return fmt.Errorf("page %d is beyond the end of the database (%d pages)", pg, len(r.kind))
		case seen[pg] || depth > 64:
			return fmt.Errorf("page %d is reached twice", pg)
		}
		seen[pg] = true
		switch r.kind[pg] {
		case pageLeaf:
			leaf(pg)
		case pageBranch:
			for _, kid := range r.children[pg] {
				if err := walk(kid, depth+1, leaf); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("page %d is neither a branch nor a leaf", pg)
		}
		return nil
	}
	var buckets []bucketRef
	if err := walk(r.meta.root, 0, func(pg uint64) { buckets = append(buckets, r.buckets[pg]...) }); err != nil {
		return 0, 0, err
	}
	for _, b := range buckets {
		if b.name != "key" || b.root == 0 {
			// etcd's key bucket outgrows a page at once: an inline one
			// is empty.
			continue
		}
		live := map[uint64]struct{}{}
		err := walk(b.root, 0, func(pg uint64) {
			if r.count[pg] == 0 {
				return
			}
			revision = int64(r.lastRev[pg])
			for _, w := range r.revs[r.revsAt[pg] : r.revsAt[pg]+uint32(r.revsLen[pg])] {
				if w&1 == 1 {
					delete(live, w&^1)
				} else {
					live[w] = struct{}{}
				}
			}
		})
		if err != nil {
			return 0, 0, fmt.Errorf("bucket %q: %w", b.name, err)
		}
		keys = len(live)
	}
	return revision, keys, nil
}

// Check checks a snapshot stream as it passes, without keeping it: etcd's
// sha256 trailer, and what the database's pages hold.
type Check struct {
	th    *trailerHash
	pages *pageReader
}

// NewCheck is a Check for one stream.
func NewCheck() *Check {
	c := &Check{th: newTrailerHash(), pages: newPageReader()}
	c.th.db = c.pages
	return c
}

// Write takes the next bytes of the stream.
func (c *Check) Write(p []byte) (int, error) { return c.th.Write(p) }

// Size is the number of bytes written so far.
func (c *Check) Size() int64 { return c.th.n }

// Result checks the stream, once it ended: it must end with the sha256 of
// what came before, and its pages must make a database; Info holds its
// size, sha256, revision and keys (no path, no hash).
func (c *Check) Result() (*Info, error) {
	sum, err := c.th.check()
	if err != nil {
		return nil, err
	}
	rev, keys, err := c.pages.result()
	if err != nil {
		return nil, fmt.Errorf("the database does not check out: %w", err)
	}
	return &Info{Size: c.th.n, SHA256: sum, Revision: rev, Keys: keys}, nil
}

// revisionWords reads a leaf whose n keys are all revisions (8 bytes of
// main revision, "_", 8 of sub revision, and "t" for a tombstone): for
// each, a hash of the user key its value (an mvccpb.KeyValue) names, with
// the tombstone in the lowest bit.
func revisionWords(b []byte, n int) ([]uint64, bool) {
	le := binary.LittleEndian
	words := make([]uint64, 0, n)
	for i := 0; i < n; i++ {
		e := pageHeaderSize + i*elementSize
		flags, pos, ksize, vsize := le.Uint32(b[e:]), int(le.Uint32(b[e+4:])), int(le.Uint32(b[e+8:])), int(le.Uint32(b[e+12:]))
		k := e + pos
		key, val := b[k:k+ksize], b[k+ksize:k+ksize+vsize]
		if flags != 0 || !(ksize == 17 || ksize == 18 && key[17] == 't') || key[8] != '_' {
			return nil, false
		}
		user, ok := protoField1(val)
		if !ok {
			return nil, false
		}
		h := fnv.New64a()
		h.Write(user)
		w := h.Sum64() &^ 1
		if ksize == 18 {
			w |= 1
		}
		words = append(words, w)
	}
	return words, true
}

// protoField1 is the bytes of field 1 of a protobuf message: an
// mvccpb.KeyValue's key.
func protoField1(m []byte) ([]byte, bool) {
	for len(m) > 0 {
		tag, n := binary.Uvarint(m)
		if n <= 0 {
			return nil, false
		}
		m = m[n:]
		switch tag & 7 {
		case 0:
			if _, n = binary.Uvarint(m); n <= 0 {
				return nil, false
			}
			m = m[n:]
		case 1:
			if len(m) < 8 {
				return nil, false
			}
			m = m[8:]
		case 5:
			if len(m) < 4 {
				return nil, false
			}
			m = m[4:]
		case 2:
			l, n := binary.Uvarint(m)
			if n <= 0 || l > uint64(len(m)-n) {
				return nil, false
			}
			if tag>>3 == 1 {
				return m[n : n+int(l)], true
			}
			m = m[n+int(l):]
		default:
			return nil, false
		}
	}
	return nil, false
}
