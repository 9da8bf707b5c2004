package render

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/plan"
)

// ArchiveName is the file name of a host's archive in the render directory.
func ArchiveName(host string) string { return host + ".tar.gz" }

// archiveComment marks an archive as render's own in its gzip header, so
// that a re-render replaces it and nothing else.
const archiveComment = indexFormat

// WriteArchive writes h as a gzipped tar to unpack at / as root: the planned
// files and the directories the plan owns, owned by uid and gid 0 (numbers,
// no names) with their planned modes. Parents the plan does not own (/etc,
// /var/lib, /etc/kubernetes) have no entry, so unpacking cannot change their
// owner or mode; tar makes them only when they are missing.
func WriteArchive(w io.Writer, h plan.Host, mtime time.Time) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	zw.Comment = archiveComment + " " + h.Name
	zw.ModTime = mtime
	tw := tar.NewWriter(zw)
	for _, d := range h.Dirs {
		if !d.Owned {
			continue
		}
		if err := tw.WriteHeader(header(d.Path+"/", tar.TypeDir, d.Mode, 0, mtime)); err != nil {
			return fmt.Errorf("archive %s: %w", d.Path, err)
		}
	}
	for _, f := range h.Files {
		if err := tw.WriteHeader(header(f.Path, tar.TypeReg, f.Mode, int(fileSize(f)), mtime)); err != nil {
			return fmt.Errorf("archive %s: %w", f.Path, err)
		}
		if err := writeContent(tw, f); err != nil {
			return fmt.Errorf("archive %s: %w", f.Path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return nil
}

// header describes one entry: its host path without the leading slash, for
// tar -C /; root's numeric owner; the exact mode, which tar -p keeps.
func header(hostPath string, typ byte, mode fs.FileMode, size int, mtime time.Time) *tar.Header {
	return &tar.Header{
		Typeflag: typ,
		Name:     strings.TrimPrefix(hostPath, "/"),
		Mode:     int64(mode.Perm()),
		Size:     int64(size),
		ModTime:  mtime.Truncate(time.Second),
		Uid:      0,
		Gid:      0,
	}
}

// checkArchiveReplaceable refuses to overwrite a file at p that render did
// not write.
func checkArchiveReplaceable(p string) error {
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	defer f.Close()
	if zr, err := gzip.NewReader(f); err == nil && strings.HasPrefix(zr.Comment, archiveComment+" ") {
		return nil
	}
	return fmt.Errorf("%s exists and was not written by etcdadm render; render into an empty directory", p)
}
