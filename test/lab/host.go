package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/etcdadm-io/etcdadm/test/lab/internal/unit"
)

// Host is one lab host.
type Host struct {
	// Name is the host name (its UTS hostname, hence kubelet's node name).
	Name string
	// Address is where its sshd listens (port SSHPort); on the inner
	// network, behind the bastion, when the lab has one.
	Address string
	SSHPort int
	// KnownHostsLine is the host's key as written to the lab's known_hosts
	// at Up; RotateHostKey does not change it.
	KnownHostsLine string
	// NetNS is the name of its network namespace (/run/netns/NetNS).
	NetNS string
	// Dir holds the host's state on the machine; Dir/log has its logs.
	Dir string

	lab       *Lab
	anchorPID int
}

// baseEnv is the environment of processes started in a host, as a service
// manager would give them: nothing from the caller.
func baseEnv() []string {
	return []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"}
}

func (h *Host) nsenter(argv ...string) []string {
	return append([]string{"nsenter", "-t", strconv.Itoa(h.anchorPID), "-n", "-m", "-u", "--"}, argv...)
}

// Exec runs argv inside the host's namespaces as root and returns its
// stdout; the error includes stderr.
func (h *Host) Exec(ctx context.Context, argv ...string) ([]byte, error) {
	return h.execIn(ctx, nil, argv...)
}

func (h *Host) execIn(ctx context.Context, stdin io.Reader, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("exec on %s: empty command", h.Name)
	}
	full := h.nsenter(argv...)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Env = baseEnv()
	cmd.Dir = "/"
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s on %s: %w: %s", strings.Join(argv, " "), h.Name, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// ReadFile reads a file as the host sees it.
func (h *Host) ReadFile(ctx context.Context, path string) ([]byte, error) {
	return h.Exec(ctx, "cat", "--", path)
}

// WriteFile writes a file as the host sees it, atomically, creating parent
// directories.
func (h *Host) WriteFile(ctx context.Context, path string, data []byte, mode os.FileMode) error {
	const script = `set -e; mkdir -p "$(dirname "$1")"; cat > "$1.labtmp"; chmod "$2" "$1.labtmp"; mv -f "$1.labtmp" "$1"`
	_, err := h.execIn(ctx, bytes.NewReader(data), "sh", "-c", script, "sh", path, strconv.FormatUint(uint64(mode.Perm()), 8))
	return err
}

// LogTail returns the last n lines of one of the host's logs, e.g.
// "kubelet.log", "containerd.log", "sshd.log".
func (h *Host) LogTail(name string, n int) string {
	return tailFile(filepath.Join(h.Dir, "log", name), n)
}

// PIDs returns the processes of the host named name (their comm or the base
// name of argv[0]), e.g. "etcd", "kubelet", "sshd".
func (h *Host) PIDs(name string) []int {
	ino := procNSInode(h.anchorPID, "net")
	if ino == 0 {
		return nil
	}
	var out []int
	for _, pid := range allPIDs() {
		if procNSInode(pid, "net") != ino || !alive(pid) {
			continue
		}
		if comm(pid) == name || argv0(pid) == name {
			out = append(out, pid)
		}
	}
	sort.Ints(out)
	return out
}

// Processes returns every process of the host: those in its network
// namespace (namespace anchor, sshd and its sessions, containerd, shims,
// kubelet, host-network containers) and those in its kubelet's cgroup root.
func (h *Host) Processes() []int {
	h.lab.mu.Lock()
	defer h.lab.mu.Unlock()
	for _, hs := range h.lab.state.Hosts {
		if hs.Name == h.Name {
			var out []int
			for _, p := range hostPIDs(hs, nsInode("/proc/1/ns/net")) {
				if alive(p) {
					out = append(out, p)
				}
			}
			return out
		}
	}
	return nil
}

// Processes returns the processes of all hosts, the bastion included.
func (l *Lab) Processes() []int {
	var out []int
	for _, h := range l.all() {
		out = append(out, h.Processes()...)
	}
	return out
}

func argv0(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	first, _, _ := bytes.Cut(b, []byte{0})
	return filepath.Base(string(first))
}

