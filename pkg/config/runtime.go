package config

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/etcdadm-io/etcdadm/pkg/release"
)

// Runtime says how a member runs on its host.
type Runtime string

const (
	// RuntimeKubelet runs a member as a static Pod of the host's kubelet,
	// as kubeadm does: the default.
	RuntimeKubelet Runtime = "kubelet"
	// RuntimeSystemd runs a member as the systemd service etcd.service,
	// from the binaries of an etcd release tarball: for external hosts
	// without a kubelet.
	RuntimeSystemd Runtime = "systemd"
)

// Release is an etcd release tarball on the operator's machine.
type Release struct {
	// File is the tarball (etcd-v3.7.0-linux-amd64.tar.gz), relative to
	// the inventory file unless absolute.
	File string `json:"file,omitempty"`
	// SHA256 is the tarball's sha256, as sha256sum prints it.
	SHA256 string `json:"sha256,omitempty"`
	// Info is what the tarball holds, read and checked against SHA256 when
	// the inventory is loaded; nil unless the runtime is systemd.
	Info *release.Info `json:"-"`
}

var sha256Hex = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

// Systemd reports whether members run as systemd services.
func (c *Cluster) Systemd() bool { return c.Spec.Etcd.Runtime == RuntimeSystemd }

// validateRuntime checks spec.etcd.runtime and, for the systemd runtime,
// reads the release tarball: its sha256 must be the inventory's, and it
// must hold etcd and etcdctl in a directory that names their version.
func validateRuntime(c *Cluster, ps *problems) {
	s := &c.Spec
	e := &s.Etcd
	switch e.Runtime {
	case RuntimeKubelet:
		if e.Release != (Release{}) {
			ps.add("spec.etcd.release", "is used only with runtime systemd; remove it, or set spec.etcd.runtime: systemd")
		}
		return
	case RuntimeSystemd:
	default:
		ps.add("spec.etcd.runtime", "%q is not a runtime; use kubelet (a static Pod, the default) or systemd (a systemd service from an etcd release tarball)", e.Runtime)
		return
	}
	if s.Topology == TopologyStacked {
		ps.add("spec.etcd.runtime", "systemd is for the external topology: a stacked member runs as a static Pod of kubeadm's kubelet; remove spec.etcd.runtime, or use topology external")
	}
	const unsafe = " \t\n\r\"'\\"
	why := "holds a space, a quote or a backslash, which the systemd runtime cannot pass on etcd's command line (ExecStart splits $ETCD_ARGS at spaces); write the value without them"
	for _, k := range sortedKeys(e.ExtraArgs) {
		if v := e.ExtraArgs[k]; strings.ContainsAny(v, unsafe) {
			ps.add("spec.etcd.extraArgs."+k, "%q %s", v, why)
		}
	}
	for i, h := range s.Hosts {
		for j, a := range h.ExtraArgs {
			if strings.ContainsAny(a.Value, unsafe) {
				ps.add(fmt.Sprintf("spec.hosts[%d].extraArgs[%d].value", i, j), "%q %s", a.Value, why)
			}
		}
	}
	r := &e.Release
	shaOK := true
	switch {
	case r.SHA256 == "":
		ps.add("spec.etcd.release.sha256", "is required with runtime systemd: the tarball's sha256, from the release's SHA256SUMS or `sha256sum FILE`")
		shaOK = false
	case !sha256Hex.MatchString(r.SHA256):
		ps.add("spec.etcd.release.sha256", "%q is not a sha256: write the 64 hexadecimal digits sha256sum prints", r.SHA256)
		shaOK = false
	}
	if r.File == "" {
		ps.add("spec.etcd.release.file", "is required with runtime systemd: the etcd release tarball, e.g. etcd-v3.7.0-linux-amd64.tar.gz from github.com/etcd-io/etcd/releases, relative to the inventory")
		return
	}
	if !validateLocalPath("spec.etcd.release.file", r.File, "etcd-v3.7.0-linux-amd64.tar.gz", ps) {
		return
	}
	p := c.ResolvePath(r.File)
	st, err := os.Stat(p)
	switch {
	case err != nil:
		ps.add("spec.etcd.release.file", "cannot read %s: %v; put the etcd release tarball there", p, unwrapPathError(err))
		return
	case !st.Mode().IsRegular():
		ps.add("spec.etcd.release.file", "%s is not a file; point it at the etcd release tarball", p)
		return
	}
	info, err := release.Read(p)
	switch {
	case info == nil:
		ps.add("spec.etcd.release.file", "cannot read %s: %v", p, unwrapPathError(err))
		return
	case shaOK && !strings.EqualFold(info.SHA256, r.SHA256):
		// A file that is not the one named is reported as such, whatever it holds.
		ps.add("spec.etcd.release.sha256", "%s has sha256 %s, not %s: it is not the release the inventory names; download it again, or correct the sha256", p, info.SHA256, strings.ToLower(r.SHA256))
		return
	case err != nil:
		ps.add("spec.etcd.release.file", "%s is %v; use an etcd release tarball from github.com/etcd-io/etcd/releases (etcd-v3.7.0-linux-amd64.tar.gz)", p, err)
		return
	case !shaOK:
		return
	case info.OS != "linux":
		ps.add("spec.etcd.release.file", "%s is etcd %s for %s: the hosts run Linux; use etcd-v%s-linux-<arch>.tar.gz", p, info.Version, info.Platform(), info.Version)
		return
	}
	r.Info = info
}
