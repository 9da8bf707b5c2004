package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestRetryable(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	tests := []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("dial: %w", refused), true},
		{fmt.Errorf("handshake: %w", io.EOF), true},
		{syscall.ECONNRESET, true},
		{fmt.Errorf("timed out: %w", context.DeadlineExceeded), true},
		{&ssh.OpenChannelError{Reason: ssh.ConnectionFailed}, true},
		{&ssh.OpenChannelError{Reason: ssh.Prohibited}, false},
		{&net.DNSError{Err: "no such host", IsNotFound: true}, false},
		{&net.DNSError{Err: "timeout", IsTimeout: true}, true},
		{fmt.Errorf("x: %w", ErrAuth), false},
		{fmt.Errorf("x: %w: %w", ErrAuth, io.EOF), false},
		{&HostKeyError{}, false},
		{&HostKeyError{Known: []KnownHostKey{{}}}, false},
		{fmt.Errorf("%w", ErrSudoPassword), false},
		{context.Canceled, false},
		{errors.New("ssh: handshake failed: ssh: no common algorithm for host key"), false},
	}
	for _, tt := range tests {
		if got := retryable(tt.err); got != tt.want {
			t.Errorf("retryable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestIsAuthFailure(t *testing.T) {
	for s, want := range map[string]bool{
		"ssh: handshake failed: ssh: unable to authenticate, attempted methods [none publickey], no supported methods remain": true,
		"ssh: disconnect, reason 2: Too many authentication failures":                                                         true,
		"ssh: handshake failed: EOF": false,
	} {
		if got := isAuthFailure(errors.New(s)); got != want {
			t.Errorf("isAuthFailure(%q) = %v, want %v", s, got, want)
		}
	}
}
