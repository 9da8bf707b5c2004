// Package adopt takes over an etcd cluster etcdadm did not build: from the
// files its hosts hold (the etcd CA and its key, every member's leaves,
// etcd's manifest or systemd environment, the kubelet's drop-ins) and from
// etcd's member list, it refuses what etcdadm could not run, and otherwise
// makes the inventory that renders, byte for byte, what runs, and the PKI
// that holds the hosts' own certificates. It is pure: it reads and writes
// nothing itself (the pipeline hands it what the hosts hold and etcd's
// member list), and imports nothing that plans, reaches a host or runs.
package adopt

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/kubernetes/cmd/kubeadm/app/util/pkiutil"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/etcdservice"
	"github.com/etcdadm-io/etcdadm/pkg/kubelet"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
)

// Layout is how a host runs its member.
type Layout string

// The layouts etcdadm takes over.
const (
	// LayoutGuide is kubeadm's external-etcd guide: a static Pod written by
	// `kubeadm init phase etcd local`, run by a standalone kubelet through
	// the guide's drop-in.
	LayoutGuide Layout = "kubeadm external etcd (the guide's standalone kubelet)"
	// LayoutStacked is a kubeadm control plane: etcd's static Pod next to
	// the kube-apiserver's, run by kubeadm's kubelet.
	LayoutStacked Layout = "kubeadm stacked control plane"
	// LayoutSystemd is etcdadm's own systemd runtime.
	LayoutSystemd Layout = "etcdadm's systemd runtime"
)

// Host is what one host holds: the files of Paths it has, by path.
type Host struct {
	Name  string
	Files map[string][]byte
}

func (h Host) file(p string) ([]byte, bool) {
	b, ok := h.Files[p]
	return b, ok
}

// Paths are the files read on every host of inventory c.
func Paths(c *config.Cluster) []string {
	ps := []string{caPath(".crt"), caPath(".key")}
	for _, s := range certs.LeafSpecs() {
		ps = append(ps, leafPath(s, ".crt"), leafPath(s, ".key"))
	}
	return append(ps, manifestPath(c), apiserverPath(c), kubelet.ConfigPath, kubelet.DropInPath, etcdservice.UnitPath, etcdservice.EnvPath)
}

func caPath(ext string) string { return path.Join(manifests.CertificatesDir, certs.CABaseName+ext) }

func leafPath(s certs.Spec, ext string) string {
	return path.Join(manifests.CertificatesDir, s.BaseName+ext)
}

func manifestPath(c *config.Cluster) string { return manifests.ManifestPath(c) }

func apiserverPath(c *config.Cluster) string {
	return path.Join(c.Spec.Kubelet.StaticPodPath, "kube-apiserver.yaml")
}

// Refusal is why a cluster cannot be adopted: every problem, each naming
// its host and file.
type Refusal struct {
	Problems []string
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("adopt refused, nothing written here or on any host (%d problem(s)):\n  - %s", len(r.Problems), strings.Join(r.Problems, "\n  - "))
}

type refusal struct{ list []string }

func (r *refusal) add(format string, args ...any) {
	r.list = append(r.list, fmt.Sprintf(format, args...))
}

func (r *refusal) err() error {
	if len(r.list) == 0 {
		return nil
	}
	return &Refusal{Problems: r.list}
}

// Result is a cluster read for adoption.
type Result struct {
	// Layout is how every host runs its member.
	Layout Layout
	// CA and Leaves are the PKI the hosts hold (leaves by host, then by
	// kubeadm name), for certs.Adopted.
	CA     certs.Files
	Leaves map[string]map[string]certs.Files
	// Members are how each member started: its --initial-cluster and
	// state, as its command has them.
	Members map[string]Start
	// Inventory is c with what runs filled in; YAML is it as a file.
	Inventory *config.Cluster
	YAML      []byte
	// Notes are what the operator should know but that does not stop the
	// adoption.
	Notes []string
	// keyOn are the hosts that hold the CA key.
	keyOn []string
}

