package backup

import (
	"context"
	"errors"
	"fmt"
	"io"

	"filippo.io/age"

	"github.com/etcdadm-io/etcdadm/pkg/snapshot"
)

// Content types of what the bucket holds.
const (
	typeAge      = "application/vnd.age"
	typeSnapshot = "application/octet-stream"
	typeManifest = "application/json"
)

// checkedReader checks the snapshot it reads as it passes, and fails at
// the end, in place of io.EOF, when the stream does not check out: an
// upload of it is then aborted.
type checkedReader struct {
	r     io.Reader
	check *snapshot.Check
	info  *snapshot.Info
}

func (c *checkedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.check.Write(p[:n])
	}
	if errors.Is(err, io.EOF) {
		info, cerr := c.check.Result()
		if cerr != nil {
			return n, fmt.Errorf("the snapshot received: %w", cerr)
		}
		c.info = info
	}
	return n, err
}

// Encode writes the snapshot src to w, encrypted for recipients (as it
// is without any), checking it as it passes: its sha256 trailer, its
// revision and keys. On error what w received must be thrown away.
func Encode(w io.Writer, src io.Reader, recipients []age.Recipient) (*snapshot.Info, error) {
	cr := &checkedReader{r: src, check: snapshot.NewCheck()}
	out, closer := w, io.Closer(nil)
	if len(recipients) > 0 {
		aw, err := age.Encrypt(w, recipients...)
		if err != nil {
			return nil, fmt.Errorf("encrypt: %w", err)
		}
		out, closer = aw, aw
	}
	if _, err := io.CopyBuffer(out, cr, make([]byte, 256<<10)); err != nil {
		return nil, err
	}
	if closer != nil {
		if err := closer.Close(); err != nil {
			return nil, fmt.Errorf("encrypt: %w", err)
		}
	}
	if cr.info == nil {
		return nil, errors.New("the snapshot stream ended without its end")
	}
	return cr.info, nil
}

// Upload streams the snapshot src to key, through Encode: the object is
// made only once the stream checked out, and never when it did not (the
// upload is aborted). It returns what the snapshot holds and the object's
// size.
func Upload(ctx context.Context, s *Store, key string, src io.Reader, recipients []age.Recipient) (*snapshot.Info, int64, error) {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	var info *snapshot.Info
	go func() {
		defer close(done)
		var err error
		info, err = Encode(pw, src, recipients)
		pw.CloseWithError(err)
	}()
	ct := typeSnapshot
	if len(recipients) > 0 {
		ct = typeAge
	}
	size, err := s.Put(ctx, key, pr, ct)
	// The encoder stops at its next write once the upload gave up.
	pr.CloseWithError(errors.New("the upload stopped"))
	<-done
	if err != nil {
		return nil, 0, err
	}
	if info == nil {
		return nil, 0, fmt.Errorf("upload %s: the snapshot stream did not check out", s.URL(key))
	}
	return info, size, nil
}
