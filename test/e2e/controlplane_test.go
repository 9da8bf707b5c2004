package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/kubeadmconfig"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/test/lab"
)

// controlPlaneStory is a lab of three etcd hosts and one control-plane host
// of the external topology. The lab's hosts all run sshd, containerd and a
// kubelet; for etcdadm the fourth is only a control-plane host.
type controlPlaneStory struct {
	*story
	members []*lab.Host
	cp      *lab.Host
}

// cpFiles are the files etcdadm writes on a control-plane host.
var cpFiles = []string{
	kubeadmconfig.ExternalPath,
	kubeadmconfig.ExternalCertFile,
	kubeadmconfig.ExternalKeyFile,
	kubeadmconfig.ExternalCAFile,
}

// TestIntegrationControlPlane: three etcd hosts brought up; a control-plane
// host added to the inventory is the only host written, nothing restarts;
// with what it got (its own apiserver-etcd-client and ca.crt, read back from
// it) a client writes and reads on every member; a re-apply does nothing;
// status shows it; certs renew apiserver-etcd-client renews its certificate
// without restarting a member; a CA rotation takes it along.
func TestIntegrationControlPlane(t *testing.T) {
	requireLab(t)
	bin := buildEtcdadm(t)
	l := upLab(t, lab.Options{Hosts: 4, Dir: "/var/tmp/etcdadm-e2e-cp", NamePrefix: "ecp", Subnet: 11})
	dir := t.TempDir()
	s := &controlPlaneStory{
		story:   &story{bin: bin, lab: l, dir: dir, known: filepath.Join(dir, "known_hosts"), file: filepath.Join(dir, "cluster.yaml")},
		members: l.Hosts[:3],
		cp:      l.Hosts[3],
	}
	copyFile(t, l.KnownHostsFile, s.known)
	steps := []struct {
		name string
		run  func(*testing.T, *controlPlaneStory)
	}{
		{"apply brings up three etcd hosts", stepControlPlaneBringUp},
		{"a control-plane host added to the inventory is the only host written; no member restarts", stepControlPlaneAdded},
		{"with the control-plane host's own certificate, key and ca.crt, a put and a get succeed on every member", stepControlPlaneClient},
		{"a re-apply does nothing; status shows the control-plane host", stepControlPlaneIdempotent},
		{"certs renew apiserver-etcd-client renews the control-plane host's certificate too, restarting nothing", stepControlPlaneRenew},
		{"rotate-ca takes the control-plane host through its stages: both CAs, then the new CA alone and a certificate it issued", stepControlPlaneRotateCA},
	}
	for _, st := range steps {
		if !t.Run(st.name, func(t *testing.T) { st.run(t, s) }) {
			t.Fatalf("stopping the story after %q failed", st.name)
		}
	}
}

// writeWithControlPlane writes the inventory of the three members and the
// control-plane host.
func (s *controlPlaneStory) writeWithControlPlane(t *testing.T) {
	t.Helper()
	s.write(t, s.members, func(inv string) string {
		return inv + fmt.Sprintf("  controlPlane:\n    hosts:\n    - {name: %s, address: %s}\n", s.cp.Name, s.cp.Address)
	})
}

func stepControlPlaneBringUp(t *testing.T, s *controlPlaneStory) {
	s.write(t, s.members, nil)
	r := s.etcdadm(t, "apply", "-f", s.file)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !strings.Contains(r.stdout, "cluster: 3/3 members healthy") {
		t.Errorf("summary:\n%s", r.stdout)
	}
	if got := hostFiles(t, s.cp); len(got) > 0 {
		t.Errorf("%s is not in the inventory yet has %v", s.cp.Name, got)
	}
}

