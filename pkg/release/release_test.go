package release

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeRelease writes a release tarball of small files named like etcd's
// binaries into dir and returns its path.
func fakeRelease(t *testing.T, dir, top string, names ...string) string {
	t.Helper()
	files := map[string]string{}
	for _, n := range names {
		p := filepath.Join(dir, "src-"+n)
		if err := os.WriteFile(p, []byte("#!/bin/sh\necho "+n+" "+top+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		files[n] = p
	}
	out := filepath.Join(dir, top+".tar.gz")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Write(f, top, names, files); err != nil {
		t.Fatal(err)
	}
	return out
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	p := fakeRelease(t, dir, "etcd-v3.7.0-linux-amd64", "etcd", "etcdctl", "etcdutl")
	info, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	whole, _ := os.ReadFile(p)
	if info.SHA256 != sha(whole) || info.Size != int64(len(whole)) {
		t.Errorf("tarball sha256 %s size %d, want %s %d", info.SHA256, info.Size, sha(whole), len(whole))
	}
	if info.Version != "3.7.0" || info.OS != "linux" || info.Arch != "amd64" || info.Dir != "etcd-v3.7.0-linux-amd64" || info.Platform() != "linux/amd64" {
		t.Errorf("info %+v", info)
	}
	for _, n := range []string{"etcd", "etcdctl", "etcdutl"} {
		src, _ := os.ReadFile(filepath.Join(dir, "src-"+n))
		b := info.Binaries[n]
		if b.SHA256 != sha(src) || b.Size != int64(len(src)) || b.Entry != "etcd-v3.7.0-linux-amd64/"+n {
			t.Errorf("%s: %+v, want sha256 %s", n, b, sha(src))
		}
		rc, err := Open(p, b.Entry)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, src) {
			t.Errorf("Open(%s) = %q, %v; want %q", b.Entry, got, err, src)
		}
	}
	if _, err := Open(p, "etcd-v3.7.0-linux-amd64/nothing"); err == nil {
		t.Error("Open of a missing entry succeeded")
	}
}

func TestReadPlainTarAndPrerelease(t *testing.T) {
	dir := t.TempDir()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, n := range []string{"etcd", "etcdctl"} {
		data := []byte(n)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "./etcd-v3.6.0-rc.1-linux-arm64/" + n, Mode: 0o755, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	tw.Close()
	p := filepath.Join(dir, "r.tar")
	os.WriteFile(p, b.Bytes(), 0o644)
	info, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != "3.6.0-rc.1" || info.Arch != "arm64" || info.Binaries["etcd"].SHA256 != sha([]byte("etcd")) {
		t.Errorf("info %+v", info)
	}
}

func TestReadRefusesWhatIsNotARelease(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct {
		path string
		want string
	}{
		"no etcd":         {fakeRelease(t, dir, "etcd-v3.7.0-linux-amd64", "etcdctl"), "holds no etcd in a release directory (found etcd-v3.7.0-linux-amd64/etcdctl)"},
		"no directory":    {fakeRelease(t, dir, "bin", "etcd", "etcdctl"), "its binaries are in bin, not in a directory named like etcd-v3.7.0-linux-amd64"},
		"not a tarball":   {writeFile(t, dir, "junk.tar.gz", "hello, world, this is no tar at all"), "not an etcd release"},
		"corrupt gzip":    {writeFile(t, dir, "bad.tar.gz", "\x1f\x8bjunk"), "not an etcd release"},
		"two directories": {twoDirs(t, dir), "holds binaries in etcd-v3.7.0-linux-amd64 and in etcd-v3.6.0-linux-amd64"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Read(c.path)
			if !errors.Is(err, ErrNoEtcd) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Read: %v, want ErrNoEtcd with %q", err, c.want)
			}
		})
	}
	if _, err := Read(filepath.Join(dir, "missing.tar.gz")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func twoDirs(t *testing.T, dir string) string {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, name := range []string{"etcd-v3.7.0-linux-amd64/etcd", "etcd-v3.6.0-linux-amd64/etcdctl"} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: 1})
		tw.Write([]byte("x"))
	}
	tw.Close()
	return writeFile(t, dir, "two.tar", b.String())
}

func TestParseDir(t *testing.T) {
	for dir, want := range map[string]string{
		"etcd-v3.7.0-linux-amd64":         "3.7.0 linux amd64",
		"etcd-v3.5.32-linux-ppc64le":      "3.5.32 linux ppc64le",
		"etcd-v3.6.0-alpha.0-linux-s390x": "3.6.0-alpha.0 linux s390x",
		"etcd-3.7.0-linux-amd64":          "",
		"etcd-v3.7-linux-amd64":           "",
	} {
		v, o, a, ok := ParseDir(dir)
		got := ""
		if ok {
			got = v + " " + o + " " + a
		}
		if got != want {
			t.Errorf("ParseDir(%s) = %q, want %q", dir, got, want)
		}
	}
}
