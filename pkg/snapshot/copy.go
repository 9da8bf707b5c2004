package snapshot

import (
	"io"
	"sync"
	"sync/atomic"
)

// copyChunk and copyChunks size copyAhead's buffers.
const (
	copyChunk  = 1 << 20
	copyChunks = 4
)

// copyAhead copies src to every one of dsts, each written by a goroutine
// of its own while the next chunks are read: the reading, the hashing and
// the writing to disk of a snapshot overlap instead of taking turns. It
// returns the bytes read and the first error.
func copyAhead(src io.Reader, dsts ...io.Writer) (int64, error) {
	type chunk struct {
		b []byte
		// left counts the writers not done with b; the last one gives
		// the chunk back.
		left atomic.Int32
	}
	free := make(chan *chunk, copyChunks)
	for range copyChunks {
		free <- &chunk{b: make([]byte, copyChunk)}
	}
	var (
		mu       sync.Mutex
		firstErr error
		failed   = make(chan struct{})
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
			close(failed)
		}
	}
	ins := make([]chan *chunk, len(dsts))
	var writers sync.WaitGroup
	for i, dst := range dsts {
		ins[i] = make(chan *chunk, copyChunks)
		writers.Add(1)
		go func() {
			defer writers.Done()
			broken := false
			for c := range ins[i] {
				if !broken {
					if _, err := dst.Write(c.b); err != nil {
						fail(err)
						broken = true
					}
				}
				if c.left.Add(-1) == 0 {
					free <- c
				}
			}
		}()
	}
	var n int64
	var readErr error
	for readErr == nil {
		var c *chunk
		select {
		case c = <-free:
		case <-failed:
		}
		if c == nil {
			break
		}
		c.b = c.b[:cap(c.b)]
		m, err := fill(src, c.b)
		n += int64(m)
		readErr = err
		if m == 0 {
			free <- c
			continue
		}
		c.b = c.b[:m]
		c.left.Store(int32(len(dsts)))
		for _, in := range ins {
			in <- c
		}
	}
	for _, in := range ins {
		close(in)
	}
	writers.Wait()
	if readErr != nil && readErr != io.EOF {
		return n, readErr
	}
	mu.Lock()
	defer mu.Unlock()
	return n, firstErr
}

// fill reads into b until it is full or src ends: io.EOF only when src
// ended, any other error as src gave it (io.ReadFull would call a short
// read io.ErrUnexpectedEOF, which a source may also return).
func fill(src io.Reader, b []byte) (int, error) {
	var n int
	for n < len(b) {
		m, err := src.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
