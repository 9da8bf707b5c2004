// Package render writes a plan to a local directory: each host's files under
// DIR/<host>/ at their host paths, with an index to verify them by, for a
// reviewer to read; and DIR/<host>.tar.gz, the same files owned by root, for
// an air-gapped operator to unpack at / on the host.
// It owns the layout of a rendered tree; it must not reach a host (no
// remote, hosts, gather or execute).
package render

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/atomicfile"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
)

// Index files written at the top of each host's bundle.
const (
	IndexFile   = "index.json"
	SumsFile    = "SHA256SUMS"
	bundleMode  = fs.FileMode(0o700)
	indexFormat = "etcdadm.render/v1"
)

// Index lists every file of a host's bundle.
type Index struct {
	Format string       `json:"format"`
	Host   string       `json:"host"`
	Dirs   []IndexEntry `json:"dirs"`
	Files  []IndexEntry `json:"files"`
}

// IndexEntry describes one file.
type IndexEntry struct {
	Path   string `json:"path"`
	Mode   string `json:"mode"`
	Size   int    `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
}

// Write renders every host of p under dir: its tree and its archive. A host
// directory or archive left by an earlier render is replaced whole, so no
// stale file (a key that should no longer be there) survives; anything else
// in the way is an error.
func Write(p *plan.Plan, dir string) error {
	if err := os.MkdirAll(dir, bundleMode); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	for _, h := range p.Hosts {
		if err := checkReplaceable(filepath.Join(dir, h.Name)); err != nil {
			return err
		}
		if err := checkArchiveReplaceable(filepath.Join(dir, ArchiveName(h.Name))); err != nil {
			return err
		}
	}
	now := time.Now()
	for _, h := range p.Hosts {
		if err := writeHost(h, filepath.Join(dir, h.Name)); err != nil {
			return fmt.Errorf("render %s: %w", h.Name, err)
		}
		// It holds keys.
		if err := atomicfile.WriteFrom(filepath.Join(dir, ArchiveName(h.Name)), 0o600, 0o755, func(w io.Writer) error { return WriteArchive(w, h, now) }, nil); err != nil {
			return fmt.Errorf("render %s: %w", h.Name, err)
		}
	}
	return nil
}

func checkReplaceable(hostDir string) error {
	entries, err := os.ReadDir(hostDir)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(entries) == 0) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", hostDir, err)
	}
	if _, err := os.Stat(filepath.Join(hostDir, IndexFile)); err != nil {
		return fmt.Errorf("%s is not empty and was not written by etcdadm render; render into an empty directory", hostDir)
	}
	return nil
}

func writeHost(h plan.Host, hostDir string) error {
	if err := os.RemoveAll(hostDir); err != nil {
		return fmt.Errorf("remove previous bundle %s: %w", hostDir, err)
	}
	if err := os.MkdirAll(hostDir, bundleMode); err != nil {
		return fmt.Errorf("create %s: %w", hostDir, err)
	}
	// Directories first, with the modes the host needs, so that a tar of the
	// bundle carries them.
	for _, d := range h.Dirs {
		p := filepath.Join(hostDir, filepath.FromSlash(d.Path))
		if err := os.MkdirAll(p, d.Mode); err != nil {
			return fmt.Errorf("create %s: %w", p, err)
		}
		if err := os.Chmod(p, d.Mode); err != nil {
			return fmt.Errorf("chmod %s: %w", p, err)
		}
	}
	idx := Index{Format: indexFormat, Host: h.Name}
	for _, d := range h.Dirs {
		idx.Dirs = append(idx.Dirs, IndexEntry{Path: d.Path, Mode: fmt.Sprintf("%04o", d.Mode.Perm())})
	}
	var sums strings.Builder
	var files []atomicfile.File
	for _, f := range h.Files {
		p := filepath.Join(hostDir, filepath.FromSlash(f.Path))
		if f.Source != nil {
			// A release's binary: streamed, never held in memory.
			if err := atomicfile.WriteFrom(p, f.Mode, 0o755, func(w io.Writer) error { return writeContent(w, f) }, nil); err != nil {
				return err
			}
		} else {
			files = append(files, atomicfile.File{Path: p, Data: f.Data, Mode: f.Mode})
		}
		sum := f.SHA256()
		idx.Files = append(idx.Files, IndexEntry{Path: f.Path, Mode: fmt.Sprintf("%04o", f.Mode.Perm()), Size: int(fileSize(f)), SHA256: sum})
		fmt.Fprintf(&sums, "%s  %s\n", sum, strings.TrimPrefix(f.Path, "/"))
	}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return fmt.Errorf("encode index: %w", err)
	}
	files = append(files,
		atomicfile.File{Path: filepath.Join(hostDir, IndexFile), Data: append(b, '\n'), Mode: 0o644},
		atomicfile.File{Path: filepath.Join(hostDir, SumsFile), Data: []byte(sums.String()), Mode: 0o644})
	return atomicfile.WriteAll(files, 0o755)
}
