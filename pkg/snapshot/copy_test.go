package snapshot

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"
)

// failingReader gives its bytes, then err.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

type failingWriter struct{ after int }

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.after -= len(p); f.after < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

// copyAhead gives every writer all the bytes; a source's error, even
// io.ErrUnexpectedEOF, and a writer's error are the copy's.
func TestCopyAhead(t *testing.T) {
	data := make([]byte, 5*copyChunk+123)
	_, _ = rand.Read(data)
	var a, b bytes.Buffer
	n, err := copyAhead(bytes.NewReader(data), &a, &b)
	if err != nil || n != int64(len(data)) || !bytes.Equal(a.Bytes(), data) || !bytes.Equal(b.Bytes(), data) {
		t.Fatalf("copied %d of %d bytes: %v; the writers got %d and %d bytes", n, len(data), err, a.Len(), b.Len())
	}
	for _, cut := range []error{io.ErrUnexpectedEOF, errors.New("connection lost")} {
		if _, err := copyAhead(&failingReader{bytes.NewReader(data[:2*copyChunk+7]), cut}, io.Discard); !errors.Is(err, cut) {
			t.Errorf("a source that fails with %v: %v", cut, err)
		}
	}
	if _, err := copyAhead(bytes.NewReader(data), io.Discard, &failingWriter{after: 2 * copyChunk}); err == nil || err.Error() != "disk full" {
		t.Errorf("a writer that fails: %v", err)
	}
}
