package apply

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// A plan under a temporary root, applied with the local transport.
func localPlan(t *testing.T) (plan.Host, *Hosts, string) {
	t.Helper()
	root := t.TempDir()
	marker := filepath.Join(root, "restarted")
	hp := plan.Host{
		Name: "local",
		Dirs: []plan.Dir{{Path: filepath.Join(root, "pki"), Mode: 0o755}, {Path: filepath.Join(root, "data"), Mode: 0o700}},
		Files: []plan.File{
			{Path: filepath.Join(root, "pki/ca.crt"), Mode: 0o644, Part: plan.PartCerts, Data: []byte("ca")},
			{Path: filepath.Join(root, "pki/server.key"), Mode: 0o600, Part: plan.PartCerts, Secret: true, Data: []byte("key")},
			{Path: filepath.Join(root, "kubelet.conf"), Mode: 0o644, Part: plan.PartKubelet, Data: []byte("kubelet")},
			{Path: filepath.Join(root, "manifests/etcd.yaml"), Mode: 0o600, Part: plan.PartManifests, Data: []byte("pod")},
		},
		Steps: []plan.Step{{Kind: plan.StepRestartKubelet, Command: "echo x >> " + marker, When: []plan.Part{plan.PartKubelet}}},
	}
	hs := &Hosts{Order: []config.Host{{Name: "local"}}, T: map[string]remote.Transport{"local": remote.NewLocal("local", false)}}
	return hp, hs, marker
}

func TestDiffAndPushOnlyWhatDiffers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the local transport writes files as root")
	}
	ctx := context.Background()
	hp, hs, marker := localPlan(t)
	p := &plan.Plan{Hosts: []plan.Host{hp}}
	diffs, err := Diff(ctx, p, hs, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(diffs[0].Changed()); got != 4 {
		t.Fatalf("%d changes on an empty host, want 4", got)
	}
	var out bytes.Buffer
	r, err := pushHost(ctx, hp, diffs[0], hs.T["local"], filepath.Join(filepath.Dir(marker), "backup"), NewLog(&out))
	if err != nil {
		t.Fatal(err)
	}
	if !r.RestartedKubelet || len(r.Written) != 4 {
		t.Errorf("result %+v", r)
	}
	// The manifest is written last, after the kubelet restart.
	log := out.String()
	if strings.Index(log, "ran echo") > strings.Index(log, "etcd.yaml") {
		t.Errorf("manifest written before the kubelet restart:\n%s", log)
	}
	st, _ := os.Stat(filepath.Join(filepath.Dir(marker), "data"))
	if st == nil || st.Mode().Perm() != 0o700 {
		t.Errorf("data dir %v", st)
	}

	// Nothing differs now: nothing is written and nothing restarts.
	diffs, _ = Diff(ctx, p, hs, 1)
	if len(diffs[0].Changed()) != 0 {
		t.Fatalf("changes after push: %+v", diffs[0].Changed())
	}
	// A mode drift and a content change on the certificate part only.
	if err := os.Chmod(hp.Files[1].Path, 0o644); err != nil {
		t.Fatal(err)
	}
	hp.Files[0].Data = []byte("new ca")
	diffs, _ = Diff(ctx, &plan.Plan{Hosts: []plan.Host{hp}}, hs, 1)
	kinds := map[string]ChangeKind{}
	for _, c := range diffs[0].Changed() {
		kinds[filepath.Base(c.Path)] = c.Kind
	}
	if len(kinds) != 2 || kinds["ca.crt"] != Update || kinds["server.key"] != ModeOnly {
		t.Fatalf("changes %v", kinds)
	}
	r, err = pushHost(ctx, hp, diffs[0], hs.T["local"], filepath.Join(filepath.Dir(marker), "backup"), NewLog(nil))
	if err != nil || r.RestartedKubelet {
		t.Errorf("certificate change restarted the kubelet: %+v %v", r, err)
	}
	if b, _ := os.ReadFile(marker); strings.Count(string(b), "x") != 1 {
		t.Errorf("kubelet restarted %d times, want 1", strings.Count(string(b), "x"))
	}
	var w bytes.Buffer
	WriteDiff(&w, diffs)
	for _, want := range []string{"local: 2 of 4 files would change", "server.key (mode 0644 -> 0600, same content)", "ca.crt (mode 0644 -> 0644, sha256 "} {
		if !strings.Contains(w.String(), want) {
			t.Errorf("diff output lacks %q:\n%s", want, w.String())
		}
	}
}

func TestForEachNamesEveryFailedHost(t *testing.T) {
	hosts := []config.Host{{Name: "b"}, {Name: "a"}, {Name: "c"}}
	err := ForEach(context.Background(), hosts, 2, func(_ context.Context, h config.Host) error {
		if h.Name == "c" {
			return nil
		}
		return errors.New("boom on " + h.Name)
	})
	var he *HostsError
	if !errors.As(err, &he) || len(he.Errors) != 2 || he.Errors[0].Host != "a" {
		t.Fatalf("err = %v", err)
	}
	if msg := named(err, "pre-flight").Error(); !strings.HasPrefix(msg, "pre-flight failed on 2 host(s):\n  - a: boom on a\n  - b: boom on b") {
		t.Errorf("message %q", msg)
	}
}
