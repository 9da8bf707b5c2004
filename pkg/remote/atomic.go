package remote

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path"
	"strings"
	"time"
)

// modeBits are the bits a File may set: permissions, setuid, setgid, sticky.
const modeBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

const (
	tempMarker = ".etcdadm-"
	tempSuffix = ".tmp"
	// backupDirMode keeps backups of private keys private.
	backupDirMode fs.FileMode = 0o700
)

// backupStamp names the directory of one connection's backups.
func backupStamp(t time.Time) string { return t.UTC().Format("20060102T150405Z") }

// backupPath is where the previous content of p is kept: the original path
// under backupDir/stamp, so that a restore is a copy back.
func backupPath(backupDir, stamp, p string) string {
	return path.Join(backupDir, stamp, p)
}

// tempName is the temporary file written next to p before the rename.
func tempName(p string) (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	dir, base := path.Split(p)
	return path.Join(dir, "."+base+tempMarker+hex.EncodeToString(b[:])+tempSuffix), nil
}

// isTempName recognises temporary files left by an interrupted write.
func isTempName(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, tempMarker) && strings.HasSuffix(name, tempSuffix)
}

func validateDir(p string, mode fs.FileMode) error {
	if !path.IsAbs(p) || path.Clean(p) != p {
		return fmt.Errorf("path %q is not absolute and clean", p)
	}
	if mode&^modeBits != 0 {
		return fmt.Errorf("mode %v has bits other than permissions", mode)
	}
	return nil
}

func validateFile(f File, backupDir string) error {
	if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
		return fmt.Errorf("path %q is not an absolute, clean file path", f.Path)
	}
	if f.Mode&^modeBits != 0 {
		return fmt.Errorf("mode %v has bits other than permissions", f.Mode)
	}
	if f.DirMode&^modeBits != 0 {
		return fmt.Errorf("directory mode %v has bits other than permissions", f.DirMode)
	}
	if f.UID < 0 || f.GID < 0 {
		return fmt.Errorf("owner %d:%d is negative", f.UID, f.GID)
	}
	if backupDir != "" && (!path.IsAbs(backupDir) || path.Clean(backupDir) != backupDir) {
		return fmt.Errorf("backup directory %q is not an absolute, clean path", backupDir)
	}
	return nil
}

// fileWriter writes files atomically on one host. It lives as long as the
// file system session it uses, so that a session that replaces a cut one
// sweeps directories again.
type fileWriter struct {
	fsys  fileSystem
	stamp string // names the backup directory of this connection
	log   *slog.Logger
	swept map[string]bool
}

func newFileWriter(fsys fileSystem, stamp string, log *slog.Logger) *fileWriter {
	return &fileWriter{fsys: fsys, stamp: stamp, log: log, swept: map[string]bool{}}
}

// write makes f.Path hold f.Data, with f's mode and owner: the content goes
// to a temporary file in the same directory, which is synced, given its
// final owner and mode, and renamed over the target. A reader, or a cut
// connection, never sees a partial file at f.Path. Calls must not overlap.
func (w *fileWriter) write(f File, backupDir string) (WriteResult, error) {
	fsys, log := w.fsys, w.log
	if err := validateFile(f, backupDir); err != nil {
		return WriteResult{}, err
	}
	dirMode := f.DirMode
	if dirMode == 0 {
		dirMode = DefaultDirMode
	}
	dir := path.Dir(f.Path)
	if err := mkdirAll(fsys, dir, dirMode); err != nil {
		return WriteResult{}, err
	}
	w.sweep(dir)

	res := WriteResult{Action: WriteCreated}
	cur, err := fsys.Lstat(f.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return WriteResult{}, err
	case !cur.Mode.IsRegular():
		// A directory, symlink or device there was put on purpose: do not replace it silently.
		return WriteResult{}, fmt.Errorf("%s exists and is not a regular file (%v)", f.Path, cur.Mode.Type())
	default:
		old, err := fsys.ReadFile(f.Path)
		if err != nil {
			return WriteResult{}, err
		}
		if bytes.Equal(old, f.Data) {
			return fixMetadata(fsys, f, cur)
		}
		res.Action = WriteReplaced
		if backupDir != "" {
			if res.BackupPath, err = w.backup(backupPath(backupDir, w.stamp, f.Path), old, cur); err != nil {
				return WriteResult{}, err
			}
		}
	}
	if err := install(fsys, f.Path, f.Data, f.Mode, f.UID, f.GID, log); err != nil {
		return WriteResult{}, err
	}
	return res, nil
}

