package lab

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/etcdadm-io/etcdadm/test/lab/internal/ociimage"
)

// Versions and image references the lab provides.
const (
	KubeletVersion = "v1.37.2"
	EtcdVersion    = "3.7.0"
	EtcdImage      = "registry.k8s.io/etcd:3.7.0-0"
	// EtcdNextVersion is a later patch release, in a second image that is
	// built but not imported: a rolling upgrade goes to it.
	EtcdNextVersion = "3.7.3"
	EtcdNextImage   = "registry.k8s.io/etcd:3.7.3-0"
	PauseImage      = "registry.k8s.io/pause:3.10.2"
	// VersitygwVersion is the S3 server the backup tests store to.
	VersitygwVersion = "v1.8.0"
	// KubeAPIServerImage is the kube-apiserver kubeadm v1.37.2's static Pod
	// names, built like the kubelet; it is imported only by the tests that
	// run a control plane (Host.ImportImage).
	KubeAPIServerImage = "registry.k8s.io/kube-apiserver:" + KubeletVersion

	modulePath = "github.com/etcdadm-io/etcdadm"
)

// BuildOptions says where to find the sources and where to put the outputs.
type BuildOptions struct {
	// RepoRoot is the etcdadm checkout; found from the working directory
	// upwards when empty.
	RepoRoot string
	// Out receives the outputs; RepoRoot/_output/lab when empty.
	Out string
	// SSHOnly builds only what an SSH-only lab needs: the systemctl stand-in.
	SSHOnly bool
}

// Artifacts are the paths of the built binaries and image tarballs.
type Artifacts struct {
	Dir       string
	Systemctl string
	Kubelet   string `json:",omitempty"`
	Etcd      string `json:",omitempty"`
	Etcdctl   string `json:",omitempty"`
	Pause     string `json:",omitempty"`
	EtcdImage string `json:",omitempty"` // OCI image layout tarball of EtcdImage
	EtcdNext  string `json:",omitempty"`
	// EtcdNextImage is the OCI image layout tarball of EtcdNextImage.
	EtcdNextImage string `json:",omitempty"`
	PauseImage    string `json:",omitempty"` // OCI image layout tarball of PauseImage
	// S3Server is versitygw, a real S3 server with a posix backend.
	S3Server string `json:",omitempty"`
	// KubeAPIServer is the binary, and KubeAPIServerImage the OCI image
	// layout tarball of KubeAPIServerImage.
	KubeAPIServer      string `json:",omitempty"`
	KubeAPIServerImage string `json:",omitempty"`
}

type goTarget struct {
	name    string
	dir     string // module directory, relative to the repository root
	pkg     string // package to build, relative to dir
	sources []string
	ldflags string
	tags    string
	slow    string
}

// FindRepoRoot returns the etcdadm checkout that contains dir.
func FindRepoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && modFileModule(b) == modulePath {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no %s checkout above %s", modulePath, dir)
		}
	}
}

func modFileModule(b []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if m, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(m), `"`)
		}
	}
	return ""
}

