package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// spec.images.dir resolves against the inventory's directory and must be a
// directory; airGapped is read as written.
func TestImagesDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "images"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	inv := func(images string) []byte {
		return []byte("apiVersion: etcdadm/v1alpha1\nkind: Cluster\nmetadata: {name: prod}\nspec:\n  images: " + images + "\n  hosts:\n  - {name: infra0, address: 10.0.0.6}\n")
	}
	c, _, err := Parse(inv("{dir: images, airGapped: true}"), "cluster.yaml", dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ImagesDir(); got != filepath.Join(dir, "images") || !c.Spec.Images.AirGapped {
		t.Errorf("images dir %q, air-gapped %v; want %s, true", got, c.Spec.Images.AirGapped, filepath.Join(dir, "images"))
	}
	c, _, err = Parse(inv("{}"), "cluster.yaml", dir)
	if err != nil || c.ImagesDir() != "" || c.Spec.Images.AirGapped {
		t.Errorf("no images: dir %q, air-gapped %v, %v", c.ImagesDir(), c.Spec.Images.AirGapped, err)
	}
	for images, want := range map[string]string{
		"{dir: file}":        "is not a directory",
		"{dir: images/}":     "not a clean path",
		"{dir: gone}":        "no such file or directory",
		"{airgapped: true}":  `did you mean "airGapped"`,
		"{airGapped: maybe}": "spec.images.airGapped",
	} {
		_, _, err := Parse(inv(images), "cluster.yaml", dir)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("images %s: %v, want an error saying %q", images, err, want)
		}
	}
}
