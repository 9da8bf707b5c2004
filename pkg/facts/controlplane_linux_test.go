//go:build linux

package facts_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// A control-plane host is read without anything of a member: its files,
// its CA file, who runs commands and its clock, but no kubelet, no etcd
// port or process, no data directory, no manifest, no images.
func TestGatherNoMember(t *testing.T) {
	root := t.TempDir()
	_, caPEM := newCA(t, "etcd-ca")
	caPath := filepath.Join(root, "pki", "etcd", "ca.crt")
	writeFile(t, caPath, caPEM, 0o644)
	keyPath := filepath.Join(root, "pki", "apiserver-etcd-client.key")
	writeFile(t, keyPath, []byte("key\n"), 0o600)
	// A listener on the client port and a data directory that would be
	// read for a member.
	_, port := listen(t)
	writeFile(t, filepath.Join(root, "data", "x"), nil, 0o600)

	req := facts.Request{
		CAPath:     caPath,
		Files:      []string{keyPath, filepath.Join(root, "missing.crt")},
		Dirs:       []string{filepath.Join(root, "pki")},
		ClientPort: port,
		StateDir:   filepath.Join(root, "state"),
		NoMember:   true,
	}
	script, err := facts.Script(req)
	if err != nil {
		t.Fatalf("a request without data directory or manifest: %v", err)
	}
	for _, absent := range []string{"ss -Hltnp", "kubelet", "ctr ", "datadir", "show manifest"} {
		if strings.Contains(script, absent) {
			t.Errorf("the script reads %q:\n%s", absent, script)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr := remote.NewLocal("cp0", false)
	defer tr.Close()
	h, _, err := facts.Gather(ctx, tr, req, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(h.TrustedCAs) != 1 || h.TrustedCAs[0].Subject.CommonName != "etcd-ca" {
		t.Errorf("trusted CAs %v", h.TrustedCAs)
	}
	if st, ok := h.Files[keyPath]; !ok || st.Mode.Perm() != 0o600 || st.SHA256 == "" {
		t.Errorf("key state %+v, %v", st, ok)
	}
	if st, ok := h.Files[filepath.Join(root, "pki")]; !ok || !st.Dir {
		t.Errorf("directory state %+v, %v", st, ok)
	}
	if h.RunsEtcd() || len(h.Listeners) > 0 || h.DataDir.Exists || h.Manifest != nil || h.Containerd != nil || h.Kubelet != "" || h.NoSS {
		t.Errorf("member facts read on a control-plane host: %+v", h)
	}
	if h.ClockError == 0 {
		t.Error("the clock was not read")
	}
}
