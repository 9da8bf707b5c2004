package facts

import (
	"fmt"
	"path"
	"strings"

	"github.com/etcdadm-io/etcdadm/internal/shell"
)

// DefaultContainerdAddress is containerd's socket unless told otherwise.
const DefaultContainerdAddress = "/run/containerd/containerd.sock"

// CtrNamespace is the containerd namespace of the kubelet's images.
const CtrNamespace = "k8s.io"

// Containerd is what a host's containerd has and how it is configured.
type Containerd struct {
	// Error says why the images are not known: no ctr, no socket,
	// containerd not answering. Empty when Images is the whole list.
	Error  string  `json:"error,omitempty"`
	Images []Image `json:"images,omitempty"`
	// SandboxImage is the Pod sandbox image the CRI plugin uses, and
	// SandboxSetting the setting it comes from; empty when the configuration
	// could not be read.
	SandboxImage   string `json:"sandboxImage,omitempty"`
	SandboxSetting string `json:"sandboxSetting,omitempty"`
	// Snapshotter is the CRI plugin's, which images are unpacked for.
	Snapshotter string `json:"snapshotter,omitempty"`
}

// Image is one image of containerd's k8s.io namespace.
type Image struct {
	Ref       string `json:"ref"`
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType,omitempty"`
}

// Known reports whether the host's images could be listed.
func (c *Containerd) Known() bool { return c != nil && c.Error == "" }

// Image returns the host's image named ref.
func (c *Containerd) Image(ref string) (Image, bool) {
	if c == nil {
		return Image{}, false
	}
	for _, im := range c.Images {
		if im.Ref == ref {
			return im, true
		}
	}
	return Image{}, false
}

// ContainerdAddress is the socket path of a CRI endpoint such as
// unix:///var/run/containerd/containerd.sock.
func ContainerdAddress(endpoint string) string {
	p := strings.TrimPrefix(endpoint, "unix://")
	if p == "" || !path.IsAbs(p) {
		return DefaultContainerdAddress
	}
	return path.Clean(p)
}

// CtrCommand is ctr talking to the containerd at address, in the kubelet's
// namespace, giving up on a containerd that does not answer.
func CtrCommand(address string) string { return ctrWith(shell.Quote(address)) }

// ctrWith is CtrCommand with the address as a shell word.
func ctrWith(address string) string {
	return fmt.Sprintf("ctr -a %s --connect-timeout 2s -n %s", address, CtrNamespace)
}

// containerdScript prints the images of containerd's k8s.io namespace
// ("image" lines, as `ctr images ls` prints them), or why they are unknown,
// and the CRI plugin's sandbox image and snapshotter from `containerd
// config dump` ("containerd-conf" lines): two processes at most. Both are
// Go programs that live a few milliseconds: without a garbage collection
// (GOGC=off) they print the same and cost a quarter less CPU.
func containerdScript(address string) string {
	return fmt.Sprintf(`a=%[1]s
if ! command -v ctr >/dev/null 2>&1; then echo "containerd no-ctr"
elif [ ! -S "$a" ]; then echo "containerd no-socket"
elif out=$(GOGC=off %[2]s --timeout 20s images ls 2>&1); then echo "containerd ok"
while IFS= read -r l; do [ -n "$l" ] && printf 'image %%s\n' "$l"; done <<EOF
$out
EOF
else while IFS= read -r l; do [ -n "$l" ] && printf 'containerd error %%s\n' "$l"; done <<EOF
$out
EOF
fi
if command -v containerd >/dev/null 2>&1 && conf=$(GOGC=off containerd config dump 2>/dev/null); then sec=
while read -r l; do case $l in \[*) sec=$l;; sandbox_image\ =*|sandbox\ =*|snapshotter\ =*) printf 'containerd-conf %%s %%s\n' "$sec" "$l";; esac; done <<EOF
$conf
EOF
fi
`, shell.Quote(address), ctrWith(`"$a"`))
}

// parseContainerd reads one line of containerdScript's output.
func (h *Host) parseContainerd(tag, rest string) {
	if h.Containerd == nil {
		h.Containerd = &Containerd{}
	}
	c := h.Containerd
	switch tag {
	case "containerd":
		state, msg, _ := strings.Cut(rest, " ")
		switch state {
		case "no-ctr":
			c.Error = "ctr (containerd's client) is not installed"
		case "no-socket":
			c.Error = "containerd's socket is missing: containerd is not running"
		case "error":
			if c.Error != "" {
				c.Error += "; "
			}
			c.Error += msg
		}
	case "image":
		if im, ok := parseImageLine(rest); ok {
			c.Images = append(c.Images, im)
		}
	case "containerd-conf":
		c.parseConf(rest)
	}
}

// parseImageLine reads a line of `ctr images ls`: REF TYPE DIGEST SIZE
// PLATFORMS LABELS.
func parseImageLine(line string) (Image, bool) {
	f := strings.Fields(line)
	if len(f) < 3 || f[0] == "REF" || !strings.HasPrefix(f[2], "sha256:") {
		return Image{}, false
	}
	return Image{Ref: f[0], MediaType: f[1], Digest: f[2]}, true
}

// ParseImages reads the output of `ctr images ls`.
func ParseImages(out []byte) []Image {
	var ims []Image
	for _, line := range strings.Split(string(out), "\n") {
		if im, ok := parseImageLine(line); ok {
			ims = append(ims, im)
		}
	}
	return ims
}

// parseConf reads "<section> <key> = <value>" from containerd's
// configuration: containerd 1.x sets the sandbox image with sandbox_image
// under the CRI plugin, 2.x with sandbox under its pinned images.
func (c *Containerd) parseConf(rest string) {
	i := strings.LastIndex(rest, "] ")
	if i < 0 {
		return
	}
	sec, kv := rest[:i+1], rest[i+2:]
	key, val, ok := strings.Cut(kv, "=")
	if !ok || !strings.Contains(sec, "cri") {
		return
	}
	key, val = strings.TrimSpace(key), strings.Trim(strings.TrimSpace(val), `"'`)
	switch {
	case key == "sandbox_image" || (key == "sandbox" && strings.Contains(sec, "pinned_images")):
		if c.SandboxImage == "" {
			c.SandboxImage, c.SandboxSetting = val, key+" under "+sec
		}
	case key == "snapshotter" && val != "" && !strings.Contains(sec, "runtimes"):
		if c.Snapshotter == "" {
			c.Snapshotter = val
		}
	}
}
