package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/etcdadm-io/etcdadm/pkg/config"
)

// Dir is etcdadm's snapshots directory, next to the inventory: where
// `snapshot save` and the snapshot before an upgrade go by default, and
// where a restore keeps its record.
func Dir(c *config.Cluster) string { return filepath.Join(c.Dir, "snapshots") }

// DirMode is the snapshots directory's mode: a snapshot holds the whole
// database, every Kubernetes Secret included.
const DirMode fs.FileMode = 0o700

// gitignore keeps the snapshots out of the repository that holds the
// inventory, as the PKI directory's does.
const gitignore = "# Written by etcdadm: snapshots hold the whole etcd database, every Secret included; keep them out of version control.\n*\n"

// PrivateDir makes dir, etcdadm's snapshots directory, private: created
// with DirMode when missing, set to it when group or others may enter it,
// and given a .gitignore that ignores everything when it has none (a
// directory made by an older etcdadm gets one too).
func PrivateDir(dir string) error {
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("create the snapshots directory %s: %w", dir, err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("snapshots directory: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, DirMode); err != nil {
			return fmt.Errorf("make the snapshots directory %s private: %w", dir, err)
		}
	}
	p := filepath.Join(dir, ".gitignore")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	_, err = f.WriteString(gitignore)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}