// Start is how a running member started.
type Start struct {
	InitialCluster, State string
	// KubeadmOrder: the command has them among kubeadm's sorted defaults,
	// as kubeadm init and join write a stacked member's.
	KubeadmOrder bool
}

// running is what one host runs, parsed.
type running struct {
	name   string
	flags  []manifests.Arg
	image  string
	layout Layout
}

// Analyze reads the hosts' files against inventory c: the refusals, or
// what runs as an inventory and a PKI. It does not ask etcd (CheckMembers).
func Analyze(c *config.Cluster, hosts []Host, now time.Time) (*Result, error) {
	var r refusal
	res := &Result{Leaves: map[string]map[string]certs.Files{}, Members: map[string]Start{}}
	byName := map[string]Host{}
	for _, h := range hosts {
		byName[h.Name] = h
	}
	for _, h := range c.Spec.Hosts {
		if _, ok := byName[h.Name]; !ok {
			r.add("%s: nothing was read from it", h.Name)
		}
	}
	if err := r.err(); err != nil {
		return nil, err
	}
	ca := agreeOnCA(c, byName, res, &r)
	if ca != nil {
		readLeaves(c, byName, ca, res, &r)
		readControlPlane(c, byName, ca, res, &r)
	}
	runs := map[string]*running{}
	for _, h := range c.Spec.Hosts {
		if rn := readRunning(c, h, byName[h.Name], &r); rn != nil {
			runs[h.Name] = rn
		}
	}
	if err := r.err(); err != nil {
		return nil, err
	}
	res.Layout = runs[c.Spec.Hosts[0].Name].layout
	var differ []string
	for _, h := range c.Spec.Hosts {
		if l := runs[h.Name].layout; l != res.Layout {
			differ = append(differ, fmt.Sprintf("%s: %s", h.Name, l))
		}
	}
	if len(differ) > 0 {
		r.add("the hosts run etcd in different ways (%s: %s; %s): etcdadm runs every member the same way", c.Spec.Hosts[0].Name, res.Layout, strings.Join(differ, "; "))
		return nil, r.err()
	}
	if res.Layout != LayoutStacked {
		res.Notes = append(res.Notes, fmt.Sprintf("the CA key %s is on %s: etcdadm keeps its copy in spec.pki.dir and never writes it to an external member; remove it from the host(s) once this machine's copy is safe", caPath(".key"), strings.Join(res.keyOn, ", ")))
	}
	inv, err := observe(c, byName, runs, res, &r)
	if err != nil {
		return nil, err
	}
	if err := r.err(); err != nil {
		return nil, err
	}
	res.Inventory = inv
	if res.YAML, err = Marshal(inv); err != nil {
		return nil, err
	}
	// The printed inventory must load as it is.
	back, _, err := config.Parse(res.YAML, "the adopted inventory", c.Dir)
	if err != nil {
		return nil, fmt.Errorf("the inventory made from the hosts does not load: %w", err)
	}
	res.Inventory = back
	checkRenders(back, byName, runs, res, &r)
	if err := r.err(); err != nil {
		return nil, err
	}
	return res, nil
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:8])
}

func parseCert(b []byte) (*x509.Certificate, error) {
	cs, err := certutil.ParseCertsPEM(b)
	if err != nil {
		return nil, err
	}
	return cs[0], nil
}

