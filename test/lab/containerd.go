package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// containerdConfig is each host's /etc/containerd/config.toml (containerd
// 1.6, config version 2). Root and state are the usual paths, per host
// because of the host's mounts. No CNI: etcd's static Pod uses the host
// network.
const containerdConfig = `# etcdadm lab host containerd configuration
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "%[1]s"
  # Lab hosts lack CAP_SYS_RESOURCE: never lower an OOM score below ours.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "%[2]s"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
`

func writeContainerdConfig(etc, snapshotter string) error {
	dir := filepath.Join(etc, "containerd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create /etc/containerd: %w", err)
	}
	data := fmt.Sprintf(containerdConfig, PauseImage, snapshotter)
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(data), 0o644); err != nil {
		return fmt.Errorf("write /etc/containerd/config.toml: %w", err)
	}
	return nil
}

// snapshotter picks containerd's snapshotter once per lab: overlayfs when
// the lab directory's filesystem can hold overlay layers, else native.
func (l *Lab) snapshotter() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.snap != "" {
		return l.snap
	}
	l.snap = "native"
	dir, err := os.MkdirTemp(l.Dir, "overlay-probe-")
	if err != nil {
		return l.snap
	}
	defer os.RemoveAll(dir)
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return l.snap
		}
	}
	opts := fmt.Sprintf("lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work", dir, dir, dir)
	merged := filepath.Join(dir, "merged")
	if err := syscall.Mount("overlay", merged, "overlay", 0, opts); err == nil {
		_ = syscall.Unmount(merged, 0)
		l.snap = "overlayfs"
	}
	return l.snap
}

// ImportImage imports an image tarball into the host's containerd, in the
// namespace the kubelet uses.
func (h *Host) ImportImage(ctx context.Context, tarball string) error {
	f, err := os.Open(tarball)
	if err != nil {
		return fmt.Errorf("import image on %s: %w", h.Name, err)
	}
	defer f.Close()
	if _, err := h.execIn(ctx, f, "ctr", "-n", "k8s.io", "images", "import", "--snapshotter", h.lab.snapshotter(), "-"); err != nil {
		return fmt.Errorf("import %s on %s: %w", filepath.Base(tarball), h.Name, err)
	}
	return nil
}

// startContainerd starts the host's containerd, waits for its socket, and
// imports the lab's images with ctr, the air-gapped way.
func (h *Host) startContainerd(ctx context.Context) error {
	argv := []string{"/usr/bin/containerd", "--config", "/etc/containerd/config.toml"}
	pid, err := h.startDaemon(argv, "containerd.log")
	if err != nil {
		return fmt.Errorf("start containerd on %s: %w", h.Name, err)
	}
	diag := func() string { return "containerd.log:\n" + h.LogTail("containerd.log", 30) }
	err = waitFor(ctx, "containerd on "+h.Name, 30*time.Second, func() error {
		if !alive(pid) {
			return fmt.Errorf("containerd exited")
		}
		_, err := h.Exec(ctx, "ctr", "--timeout", "2s", "version")
		return err
	}, diag)
	if err != nil {
		return fmt.Errorf("start containerd on %s: %w", h.Name, err)
	}
	if err := h.recordUnit("containerd.service", pid, argv); err != nil {
		return err
	}
	if h.lab.opts.NoImages {
		return nil
	}
	snap := h.lab.snapshotter()
	for _, img := range []string{h.lab.Artifacts.PauseImage, h.lab.Artifacts.EtcdImage} {
		// Through stdin: the tarball's path may not exist in the host's view.
		f, err := os.Open(img)
		if err != nil {
			return fmt.Errorf("import image on %s: %w", h.Name, err)
		}
		_, err = h.execIn(ctx, f, "ctr", "-n", "k8s.io", "images", "import", "--snapshotter", snap, "-")
		f.Close()
		if err != nil {
			return fmt.Errorf("import %s on %s: %w\n%s", filepath.Base(img), h.Name, err, diag())
		}
	}
	out, err := h.Exec(ctx, "ctr", "-n", "k8s.io", "images", "ls", "-q")
	if err != nil {
		return fmt.Errorf("list images on %s: %w", h.Name, err)
	}
	for _, ref := range []string{PauseImage, EtcdImage} {
		if !strings.Contains("\n"+string(out), "\n"+ref+"\n") {
			return fmt.Errorf("image %s missing on %s after import; containerd has:\n%s", ref, h.Name, out)
		}
	}
	return nil
}
