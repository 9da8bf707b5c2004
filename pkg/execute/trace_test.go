package execute

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/internal/fakehost"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/hosts"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
	"github.com/etcdadm-io/etcdadm/pkg/runtime/kubelet"
)

const secretKey = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBs3cr3tK3yM4t3r1alThatMustNeverBeLogged\n-----END EC PRIVATE KEY-----\n"

// A private key the run writes never reaches the log, whatever its level.
func TestTraceNeverShowsFileContents(t *testing.T) {
	var out bytes.Buffer
	log := progress.New(&out, slog.LevelDebug)
	root := t.TempDir()
	key := plan.File{Path: filepath.Join(root, "pki/etcd/server.key"), Mode: 0o600, Part: plan.PartCerts, Data: []byte(secretKey)}
	steps := []plan.Op{
		ops.Write{Path: key.Path, Change: &plan.Change{File: key, Path: key.Path, Kind: plan.Create}},
		ops.Run{Command: "true"},
	}
	p := &plan.Plan{Stages: []plan.Stage{{Name: "certificates", Rollout: plan.OneAtATime, Hosts: []plan.HostOps{{Host: "infra0", Ops: steps}}}}}
	c := &config.Cluster{Spec: config.Spec{Hosts: []config.Host{{Name: "infra0", Address: "127.0.0.1"}}}}
	w := fakehost.New("infra0")
	w.Handle(fakehost.Exact("true"), fakehost.Reply(""))
	hs := &hosts.Hosts{Order: c.Spec.Hosts, T: map[string]remote.Transport{"infra0": hosts.WithTrace(w, log.With(progress.HostKey, "infra0"))}}
	x := &Executor{Cluster: c, Runtime: kubelet.Runtime{}, Hosts: hs, Log: progress.NewLog(log), BackupDir: filepath.Join(root, "backup"), StateDir: filepath.Join(root, "state")}
	if _, err := x.Run(context.Background(), p); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if got, _, _ := w.File(key.Path); !bytes.Equal(got, []byte(secretKey)) {
		t.Fatalf("the key was not written: %q", got)
	}
	for _, want := range []string{
		"[infra0] write path=" + key.Path + " bytes=" + strconv.Itoa(len(secretKey)) + " mode=0600 took=",
		"[infra0] wrote " + key.Path + " (create)",
		"[infra0] run cmd=true took=",
		"[infra0] ran true",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
	for _, line := range strings.Split(secretKey, "\n") {
		if line != "" && strings.Contains(out.String(), line) {
			t.Errorf("the log holds the key's line %q:\n%s", line, out.String())
		}
	}
}