func stepControlPlaneAdded(t *testing.T, s *controlPlaneStory) {
	before := snapshots(t, s.members)
	etcdPIDs := pids(s.members, "etcd")
	kubeletPIDs := pids(s.members, "kubelet")
	s.writeWithControlPlane(t)
	// diff names the control-plane host alone, and writes nothing.
	r := s.etcdadm(t, "diff", "-f", s.file)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !strings.Contains(r.stdout, s.cp.Name+": 4 of 4 files would change") || !strings.Contains(r.stdout, "stage 1/1: control-plane hosts") {
		t.Errorf("diff:\n%s", r.stdout)
	}
	if got := hostFiles(t, s.cp); len(got) > 0 {
		t.Errorf("diff wrote %v", got)
	}
	r = s.etcdadm(t, "apply", "-f", s.file)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !strings.Contains(r.stdout, s.cp.Name+": 4 file(s) written") || !strings.Contains(r.stdout, "cluster: 3/3 members healthy") {
		t.Errorf("summary:\n%s", r.stdout)
	}
	for _, h := range s.members {
		if strings.Contains(r.stdout, h.Name+":") || strings.Contains(r.stderr, "["+h.Name+"] wrote") || strings.Contains(r.stderr, "["+h.Name+"] restarting") {
			t.Errorf("apply changed %s:\n%s\n%s", h.Name, r.stdout, r.stderr)
		}
	}
	unchanged(t, before, s.members)
	if got := pids(s.members, "etcd"); fmt.Sprint(got) != fmt.Sprint(etcdPIDs) {
		t.Errorf("the members' etcd PIDs changed: %v -> %v", etcdPIDs, got)
	}
	if got := pids(s.members, "kubelet"); fmt.Sprint(got) != fmt.Sprint(kubeletPIDs) {
		t.Errorf("the members' kubelet PIDs changed: %v -> %v", kubeletPIDs, got)
	}
	// The control-plane host has its four files and nothing of a member.
	got := hostFiles(t, s.cp)
	want := slices.Clone(cpFiles)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s has %v, want %v", s.cp.Name, got, want)
	}
	ctx := context.Background()
	ca, _ := s.cp.ReadFile(ctx, kubeadmconfig.ExternalCAFile)
	memberCA, _ := s.members[0].ReadFile(ctx, kubeadmconfig.ExternalCAFile)
	if len(ca) == 0 || string(ca) != string(memberCA) {
		t.Errorf("%s's ca.crt is not the members'", s.cp.Name)
	}
	ext, err := s.cp.ReadFile(ctx, kubeadmconfig.ExternalPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range s.members {
		if !strings.Contains(string(ext), "- https://"+h.Address+":2379\n") {
			t.Errorf("etcd-external.yaml lacks %s:\n%s", h.Name, ext)
		}
	}
	out, err := s.cp.Exec(ctx, "stat", "-c", "%a %u:%g %n", kubeadmconfig.ExternalKeyFile, kubeadmconfig.ExternalCertFile)
	if err != nil || !strings.Contains(string(out), "600 0:0 "+kubeadmconfig.ExternalKeyFile) || !strings.Contains(string(out), "644 0:0 "+kubeadmconfig.ExternalCertFile) {
		t.Errorf("modes and owners: %s %v", out, err)
	}
}

// cpClientCert reads the control-plane host's client certificate, key and
// CA file back from the host.
func (s *controlPlaneStory) cpClientCert(t *testing.T) (ca, cert, key []byte, parsed *x509.Certificate) {
	t.Helper()
	ctx := context.Background()
	var err error
	for p, dst := range map[string]*[]byte{kubeadmconfig.ExternalCAFile: &ca, kubeadmconfig.ExternalCertFile: &cert, kubeadmconfig.ExternalKeyFile: &key} {
		if *dst, err = s.cp.ReadFile(ctx, p); err != nil {
			t.Fatalf("read %s on %s: %v", p, s.cp.Name, err)
		}
	}
	block, _ := pem.Decode(cert)
	if block == nil {
		t.Fatalf("%s holds no certificate", kubeadmconfig.ExternalCertFile)
	}
	if parsed, err = x509.ParseCertificate(block.Bytes); err != nil {
		t.Fatal(err)
	}
	return ca, cert, key, parsed
}