// boot makes the host's namespaces and mounts and starts its sshd.
func (h *Host) boot(ctx context.Context) error {
	for _, d := range []string{"etc.upper", "etc.work", "varlib.upper", "varlib.work", "usrlocal.upper", "usrlocal.work", "containerd", "kubelet", "etcd", "log", "run", "tmp", "root"} {
		if err := os.MkdirAll(filepath.Join(h.Dir, d), 0o755); err != nil {
			return fmt.Errorf("create host dir: %w", err)
		}
	}
	// Directories that become /etc, /var/lib/etcd and /tmp keep the
	// modes those have on a real host (sshd's StrictModes checks /etc).
	for d, m := range map[string]os.FileMode{"": 0o755, "etc.upper": 0o755, "varlib.upper": 0o755, "usrlocal.upper": 0o755, "etcd": 0o700, "root": 0o700, "tmp": 0o777 | os.ModeSticky} {
		if err := os.Chmod(filepath.Join(h.Dir, d), m); err != nil {
			return fmt.Errorf("set mode of host dir: %w", err)
		}
	}
	if err := h.writeEtc(); err != nil {
		return err
	}
	// root's home is the host's own, from Debian's skeleton, so that the
	// machine's shell setup does not run in every SSH session.
	for _, f := range []string{".bashrc", ".profile"} {
		if b, err := os.ReadFile(filepath.Join("/etc/skel", f)); err == nil {
			if err := os.WriteFile(filepath.Join(h.Dir, "root", f), b, 0o644); err != nil {
				return fmt.Errorf("write /root/%s: %w", f, err)
			}
		}
	}
	if err := h.startAnchor(ctx); err != nil {
		return err
	}
	if err := h.mount(ctx); err != nil {
		return err
	}
	return h.StartSSHD(ctx)
}

// writeEtc fills the host's /etc layer before it is mounted: hostname,
// hosts, sshd configuration and keys, containerd configuration.
func (h *Host) writeEtc() error {
	etc := filepath.Join(h.Dir, "etc.upper")
	base, err := os.ReadFile("/etc/hosts")
	if err != nil {
		return fmt.Errorf("read /etc/hosts: %w", err)
	}
	var hosts bytes.Buffer
	hosts.Write(base)
	hosts.WriteString("\n# etcdadm lab hosts\n")
	for _, o := range h.lab.all() {
		fmt.Fprintf(&hosts, "%s\t%s\n", o.Address, o.Name)
	}
	files := map[string][]byte{
		"hostname": []byte(h.Name + "\n"),
		"hosts":    hosts.Bytes(),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(etc, name), data, 0o644); err != nil {
			return fmt.Errorf("write /etc/%s: %w", name, err)
		}
	}
	if err := h.writeSSHConfig(etc); err != nil {
		return err
	}
	if !h.lab.opts.SSHOnly && h != h.lab.Bastion {
		if err := writeContainerdConfig(etc, h.lab.snapshotter()); err != nil {
			return err
		}
	}
	return nil
}