// agreeOnCA checks that every host holds the same etcd CA and that one of
// them holds its key; the CA most hosts hold (the first host's of a tie)
// is the cluster's.
func agreeOnCA(c *config.Cluster, hosts map[string]Host, res *Result, r *refusal) *x509.Certificate {
	type seen struct {
		cert  *x509.Certificate
		pem   []byte
		hosts []string
	}
	var cas []*seen
	for _, h := range c.Spec.Hosts {
		b, ok := hosts[h.Name].file(caPath(".crt"))
		if !ok {
			r.add("%s: %s is missing: a member of a kubeadm cluster has its etcd CA there", h.Name, caPath(".crt"))
			continue
		}
		cert, err := parseCert(b)
		if err != nil {
			r.add("%s: %s is not a certificate: %v", h.Name, caPath(".crt"), err)
			continue
		}
		i := slices.IndexFunc(cas, func(s *seen) bool { return bytes.Equal(s.cert.Raw, cert.Raw) })
		if i < 0 {
			cas = append(cas, &seen{cert: cert, pem: b})
			i = len(cas) - 1
		}
		cas[i].hosts = append(cas[i].hosts, h.Name)
	}
	if len(cas) == 0 {
		return nil
	}
	best := cas[0]
	for _, s := range cas[1:] {
		if len(s.hosts) > len(best.hosts) {
			best = s
		}
	}
	for _, s := range cas {
		if s == best {
			continue
		}
		for _, h := range s.hosts {
			r.add("%s: %s is another CA (CN=%s, sha256 %s…) than %s's (CN=%s, sha256 %s…): every member must trust the one etcd CA; put the cluster's CA there, or leave the host out of the inventory",
				h, caPath(".crt"), s.cert.Subject.CommonName, fingerprint(s.cert), strings.Join(best.hosts, ", "), best.cert.Subject.CommonName, fingerprint(best.cert))
		}
	}
	res.CA = certs.Files{CertPEM: best.pem, CertPath: best.hosts[0] + ":" + caPath(".crt")}
	var keyFrom []string
	for _, h := range c.Spec.Hosts {
		if !slices.Contains(best.hosts, h.Name) {
			continue
		}
		key, ok := hosts[h.Name].file(caPath(".key"))
		if !ok {
			continue
		}
		if err := certs.CheckPair(certs.Files{CertPEM: best.pem, KeyPEM: key, CertPath: h.Name + ":" + caPath(".crt"), KeyPath: h.Name + ":" + caPath(".key")}); err != nil {
			r.add("%s: %s does not go with the CA: %v", h.Name, caPath(".key"), err)
			continue
		}
		if res.CA.KeyPEM == nil {
			res.CA.KeyPEM, res.CA.KeyPath = key, h.Name+":"+caPath(".key")
		}
		keyFrom = append(keyFrom, h.Name)
	}
	if res.CA.KeyPEM == nil {
		r.add("no host holds the CA's key %s (read on %s): etcdadm signs renewed certificates with it; put it on one host, or in spec.pki.dir as etcd/ca.key", caPath(".key"), strings.Join(best.hosts, ", "))
	}
	res.keyOn = keyFrom
	return best.cert
}

// readLeaves takes each member's leaves, refusing one not issued by ca.
func readLeaves(c *config.Cluster, hosts map[string]Host, ca *x509.Certificate, res *Result, r *refusal) {
	for _, h := range c.Spec.Hosts {
		got := map[string]certs.Files{}
		for _, s := range certs.LeafSpecs() {
			crt, hasCert := hosts[h.Name].file(leafPath(s, ".crt"))
			key, hasKey := hosts[h.Name].file(leafPath(s, ".key"))
			where := h.Name + ": " + leafPath(s, ".crt")
			switch {
			case !hasCert && !hasKey && s.Name == certs.APIServerEtcdClient:
				continue
			case !hasCert:
				r.add("%s is missing: a member needs its %s certificate", where, s.Name)
				continue
			case !hasKey:
				r.add("%s: %s is missing beside its certificate", h.Name, leafPath(s, ".key"))
				continue
			}
			cert, err := parseCert(crt)
			if err != nil {
				r.add("%s is not a certificate: %v", where, err)
				continue
			}
			if err := pkiutil.VerifyCertChain(cert, nil, ca); err != nil {
				r.add("%s was not issued by the etcd CA (its issuer: %s; the CA: CN=%s, sha256 %s…): reissue it from the cluster's CA, or leave the host out", where, cert.Issuer.String(), ca.Subject.CommonName, fingerprint(ca))
				continue
			}
			if want := s.CommonName(h); cert.Subject.CommonName != want {
				r.add("%s names CN=%s, but the inventory names this member %s (its CN must be %s): fix the host's name in the inventory", where, cert.Subject.CommonName, h.Name, want)
				continue
			}
			got[s.Name] = certs.Files{CertPEM: crt, KeyPEM: key, CertPath: h.Name + ":" + leafPath(s, ".crt"), KeyPath: h.Name + ":" + leafPath(s, ".key")}
		}
		res.Leaves[h.Name] = got
	}
}

