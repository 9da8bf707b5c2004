package fakehost

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// modeBits are the bits a file or directory may be given: permissions,
// setuid, setgid, sticky.
const modeBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// backupDirMode is the mode of the directories made for backups, as the
// real transports make them: backups of private keys stay private.
const backupDirMode fs.FileMode = 0o700

// node is a regular file or a directory. Its data is never changed in
// place, so that nodes may share it.
type node struct {
	mode     fs.FileMode
	uid, gid int
	data     []byte
	modTime  time.Time
}

func (n *node) info(p string) remote.FileInfo {
	return remote.FileInfo{Path: p, Mode: n.mode, UID: n.uid, GID: n.gid, Size: int64(len(n.data)), ModTime: n.modTime}
}

func checkPath(p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p {
		return fmt.Errorf("path %q is not absolute and clean", p)
	}
	return nil
}

// fileOp runs fn on the file system as one call to the host. Its error
// names the operation, the path and the host, as the real transports' do.
func (h *Host) fileOp(ctx context.Context, op, p string, fn func() error) error {
	err := h.enter(ctx)
	if err == nil {
		h.mu.Lock()
		if err = h.down(); err == nil {
			err = fn()
		}
		h.mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("%s %s on %s: %w", op, p, h.name, err)
	}
	return nil
}

// ReadFile returns the content of the regular file p.
func (h *Host) ReadFile(ctx context.Context, p string) ([]byte, error) {
	var data []byte
	err := h.fileOp(ctx, "read", p, func() error {
		n, err := h.lookup("open", p)
		if err == nil && n.mode.IsDir() {
			err = &fs.PathError{Op: "read", Path: p, Err: errors.New("is a directory")}
		}
		if err == nil {
			data = bytes.Clone(n.data)
		}
		return err
	})
	return data, err
}

// Stat describes the file or directory p.
func (h *Host) Stat(ctx context.Context, p string) (remote.FileInfo, error) {
	var fi remote.FileInfo
	err := h.fileOp(ctx, "stat", p, func() error {
		n, err := h.lookup("stat", p)
		if err == nil {
			fi = n.info(p)
		}
		return err
	})
	return fi, err
}

// lookup returns the node at p. h.mu is held.
func (h *Host) lookup(op, p string) (*node, error) {
	if err := checkPath(p); err != nil {
		return nil, err
	}
	n, ok := h.nodes[p]
	if !ok {
		return nil, &fs.PathError{Op: op, Path: p, Err: fs.ErrNotExist}
	}
	return n, nil
}

// MkdirAll creates p and its missing parents with mode; directories that
// exist are left as they are.
func (h *Host) MkdirAll(ctx context.Context, p string, mode fs.FileMode) error {
	return h.fileOp(ctx, "create directory", p, func() error {
		if err := checkPath(p); err != nil {
			return err
		}
		if mode&^modeBits != 0 {
			return fmt.Errorf("mode %v has bits other than permissions", mode)
		}
		return h.mkdirAll(p, mode)
	})
}

// mkdirAll creates dir and its missing parents, owned by root. h.mu is held.
func (h *Host) mkdirAll(dir string, mode fs.FileMode) error {
	if n, ok := h.nodes[dir]; ok {
		if !n.mode.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", dir)
		}
		return nil
	}
	// The root always exists, so this ends.
	if err := h.mkdirAll(path.Dir(dir), mode); err != nil {
		return err
	}
	h.nodes[dir] = &node{mode: fs.ModeDir | mode, modTime: time.Now()}
	return nil
}

// WriteFile makes f.Path hold f.Data with f's mode and owner, as the real
// transports do: missing parents get f.DirMode, a previous content that
// differs is copied under backupDir/<stamp>/<f.Path> (the first copy of a
// connection is kept), and a file with the right content only has its mode
// and owner fixed. Each write is atomic, since the host is locked for it.
func (h *Host) WriteFile(ctx context.Context, f remote.File, backupDir string) (remote.WriteResult, error) {
	var res remote.WriteResult
	err := h.fileOp(ctx, "write", f.Path, func() (err error) {
		res, err = h.write(f, backupDir)
		return err
	})
	return res, err
}