// startAnchor starts the process that holds the host's mount and UTS
// namespaces, inside its network namespace, and waits until it is there.
func (h *Host) startAnchor(ctx context.Context) error {
	cmd := exec.Command("nsenter", "--net=/run/netns/"+h.NetNS, "--",
		"unshare", "--mount", "--uts", "--propagation", "private", "--", "sleep", "infinity")
	cmd.Env = baseEnv()
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start namespace anchor: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	h.anchorPID = pid
	h.lab.mu.Lock()
	for i := range h.lab.state.Hosts {
		if h.lab.state.Hosts[i].Name == h.Name {
			h.lab.state.Hosts[i].AnchorPID = pid
		}
	}
	h.lab.mu.Unlock()
	if err := h.lab.saveState(); err != nil {
		return err
	}
	// Nothing may be mounted before the anchor has its own mount
	// namespace: entering it earlier would mount over the machine's /etc.
	self := os.Getpid()
	wantNet := nsInode("/run/netns/" + h.NetNS)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if comm(pid) == "sleep" && procNSInode(pid, "mnt") != procNSInode(self, "mnt") &&
			procNSInode(pid, "uts") != procNSInode(self, "uts") && procNSInode(pid, "net") == wantNet {
			h.lab.mu.Lock()
			for i := range h.lab.state.Hosts {
				if h.lab.state.Hosts[i].Name == h.Name {
					h.lab.state.Hosts[i].MntNSInode = procNSInode(pid, "mnt")
				}
			}
			h.lab.mu.Unlock()
			return h.lab.saveState()
		}
		if !alive(pid) || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("namespace anchor %d did not come up in its namespaces", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mount gives the host its own view: /etc, /var/lib and /usr/local (where
// etcdadm's systemd runtime installs etcd) are overlays whose
// upper layers are the host's (so nothing on the machine is touched and no
// mount point has to be created there), the data directories are plain
// bind mounts (containerd's overlayfs snapshotter cannot sit on overlayfs),
// /usr/bin gets the lab's kubelet and systemctl on top.
func (h *Host) mount(ctx context.Context) error {
	const script = `set -eu
root_mnt=$1 name=$2 H=$3 usrbin=$4
if [ "$(readlink /proc/self/ns/mnt)" = "$root_mnt" ]; then
	echo "refusing to mount: still in the machine's mount namespace" >&2
	exit 1
fi
hostname "$name"
mount -t overlay lab-etc -o "lowerdir=/etc,upperdir=$H/etc.upper,workdir=$H/etc.work" /etc
mount -t overlay lab-varlib -o "lowerdir=/var/lib,upperdir=$H/varlib.upper,workdir=$H/varlib.work" /var/lib
mount -t overlay lab-usrlocal -o "lowerdir=/usr/local,upperdir=$H/usrlocal.upper,workdir=$H/usrlocal.work" /usr/local
for d in containerd kubelet etcd; do
	mkdir -p "/var/lib/$d"
	mount --bind "$H/$d" "/var/lib/$d"
done
mount -t overlay lab-usrbin -o "ro,lowerdir=$usrbin:/usr/bin" /usr/bin
mount --bind "$H/log" /var/log
mount --bind "$H/tmp" /tmp
mount --bind "$H/root" /root
mount --bind "$H/run" /run
mkdir -p /run/sshd /run/containerd /run/lab-systemd /var/log/pods /var/log/containers /etc/kubernetes/manifests /etc/systemd/system/kubelet.service.d
chmod 0755 /run/sshd
`
	rootMnt, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return fmt.Errorf("read own mount namespace: %w", err)
	}
	if _, err := h.Exec(ctx, "sh", "-c", script, "sh", rootMnt, h.Name, h.Dir, filepath.Join(h.lab.Dir, "usrbin")); err != nil {
		return fmt.Errorf("mount host filesystems: %w", err)
	}
	return nil
}

// startDaemon starts argv in the host, detached, output appended to
// Dir/log/logName, and returns its pid.
func (h *Host) startDaemon(argv []string, logName string) (int, error) {
	f, err := os.OpenFile(filepath.Join(h.Dir, "log", logName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("open log: %w", err)
	}
	defer f.Close()
	full := h.nsenter(argv...)
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Env = baseEnv()
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = f, f
	// Its own session: a daemon must outlive the lab command that started
	// it and must not get its terminal's signals.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", argv[0], err)
	}
	go func() { _ = cmd.Wait() }()
	return cmd.Process.Pid, nil
}

// recordUnit records a daemon the lab runs for the systemctl stand-in.
func (h *Host) recordUnit(name string, pid int, argv []string) error {
	st := unit.State{ActiveState: "active", SubState: "running", MainPID: pid, Since: time.Now(), Argv: argv, External: true}
	if pid == 0 {
		st.ActiveState, st.SubState = "inactive", "dead"
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	dir := filepath.Join(h.Dir, unit.StateDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("record %s state: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".state"), b, 0o644); err != nil {
		return fmt.Errorf("record %s state: %w", name, err)
	}
	return nil
}

// stopPID sends SIGTERM and waits for the process to exit, then SIGKILLs.
func stopPID(ctx context.Context, pid int, grace time.Duration) {
	if pid <= 0 || !alive(pid) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for alive(pid) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 200 && alive(pid); i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// waitFor polls check until it succeeds or timeout passes; the error then
// carries the last failure and diag's output.
func waitFor(ctx context.Context, what string, timeout time.Duration, check func() error, diag func() string) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			msg := fmt.Sprintf("timed out after %s waiting for %s: %v", timeout, what, err)
			if diag != nil {
				msg += "\n" + diag()
			}
			return fmt.Errorf("%s", msg)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// copyFile copies or hard-links src to dst with mode.
func copyFile(src, dst string, mode os.FileMode) error {
	_ = os.Remove(dst)
	if err := os.Link(src, dst); err == nil {
		return os.Chmod(dst, mode)
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// prepareUsrBin fills the layer mounted over every host's /usr/bin.
func (l *Lab) prepareUsrBin() error {
	dir := filepath.Join(l.Dir, "usrbin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	bins := map[string]string{"systemctl": l.Artifacts.Systemctl}
	if !l.opts.SSHOnly {
		bins["kubelet"] = l.Artifacts.Kubelet
	}
	for name, src := range bins {
		if err := copyFile(src, filepath.Join(dir, name), 0o755); err != nil {
			return fmt.Errorf("install %s for the hosts: %w", name, err)
		}
	}
	return nil
}