// readControlPlane takes the apiserver-etcd-client certificate of each
// control-plane host of an external cluster, where it has one, refusing
// one that trusts, or holds a certificate of, another CA.
func readControlPlane(c *config.Cluster, hosts map[string]Host, ca *x509.Certificate, res *Result, r *refusal) {
	spec := certs.ControlPlaneSpecs()[0]
	for _, cp := range c.Spec.ControlPlane.Hosts {
		files, ok := hosts[cp.Name]
		if !ok {
			r.add("%s: nothing was read from it", cp.Name)
			continue
		}
		if b, ok := files.file(caPath(".crt")); ok {
			if cert, err := parseCert(b); err != nil || !bytes.Equal(cert.Raw, ca.Raw) {
				r.add("%s: %s is not the members' etcd CA (sha256 %s…): the control-plane host trusts another; put the members' CA there, or leave the host out of spec.controlPlane.hosts", cp.Name, caPath(".crt"), fingerprint(ca))
				continue
			}
		}
		crt, hasCert := files.file(leafPath(spec, ".crt"))
		key, hasKey := files.file(leafPath(spec, ".key"))
		if !hasCert || !hasKey {
			continue
		}
		cert, err := parseCert(crt)
		if err != nil || pkiutil.VerifyCertChain(cert, nil, ca) != nil {
			r.add("%s: %s was not issued by the etcd CA (CN=%s, sha256 %s…): reissue it from the cluster's CA, or leave the host out of spec.controlPlane.hosts", cp.Name, leafPath(spec, ".crt"), ca.Subject.CommonName, fingerprint(ca))
			continue
		}
		res.Leaves[cp.Name] = map[string]certs.Files{spec.Name: {CertPEM: crt, KeyPEM: key, CertPath: cp.Name + ":" + leafPath(spec, ".crt"), KeyPath: cp.Name + ":" + leafPath(spec, ".key")}}
	}
}

// readRunning reads how host h runs its member.
func readRunning(c *config.Cluster, h config.Host, files Host, r *refusal) *running {
	rn := &running{name: h.Name}
	var args []string
	if b, ok := files.file(manifestPath(c)); ok {
		cmd, image, err := podCommand(b)
		if err != nil {
			r.add("%s: %s: %v", h.Name, manifestPath(c), err)
			return nil
		}
		args, rn.image = cmd, image
		rn.layout = LayoutGuide
		if _, ok := files.file(apiserverPath(c)); ok {
			rn.layout = LayoutStacked
		} else {
			var missing []string
			for _, p := range []string{kubelet.ConfigPath, kubelet.DropInPath} {
				if _, ok := files.file(p); !ok {
					missing = append(missing, p)
				}
			}
			if len(missing) > 0 {
				r.add("%s: %s runs without a kube-apiserver beside it, but %s missing: neither a stacked control plane nor the guide's standalone kubelet", h.Name, manifestPath(c), strings.Join(missing, " and ")+" is")
				return nil
			}
		}
	} else if b, ok := files.file(etcdservice.EnvPath); ok {
		if _, ok := files.file(etcdservice.UnitPath); !ok {
			r.add("%s: %s without %s: not etcdadm's systemd runtime", h.Name, etcdservice.EnvPath, etcdservice.UnitPath)
			return nil
		}
		a, err := etcdservice.ParseEnvFile(b)
		if err != nil {
			r.add("%s: %s: %v", h.Name, etcdservice.EnvPath, err)
			return nil
		}
		args, rn.layout = a, LayoutSystemd
	} else {
		r.add("%s: neither %s nor %s: etcd runs some other way than a kubeadm static Pod or etcdadm's systemd unit, which etcdadm cannot take over", h.Name, manifestPath(c), etcdservice.EnvPath)
		return nil
	}
	for _, a := range args {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok || !strings.HasPrefix(a, "--") {
			r.add("%s: etcd's argument %q is not --flag=value, as kubeadm and etcdadm write them", h.Name, a)
			return nil
		}
		rn.flags = append(rn.flags, manifests.Arg{Name: name, Value: value})
	}
	if n := flag(rn.flags, "name"); n != h.Name {
		r.add("%s: etcd runs with --name=%s: the inventory must name the host as its member (name: %s)", h.Name, n, n)
		return nil
	}
	return rn
}

