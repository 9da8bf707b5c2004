//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package remote

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"
)

// readSecret turns echo off, reads a line and puts the terminal back as it
// was, also when ctx ends the question first. Echo goes off here, before the
// read starts, so that nothing can turn it off after the restore.
func (t *Terminal) readSecret(ctx context.Context) ([]byte, error) {
	fd := int(t.in.Fd())
	saved, err := unix.IoctlGetTermios(fd, ioctlGetTermios)
	if err != nil {
		return nil, fmt.Errorf("read the terminal's settings: %w", err)
	}
	quiet := *saved
	quiet.Lflag &^= unix.ECHO
	// A line at a time, and Ctrl-C is a signal, whatever the terminal was in.
	quiet.Lflag |= unix.ICANON | unix.ISIG
	quiet.Iflag |= unix.ICRNL
	if err := unix.IoctlSetTermios(fd, ioctlSetTermios, &quiet); err != nil {
		return nil, fmt.Errorf("turn echo off: %w", err)
	}
	defer func() { _ = unix.IoctlSetTermios(fd, ioctlSetTermios, saved) }()
	return t.readLine(ctx)
}
