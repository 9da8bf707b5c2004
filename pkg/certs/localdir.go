package certs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// gitignore is written into a PKI directory etcdadm creates: it holds the CA
// key, which must not end up in the repository that holds the inventory.
const gitignore = "# Written by etcdadm: this directory holds private keys, keep it out of version control.\n*\n"

// makeDir creates the operator's PKI directory if it does not exist, with
// DirMode and a .gitignore that ignores everything. An existing directory,
// and its .gitignore or lack of one, are left as they are.
func makeDir(dir string) error {
	if _, err := os.Lstat(dir); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("create the PKI directory %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".gitignore"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", filepath.Join(dir, ".gitignore"), err)
	}
	_, err = f.WriteString(gitignore)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(dir, ".gitignore"), err)
	}
	return nil
}

// CheckKeyModes looks for private keys (*.key) in the operator's PKI
// directory that group or others may open, and says so on w. With fix (a
// command that writes the PKI), it sets them to KeyMode; without, it only
// warns and changes nothing. A missing directory has nothing to check.
func CheckKeyModes(dir string, fix bool, w io.Writer) error {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(d.Name(), ".key") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := info.Mode().Perm()
		if mode&0o077 == 0 {
			return nil
		}
		if !fix {
			fmt.Fprintf(w, "warning: %s is open to group or others (mode %04o): run chmod 600 %s (a command that writes the PKI, such as etcdadm apply, also does it)\n", p, mode, p)
			return nil
		}
		if err := os.Chmod(p, KeyMode); err != nil {
			return fmt.Errorf("%s is open to group or others (mode %04o) and could not be made private: %w", p, mode, err)
		}
		fmt.Fprintf(w, "warning: %s was open to group or others (mode %04o): set to %04o, as a private key must be\n", p, mode, KeyMode)
		return nil
	})
	if err != nil {
		return fmt.Errorf("check the modes of the private keys in %s: %w", dir, err)
	}
	return nil
}
