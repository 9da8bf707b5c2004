package render

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/plan"
)

// readmeExtract is how the README unpacks a host's archive, run as root on
// the host with the archive on its input.
const readmeExtract = "tar -C / --no-overwrite-dir --numeric-owner -xzpf -"

// readmeCheck is how the README checks the unpacked files, with SHA256SUMS
// on its input.
const readmeCheck = "cd / && sha256sum -c"

// hostParents are directories every host has, which no bundle may change.
var hostParents = []string{"etc", "var", "var/lib", "etc/kubernetes"}

// ownedDirs are the directories the example's plan owns, with their modes.
var ownedDirs = map[string]fs.FileMode{
	"etc/kubernetes/manifests/": 0o700,
	"etc/kubernetes/pki/etcd/":  0o755,
	"var/lib/etcd/":             0o700,
}

type entry struct {
	hdr  *tar.Header
	data []byte
}

func readArchive(t *testing.T, p string) []entry {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out []entry
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, entry{hdr, data})
	}
}

func TestArchiveHoldsPlannedFilesAndOwnedDirsOnly(t *testing.T) {
	p := examplePlan(t)
	out := t.TempDir()
	if err := Write(p, out); err != nil {
		t.Fatal(err)
	}
	for _, h := range p.Hosts {
		ap := filepath.Join(out, ArchiveName(h.Name))
		st, err := os.Stat(ap)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %04o, want 0600: it holds keys", ap, st.Mode().Perm())
		}
		dirs := map[string]fs.FileMode{}
		files := map[string]entry{}
		for _, e := range readArchive(t, ap) {
			hdr := e.hdr
			if hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" {
				t.Errorf("%s: %s owned by %d:%d (%q:%q), want 0:0 without names", h.Name, hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname)
			}
			if strings.HasPrefix(hdr.Name, "/") || strings.Contains(hdr.Name, "..") || hdr.Name == "./" || hdr.Name == "." {
				t.Errorf("%s: entry %q is not a path relative to /", h.Name, hdr.Name)
			}
			switch hdr.Typeflag {
			case tar.TypeDir:
				dirs[hdr.Name] = fs.FileMode(hdr.Mode)
			case tar.TypeReg:
				files["/"+hdr.Name] = e
			default:
				t.Errorf("%s: entry %s of type %q", h.Name, hdr.Name, hdr.Typeflag)
			}
		}
		if fmt.Sprint(dirs) != fmt.Sprint(ownedDirs) {
			t.Errorf("%s: directories %v, want only the owned ones %v", h.Name, dirs, ownedDirs)
		}
		for _, parent := range append(hostParents, "etc/kubernetes/pki", "etc/systemd/system/kubelet.service.d") {
			if _, ok := dirs[parent+"/"]; ok {
				t.Errorf("%s: the archive has an entry for %s, which the plan does not own", h.Name, parent)
			}
		}
		if len(files) != len(h.Files) {
			t.Errorf("%s: %d files, want %d", h.Name, len(files), len(h.Files))
		}
		for _, f := range h.Files {
			e, ok := files[f.Path]
			if !ok {
				t.Errorf("%s: %s missing from the archive", h.Name, f.Path)
				continue
			}
			if fs.FileMode(e.hdr.Mode) != f.Mode || !bytes.Equal(e.data, f.Data) {
				t.Errorf("%s: %s has mode %04o and %d bytes, want %04o and %d", h.Name, f.Path, e.hdr.Mode, len(e.data), f.Mode, len(f.Data))
			}
		}
		if _, ok := files["/etc/kubernetes/pki/etcd/ca.key"]; ok {
			t.Errorf("%s: the archive holds the CA key", h.Name)
		}
	}
}

func TestRerenderReplacesArchivesAndRefusesForeignOnes(t *testing.T) {
	p := examplePlan(t)
	out := t.TempDir()
	if err := Write(p, out); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, out); err != nil {
		t.Fatalf("a second render into the same directory: %v", err)
	}
	foreign := filepath.Join(out, ArchiveName("infra1"))
	if err := os.WriteFile(foreign, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Write(p, out)
	if err == nil || !strings.Contains(err.Error(), "infra1.tar.gz exists and was not written by etcdadm render") {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(foreign); string(b) != "mine" {
		t.Error("a foreign archive was replaced")
	}
}

// needsRoot skips a test that unpacks with owners, as root does on a host.
func needsRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("unpacking as the README does needs root, to set owners; run the tests as root")
	}
	out, err := exec.Command("tar", "--version").Output()
	if err != nil || !strings.Contains(string(out), "GNU tar") {
		t.Fatalf("the README's procedure needs GNU tar: %v %s", err, out)
	}
}

