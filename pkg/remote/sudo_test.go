package remote

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/internal/shell"
)

func TestWrapCommandRunsTheSameScript(t *testing.T) {
	script := `printf '%s|' "a b" 'c'"d"; echo "$0" >/dev/null`
	got := wrapCommand(script, false)
	if want := "sh -c " + shell.Quote(script); got != want {
		t.Errorf("wrapCommand(root) = %q, want %q", got, want)
	}
	// What the login shell receives must run the script unchanged.
	out, err := exec.Command("sh", "-c", got).Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "a b|cd|" {
		t.Errorf("wrapped script printed %q", out)
	}
	sudo := wrapCommand(script, true)
	if !strings.HasPrefix(sudo, "sudo -n -- sh -c '") {
		t.Errorf("wrapCommand(sudo) = %q, want non-interactive sudo running sh -c", sudo)
	}
}

func TestIsSudoPasswordFailure(t *testing.T) {
	tests := []struct {
		code   int
		stderr string
		want   bool
	}{
		{1, "sudo: a password is required\n", true},
		{1, "sudo: a terminal is required to read the password; either use the -S option to read from standard input or configure an askpass helper\n", true},
		{1, "sudo: sorry, you must have a tty to run sudo\n", true},
		{1, "bob is not in the sudoers file.  This incident will be reported.\nsudo: ...", true},
		{1, "grep: no match\n", false},
		{2, "sudo: a password is required\n", false},
		{0, "", false},
	}
	for _, tt := range tests {
		if got := isSudoPasswordFailure(tt.code, tt.stderr); got != tt.want {
			t.Errorf("isSudoPasswordFailure(%d, %q) = %v, want %v", tt.code, tt.stderr, got, tt.want)
		}
	}
	err := sudoPasswordError("etcd-1", "ops", "sudo: a password is required\n")
	for _, want := range []string{"user ops on host etcd-1 needs passwordless sudo (sudo -n failed: sudo: a password is required)", "NOPASSWD"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}
