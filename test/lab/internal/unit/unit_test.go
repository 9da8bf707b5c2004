package unit

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, root, path, content string) {
	t.Helper()
	p := filepath.Join(root, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

const etcdDropIn = `[Service]
ExecStart=
ExecStart=/usr/bin/kubelet --config=/etc/systemd/system/kubelet.service.d/kubelet.conf
Restart=always
`

func TestLoadDropInOnly(t *testing.T) {
	root := t.TempDir()
	write(t, root, "etc/systemd/system/kubelet.service.d/20-etcd-service-manager.conf", etcdDropIn)
	s, err := Load(root, SearchPath(), "kubelet.service")
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Command(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/usr/bin/kubelet", "--config=/etc/systemd/system/kubelet.service.d/kubelet.conf"}
	if !reflect.DeepEqual(c.Argv, want) {
		t.Errorf("argv = %q, want %q", c.Argv, want)
	}
	if s.Restart != "always" || s.FragmentPath != "" || len(s.DropIns) != 1 {
		t.Errorf("unexpected service %+v", s)
	}
}

func TestLoadOrderResetAndMask(t *testing.T) {
	root := t.TempDir()
	write(t, root, "usr/lib/systemd/system/kubelet.service", "[Unit]\nDescription=x\n[Service]\nExecStart=/usr/bin/kubelet\nRestart=always\nRestartSec=10\n")
	write(t, root, "usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf",
		"[Service]\nEnvironment=\"KUBELET_KUBECONFIG_ARGS=--kubeconfig=/etc/kubernetes/kubelet.conf\" B=2\n"+
			"EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env\nEnvironmentFile=-/etc/default/kubelet\n"+
			"ExecStart=\nExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_EXTRA_ARGS \\\n  --v=${V}\n")
	write(t, root, "var/lib/kubelet/kubeadm-flags.env", "KUBELET_EXTRA_ARGS=\"--a=1 --b=2\"\nV=2\n")
	s, err := Load(root, SearchPath(), "kubelet.service")
	if err != nil {
		t.Fatal(err)
	}
	env, err := s.Env(root)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Command(env)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/usr/bin/kubelet", "--kubeconfig=/etc/kubernetes/kubelet.conf", "--a=1", "--b=2", "--v=2"}
	if !reflect.DeepEqual(c.Argv, want) {
		t.Errorf("argv = %q, want %q", c.Argv, want)
	}
	if s.RestartDelay != 10*time.Second {
		t.Errorf("RestartSec = %v", s.RestartDelay)
	}

	// A drop-in of the same name in /etc masks the vendor one.
	write(t, root, "etc/systemd/system/kubelet.service.d/10-kubeadm.conf", "[Service]\nRestart=no\n")
	s, err = Load(root, SearchPath(), "kubelet.service")
	if err != nil {
		t.Fatal(err)
	}
	if c, err := s.Command(nil); err != nil || c.Argv[0] != "/usr/bin/kubelet" || len(c.Argv) != 1 {
		t.Errorf("masked drop-in still applied: %q, %v", c.Argv, err)
	}
}

func TestTwoExecStartRefused(t *testing.T) {
	root := t.TempDir()
	write(t, root, "etc/systemd/system/kubelet.service.d/10-a.conf", "[Service]\nExecStart=/usr/bin/kubelet\n")
	write(t, root, "etc/systemd/system/kubelet.service.d/20-b.conf", "[Service]\nExecStart=/usr/bin/kubelet --v=2\n")
	s, err := Load(root, SearchPath(), "kubelet.service")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "more than one ExecStart") {
		t.Errorf("Validate = %v, want a refusal", err)
	}
}

func TestNotFoundAndNoExecStart(t *testing.T) {
	root := t.TempDir()
	if _, err := Load(root, SearchPath(), "kubelet.service"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load = %v, want ErrNotFound", err)
	}
	write(t, root, "etc/systemd/system/kubelet.service.d/x.conf", "[Service]\nRestart=always\n")
	s, err := Load(root, SearchPath(), "kubelet.service")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err == nil {
		t.Error("Validate accepted a service without ExecStart")
	}
}

func TestDigestChanges(t *testing.T) {
	root := t.TempDir()
	write(t, root, "etc/systemd/system/kubelet.service.d/x.conf", etcdDropIn)
	a, _ := Load(root, SearchPath(), "kubelet.service")
	write(t, root, "etc/systemd/system/kubelet.service.d/x.conf", etcdDropIn+"RestartSec=5\n")
	b, _ := Load(root, SearchPath(), "kubelet.service")
	if a.Digest == b.Digest {
		t.Error("digest did not change with the drop-in")
	}
}

func TestSplitWords(t *testing.T) {
	got, err := SplitWords(`a "b c" 'd e' f\ g`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a", "b c", "d e", "f g"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := SplitWords(`"open`); err == nil {
		t.Error("unbalanced quote accepted")
	}
}
