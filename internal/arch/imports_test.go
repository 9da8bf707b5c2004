package arch

import (
	"go/build"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/etcdadm-io/etcdadm/"

// upper are the packages that put the lower ones together; no lower
// package imports them.
var upper = []string{"pkg/plan", "pkg/hosts", "pkg/gather", "pkg/execute", "pkg/status", "pkg/render", "pkg/pipeline", "cmd/etcdadm/app"}

// forbidden says, per package, what it must not import (besides its
// documented layer): a prefix forbids a package and those below it.
var forbidden = map[string][]string{
	"pkg/hostfile":        {"pkg/ops", "pkg/remote", "pkg/facts", "pkg/runtime"},
	"pkg/ops":             {"pkg/runtime"},
	"pkg/runtime":         {"pkg/runtime/kubelet", "pkg/runtime/systemd"},
	"pkg/runtime/kubelet": {"pkg/runtime/systemd"},
	"pkg/runtime/systemd": {"pkg/runtime/kubelet"},
	// The plan is pure: it reaches no host and does not choose the runtime.
	"pkg/plan":     {"pkg/remote", "pkg/hosts", "pkg/gather", "pkg/execute", "pkg/status", "pkg/render", "pkg/pipeline", "pkg/runtime/kubelet", "pkg/runtime/systemd"},
	"pkg/hosts":    {"pkg/plan", "pkg/ops", "pkg/runtime", "pkg/gather", "pkg/execute", "pkg/status", "pkg/pipeline"},
	"pkg/gather":   {"pkg/execute", "pkg/status", "pkg/render", "pkg/pipeline", "pkg/runtime/kubelet", "pkg/runtime/systemd"},
	"pkg/execute":  {"pkg/gather", "pkg/status", "pkg/render", "pkg/pipeline", "pkg/runtime/kubelet", "pkg/runtime/systemd"},
	"pkg/status":   {"pkg/plan", "pkg/ops", "pkg/execute", "pkg/render", "pkg/pipeline", "pkg/runtime"},
	"pkg/render":   {"pkg/remote", "pkg/hosts", "pkg/gather", "pkg/execute", "pkg/status", "pkg/pipeline"},
	"pkg/pipeline": {"cmd/"},
}

// The lower packages (the vocabulary, the leaves and the runtimes) import
// none of the upper ones; each package imports none of what its doc
// forbids; product code imports no test double and nothing of test/.
func TestImportRules(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	testOnly := []string{"internal/etcdtest", "internal/fakehost", "internal/kubeadmguide", "internal/opstest", "internal/ptytest", "internal/testinv", "test/"}
	checked := 0
	for _, top := range []string{"pkg", "internal", "cmd"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(dir string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() || d.Name() == "testdata" {
				return err
			}
			pkg, err := build.ImportDir(dir, 0)
			if _, none := err.(*build.NoGoError); none {
				return nil
			}
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, dir)
			rel = filepath.ToSlash(rel)
			rules := slices.Clone(forbidden[rel])
			if !slices.Contains(upper, rel) && !strings.HasPrefix(rel, "cmd/") {
				rules = append(rules, upper...)
			}
			if !slices.Contains(testOnly, rel) {
				rules = append(rules, testOnly...)
			}
			for _, imp := range pkg.Imports {
				own, ok := strings.CutPrefix(imp, module)
				if !ok || own == rel {
					continue
				}
				for _, no := range rules {
					if own == no || strings.HasPrefix(own, strings.TrimSuffix(no, "/")+"/") {
						t.Errorf("%s imports %s, which it must not", rel, own)
					}
				}
			}
			checked++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if checked < 30 {
		t.Errorf("checked %d packages: the walk missed the tree", checked)
	}
}
