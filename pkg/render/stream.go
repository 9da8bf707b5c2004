package render

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/etcdadm-io/etcdadm/pkg/plan"
)

// fileSize is the size of f's content.
func fileSize(f plan.File) int64 {
	if f.Source != nil {
		return f.Source.Size
	}
	return int64(len(f.Data))
}

// writeContent writes f's content to w: its data, or its source streamed
// and checked against the sha256 and size the plan has for it.
func writeContent(w io.Writer, f plan.File) error {
	if f.Source == nil {
		_, err := w.Write(f.Data)
		return err
	}
	src, err := f.Source.Open()
	if err != nil {
		return err
	}
	defer src.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(src, f.Source.Size+1))
	if err != nil {
		return fmt.Errorf("read %s from %s: %w", f.Source.Entry, f.Source.Archive, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != f.Source.Size || sum != f.Source.SHA256 {
		return fmt.Errorf("%s in %s changed since it was read (%d bytes, sha256 %s; want %d, %s): run again", f.Source.Entry, f.Source.Archive, n, sum, f.Source.Size, f.Source.SHA256)
	}
	return nil
}