// fixMetadata gives a file with the right content its mode and owner, in
// place: rewriting it would only churn its inode and mtime.
func fixMetadata(fsys fileSystem, f File, cur FileInfo) (WriteResult, error) {
	ownerWrong := cur.UID != f.UID || cur.GID != f.GID
	modeWrong := cur.Mode&modeBits != f.Mode
	if ownerWrong {
		if err := fsys.Chown(f.Path, f.UID, f.GID); err != nil {
			return WriteResult{}, fmt.Errorf("chown %s: %w", f.Path, err)
		}
	}
	// chown may clear setuid and setgid bits, so chmod comes after it.
	if modeWrong || (ownerWrong && f.Mode&(fs.ModeSetuid|fs.ModeSetgid) != 0) {
		if err := fsys.Chmod(f.Path, f.Mode); err != nil {
			return WriteResult{}, fmt.Errorf("chmod %s: %w", f.Path, err)
		}
	}
	if ownerWrong || modeWrong {
		return WriteResult{Action: WriteMetadata}, nil
	}
	return WriteResult{Action: WriteUnchanged}, nil
}

// backup copies the previous content of a file to bp, with its mode and
// owner. The first copy made under a stamp is kept: it is the state before
// the run.
func (w *fileWriter) backup(bp string, old []byte, cur FileInfo) (string, error) {
	fsys := w.fsys
	if _, err := fsys.Lstat(bp); err == nil {
		return bp, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("back up to %s: %w", bp, err)
	}
	if err := mkdirAll(fsys, path.Dir(bp), backupDirMode); err != nil {
		return "", fmt.Errorf("back up to %s: %w", bp, err)
	}
	w.sweep(path.Dir(bp))
	uid, gid := cur.UID, cur.GID
	if uid < 0 || gid < 0 {
		uid, gid = 0, 0
	}
	if err := install(fsys, bp, old, cur.Mode&modeBits, uid, gid, w.log); err != nil {
		return "", fmt.Errorf("back up to %s: %w", bp, err)
	}
	return bp, nil
}

// install writes data to a new temporary file next to p, then renames it
// over p. On failure the temporary file is removed if the host can still be
// reached; otherwise the next write in that directory removes it.
func install(fsys fileSystem, p string, data []byte, mode fs.FileMode, uid, gid int, log *slog.Logger) error {
	tmp, err := tempName(p)
	if err != nil {
		return err
	}
	w, err := fsys.CreateExclusive(tmp)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	open, renamed := true, false
	defer func() {
		if open {
			_ = w.Close()
		}
		if !renamed {
			if err := fsys.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
				log.Debug("temporary file left behind, removed by the next write there", "path", tmp, "err", err)
			}
		}
	}()
	// Always: a setgid directory may have given the file another group.
	if err := fsys.Chown(tmp, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", tmp, err)
	}
	if _, err := io.Copy(w, bytes.NewReader(data)); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := w.Sync(); errors.Is(err, errSyncUnsupported) {
		log.Warn("cannot fsync on this host; the rename is atomic but may not survive a power loss", "path", p)
	} else if err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	open = false
	if err := w.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	// After chown, which may clear setuid bits, and before the rename, so the
	// file never appears at p with another mode.
	if err := fsys.Chmod(tmp, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err := fsys.Rename(tmp, p); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, p, err)
	}
	renamed = true
	return nil
}

// mkdirAll creates dir and its missing parents with mode, set explicitly
// since the server's umask must not decide it. Existing directories are
// left alone.
func mkdirAll(fsys fileSystem, dir string, mode fs.FileMode) error {
	fi, err := fsys.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	if parent := path.Dir(dir); parent != dir {
		if err := mkdirAll(fsys, parent, mode); err != nil {
			return err
		}
	}
	if err := fsys.Mkdir(dir); err != nil {
		// Someone else may have created it meanwhile.
		if fi, serr := fsys.Stat(dir); serr == nil && fi.IsDir() {
			return nil
		}
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	if err := fsys.Chmod(dir, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	return nil
}

// sweep deletes, once per directory and session, the temporary files an
// interrupted write left in dir. Writes to a host are serialised by its
// transport, so none of them is in use. Failures are only logged: the write
// does not depend on them.
func (w *fileWriter) sweep(dir string) {
	if w.swept[dir] {
		return
	}
	names, err := w.fsys.ReadDir(dir)
	if err != nil {
		w.log.Debug("cannot list directory for stale temporary files", "dir", dir, "err", err)
		return
	}
	w.swept[dir] = true
	for _, name := range names {
		if !isTempName(name) {
			continue
		}
		p := path.Join(dir, name)
		if err := w.fsys.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			w.log.Warn("cannot remove stale temporary file", "path", p, "err", err)
			continue
		}
		w.log.Info("removed temporary file left by an interrupted write", "path", p)
	}
}
