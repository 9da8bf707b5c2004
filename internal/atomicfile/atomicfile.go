// Package atomicfile writes files on the local machine so that a reader sees
// either the old content or the new one, never a part.
package atomicfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// Write replaces path with data and mode: a temporary file in the same
// directory is written, synced and renamed over path. Missing parent
// directories are created with dirMode.
func Write(path string, data []byte, mode, dirMode fs.FileMode) error {
	return WriteAll([]File{{Path: path, Data: data, Mode: mode}}, dirMode)
}

// File is one file of a batch.
type File struct {
	Path string
	Data []byte
	Mode fs.FileMode
}

// WriteAll writes files as Write does, but overlaps their syncs: the
// temporary files are written and synced concurrently, then renamed in
// order, then each directory is synced once. A failure before the renames
// leaves every target as it was.
func WriteAll(files []File, dirMode fs.FileMode) error {
	temps := make([]string, len(files))
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	for i, f := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			temps[i], errs[i] = writeTemp(f, dirMode)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, t := range temps {
			if t != "" {
				_ = os.Remove(t)
			}
		}
		return err
	}
	dirs := map[string]bool{}
	for i, f := range files {
		if err := os.Rename(temps[i], f.Path); err != nil {
			for _, t := range temps[i:] {
				_ = os.Remove(t)
			}
			return fmt.Errorf("rename %s to %s: %w", temps[i], f.Path, err)
		}
		dirs[filepath.Dir(f.Path)] = true
	}
	for dir := range dirs {
		syncDir(dir)
	}
	return nil
}

func writeTemp(f File, dirMode fs.FileMode) (string, error) {
	return writeTempFrom(f.Path, f.Mode, dirMode, int64(len(f.Data)), func(w io.Writer) error {
		_, err := w.Write(f.Data)
		return err
	}, nil)
}

// writeTempFrom writes what write produces to a temporary file next to
// path, with mode, synced; it returns the file's name, or removes it.
// size, when known, is what write is expected to produce: the disk space
// of a large file is allocated first. check, when set, is given the file's name once its
// content is written, while it syncs.
func writeTempFrom(path string, mode, dirMode fs.FileMode, size int64, write func(io.Writer) error, check func(tmp string) error) (string, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return "", fmt.Errorf("create directory %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return "", fmt.Errorf("create temporary file for %s: %w", path, err)
	}
	err = tmp.Chmod(mode)
	reserved := size >= reserveMin
	if err == nil && reserved {
		if err = reserve(tmp, size); err != nil {
			err = fmt.Errorf("no room for its %d bytes in %s: %w", size, dir, err)
		}
	}
	if err == nil {
		// The disk is written behind the writes, so that the last sync
		// has little left to do.
		wb := &writeBehind{f: tmp}
		bw := bufio.NewWriterSize(wb, 1<<20)
		if err = write(bw); err == nil {
			err = bw.Flush()
		}
		if err == nil && reserved && wb.n < size {
			// Space reserved past the end is given back.
			err = tmp.Truncate(wb.n)
		}
	}
	if err != nil {
		tmp.Close()
		_ = os.Remove(tmp.Name())
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	// The check reads what the page cache holds while the disk syncs.
	checked := make(chan error, 1)
	if check != nil {
		go func() { checked <- check(tmp.Name()) }()
	}
	err = tmp.Sync()
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		err = fmt.Errorf("write %s: %w", path, err)
	}
	if check != nil {
		if cerr := <-checked; err == nil {
			err = cerr
		}
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return "", err
	}
	return tmp.Name(), nil
}

// reserveMin is the least size whose disk space is allocated ahead: a
// smaller file is written as it comes, without the extra call.
const reserveMin = 1 << 20

// writeBehindChunk is how much is written before the disk is asked to
// write it.
const writeBehindChunk = 8 << 20

// writeBehind writes to f and starts the disk's writes of every chunk
// written, without waiting for them.
type writeBehind struct {
	f       *os.File
	n, done int64
}

func (w *writeBehind) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.n += int64(n)
	if w.n-w.done >= writeBehindChunk {
		startWriteback(w.f, w.done, w.n-w.done)
		w.done = w.n
	}
	return n, err
}

// WriteFrom replaces path, as Write does, with what write produces, never
// held whole in memory. check, when set, is given the temporary file once
// written, while it syncs, before the rename; an error from write or
// check leaves path as it was and no temporary file behind.
func WriteFrom(path string, mode, dirMode fs.FileMode, write func(io.Writer) error, check func(tmp string) error) error {
	return WriteFromSized(path, 0, mode, dirMode, write, check)
}

// WriteFromSized is WriteFrom for content of a known size: the file's disk
// space is allocated before write runs, so that a disk without room fails
// at once, before anything is read, and the writes cost less.
func WriteFromSized(path string, size int64, mode, dirMode fs.FileMode, write func(io.Writer) error, check func(tmp string) error) error {
	tmp, err := writeTempFrom(path, mode, dirMode, size, write, check)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	syncDir(filepath.Dir(path))
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
