//go:build linux

package facts_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// ctrList is `ctr -n k8s.io images ls` of containerd 1.6 with the lab's images.
const ctrList = `REF                          TYPE                                       DIGEST                                                                  SIZE     PLATFORMS   LABELS 
registry.k8s.io/etcd:3.7.0-0 application/vnd.oci.image.manifest.v1+json sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0 30.1 MiB linux/amd64 -      
registry.k8s.io/pause:3.10.2 application/vnd.oci.image.index.v1+json    sha256:e47dee40ee1b7fe758fef0c1f0f197f7a08fc92b7f3c2bf9b1bc1b8e7753f3c4 1.4 MiB  linux/amd64,linux/arm64 io.cri-containerd.image=managed
`

// configDump1 is the part of `containerd config dump` (1.6) the facts read.
const configDump1 = `version = 2
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.6"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "native"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        snapshotter = ""
`

// configDump2 is the same for containerd 2.x.
const configDump2 = `version = 3
[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = 'registry.k8s.io/pause:3.10'
  [plugins.'io.containerd.transfer.v1.local']
    [[plugins.'io.containerd.transfer.v1.local'.unpack_config]]
      snapshotter = 'zfs'
`

// fakeContainerd puts ctr and containerd stand-ins first on PATH: ctr
// answers `images ls` with list (or fails with fail), containerd prints
// dump for `config dump`. It returns the path of a listening socket.
func fakeContainerd(t *testing.T, list, fail, dump string) string {
	t.Helper()
	bin := t.TempDir()
	writeFile(t, filepath.Join(bin, "list"), []byte(list), 0o644)
	writeFile(t, filepath.Join(bin, "dump"), []byte(dump), 0o644)
	ctr := "#!/bin/sh\n"
	if fail != "" {
		ctr += "echo '" + fail + "' >&2; exit 1\n"
	}
	ctr += `case "$*" in *"-n k8s.io"*"images ls"*) cat "` + bin + `/list";; *) echo "unexpected: $*" >&2; exit 2;; esac` + "\n"
	writeFile(t, filepath.Join(bin, "ctr"), []byte(ctr), 0o755)
	writeFile(t, filepath.Join(bin, "containerd"), []byte("#!/bin/sh\n[ \"$*\" = \"config dump\" ] && cat \""+bin+"/dump\"\n"), 0o755)
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	sock := filepath.Join(t.TempDir(), "containerd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return sock
}

func gatherContainerd(t *testing.T, address string) *facts.Containerd {
	t.Helper()
	req := baseRequest(t.TempDir())
	req.ContainerdAddress = address
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h, _, err := facts.Gather(ctx, remote.NewLocal("n0", false), req, "")
	if err != nil {
		t.Fatal(err)
	}
	if h.Containerd == nil {
		t.Fatal("no containerd facts")
	}
	return h.Containerd
}

// The facts script lists the k8s.io images with their digests, and reads
// the CRI plugin's sandbox image and snapshotter from containerd 1.x's and
// 2.x's configuration.
func TestGatherContainerd(t *testing.T) {
	sock := fakeContainerd(t, ctrList, "", configDump1)
	got := gatherContainerd(t, sock)
	want := &facts.Containerd{
		Images: []facts.Image{
			{Ref: "registry.k8s.io/etcd:3.7.0-0", MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: "sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"},
			{Ref: "registry.k8s.io/pause:3.10.2", MediaType: "application/vnd.oci.image.index.v1+json", Digest: "sha256:e47dee40ee1b7fe758fef0c1f0f197f7a08fc92b7f3c2bf9b1bc1b8e7753f3c4"},
		},
		SandboxImage:   "registry.k8s.io/pause:3.6",
		SandboxSetting: `sandbox_image under [plugins."io.containerd.grpc.v1.cri"]`,
		Snapshotter:    "native",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("containerd facts (-want +got):\n%s", diff)
	}
	if !got.Known() {
		t.Error("images not known")
	}
	if im, ok := got.Image("registry.k8s.io/pause:3.10.2"); !ok || !strings.HasPrefix(im.Digest, "sha256:e47d") {
		t.Errorf("Image(pause) = %+v, %v", im, ok)
	}

	writeFile(t, filepath.Join(filepath.Dir(firstOnPath(t, "ctr")), "dump"), []byte(configDump2), 0o644)
	got = gatherContainerd(t, sock)
	if got.SandboxImage != "registry.k8s.io/pause:3.10" || got.SandboxSetting != "sandbox under [plugins.'io.containerd.cri.v1.images'.pinned_images]" || got.Snapshotter != "overlayfs" {
		t.Errorf("containerd 2.x: sandbox %q (%s), snapshotter %q", got.SandboxImage, got.SandboxSetting, got.Snapshotter)
	}
}

func firstOnPath(t *testing.T, name string) string {
	t.Helper()
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		if _, err := os.Stat(filepath.Join(d, name)); err == nil {
			return filepath.Join(d, name)
		}
	}
	t.Fatalf("%s is not on PATH", name)
	return ""
}

// A host whose containerd cannot be asked still gives its facts: the
// images are unknown, and the facts say why.
func TestGatherContainerdUnknown(t *testing.T) {
	sock := fakeContainerd(t, ctrList, "ctr: failed to dial: connection refused", "")
	got := gatherContainerd(t, sock)
	if got.Known() || got.Error != "ctr: failed to dial: connection refused" || len(got.Images) != 0 {
		t.Errorf("ctr failing: %+v", got)
	}
	if got.SandboxImage != "" {
		t.Errorf("sandbox image %q from an empty configuration", got.SandboxImage)
	}
	got = gatherContainerd(t, filepath.Join(t.TempDir(), "no.sock"))
	if got.Known() || !strings.Contains(got.Error, "not running") {
		t.Errorf("no socket: %+v", got)
	}
}

// The lines the script prints when ctr is missing, and `ctr images ls`
// read on its own.
func TestParseContainerdLines(t *testing.T) {
	h, err := facts.Parse([]byte("containerd no-ctr\nend\n"), time.Now(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if h.Containerd == nil || h.Containerd.Known() || !strings.Contains(h.Containerd.Error, "ctr") {
		t.Errorf("no ctr: %+v", h.Containerd)
	}
	h, err = facts.Parse([]byte("end\n"), time.Now(), time.Now())
	if err != nil || h.Containerd != nil {
		t.Errorf("no containerd lines: %+v, %v; want nil (not read)", h.Containerd, err)
	}
	ims := facts.ParseImages([]byte(ctrList))
	if len(ims) != 2 || ims[1].Ref != "registry.k8s.io/pause:3.10.2" {
		t.Errorf("ParseImages = %+v", ims)
	}
	if got := facts.ContainerdAddress("unix:///var/run/containerd/containerd.sock"); got != "/var/run/containerd/containerd.sock" {
		t.Errorf("ContainerdAddress = %q", got)
	}
	if got := facts.ContainerdAddress(""); got != facts.DefaultContainerdAddress {
		t.Errorf("ContainerdAddress(\"\") = %q", got)
	}
}
