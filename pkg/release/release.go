// Package release reads an etcd release tarball, as etcd's project
// publishes it (etcd-v3.7.0-linux-amd64.tar.gz holding
// etcd-v3.7.0-linux-amd64/{etcd,etcdctl,etcdutl}), as a stream: its sha256,
// the version and platform its directory names, and the size and sha256 of
// each binary. The binaries are streamed again from the tarball when they
// are pushed, never held whole in memory.
// It is a leaf: it imports nothing of etcdadm's.
package release

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"strings"
)

// Binaries a release holds. Etcd and Etcdctl are required; etcdutl is
// optional (etcdadm restores snapshots itself).
const (
	Etcd    = "etcd"
	Etcdctl = "etcdctl"
	Etcdutl = "etcdutl"
)

// Required are the binaries a release must hold.
var Required = []string{Etcd, Etcdctl}

// Binary is one executable of a release.
type Binary struct {
	Name string `json:"name"`
	// Entry is its name in the tarball (etcd-v3.7.0-linux-amd64/etcd).
	Entry  string `json:"entry"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Info is what a release tarball holds.
type Info struct {
	// Path is the tarball on this machine.
	Path string `json:"path"`
	// SHA256 and Size are the tarball's own.
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Dir is the release's top directory, etcd-v3.7.0-linux-amd64.
	Dir string `json:"dir"`
	// Version is the version Dir names, without its "v": 3.7.0.
	Version string `json:"version"`
	// OS and Arch are the platform Dir names: linux, amd64.
	OS   string `json:"os"`
	Arch string `json:"arch"`
	// Binaries are etcd, etcdctl and, when present, etcdutl, by name.
	Binaries map[string]Binary `json:"binaries"`
}

// Platform is os/arch, as images and Go name platforms.
func (i *Info) Platform() string { return i.OS + "/" + i.Arch }

// dirName is upstream's name of a release directory: etcd-v<version>-<os>-<arch>.
var dirName = regexp.MustCompile(`^etcd-v([0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.]+)?)-([a-z]+)-([a-z0-9]+)$`)

// ParseDir reads the version, OS and architecture a release directory's
// name holds: etcd-v3.7.0-linux-amd64 is 3.7.0, linux, amd64.
func ParseDir(dir string) (version, goos, arch string, ok bool) {
	m := dirName.FindStringSubmatch(dir)
	if m == nil {
		return "", "", "", false
	}
	return m[1], m[2], m[3], true
}

// ErrNoEtcd is returned for a tarball that is not an etcd release.
var ErrNoEtcd = errors.New("not an etcd release")

// Read reads the tarball at p once, as a stream: gzip'd or not, it is
// hashed whole while its entries are read, and every binary of the
// release directory is hashed too. A tarball without etcd and etcdctl in
// a directory named like etcd-v3.7.0-linux-amd64 is refused with an error
// wrapping ErrNoEtcd, and the Info still holds the tarball's sha256 and
// size. A file that cannot be read returns a nil Info.
func Read(p string) (*Info, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sum := sha256.New()
	counted := &countWriter{}
	src := bufio.NewReaderSize(io.TeeReader(f, io.MultiWriter(sum, counted)), 1<<16)
	info := &Info{Path: p, Binaries: map[string]Binary{}}
	contentErr := readEntries(src, info)
	// The tarball's sha256 covers every byte, past the tar's end too.
	if _, err := io.Copy(io.Discard, src); err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	info.SHA256, info.Size = hex.EncodeToString(sum.Sum(nil)), counted.n
	if contentErr != nil {
		return info, contentErr
	}
	return info, nil
}

// readEntries hashes the binaries of the release directory into info and
// reads the version its name holds.
func readEntries(src *bufio.Reader, info *Info) error {
	tr, err := tarReader(src)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoEtcd, err)
	}
	var entries []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: read the tarball: %v", ErrNoEtcd, err)
		}
		name := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		dir, base := path.Split(name)
		dir = strings.TrimSuffix(dir, "/")
		if hdr.Typeflag != tar.TypeReg || strings.Contains(dir, "/") || dir == "" {
			continue
		}
		if base != Etcd && base != Etcdctl && base != Etcdutl {
			continue
		}
		entries = append(entries, name)
		if info.Dir != "" && dir != info.Dir {
			return fmt.Errorf("%w: it holds binaries in %s and in %s; a release has one directory", ErrNoEtcd, info.Dir, dir)
		}
		info.Dir = dir
		h := sha256.New()
		n, err := io.Copy(h, tr)
		if err != nil {
			return fmt.Errorf("%w: read %s: %v", ErrNoEtcd, name, err)
		}
		info.Binaries[base] = Binary{Name: base, Entry: name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}
	}
	for _, b := range Required {
		if _, ok := info.Binaries[b]; !ok {
			return fmt.Errorf("%w: it holds no %s in a release directory (found %s)", ErrNoEtcd, b, orNothing(entries))
		}
	}
	var ok bool
	if info.Version, info.OS, info.Arch, ok = ParseDir(info.Dir); !ok {
		return fmt.Errorf("%w: its binaries are in %s, not in a directory named like etcd-v3.7.0-linux-amd64, which names the version", ErrNoEtcd, info.Dir)
	}
	return nil
}

func orNothing(entries []string) string {
	if len(entries) == 0 {
		return "no etcd binary"
	}
	return strings.Join(entries, ", ")
}

// tarReader reads a tar, through gzip when the stream starts like gzip.
func tarReader(r *bufio.Reader) (*tar.Reader, error) {
	magic, err := r.Peek(2)
	if err != nil {
		return nil, fmt.Errorf("read the tarball: %v", err)
	}
	if magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, err
		}
		// A tarball is one gzip member; what follows is not read as tar.
		zr.Multistream(false)
		return tar.NewReader(zr), nil
	}
	return tar.NewReader(r), nil
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// Open streams the entry of the tarball at p. The caller checks what it
// reads against the Binary's sha256: the file may have changed since Read.
func Open(p, entry string) (io.ReadCloser, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	tr, err := tarReader(bufio.NewReaderSize(f, 1<<16))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	for {
		hdr, err := tr.Next()
		if err != nil {
			f.Close()
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%s holds no %s any more", p, entry)
			}
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if hdr.Typeflag == tar.TypeReg && path.Clean(strings.TrimPrefix(hdr.Name, "./")) == entry {
			return &entryReader{Reader: tr, f: f}, nil
		}
	}
}

type entryReader struct {
	io.Reader
	f *os.File
}

func (e *entryReader) Close() error { return e.f.Close() }

// Write writes a release tarball in upstream's layout, gzip'd: dir/ and,
// in order, dir/name for each name, with the content of the file at
// files[name] on this machine, mode 0755. It is for building a release
// from binaries built elsewhere (tests, a lab).
func Write(w io.Writer, dir string, names []string, files map[string]string) error {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755}); err != nil {
		return err
	}
	for _, n := range names {
		if err := writeEntry(tw, dir+"/"+n, files[n]); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

func writeEntry(tw *tar.Writer, name, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: st.Size()}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
