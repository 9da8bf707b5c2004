package certs

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A rotation keeps both CAs in the PKI directory until it ends: finished,
// the new CA becomes the CA and the old one is kept under backup/; aborted,
// the new one is kept there and the CA stays.
func TestRotationLifecycle(t *testing.T) {
	for _, abort := range []bool{false, true} {
		dir := t.TempDir()
		c := cluster(t, dir, threeHosts)
		if _, _, err := Ensure(c, Options{}); err != nil {
			t.Fatal(err)
		}
		old, _ := os.ReadFile(filepath.Join(dir, "pki", CABaseName+".crt"))
		r, err := StartRotation(c, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if RotationInProgress(c) {
			t.Fatal("a rotation in memory is in progress before it is saved")
		}
		if err := r.Save(c); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(filepath.Join(dir, "pki", NewCABaseName+".key"))
		if err != nil || st.Mode().Perm() != KeyMode || !RotationInProgress(c) {
			t.Fatalf("the new CA key: %v %v", st, err)
		}
		again, err := StartRotation(c, time.Now())
		if err != nil || again.Created || !bytes.Equal(again.New.CertPEM, r.New.CertPEM) {
			t.Fatalf("a second start made another CA: %v", err)
		}
		// Leaves the new CA issued are reused by a Compute with it as issuer.
		moved, _, err := Compute(c, Options{Issuer: &again.New})
		if err != nil {
			t.Fatal(err)
		}
		if err := moved.Save(); err != nil {
			t.Fatal(err)
		}
		if p, _, err := Compute(c, Options{Issuer: &again.New}); err != nil || p.Unsaved() {
			t.Errorf("leaves of the new CA reissued: %v", err)
		}
		var kept string
		if abort {
			kept, err = again.Abort(c)
		} else {
			kept, err = again.Finish(c)
		}
		if err != nil {
			t.Fatal(err)
		}
		now, _ := os.ReadFile(filepath.Join(dir, "pki", CABaseName+".crt"))
		backup, _ := os.ReadFile(kept)
		switch {
		case RotationInProgress(c):
			t.Errorf("abort %v: the rotation is still in progress", abort)
		case abort && (!bytes.Equal(now, old) || !bytes.Equal(backup, r.New.CertPEM)):
			t.Error("abort: the CA changed, or the new one was not kept")
		case !abort && (!bytes.Equal(now, r.New.CertPEM) || !bytes.Equal(backup, old)):
			t.Error("finish: the new CA is not the CA, or the old one was not kept")
		}
	}
}
