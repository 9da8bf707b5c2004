package atomicfile

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback starts the disk's writes of a range of f, without
// waiting for them; the sync that follows waits.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// reserve allocates n bytes of disk for f ahead of its writes, its size
// left as it is: a disk without room says so before anything is written,
// and the writes that follow do less work. A file system that cannot
// allocate ahead is written as it comes.
func reserve(f *os.File, n int64) error {
	err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, n)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) {
		return nil
	}
	return err
}
