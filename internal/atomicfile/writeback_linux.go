package atomicfile

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback starts the disk's writes of a range of f, without
// waiting for them; the sync that follows waits.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