// scratchRoot is a host's / with the directories every host has, 0755 and
// root's.
func scratchRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range hostParents {
		p := filepath.Join(root, d)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// extract runs the README's command with root instead of /.
func extract(t *testing.T, root string, archive io.Reader) {
	t.Helper()
	args := strings.Fields(readmeExtract)
	i := slices.Index(args, "/")
	if i < 0 || args[i-1] != "-C" {
		t.Fatalf("no -C / in %q", readmeExtract)
	}
	args[i] = root
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin = archive
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// hostProblems says how root, a host's / after unpacking h's files, differs
// from what the host needs: its own directories as they were (0755, root's),
// every planned file root's with its planned mode and content, and every
// directory the plan owns root's with its mode.
func hostProblems(t *testing.T, root string, h plan.Host) []string {
	t.Helper()
	var out []string
	check := func(rel string, mode fs.FileMode) (*syscall.Stat_t, bool) {
		st, err := os.Lstat(filepath.Join(root, rel))
		if err != nil {
			out = append(out, err.Error())
			return nil, false
		}
		sys := st.Sys().(*syscall.Stat_t)
		if st.Mode().Perm() != mode || sys.Uid != 0 || sys.Gid != 0 {
			out = append(out, fmt.Sprintf("/%s: mode %04o owner %d:%d, want %04o 0:0", rel, st.Mode().Perm(), sys.Uid, sys.Gid, mode))
		}
		return sys, true
	}
	check(".", 0o755)
	for _, d := range hostParents {
		check(d, 0o755)
	}
	for _, d := range h.Dirs {
		if d.Owned {
			check(strings.TrimPrefix(d.Path, "/"), d.Mode)
		}
	}
	for _, f := range h.Files {
		if _, ok := check(strings.TrimPrefix(f.Path, "/"), f.Mode); !ok {
			continue
		}
		data, _ := os.ReadFile(filepath.Join(root, f.Path))
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != f.SHA256() {
			out = append(out, f.Path+": content differs from the plan")
		}
	}
	return out
}

// The README's procedure, run as root: the host's own directories keep
// their mode and owner, every file is root's with its planned mode, and the
// directories etcd owns get theirs. Unpacking again changes nothing.
func TestReadmeProcedureKeepsHostDirectories(t *testing.T) {
	needsRoot(t)
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), readmeExtract) {
		t.Fatalf("README.md does not unpack with %q, which this test runs", readmeExtract)
	}
	p := examplePlan(t)
	out := t.TempDir()
	if err := Write(p, out); err != nil {
		t.Fatal(err)
	}
	h := p.Hosts[0]
	// The operator's files, as a user other than root renders them.
	if err := chownTree(out, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	root := scratchRoot(t)
	for run := range 2 {
		f, err := os.Open(filepath.Join(out, ArchiveName(h.Name)))
		if err != nil {
			t.Fatal(err)
		}
		extract(t, root, f)
		f.Close()
		if problems := hostProblems(t, root, h); len(problems) > 0 {
			t.Errorf("after unpacking %d time(s):\n%s", run+1, strings.Join(problems, "\n"))
		}
	}
	// The README's check, with root for /.
	if !strings.Contains(string(readme), readmeCheck) {
		t.Fatalf("README.md does not check with %q, which this test runs", readmeCheck)
	}
	sums, err := os.Open(filepath.Join(out, h.Name, SumsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer sums.Close()
	cmd := exec.Command("sh", "-c", strings.Replace(readmeCheck, "cd /", "cd "+root, 1))
	cmd.Stdin = sums
	if b, err := cmd.CombinedOutput(); err != nil || strings.Count(string(b), ": OK\n") != len(h.Files) {
		t.Errorf("%s: %v\n%s", readmeCheck, err, b)
	}
}

// The previous procedure (tar -C infra0 -cpf - etc var | tar -C / -xpf -)
// gave the host's /etc and /var/lib the bundle's owner and mode; the check
// above sees it, and sees that --no-overwrite-dir alone would not have
// saved the files' owner.
func TestOldProcedureIsCaught(t *testing.T) {
	needsRoot(t)
	p := examplePlan(t)
	out := t.TempDir()
	if err := Write(p, out); err != nil {
		t.Fatal(err)
	}
	h := p.Hosts[0]
	if err := chownTree(out, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	oldBundle := func() io.Reader {
		b, err := exec.Command("tar", "-C", filepath.Join(out, h.Name), "-cpf", "-", "etc", "var").Output()
		if err != nil {
			t.Fatal(err)
		}
		return bytes.NewReader(b)
	}

	root := scratchRoot(t)
	cmd := exec.Command("tar", "-C", root, "-xpf", "-")
	cmd.Stdin = oldBundle()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	problems := strings.Join(hostProblems(t, root, h), "\n")
	for _, want := range []string{"/var/lib: mode 0700 owner 1000:1000", "/etc/kubernetes/pki/etcd/server.key: mode 0600 owner 1000:1000"} {
		if !strings.Contains(problems, want) {
			t.Errorf("the old procedure's damage is not seen: want %q in\n%s", want, problems)
		}
	}

	root = scratchRoot(t)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := io.Copy(zw, oldBundle()); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	extract(t, root, &gz)
	problems = strings.Join(hostProblems(t, root, h), "\n")
	if strings.Contains(problems, "/var/lib:") || !strings.Contains(problems, "server.key: mode 0600 owner 1000:1000") {
		t.Errorf("the old bundle unpacked with --no-overwrite-dir: want /var/lib kept and the keys the operator's:\n%s", problems)
	}
}

func chownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}
