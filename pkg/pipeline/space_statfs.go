//go:build linux || darwin || freebsd

package pipeline

import "syscall"

// freeBytes is the room for an unprivileged user on dir's file system;
// -1 when it cannot be read.
func freeBytes(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * int64(st.Bsize)
}
