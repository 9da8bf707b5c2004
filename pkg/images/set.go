package images

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/etcdadm-io/etcdadm/pkg/config"
)

// Need is an image the hosts of a cluster need.
type Need struct {
	// Name says what the image is for: etcd, or pause (the Pod sandbox).
	Name string `json:"name"`
	Ref  string `json:"image"`
}

// Needed are the images the inventory's hosts need, from its
// imageRepository and versions, as kubeadm names them.
func Needed(c *config.Cluster) []Need {
	return []Need{{Name: "etcd", Ref: c.EtcdImage()}, {Name: "pause", Ref: c.PauseImage()}}
}

// Extensions are the file names read as archives in an images directory.
var Extensions = []string{".tar", ".tar.gz", ".tgz"}

// Set is what the archives of a directory hold.
type Set struct {
	Dir      string     `json:"dir"`
	Archives []*Archive `json:"archives"`
	// Skipped are the directory's files that are not read: other names
	// than Extensions, hidden files, directories.
	Skipped []string `json:"skipped,omitempty"`
}

// ReadDir reads every archive of dir, in name order. Two archives that
// name one image with different digests are refused: which one a host
// would get would depend on the order of imports.
func ReadDir(dir string) (*Set, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read the images directory: %w", err)
	}
	s := &Set{Dir: dir}
	for _, e := range ents {
		name := e.Name()
		p := filepath.Join(dir, name)
		if strings.HasPrefix(name, ".") || !slices.ContainsFunc(Extensions, func(x string) bool { return strings.HasSuffix(name, x) }) {
			s.Skipped = append(s.Skipped, p)
			continue
		}
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
			s.Skipped = append(s.Skipped, p)
			continue
		}
		a, err := Read(p)
		if err != nil {
			return nil, err
		}
		for _, im := range a.Images {
			if other, oim, ok := s.Find(im.Ref); ok && oim.Digest != im.Digest {
				return nil, fmt.Errorf("%s and %s both hold %s, as %s and %s: keep one of them in %s", other.Path, p, im.Ref, oim.Digest, im.Digest, dir)
			}
		}
		s.Archives = append(s.Archives, a)
	}
	return s, nil
}

// Find returns the first archive holding the image named ref.
func (s *Set) Find(ref string) (*Archive, Image, bool) {
	if s == nil {
		return nil, Image{}, false
	}
	for _, a := range s.Archives {
		if im, ok := a.Find(ref); ok {
			return a, im, true
		}
	}
	return nil, Image{}, false
}

// Refs lists the named images of every archive, once each.
func (s *Set) Refs() []string {
	var out []string
	if s == nil {
		return out
	}
	for _, a := range s.Archives {
		for _, im := range a.Images {
			if !slices.Contains(out, im.Ref) {
				out = append(out, im.Ref)
			}
		}
	}
	return out
}