func flag(args []manifests.Arg, name string) string {
	for _, a := range args {
		if a.Name == name {
			return a.Value
		}
	}
	return ""
}

// CheckMembers refuses a host that is not a member and a member that is
// not in the inventory, by the peer URLs etcd lists.
func CheckMembers(c *config.Cluster, members []etcdclient.Member) error {
	var r refusal
	listed := map[string]bool{}
	for _, m := range members {
		found := false
		for _, h := range c.Spec.Hosts {
			if slices.Contains(m.PeerURLs, manifests.PeerURL(h)) {
				found, listed[h.Name] = true, true
				if m.Name != "" && m.Name != h.Name {
					r.add("%s: the member at %s is named %s in etcd: name the host %s in the inventory", h.Name, manifests.PeerURL(h), m.Name, m.Name)
				}
				if m.Learner {
					r.add("%s: its member %s is a learner: let it be promoted (or remove it) before adopting", h.Name, m.HexID())
				}
			}
		}
		if !found {
			name := m.Name
			if name == "" {
				name = "(not started)"
			}
			r.add("member %s %s (peer URLs %s) is not in the inventory: add its host to spec.hosts, or remove the member (etcdctl member remove %s)", m.HexID(), name, strings.Join(m.PeerURLs, ","), m.HexID())
		}
	}
	for _, h := range c.Spec.Hosts {
		if !listed[h.Name] {
			r.add("%s: not a member: no member has the peer URL %s (%s names it %s); take the host out of the inventory, or add it with etcdadm apply once adopted", h.Name, manifests.PeerURL(h), manifestPath(c), h.Name)
		}
	}
	return r.err()
}

// keyAlgorithm is the inventory's name for the algorithm of a certificate's key.
func keyAlgorithm(cert *x509.Certificate) (config.KeyAlgorithm, bool) {
	switch k := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 2048:
			return config.RSA2048, true
		case 3072:
			return config.RSA3072, true
		case 4096:
			return config.RSA4096, true
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return config.ECDSAP256, true
		case elliptic.P384():
			return config.ECDSAP384, true
		}
	}
	return "", false
}

// validity is how long a certificate was issued for, without kubeadm's
// backdating, in whole hours.
func validity(cert *x509.Certificate) string {
	d := cert.NotAfter.Sub(cert.NotBefore) - certs.Backdate
	return fmt.Sprintf("%dh", int64((d+30*time.Minute)/time.Hour))
}

// extraSANs are a certificate's SANs beyond kubeadm's defaults for h.
func extraSANs(cert *x509.Certificate, h config.Host) []string {
	def := map[string]bool{h.Name: true, "localhost": true}
	var out []string
	for _, d := range cert.DNSNames {
		if !def[d] && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	defIPs := []net.IP{net.ParseIP(h.Address), net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, ip := range cert.IPAddresses {
		if !slices.ContainsFunc(defIPs, ip.Equal) && !slices.Contains(out, ip.String()) {
			out = append(out, ip.String())
		}
	}
	sort.Strings(out)
	return out
}
