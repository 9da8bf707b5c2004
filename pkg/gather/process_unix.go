//go:build unix

package gather

import (
	"errors"
	"syscall"
)

// processRuns reports whether a process of this machine has that pid: one
// that cannot be signalled for want of permission runs too.
func processRuns(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