// putAndGet writes a key on each member and reads it back there, as a
// kube-apiserver with the control-plane host's files would.
func (s *controlPlaneStory) putAndGet(t *testing.T, tag string) {
	t.Helper()
	ca, cert, key, parsed := s.cpClientCert(t)
	if parsed.Subject.CommonName != "kube-apiserver-etcd-client" {
		t.Errorf("the client certificate is %s, want kubeadm's CN=kube-apiserver-etcd-client", parsed.Subject)
	}
	tlsConfig, err := etcdclient.TLSConfig(ca, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range s.members {
		endpoint := manifests.ClientURL(config.Host{Name: h.Name, Address: h.Address})
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, TLS: tlsConfig, DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatalf("client for %s: %v", endpoint, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		k, v := "/e2e-control-plane/"+tag+"/"+h.Name, "written through "+h.Name
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Errorf("put on %s with %s's certificate: %v", h.Name, s.cp.Name, err)
		} else if resp, err := cli.Get(ctx, k); err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != v {
			t.Errorf("get on %s: %v, %v", h.Name, err, resp)
		}
		cancel()
		_ = cli.Close()
	}
}

func stepControlPlaneClient(t *testing.T, s *controlPlaneStory) {
	s.putAndGet(t, "added")
}

func stepControlPlaneIdempotent(t *testing.T, s *controlPlaneStory) {
	all := append(slices.Clone(s.members), s.cp)
	before := snapshots(t, all)
	r := s.etcdadm(t, "apply", "-f", s.file)
	if r.err != nil || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("re-apply: %v\n%s", r.err, r.stdout)
	}
	r = s.etcdadm(t, "status", "-f", s.file)
	if r.err != nil {
		t.Fatal(r.err)
	}
	_, _, _, parsed := s.cpClientCert(t)
	line := ""
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(l, s.cp.Name+" ") {
			line = l
		}
	}
	if !strings.Contains(r.stdout, "CONTROL-PLANE HOST") || !strings.Contains(line, s.cp.Address) || !strings.Contains(line, parsed.NotAfter.UTC().Format(time.RFC3339)) {
		t.Errorf("status has no line for %s with its certificate's expiry:\n%s", s.cp.Name, r.stdout)
	}
	unchanged(t, before, all)
}

func stepControlPlaneRenew(t *testing.T, s *controlPlaneStory) {
	_, _, oldKey, old := s.cpClientCert(t)
	etcdPIDs := pids(s.members, "etcd")
	r := s.etcdadm(t, "certs", "renew", "apiserver-etcd-client", "-f", s.file)
	if r.err != nil {
		t.Fatal(r.err)
	}
	_, _, newKey, renewed := s.cpClientCert(t)
	if renewed.SerialNumber.Cmp(old.SerialNumber) == 0 || string(newKey) == string(oldKey) {
		t.Errorf("%s's apiserver-etcd-client was not renewed (serial %s, same key %v)", s.cp.Name, renewed.SerialNumber, string(newKey) == string(oldKey))
	}
	if strings.Contains(r.stderr, "restarting etcd") {
		t.Errorf("a client certificate's renewal restarted a member:\n%s", r.stderr)
	}
	if got := pids(s.members, "etcd"); fmt.Sprint(got) != fmt.Sprint(etcdPIDs) {
		t.Errorf("the members' etcd PIDs changed: %v -> %v", etcdPIDs, got)
	}
	s.putAndGet(t, "renewed")
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("apply after renew: %v\n%s", r.err, r.stdout)
	}
}

func stepControlPlaneRotateCA(t *testing.T, s *controlPlaneStory) {
	ctx := context.Background()
	cas := func(h *lab.Host) []*x509.Certificate {
		t.Helper()
		data, err := h.ReadFile(ctx, kubeadmconfig.ExternalCAFile)
		if err != nil {
			t.Fatal(err)
		}
		var out []*x509.Certificate
		for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, c)
		}
		return out
	}
	old := cas(s.cp)
	if len(old) != 1 {
		t.Fatalf("%s trusts %d CAs before the rotation", s.cp.Name, len(old))
	}
	// Stage (a): the bundle, the new CA first, on the members and on the
	// control-plane host, whose kube-apiserver would restart here.
	if r := s.etcdadm(t, "certs", "rotate-ca", "-f", s.file, "--until", "a"); r.err != nil {
		t.Fatal(r.err)
	}
	bundle := cas(s.cp)
	if len(bundle) != 2 || !bundle[1].Equal(old[0]) || bundle[0].Equal(old[0]) {
		t.Fatalf("after stage (a) %s trusts %d CAs, want the new one then the old one", s.cp.Name, len(bundle))
	}
	if m := cas(s.members[0]); len(m) != 2 || !m[0].Equal(bundle[0]) {
		t.Errorf("after stage (a) %s's bundle is not the members'", s.cp.Name)
	}
	s.putAndGet(t, "rotation-a")
	next := bundle[0]
	if r := s.etcdadm(t, "certs", "rotate-ca", "-f", s.file); r.err != nil {
		t.Fatal(r.err)
	}
	if got := cas(s.cp); len(got) != 1 || !got[0].Equal(next) {
		t.Errorf("after the rotation %s trusts %d CAs, want the new CA alone", s.cp.Name, len(got))
	}
	_, _, _, client := s.cpClientCert(t)
	if err := client.CheckSignatureFrom(next); err != nil {
		t.Errorf("%s's apiserver-etcd-client is not the new CA's: %v", s.cp.Name, err)
	}
	s.putAndGet(t, "rotated")
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("apply after the rotation: %v\n%s", r.err, r.stdout)
	}
}
