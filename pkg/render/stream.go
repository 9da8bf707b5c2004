package render

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

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

// writeStreamed writes p atomically from what write produces: a temporary
// file in the same directory, synced, given mode, renamed over p.
func writeStreamed(p string, mode fs.FileMode, write func(io.Writer) error) error {
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(p)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := write(bw); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	done = true
	return nil
}