// write is WriteFile's work. h.mu is held.
func (h *Host) write(f remote.File, backupDir string) (remote.WriteResult, error) {
	if err := checkFile(f, backupDir); err != nil {
		return remote.WriteResult{}, err
	}
	if err := h.mkdirAll(path.Dir(f.Path), cmp.Or(f.DirMode, remote.DefaultDirMode)); err != nil {
		return remote.WriteResult{}, err
	}
	want := &node{mode: f.Mode, uid: f.UID, gid: f.GID, data: bytes.Clone(f.Data), modTime: time.Now()}
	cur, ok := h.nodes[f.Path]
	switch {
	case !ok:
		h.nodes[f.Path] = want
		return remote.WriteResult{Action: remote.WriteCreated}, nil
	case !cur.mode.IsRegular():
		return remote.WriteResult{}, fmt.Errorf("%s exists and is not a regular file (%v)", f.Path, cur.mode.Type())
	case bytes.Equal(cur.data, f.Data) && cur.mode == f.Mode && cur.uid == f.UID && cur.gid == f.GID:
		return remote.WriteResult{Action: remote.WriteUnchanged}, nil
	case bytes.Equal(cur.data, f.Data):
		// Fixed in place: the content and its time stay.
		cur.mode, cur.uid, cur.gid = f.Mode, f.UID, f.GID
		return remote.WriteResult{Action: remote.WriteMetadata}, nil
	}
	res := remote.WriteResult{Action: remote.WriteReplaced}
	if backupDir != "" {
		res.BackupPath = path.Join(backupDir, h.stamp, f.Path)
		if err := h.backup(res.BackupPath, cur); err != nil {
			return remote.WriteResult{}, fmt.Errorf("back up to %s: %w", res.BackupPath, err)
		}
	}
	h.nodes[f.Path] = want
	return res, nil
}

// backup copies old to bp, unless something is there already: the first
// copy is the state before the run. h.mu is held.
func (h *Host) backup(bp string, old *node) error {
	if _, ok := h.nodes[bp]; ok {
		return nil
	}
	if err := h.mkdirAll(path.Dir(bp), backupDirMode); err != nil {
		return err
	}
	h.nodes[bp] = &node{mode: old.mode, uid: old.uid, gid: old.gid, data: old.data, modTime: time.Now()}
	return nil
}

// checkFile refuses what the real transports refuse before they touch the host.
func checkFile(f remote.File, backupDir string) error {
	switch {
	case checkPath(f.Path) != nil || f.Path == "/":
		return fmt.Errorf("path %q is not an absolute, clean file path", f.Path)
	case f.Mode&^modeBits != 0:
		return fmt.Errorf("mode %v has bits other than permissions", f.Mode)
	case f.DirMode&^modeBits != 0:
		return fmt.Errorf("directory mode %v has bits other than permissions", f.DirMode)
	case f.UID < 0 || f.GID < 0:
		return fmt.Errorf("owner %d:%d is negative", f.UID, f.GID)
	case backupDir != "" && checkPath(backupDir) != nil:
		return fmt.Errorf("backup directory %q is not an absolute, clean path", backupDir)
	}
	return nil
}

// PutFile makes p a regular file holding data with mode, owned by root,
// creating missing parents with remote.DefaultDirMode. It is for setting up
// a test and panics where WriteFile would fail.
func (h *Host) PutFile(p string, data []byte, mode fs.FileMode) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f := remote.File{Path: p, Mode: mode}
	err := checkFile(f, "")
	if err == nil {
		err = h.mkdirAll(path.Dir(p), remote.DefaultDirMode)
	}
	if n, ok := h.nodes[p]; ok && err == nil && !n.mode.IsRegular() {
		err = fmt.Errorf("%s exists and is not a regular file", p)
	}
	if err != nil {
		panic("fakehost: PutFile: " + err.Error())
	}
	h.nodes[p] = &node{mode: mode, data: bytes.Clone(data), modTime: time.Now()}
}

// File returns the content and mode of the regular file p, and whether
// there is one.
func (h *Host) File(p string) ([]byte, fs.FileMode, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n, ok := h.nodes[p]
	if !ok || !n.mode.IsRegular() {
		return nil, 0, false
	}
	return bytes.Clone(n.data), n.mode, true
}

// Paths returns the paths of the regular files, sorted; directories are
// left out (Stat tells them).
func (h *Host) Paths() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for p, n := range h.nodes {
		if n.mode.IsRegular() {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// Remove deletes p and, for a directory, everything under it; the root
// directory itself stays. A missing p is no error.
func (h *Host) Remove(p string) {
	if err := checkPath(p); err != nil {
		panic("fakehost: Remove: " + err.Error())
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	under := strings.TrimSuffix(p, "/") + "/"
	for q := range h.nodes {
		if q != "/" && (q == p || strings.HasPrefix(q, under)) {
			delete(h.nodes, q)
		}
	}
}
