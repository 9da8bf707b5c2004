// Package hack holds the scripts that prepare a machine for etcdadm's lab.
package hack

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// stubMachine is a PATH with fake id, dpkg-query, apt-get and (optionally)
// sudo that record what they are asked to do in log.
type stubMachine struct {
	bin, log string
}

func newStubMachine(t *testing.T, uid int, installed []string, withSudo bool) *stubMachine {
	t.Helper()
	dir := t.TempDir()
	m := &stubMachine{bin: filepath.Join(dir, "bin"), log: filepath.Join(dir, "log")}
	if err := os.Mkdir(m.bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"bash", "env"} {
		real, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(real, filepath.Join(m.bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	stubs := map[string]string{
		"id":         `[ "$1" = -u ] && echo ` + strconv.Itoa(uid),
		"dpkg-query": `case " ` + strings.Join(installed, " ") + ` " in *" ${@: -1} "*) printf installed;; *) printf not-installed; exit 1;; esac`,
		"apt-get":    `echo "apt-get DEBIAN_FRONTEND=$DEBIAN_FRONTEND $*" >>` + m.log,
	}
	if withSudo {
		stubs["sudo"] = `echo "sudo $*" >>` + m.log + `; exec "$@"`
	}
	for name, body := range stubs {
		if err := os.WriteFile(filepath.Join(m.bin, name), []byte("#!"+filepath.Join(m.bin, "bash")+"\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func (m *stubMachine) run(t *testing.T) (string, []string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(m.bin, "bash"), "install-lab-packages.sh")
	cmd.Env = []string{"PATH=" + m.bin}
	out, err := cmd.CombinedOutput()
	b, rerr := os.ReadFile(m.log)
	if rerr != nil && !os.IsNotExist(rerr) {
		t.Fatal(rerr)
	}
	return string(out), strings.Split(strings.TrimSpace(string(b)), "\n"), err
}

var allPackages = []string{"make", "git", "ca-certificates", "openssh-server", "openssh-client",
	"openssh-sftp-server", "containerd", "runc", "sudo", "iproute2", "util-linux", "passwd"}

// A fresh machine as root without sudo: apt-get runs directly, for what is missing only.
func TestInstallsMissingAsRootWithoutSudo(t *testing.T) {
	installed := slices.DeleteFunc(slices.Clone(allPackages), func(p string) bool { return p == "sudo" || p == "containerd" })
	m := newStubMachine(t, 0, installed, false)
	out, log, err := m.run(t)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "installing containerd sudo") {
		t.Errorf("does not say what it installs:\n%s", out)
	}
	want := []string{
		"apt-get DEBIAN_FRONTEND=noninteractive update -qq",
		"apt-get DEBIAN_FRONTEND=noninteractive install -y -qq --no-install-recommends containerd sudo",
	}
	if !slices.Equal(log, want) {
		t.Errorf("ran:\n%s\nwant:\n%s", strings.Join(log, "\n"), strings.Join(want, "\n"))
	}
}

func TestUsesSudoWhenNotRoot(t *testing.T) {
	installed := slices.DeleteFunc(slices.Clone(allPackages), func(p string) bool { return p == "runc" })
	m := newStubMachine(t, 1000, installed, true)
	out, log, err := m.run(t)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(log) != 4 || !strings.HasPrefix(log[0], "sudo env DEBIAN_FRONTEND=noninteractive apt-get update") ||
		log[3] != "apt-get DEBIAN_FRONTEND=noninteractive install -y -qq --no-install-recommends runc" {
		t.Errorf("ran:\n%s", strings.Join(log, "\n"))
	}
}

func TestNothingMissingInstallsNothing(t *testing.T) {
	for _, root := range []bool{true, false} {
		uid := 1000
		if root {
			uid = 0
		}
		m := newStubMachine(t, uid, allPackages, false)
		out, log, err := m.run(t)
		if err != nil || len(log) != 1 || log[0] != "" {
			t.Errorf("root %v: %v, ran %q\n%s", root, err, log, out)
		}
		if !strings.Contains(out, "the lab's packages are installed") {
			t.Errorf("root %v: says %q", root, out)
		}
	}
}

func TestNotRootWithoutSudoSaysWhatToDo(t *testing.T) {
	m := newStubMachine(t, 1000, []string{"make"}, false)
	out, log, err := m.run(t)
	if err == nil {
		t.Fatalf("succeeded without installing:\n%s", out)
	}
	if !strings.Contains(out, "run this script as root") || !strings.Contains(out, "missing git ca-certificates") {
		t.Errorf("message: %s", out)
	}
	if log[0] != "" {
		t.Errorf("ran %q", log)
	}
}

// The script's list is the lab's: every package test/lab/preflight.go names.
func TestListCoversTheLabsPreflight(t *testing.T) {
	pre, err := os.ReadFile("../test/lab/preflight.go")
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile("install-lab-packages.sh")
	if err != nil {
		t.Fatal(err)
	}
	reqs := regexp.MustCompile(`\{"[^"]+", "([^"]+)", (?:true|false)\}`).FindAllStringSubmatch(string(pre), -1)
	if len(reqs) < 10 {
		t.Fatalf("found %d requirements in test/lab/preflight.go; has its format changed?", len(reqs))
	}
	for _, m := range reqs {
		if m[1] == "bash" || m[1] == "mount" { // essential: on every Debian machine
			continue
		}
		if !slices.Contains(allPackages, m[1]) || !strings.Contains(string(script), " "+m[1]) {
			t.Errorf("the lab needs %s, which install-lab-packages.sh does not install", m[1])
		}
	}
}

// make demo, as root, installs the packages before anything else and says
// so; .ci/run uses the same script, then proves the README's first command.
func TestMakeDemoAndCIUseTheScript(t *testing.T) {
	out, err := exec.Command("make", "-n", "-C", "..", "demo").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n demo: %v\n%s", err, out)
	}
	s := string(out)
	install := strings.Index(s, "hack/install-lab-packages.sh")
	build := strings.Index(s, "go build")
	if install < 0 || build < 0 || install > build {
		t.Errorf("make demo does not run hack/install-lab-packages.sh before building:\n%s", s)
	}
	for _, want := range []string{"etcdctl", "--endpoints", "--cacert", "--cert", "--key"} {
		if !strings.Contains(s, want) {
			t.Errorf("make demo does not show how to reach the members (%s):\n%s", want, s)
		}
	}

	ci, err := os.ReadFile("../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string // each command's first two words, in order
	for _, line := range strings.Split(string(ci), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		cmd := fields[0]
		if len(fields) > 1 {
			cmd += " " + fields[1]
		}
		if fields[0] == "apt-get" || strings.Contains(cmd, " apt-get") {
			t.Errorf(".ci/run installs packages itself (%s) instead of with hack/install-lab-packages.sh", line)
		}
		cmds = append(cmds, cmd)
	}
	last := -1
	for _, step := range []string{"hack/install-lab-packages.sh", "make demo", "make demo-down", "make test"} {
		i := slices.Index(cmds, step)
		if i <= last {
			t.Errorf(".ci/run does not run %q after the steps before it: %q", step, cmds)
		}
		last = i
	}
}
