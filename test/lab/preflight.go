package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
)

// ErrNotRoot is returned by Up and Down when not run as root.
var ErrNotRoot = errors.New("the lab needs root: it creates network namespaces, bridges, mounts and users, and runs sshd, containerd and kubelet")

// MissingError names what the machine lacks to run the lab.
type MissingError struct {
	// Packages are the Debian packages to install.
	Packages []string
	// Details says which file each package provides, for the message.
	Details []string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("the lab needs packages that are not installed (%s): apt-get install -y %s",
		strings.Join(e.Details, ", "), strings.Join(e.Packages, " "))
}

type requirement struct {
	path    string // absolute path, or a command name looked up in PATH
	pkg     string
	sshOnly bool // needed by an SSH-only lab too
}

func requirements() []requirement {
	return []requirement{
		{"ip", "iproute2", true},
		{"nsenter", "util-linux", true},
		{"unshare", "util-linux", true},
		{"mount", "mount", true},
		{"bash", "bash", true},
		{"/usr/sbin/sshd", "openssh-server", true},
		{"/usr/lib/openssh/sftp-server", "openssh-sftp-server", true},
		{"sudo", "sudo", true},
		{"visudo", "sudo", true},
		{"useradd", "passwd", true},
		{"chpasswd", "passwd", true},
		{"containerd", "containerd", false},
		{"ctr", "containerd", false},
		{"containerd-shim-runc-v2", "containerd", false},
		{"runc", "runc", false},
	}
}

// Check reports whether this machine can run a lab with opts: root, the
// Debian packages, overlayfs. It changes nothing.
func Check(opts Options) error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	pkgs := map[string]bool{}
	var details []string
	for _, r := range requirements() {
		if opts.SSHOnly && !r.sshOnly {
			continue
		}
		var err error
		if strings.HasPrefix(r.path, "/") {
			_, err = os.Stat(r.path)
		} else {
			_, err = exec.LookPath(r.path)
		}
		if err != nil {
			if !pkgs[r.pkg] {
				details = append(details, r.path+" from "+r.pkg)
			}
			pkgs[r.pkg] = true
		}
	}
	if len(pkgs) > 0 {
		e := &MissingError{Details: details}
		for p := range pkgs {
			e.Packages = append(e.Packages, p)
		}
		sort.Strings(e.Packages)
		return e
	}
	fsys, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return fmt.Errorf("read /proc/filesystems: %w", err)
	}
	if !strings.Contains(string(fsys), "\toverlay\n") {
		return errors.New("the lab needs overlayfs in the kernel: modprobe overlay")
	}
	return nil
}