// Build builds the lab's binaries and images into opts.Out. Each output is
// rebuilt only when the digest of its inputs (sources, go.mod/go.sum, Go
// version, flags) differs from the one recorded next to it.
func Build(ctx context.Context, opts BuildOptions, log io.Writer) (*Artifacts, error) {
	if log == nil {
		log = io.Discard
	}
	root := opts.RepoRoot
	if root == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("find repository root: %w", err)
		}
		if root, err = FindRepoRoot(wd); err != nil {
			return nil, fmt.Errorf("find repository root: %w", err)
		}
	}
	out := opts.Out
	if out == "" {
		out = filepath.Join(root, "_output", "lab")
	}
	bin := filepath.Join(out, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", bin, err)
	}
	// One build at a time per output directory: test packages that bring
	// up labs run in parallel.
	lock, err := os.OpenFile(filepath.Join(out, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", out, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("lock %s: %w", out, err)
	}
	b := &builder{root: root, log: log}

	a := &Artifacts{Dir: out, Systemctl: filepath.Join(bin, "systemctl")}
	targets := []struct {
		t   goTarget
		out string
	}{
		{goTarget{name: "systemctl stand-in", dir: ".", pkg: "./test/lab/cmd/systemctl", sources: []string{"test/lab/cmd/systemctl", "test/lab/internal/unit"}}, a.Systemctl},
	}
	if !opts.SSHOnly {
		a.Kubelet = filepath.Join(bin, "kubelet")
		a.Etcd = filepath.Join(bin, "etcd")
		a.Etcdctl = filepath.Join(bin, "etcdctl")
		a.Pause = filepath.Join(bin, "pause")
		a.EtcdImage = filepath.Join(out, "images", "etcd-"+EtcdVersion+"-0.tar")
		a.EtcdNext = filepath.Join(bin, "etcd-"+EtcdNextVersion)
		a.EtcdNextImage = filepath.Join(out, "images", "etcd-"+EtcdNextVersion+"-0.tar")
		a.PauseImage = filepath.Join(out, "images", "pause-3.10.2.tar")
		a.S3Server = filepath.Join(bin, "versitygw")
		a.KubeAPIServer = filepath.Join(bin, "kube-apiserver")
		a.KubeAPIServerImage = filepath.Join(out, "images", "kube-apiserver-"+KubeletVersion+".tar")
		targets = append(targets, []struct {
			t   goTarget
			out string
		}{
			{goTarget{name: "pause", dir: ".", pkg: "./test/lab/cmd/pause", sources: []string{"test/lab/cmd/pause"}}, a.Pause},
			{goTarget{name: "kubelet " + KubeletVersion, dir: "test/lab/build/kubelet", pkg: ".", sources: []string{"test/lab/build/kubelet"},
				ldflags: kubeletVersionFlags(), tags: "selinux,notest,grpcnotrace", slow: "about 5-9 minutes cold on 2 cores"}, a.Kubelet},
			{goTarget{name: "etcd v" + EtcdVersion, dir: "test/lab/build/etcd", pkg: "./etcd", sources: []string{"test/lab/build/etcd"}, slow: "about 2-3 minutes cold"}, a.Etcd},
			{goTarget{name: "etcdctl v" + EtcdVersion, dir: "test/lab/build/etcd", pkg: "./etcdctl", sources: []string{"test/lab/build/etcd"}}, a.Etcdctl},
			{goTarget{name: "etcd v" + EtcdNextVersion, dir: "test/lab/build/etcdnext", pkg: "./etcd", sources: []string{"test/lab/build/etcdnext"}, slow: "about 2-3 minutes cold"}, a.EtcdNext},
			{goTarget{name: "kube-apiserver " + KubeletVersion, dir: "test/lab/build/kubeapiserver", pkg: ".", sources: []string{"test/lab/build/kubeapiserver"},
				ldflags: kubeletVersionFlags(), tags: "selinux,notest,grpcnotrace", slow: "about 3-6 minutes cold on 2 cores"}, a.KubeAPIServer},
			{goTarget{name: "versitygw " + VersitygwVersion, dir: "test/lab/build/versitygw", pkg: "github.com/versity/versitygw/cmd/versitygw", sources: []string{"test/lab/build/versitygw"}, slow: "about 1-2 minutes cold"}, a.S3Server},
		}...)
	}
	for _, t := range targets {
		if err := b.goBuild(ctx, t.t, t.out); err != nil {
			return nil, err
		}
	}
	if opts.SSHOnly {
		return a, nil
	}
	path := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	images := []struct {
		out string
		img ociimage.Image
	}{
		{a.PauseImage, ociimage.Image{Ref: PauseImage, Entrypoint: []string{"/pause"}, Env: path,
			Files: []ociimage.File{{Path: "pause", Source: a.Pause, Mode: 0o755}}}},
		{a.EtcdImage, ociimage.Image{Ref: EtcdImage, Cmd: []string{"/usr/local/bin/etcd"}, Env: path,
			Dirs: map[string]int64{"tmp": 0o1777, "var/lib/etcd": 0o700},
			Files: []ociimage.File{
				{Path: "usr/local/bin/etcd", Source: a.Etcd, Mode: 0o755},
				{Path: "usr/local/bin/etcdctl", Source: a.Etcdctl, Mode: 0o755},
			}}},
		{a.EtcdNextImage, ociimage.Image{Ref: EtcdNextImage, Cmd: []string{"/usr/local/bin/etcd"}, Env: path,
			Dirs: map[string]int64{"tmp": 0o1777, "var/lib/etcd": 0o700},
			Files: []ociimage.File{
				{Path: "usr/local/bin/etcd", Source: a.EtcdNext, Mode: 0o755},
				{Path: "usr/local/bin/etcdctl", Source: a.Etcdctl, Mode: 0o755},
			}}},
		{a.KubeAPIServerImage, ociimage.Image{Ref: KubeAPIServerImage, Env: path,
			Dirs:  map[string]int64{"tmp": 0o1777},
			Files: []ociimage.File{{Path: "usr/local/bin/kube-apiserver", Source: a.KubeAPIServer, Mode: 0o755}}}},
	}
	for _, im := range images {
		if err := b.image(im.out, im.img); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func kubeletVersionFlags() string {
	var f []string
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		for _, kv := range []string{"gitVersion=" + KubeletVersion, "gitMajor=1", "gitMinor=37", "gitTreeState=clean"} {
			f = append(f, "-X", pkg+"."+kv)
		}
	}
	return strings.Join(f, " ")
}

type builder struct {
	root      string
	log       io.Writer
	goVersion string
}

func (b *builder) goEnv() []string {
	env := []string{"CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false"}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "CGO_ENABLED", "GOWORK", "GOFLAGS":
		default:
			env = append(env, kv)
		}
	}
	return env
}

