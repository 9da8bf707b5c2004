package remote

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"golang.org/x/crypto/ssh"
)

// retryable reports whether a failed connection attempt may succeed if
// tried again: the network failed, not the credentials, the host key or
// the configuration.
func retryable(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, ErrAuth), errors.Is(err, ErrHostKeyUnknown), errors.Is(err, ErrHostKeyChanged),
		errors.Is(err, ErrSudoPassword), errors.Is(err, context.Canceled):
		return false
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.IsTimeout || dns.IsTemporary
	}
	for _, errno := range []syscall.Errno{
		syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.ETIMEDOUT,
		syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EPIPE,
	} {
		if errors.Is(err, errno) {
			return true
		}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	// A jump host could not reach the next hop.
	var oc *ssh.OpenChannelError
	if errors.As(err, &oc) {
		return oc.Reason == ssh.ConnectionFailed
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return strings.Contains(err.Error(), "connection reset by peer")
}

// isAuthFailure recognises the ssh package's and OpenSSH's ways of saying
// that no credential was accepted; the ssh package has no error type for it.
func isAuthFailure(err error) bool {
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "unable to authenticate") ||
		strings.Contains(s, "no supported methods remain") ||
		strings.Contains(s, "too many authentication failures")
}
