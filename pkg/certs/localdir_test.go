package certs

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The PKI directory etcdadm creates keeps itself out of version control.
func TestSaveCreatesThePKIDirWithAGitignore(t *testing.T) {
	c := cluster(t, t.TempDir(), threeHosts)
	if _, _, err := Ensure(c, Options{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(c.PKIDir(), ".gitignore"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if lines[len(lines)-1] != "*" {
		t.Errorf(".gitignore = %q, want it to ignore everything (*)", b)
	}
	st, err := os.Stat(c.PKIDir())
	if err != nil || st.Mode().Perm() != DirMode {
		t.Errorf("pki dir: %v, %v; want mode %o", st, err, DirMode)
	}
}

// An existing directory is the user's: its .gitignore is kept, and none is added.
func TestSaveLeavesAnExistingPKIDirsGitignore(t *testing.T) {
	for _, existing := range []string{"", "keys/\n"} {
		c := cluster(t, t.TempDir(), threeHosts)
		if err := os.MkdirAll(c.PKIDir(), 0o700); err != nil {
			t.Fatal(err)
		}
		gi := filepath.Join(c.PKIDir(), ".gitignore")
		if existing != "" {
			if err := os.WriteFile(gi, []byte(existing), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := Ensure(c, Options{}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(gi)
		switch {
		case existing == "" && !os.IsNotExist(err):
			t.Errorf("a .gitignore was added to an existing directory: %q, %v", b, err)
		case existing != "" && string(b) != existing:
			t.Errorf(".gitignore = %q, %v; want the user's %q kept", b, err, existing)
		}
	}
}

func TestLooseKeyModesWarnedOrFixed(t *testing.T) {
	c := cluster(t, t.TempDir(), threeHosts)
	if _, _, err := Ensure(c, Options{}); err != nil {
		t.Fatal(err)
	}
	dir := c.PKIDir()
	loose := map[string]os.FileMode{
		filepath.Join(dir, "etcd/ca.key"):                              0o644,
		filepath.Join(dir, "hosts/infra1/etcd/peer.key"):               0o640,
		filepath.Join(dir, "hosts/infra2/apiserver-etcd-client.key"):   0o604,
		filepath.Join(dir, "hosts/infra0/etcd/healthcheck-client.key"): 0o660,
	}
	for p, m := range loose {
		if err := os.Chmod(p, m); err != nil {
			t.Fatal(err)
		}
	}
	modes := func() map[string]os.FileMode {
		out := map[string]os.FileMode{}
		for p := range loose {
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			out[p] = st.Mode().Perm()
		}
		return out
	}

	// A reading command warns and changes nothing.
	var w bytes.Buffer
	before := snapshot(t, dir)
	if err := CheckKeyModes(dir, false, &w); err != nil {
		t.Fatal(err)
	}
	for p, m := range modes() {
		if m != loose[p] {
			t.Errorf("%s: mode %o changed by a check that must only warn", p, m)
		}
		if !strings.Contains(w.String(), p) {
			t.Errorf("no warning for %s:\n%s", p, w.String())
		}
	}
	if n := strings.Count(w.String(), "\n"); n != len(loose) {
		t.Errorf("%d warnings, want %d (one per loose key, none for certificates):\n%s", n, len(loose), w.String())
	}
	if !strings.Contains(w.String(), "warning: "+filepath.Join(dir, "etcd/ca.key")+" is open to group or others (mode 0644): run chmod 600 ") {
		t.Errorf("warning does not say the mode and the fix:\n%s", w.String())
	}
	if ch := changed(before, snapshot(t, dir)); len(ch) > 0 {
		t.Errorf("a check that must only warn changed %v", ch)
	}

	// A writing command fixes them and says so.
	w.Reset()
	if err := CheckKeyModes(dir, true, &w); err != nil {
		t.Fatal(err)
	}
	for p, m := range modes() {
		if m != KeyMode {
			t.Errorf("%s: mode %o, want %o", p, m, KeyMode)
		}
	}
	if !strings.Contains(w.String(), "warning: "+filepath.Join(dir, "etcd/ca.key")+" was open to group or others (mode 0644): set to 0600") {
		t.Errorf("the fix is not reported:\n%s", w.String())
	}
	w.Reset()
	if err := CheckKeyModes(dir, true, &w); err != nil || w.Len() > 0 {
		t.Errorf("second check: %v, %q; want nothing to say", err, w.String())
	}
	// No PKI yet: nothing to check.
	if err := CheckKeyModes(filepath.Join(t.TempDir(), "none"), true, &w); err != nil || w.Len() > 0 {
		t.Errorf("missing dir: %v, %q", err, w.String())
	}
}
