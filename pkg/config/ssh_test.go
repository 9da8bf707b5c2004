package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// An identity file that is not there makes no inventory invalid: only the
// commands that reach the hosts check it, and refuse naming the field, its
// line and the fix.
func TestIdentityFileIsCheckedToConnect(t *testing.T) {
	c, _, err := Load("testdata/valid/missing-identity-file.yaml")
	if err != nil {
		t.Fatalf("the inventory is refused without the key: %v", err)
	}
	err = c.CheckSSHFiles()
	abs, _ := filepath.Abs("testdata/valid/keys/does-not-exist")
	want := "testdata/valid/missing-identity-file.yaml is invalid: spec.ssh.identityFile (line 6): cannot read " + abs + ": no such file or directory; point it at your private key or leave it empty to use ssh-agent"
	if err == nil || err.Error() != want {
		t.Errorf("err %v\nwant %s", err, want)
	}
	c.Spec.SSH.IdentityFile = "."
	if err := c.CheckSSHFiles(); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("a directory: %v", err)
	}
	c.Spec.SSH.IdentityFile = ""
	if err := c.CheckSSHFiles(); err != nil {
		t.Errorf("none: %v", err)
	}
}