func (b *builder) version(ctx context.Context) (string, error) {
	if b.goVersion != "" {
		return b.goVersion, nil
	}
	out, err := exec.CommandContext(ctx, "go", "env", "GOVERSION", "GOOS", "GOARCH").Output()
	if err != nil {
		return "", fmt.Errorf("go toolchain not usable (needed to build the lab): %w", err)
	}
	b.goVersion = strings.Join(strings.Fields(string(out)), " ")
	return b.goVersion, nil
}

func (b *builder) goBuild(ctx context.Context, t goTarget, out string) error {
	gov, err := b.version(ctx)
	if err != nil {
		if _, statErr := os.Stat(out); statErr == nil {
			fmt.Fprintf(b.log, "lab build: %s: no Go toolchain, using the existing %s\n", t.name, out)
			return nil
		}
		return err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\x00", gov, t.dir, t.pkg, t.ldflags, t.tags)
	for _, s := range t.sources {
		if err := hashTree(h, filepath.Join(b.root, s)); err != nil {
			return fmt.Errorf("hash sources of %s: %w", t.name, err)
		}
	}
	digest := hex.EncodeToString(h.Sum(nil))
	if upToDate(out, digest) {
		fmt.Fprintf(b.log, "lab build: %s is up to date\n", t.name)
		return nil
	}
	note := ""
	if t.slow != "" {
		note = " (" + t.slow + ")"
	}
	fmt.Fprintf(b.log, "lab build: building %s%s\n", t.name, note)
	start := time.Now()
	args := []string{"build", "-trimpath", "-o", out + ".tmp"}
	ld := "-s -w"
	if t.ldflags != "" {
		ld += " " + t.ldflags
	}
	args = append(args, "-ldflags", ld)
	if t.tags != "" {
		args = append(args, "-tags", t.tags)
	}
	args = append(args, t.pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = filepath.Join(b.root, t.dir)
	cmd.Env = b.goEnv()
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build %s: %w\n%s", t.name, err, tail(stderr.Bytes(), 40))
	}
	if err := os.Rename(out+".tmp", out); err != nil {
		return fmt.Errorf("build %s: %w", t.name, err)
	}
	if err := os.WriteFile(out+".inputs", []byte(digest+"\n"), 0o644); err != nil {
		return fmt.Errorf("record inputs of %s: %w", t.name, err)
	}
	fmt.Fprintf(b.log, "lab build: built %s in %s\n", t.name, time.Since(start).Round(time.Second))
	return nil
}

func (b *builder) image(out string, img ociimage.Image) error {
	h := sha256.New()
	spec, err := json.Marshal(img)
	if err != nil {
		return err
	}
	h.Write(spec)
	for _, f := range img.Files {
		if err := hashFile(h, f.Source); err != nil {
			return fmt.Errorf("hash %s for %s: %w", f.Source, img.Ref, err)
		}
	}
	digest := hex.EncodeToString(h.Sum(nil))
	if upToDate(out, digest) {
		fmt.Fprintf(b.log, "lab build: image %s is up to date\n", img.Ref)
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(out), err)
	}
	f, err := os.Create(out + ".tmp")
	if err != nil {
		return fmt.Errorf("write image %s: %w", img.Ref, err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	desc, err := ociimage.Write(bw, img)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(out+".tmp", out)
	}
	if err != nil {
		os.Remove(out + ".tmp")
		return fmt.Errorf("write image %s: %w", img.Ref, err)
	}
	if err := os.WriteFile(out+".inputs", []byte(digest+"\n"), 0o644); err != nil {
		return fmt.Errorf("record inputs of %s: %w", img.Ref, err)
	}
	fmt.Fprintf(b.log, "lab build: wrote image %s (%s) to %s\n", img.Ref, desc.Digest, out)
	return nil
}

func upToDate(out, digest string) bool {
	if _, err := os.Stat(out); err != nil {
		return false
	}
	b, err := os.ReadFile(out + ".inputs")
	return err == nil && strings.TrimSpace(string(b)) == digest
}

// hashTree hashes the Go build inputs below dir: .go files, go.mod, go.sum.
func hashTree(h io.Writer, dir string) error {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n := d.Name()
		if d.IsDir() {
			if p != dir && (strings.HasPrefix(n, ".") || n == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if (strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go")) || n == "go.mod" || n == "go.sum" {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00", strings.TrimPrefix(f, dir))
		if err := hashFile(h, f); err != nil {
			return err
		}
	}
	return nil
}

func hashFile(h io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(h, f)
	return err
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tailFile returns the last n lines of a file, or a note why it cannot.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "(" + path + " does not exist)"
		}
		return "(" + err.Error() + ")"
	}
	defer f.Close()
	const max = 64 << 10
	if st, err := f.Stat(); err == nil && st.Size() > max {
		_, _ = f.Seek(st.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return tail(b, n)
}
