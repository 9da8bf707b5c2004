package remote

import (
	"fmt"
	"strings"

	"github.com/etcdadm-io/etcdadm/internal/shell"
)

// wrapCommand turns cmd into what is sent to the host: always through sh -c,
// so the login shell (bash, zsh, fish…) does not change its meaning, and
// through non-interactive sudo when the login user is not root.
func wrapCommand(cmd string, sudo bool) string {
	if sudo {
		return "sudo -n -- sh -c " + shell.Quote(cmd)
	}
	return "sh -c " + shell.Quote(cmd)
}

// sudoCheckCommand fails when sudo would ask for a password.
const sudoCheckCommand = "sudo -n -- true"

// isSudoPasswordFailure recognises sudo refusing to run without a password
// (or without a terminal, which means the same under -n).
func isSudoPasswordFailure(exitCode int, stderr string) bool {
	if exitCode != 1 {
		return false
	}
	s := strings.ToLower(stderr)
	return strings.Contains(s, "sudo:") &&
		(strings.Contains(s, "password is required") ||
			strings.Contains(s, "a terminal is required") ||
			strings.Contains(s, "must have a tty") ||
			strings.Contains(s, "not in the sudoers file") ||
			strings.Contains(s, "may not run sudo"))
}

func sudoPasswordError(host, user, stderr string) error {
	return fmt.Errorf("user %s on host %s needs passwordless sudo (sudo -n failed: %s); allow it with a sudoers rule such as %q, or log in as root: %w",
		user, host, firstLine(stderr), user+" ALL=(ALL) NOPASSWD: ALL", ErrSudoPassword)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if s == "" {
		return "no message"
	}
	return s
}
