package remote

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/pkg/sftp"
)

// fileSystem is what file operations need from a host: SFTP's primitives,
// which the local transport provides with the os package. Paths are absolute.
type fileSystem interface {
	Stat(p string) (FileInfo, error)
	Lstat(p string) (FileInfo, error)
	ReadFile(p string) ([]byte, error)
	ReadDir(p string) ([]string, error)
	Mkdir(p string) error
	Chmod(p string, mode fs.FileMode) error
	Chown(p string, uid, gid int) error
	// CreateExclusive creates a new file readable by its owner only.
	CreateExclusive(p string) (tempFile, error)
	// Rename replaces newpath atomically.
	Rename(oldpath, newpath string) error
	Remove(p string) error
}

// tempFile is a file being written.
type tempFile interface {
	io.Writer
	// Sync flushes the file to stable storage; errSyncUnsupported when the
	// server cannot.
	Sync() error
	Close() error
}

var errSyncUnsupported = errors.New("server cannot fsync files")

// sftpFS runs file operations through an SFTP server on the host.
type sftpFS struct {
	c *sftp.Client
	// chmodOnCreate narrows new files to 0600 right away, for servers whose
	// umask is not known to do it.
	chmodOnCreate bool
}

func (s sftpFS) Stat(p string) (FileInfo, error) {
	fi, err := s.c.Stat(p)
	if err != nil {
		return FileInfo{}, err
	}
	return sftpInfo(p, fi), nil
}

func (s sftpFS) Lstat(p string) (FileInfo, error) {
	fi, err := s.c.Lstat(p)
	if err != nil {
		return FileInfo{}, err
	}
	return sftpInfo(p, fi), nil
}

func sftpInfo(p string, fi fs.FileInfo) FileInfo {
	info := FileInfo{Path: p, Mode: fi.Mode(), Size: fi.Size(), ModTime: fi.ModTime(), UID: -1, GID: -1}
	if st, ok := fi.Sys().(*sftp.FileStat); ok {
		info.UID, info.GID = int(st.UID), int(st.GID)
	}
	return info
}

func (s sftpFS) ReadFile(p string) ([]byte, error) {
	f, err := s.c.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	// WriteTo reads with several requests in flight.
	if _, err := f.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (s sftpFS) ReadDir(p string) ([]string, error) {
	entries, err := s.c.ReadDir(p)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil
}

func (s sftpFS) Mkdir(p string) error                   { return s.c.Mkdir(p) }
func (s sftpFS) Chmod(p string, mode fs.FileMode) error { return s.c.Chmod(p, mode) }
func (s sftpFS) Chown(p string, uid, gid int) error     { return s.c.Chown(p, uid, gid) }
func (s sftpFS) Remove(p string) error                  { return s.c.Remove(p) }

func (s sftpFS) Rename(oldpath, newpath string) error {
	if _, ok := s.c.HasExtension("posix-rename@openssh.com"); !ok {
		// Plain SFTP rename refuses to replace a file: there is no atomic fallback.
		return fmt.Errorf("the SFTP server lacks posix-rename@openssh.com, needed to replace files atomically")
	}
	return s.c.PosixRename(oldpath, newpath)
}

func (s sftpFS) CreateExclusive(p string) (tempFile, error) {
	// The server runs with umask 077 (see sftpServerScript): the file is 0600.
	f, err := s.c.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return nil, err
	}
	if s.chmodOnCreate {
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			_ = s.c.Remove(p)
			return nil, err
		}
	}
	return sftpFile{f, s.c}, nil
}

type sftpFile struct {
	*sftp.File
	c *sftp.Client
}

func (f sftpFile) Sync() error {
	if v, ok := f.c.HasExtension("fsync@openssh.com"); !ok || v != "1" {
		return errSyncUnsupported
	}
	return f.File.Sync()
}

// osFS is the local file system.
type osFS struct{}

func (osFS) Stat(p string) (FileInfo, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return FileInfo{}, err
	}
	return osInfo(p, fi), nil
}

func (osFS) Lstat(p string) (FileInfo, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return FileInfo{}, err
	}
	return osInfo(p, fi), nil
}

func osInfo(p string, fi fs.FileInfo) FileInfo {
	uid, gid := ownerOf(fi)
	return FileInfo{Path: p, Mode: fi.Mode(), Size: fi.Size(), ModTime: fi.ModTime(), UID: uid, GID: gid}
}

func (osFS) ReadFile(p string) ([]byte, error) { return os.ReadFile(p) }

func (osFS) ReadDir(p string) ([]string, error) {
	entries, err := os.ReadDir(p)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil
}

func (osFS) Mkdir(p string) error                   { return os.Mkdir(p, 0o700) }
func (osFS) Chmod(p string, mode fs.FileMode) error { return os.Chmod(p, mode) }
func (osFS) Chown(p string, uid, gid int) error     { return os.Chown(p, uid, gid) }

// Rename also syncs the directory, so the rename itself survives a crash;
// SFTP has no way to do that on a remote host.
func (osFS) Rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(newpath)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

func (osFS) Remove(p string) error { return os.Remove(p) }

func (osFS) CreateExclusive(p string) (tempFile, error) {
	return os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}
