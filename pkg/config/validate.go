package config

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/version"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	sigsjson "sigs.k8s.io/json"
)

// ManagedEtcdFlags are etcd flags etcdadm sets itself from the inventory; an
// extraArgs entry for one of them would split the truth in two.
var ManagedEtcdFlags = map[string]string{
	"name":                        "spec.hosts[].name",
	"data-dir":                    "spec.etcd.dataDir",
	"initial-cluster":             "spec.hosts",
	"initial-cluster-state":       "etcdadm (new at bring-up, existing when a member joins)",
	"initial-advertise-peer-urls": "spec.hosts[].address",
	"advertise-client-urls":       "spec.hosts[].address",
	"listen-peer-urls":            "spec.hosts[].address",
	"cert-file":                   "etcdadm's PKI layout",
	"key-file":                    "etcdadm's PKI layout",
	"trusted-ca-file":             "etcdadm's PKI layout",
	"peer-cert-file":              "etcdadm's PKI layout",
	"peer-key-file":               "etcdadm's PKI layout",
	"peer-trusted-ca-file":        "etcdadm's PKI layout",
	"client-cert-auth":            "etcdadm (mTLS is always on)",
	"peer-client-cert-auth":       "etcdadm (mTLS is always on)",
}

// managedKubeletFields are KubeletConfiguration fields that have their own inventory field.
var managedKubeletFields = map[string]string{
	"cgroupDriver":             "spec.kubelet.cgroupDriver",
	"containerRuntimeEndpoint": "spec.kubelet.containerRuntimeEndpoint",
	"staticPodPath":            "spec.kubelet.staticPodPath",
	"apiVersion":               "nothing (etcdadm writes kubelet.config.k8s.io/v1beta1)",
	"kind":                     "nothing (etcdadm writes KubeletConfiguration)",
}

var (
	flagName  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	imageTag  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	imageRepo = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$`)
)

// validate checks a defaulted cluster, recording problems and returning warnings.
func validate(c *Cluster, ps *problems) []Warning {
	var warnings []Warning
	s := &c.Spec
	if c.APIVersion != APIVersion {
		ps.add("apiVersion", "%q is not supported; use %s", c.APIVersion, APIVersion)
	}
	if c.Kind != Kind {
		ps.add("kind", "%q is not supported; use %s", c.Kind, Kind)
	}
	if c.Metadata.Name == "" {
		ps.add("metadata.name", "is required; name the cluster, e.g. prod")
	} else if errs := validation.IsDNS1123Label(c.Metadata.Name); len(errs) > 0 {
		ps.add("metadata.name", "%q is not a valid name: %s", c.Metadata.Name, errs[0])
	}
	if s.Topology != TopologyExternal && s.Topology != TopologyStacked {
		ps.add("spec.topology", "%q is not a topology; use external or stacked", s.Topology)
	}
	validateVersions(s, ps)
	validateEtcd(s, ps)
	validateRuntime(c, ps)
	warnings = append(warnings, validatePKI(s, ps)...)
	validateKubelet(s, ps)
	validateSSH(c, ps)
	validateImages(c, ps)
	warnings = append(warnings, validateHosts(s, ps)...)
	warnings = append(warnings, validateBackup(c, ps)...)
	return warnings
}

func validateVersions(s *Spec, ps *problems) {
	if _, err := version.ParseSemantic(s.KubernetesVersion); err != nil {
		ps.add("spec.kubernetesVersion", "%q is not a version; write it like v1.37.2", s.KubernetesVersion)
	} else if _, err := EtcdImageTag(s.KubernetesVersion); err != nil {
		ps.add("spec.kubernetesVersion", "%s is not supported: use v1.37.x or v1.36.x (kubeadm v1.37 deploys control planes from v1.36 on)", s.KubernetesVersion)
	}
	switch s.KubeadmAPIVersion {
	case "v1beta4":
	case "v1beta3":
		ps.add("spec.kubeadmAPIVersion", "v1beta3 was removed in kubeadm v1.37; use v1beta4")
	default:
		ps.add("spec.kubeadmAPIVersion", "%q is not supported; use v1beta4", s.KubeadmAPIVersion)
	}
}

func validateEtcd(s *Spec, ps *problems) {
	e := &s.Etcd
	if !imageRepo.MatchString(e.ImageRepository) {
		ps.add("spec.etcd.imageRepository", "%q is not an image repository; write it like registry.k8s.io or registry.example.com:5000/k8s", e.ImageRepository)
	}
	if e.ImageTag != "" && !imageTag.MatchString(e.ImageTag) {
		ps.add("spec.etcd.imageTag", "%q is not an image tag; write it like 3.7.0-0, or leave it empty for kubeadm's default", e.ImageTag)
	}
	validateHostDir("spec.etcd.dataDir", e.DataDir, DefaultDataDir, ps)
	validateSANs("spec.etcd.serverCertSANs", e.ServerCertSANs, ps)
	validateSANs("spec.etcd.peerCertSANs", e.PeerCertSANs, ps)
	for _, k := range sortedKeys(e.ExtraArgs) {
		field := "spec.etcd.extraArgs." + k
		switch {
		case strings.HasPrefix(k, "-"):
			ps.add(field, "write the flag name without dashes: %s", strings.TrimLeft(k, "-"))
		case !flagName.MatchString(k):
			ps.add(field, "%q is not an etcd flag name", k)
		case ManagedEtcdFlags[k] != "":
			ps.add(field, "etcdadm sets --%s itself from %s; remove it from extraArgs", k, ManagedEtcdFlags[k])
		}
	}
}

// pinnedHostFlags are the managed flags a host's extraArgs may list, with
// the value etcdadm sets anyway: listing one changes only where it sits in
// the command, as the guide's kubeadmcfg.yaml places it.
var pinnedHostFlags = map[string]func(Host) string{
	"name":                        func(h Host) string { return h.Name },
	"listen-peer-urls":            peerURL,
	"initial-advertise-peer-urls": peerURL,
	"advertise-client-urls":       func(h Host) string { return "https://" + net.JoinHostPort(h.Address, "2379") },
}

func peerURL(h Host) string { return "https://" + net.JoinHostPort(h.Address, "2380") }

// validateHostExtraArgs checks a host's own flags: names as in
// spec.etcd.extraArgs, each once, and a managed flag only with the value
// etcdadm sets.
func validateHostExtraArgs(field string, h Host, cluster map[string]string, ps *problems) {
	seen := map[string]bool{}
	for i, a := range h.ExtraArgs {
		f := fmt.Sprintf("%s[%d]", field, i)
		pinned, isPinned := pinnedHostFlags[a.Name]
		switch {
		case a.Name == "":
			ps.add(f+".name", "is required: the etcd flag, without dashes")
		case strings.HasPrefix(a.Name, "-"):
			ps.add(f+".name", "write the flag name without dashes: %s", strings.TrimLeft(a.Name, "-"))
		case !flagName.MatchString(a.Name):
			ps.add(f+".name", "%q is not an etcd flag name", a.Name)
		case seen[a.Name]:
			ps.add(f+".name", "--%s is listed twice; keep one", a.Name)
		case cluster[a.Name] != "":
			ps.add(f+".name", "--%s is set in spec.etcd.extraArgs too; keep it in one place", a.Name)
		case isPinned && a.Value != pinned(h):
			ps.add(f+".value", "--%s is %s for this host (from its name and address); write that value, or remove the flag", a.Name, pinned(h))
		case !isPinned && ManagedEtcdFlags[a.Name] != "":
			ps.add(f+".name", "etcdadm sets --%s itself from %s; remove it from extraArgs", a.Name, ManagedEtcdFlags[a.Name])
		}
		seen[a.Name] = true
	}
}

func validateSANs(field string, sans []string, ps *problems) {
	seen := map[string]bool{}
	for i, san := range sans {
		f := fmt.Sprintf("%s[%d]", field, i)
		switch {
		case net.ParseIP(san) != nil:
		case len(validation.IsDNS1123Subdomain(san)) == 0:
		case len(validation.IsWildcardDNS1123Subdomain(san)) == 0:
		default:
			ps.add(f, "%q is neither an IP address nor a DNS name (lower-case RFC 1123, e.g. etcd.example.com or *.example.com)", san)
			continue
		}
		if seen[san] {
			ps.add(f, "%q is listed twice; keep one", san)
		}
		seen[san] = true
	}
}

func validatePKI(s *Spec, ps *problems) []Warning {
	p := &s.PKI
	if p.Dir == "" {
		ps.add("spec.pki.dir", "is required")
	} else {
		validateLocalPath("spec.pki.dir", p.Dir, DefaultPKIDir, ps)
	}
	if !slices.Contains(KeyAlgorithms, p.KeyAlgorithm) {
		ps.add("spec.pki.keyAlgorithm", "%q is not supported; use one of %s", p.KeyAlgorithm, joinAlgorithms())
	}
	leaf, leafOK := positiveDuration("spec.pki.certificateValidity", p.CertificateValidity, ps)
	ca, caOK := positiveDuration("spec.pki.caCertificateValidity", p.CACertificateValidity, ps)
	if leafOK && caOK && leaf > ca {
		return []Warning{{Field: "spec.pki.certificateValidity", Message: fmt.Sprintf(
			"%s is longer than the CA's %s; certificates signed near the CA's end will outlive it", leaf, ca)}}
	}
	return nil
}

// validateHostDir checks a directory on the hosts: absolute, not the root, and
// clean, so that it names the directory it reads as, and a host's files
// rendered under DIR/<host>/ stay there.
func validateHostDir(field, p, example string, ps *problems) {
	switch {
	case !path.IsAbs(p):
		ps.add(field, "%q must be an absolute path, e.g. %s", p, example)
	case path.Clean(p) == "/":
		ps.add(field, "must not be /: give etcdadm a directory of its own, e.g. %s", example)
	default:
		if msg := uncleanPath(p, example); msg != "" {
			ps.add(field, "%s", msg)
		}
	}
}

// validateLocalPath checks a path on the operator's machine: absolute,
// relative to the inventory or under ~, but clean. It reports whether it is.
func validateLocalPath(field, p, example string, ps *problems) bool {
	if msg := uncleanPath(p, example); msg != "" {
		ps.add(field, "%s", msg)
		return false
	}
	return true
}

// uncleanPath says what is wrong with a path that is not the same as its
// path.Clean, or has a ".." element; "" when it is clean.
func uncleanPath(p, example string) string {
	switch {
	case p == "":
		return ""
	case slices.Contains(strings.Split(p, "/"), ".."):
		return fmt.Sprintf("%q has a \"..\" element; write the path itself without it, e.g. %s", p, example)
	case path.Clean(p) != p:
		return fmt.Sprintf("%q is not a clean path (no \"//\", \".\" element or trailing \"/\"); write it %s", p, path.Clean(p))
	}
	return ""
}

func positiveDuration(field, v string, ps *problems) (time.Duration, bool) {
	d, err := time.ParseDuration(v)
	if err != nil {
		ps.add(field, "%q is not a duration; write it like 8760h (one year)", v)
		return 0, false
	}
	if d < time.Hour {
		ps.add(field, "%s is too short; use at least 1h", d)
		return 0, false
	}
	return d, true
}

func validateKubelet(s *Spec, ps *problems) {
	k := &s.Kubelet
	if k.CgroupDriver != "systemd" && k.CgroupDriver != "cgroupfs" {
		ps.add("spec.kubelet.cgroupDriver", "%q is not a cgroup driver; use systemd or cgroupfs (the one your container runtime uses)", k.CgroupDriver)
	}
	if !strings.HasPrefix(k.ContainerRuntimeEndpoint, "unix:///") {
		ps.add("spec.kubelet.containerRuntimeEndpoint", "%q is not a unix socket URL; write it like unix:///var/run/containerd/containerd.sock", k.ContainerRuntimeEndpoint)
	} else if sock := strings.TrimPrefix(k.ContainerRuntimeEndpoint, "unix://"); uncleanPath(sock, "") != "" {
		ps.add("spec.kubelet.containerRuntimeEndpoint", "%q is not a clean socket path (no \"..\", \"//\" or \".\" element, no trailing \"/\"); write it like %s", k.ContainerRuntimeEndpoint, DefaultContainerRuntimeEndpoint)
	}
	validateHostDir("spec.kubelet.staticPodPath", k.StaticPodPath, DefaultStaticPodPath, ps)
	for _, key := range sortedKeys(k.ExtraConfig) {
		if owner, ok := managedKubeletFields[key]; ok {
			ps.add("spec.kubelet.extraConfig."+key, "set through %s instead", owner)
			delete(k.ExtraConfig, key)
		}
	}
	if len(k.ExtraConfig) == 0 {
		return
	}
	raw, err := json.Marshal(k.ExtraConfig)
	if err != nil {
		ps.add("spec.kubelet.extraConfig", "cannot be encoded: %v", err)
		return
	}
	// Field names are case-sensitive, as the kubelet reads them.
	var kc kubeletv1beta1.KubeletConfiguration
	strict, err := sigsjson.UnmarshalStrict(raw, &kc)
	if err != nil {
		ps.add("spec.kubelet.extraConfig", "is not a valid part of a KubeletConfiguration (kubelet.config.k8s.io/v1beta1): %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	for _, e := range strict {
		ps.add("spec.kubelet.extraConfig", "is not a valid part of a KubeletConfiguration (kubelet.config.k8s.io/v1beta1): %s", strings.TrimPrefix(e.Error(), "json: "))
	}
}

func validateSSH(c *Cluster, ps *problems) {
	s := &c.Spec.SSH
	if s.Port < 0 || s.Port > 65535 {
		ps.add("spec.ssh.port", "%d is not a TCP port (1-65535, or 0 for ~/.ssh/config's or 22)", s.Port)
	}
	validateLocalPath("spec.ssh.knownHostsFile", s.KnownHostsFile, "~/.ssh/known_hosts", ps)
	// Whether the identity file is there is for the commands that use it
	// to say (CheckSSHFiles): one that never connects works without it.
	validateLocalPath("spec.ssh.identityFile", s.IdentityFile, "~/.ssh/id_ed25519", ps)
	if s.ProxyJump != "" {
		validateProxyJump("spec.ssh.proxyJump", s.ProxyJump, ps)
	}
}

// CheckSSHFiles refuses what of spec.ssh a command that reaches the hosts
// cannot use: an identity file that cannot be read. The commands that
// never connect (render, phase, certs generate, images list, a local
// certs check-expiration) do not ask: an air-gapped operator's inventory
// names a key that is not on their machine.
func (c *Cluster) CheckSSHFiles() error {
	ps := &problems{lines: c.lines}
	if f := c.Spec.SSH.IdentityFile; f != "" && uncleanPath(f, "") == "" {
		p := c.ResolvePath(f)
		if st, err := os.Stat(p); err != nil {
			ps.add("spec.ssh.identityFile", "cannot read %s: %v; point it at your private key or leave it empty to use ssh-agent", p, unwrapPathError(err))
		} else if st.IsDir() {
			ps.add("spec.ssh.identityFile", "%s is a directory; point it at your private key file", p)
		}
	}
	if len(ps.list) > 0 {
		return &InvalidError{Source: c.source, Problems: ps.sorted()}
	}
	return nil
}

func validateImages(c *Cluster, ps *problems) {
	d := c.Spec.Images.Dir
	if d == "" || !validateLocalPath("spec.images.dir", d, "images", ps) {
		return
	}
	p := c.ResolvePath(d)
	if st, err := os.Stat(p); err != nil {
		ps.add("spec.images.dir", "cannot read %s: %v; create it and put the image archives there (`etcdadm images list` names them), or leave it empty", p, unwrapPathError(err))
	} else if !st.IsDir() {
		ps.add("spec.images.dir", "%s is not a directory; point it at the directory of image archives", p)
	}
}

// ImagesDir is the absolute path of the directory of image archives; empty
// when there is none.
func (c *Cluster) ImagesDir() string {
	return c.ResolvePath(c.Spec.Images.Dir)
}

func validateProxyJump(field, v string, ps *problems) {
	for _, hop := range strings.Split(v, ",") {
		hop = strings.TrimSpace(hop)
		if at := strings.LastIndex(hop, "@"); at >= 0 {
			hop = hop[at+1:]
		}
		host, port, err := net.SplitHostPort(hop)
		if err != nil {
			host, port = strings.Trim(hop, "[]"), ""
		}
		if host == "" || (net.ParseIP(host) == nil && len(validation.IsDNS1123Subdomain(strings.ToLower(host))) > 0) {
			ps.add(field, "%q is not a jump host list; write it like user@bastion:22 or bastion1,bastion2", v)
			return
		}
		if port != "" && !validPort(port) {
			ps.add(field, "%q has an invalid port %q", v, port)
			return
		}
	}
}

func validPort(s string) bool {
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || fmt.Sprint(n) != s {
		return false
	}
	return n >= 1 && n <= 65535
}

func validateHosts(s *Spec, ps *problems) []Warning {
	var warnings []Warning
	if len(s.Hosts) == 0 {
		ps.add("spec.hosts", "no hosts; list at least one etcd member (three or five for a highly available cluster)")
		return nil
	}
	// Names and addresses are unique across both lists: each names one machine.
	seen := hostKeys{names: map[string]string{}, addrs: map[string]string{}}
	for i, h := range s.Hosts {
		f := fmt.Sprintf("spec.hosts[%d]", i)
		validateHost(f, h.Name, h.Address, h.SSH, seen, hostRoles{
			name:    "the node name, used as certificate CN and etcd --name",
			address: "the IP address the member advertises to its peers and clients",
			dnsHint: "put DNS names in serverCertSANs",
			notOwn:  "cannot be advertised to peers",
		}, ps)
		validateSANs(f+".serverCertSANs", h.ServerCertSANs, ps)
		validateSANs(f+".peerCertSANs", h.PeerCertSANs, ps)
		validateHostExtraArgs(f+".extraArgs", h, s.Etcd.ExtraArgs, ps)
	}
	validateControlPlane(s, seen, ps)
	if n := len(s.Hosts); n%2 == 0 {
		warnings = append(warnings, Warning{Field: "spec.hosts", Message: fmt.Sprintf(
			"%d members tolerate no more failures than %d: quorum is %d of %d, so the cluster survives %d lost member(s); use an odd number",
			n, n-1, n/2+1, n, (n-1)/2)})
	}
	return warnings
}

// validateControlPlane checks spec.controlPlane.hosts: only the external
// topology has control-plane hosts apart from its etcd hosts.
func validateControlPlane(s *Spec, seen hostKeys, ps *problems) {
	if len(s.ControlPlane.Hosts) == 0 {
		return
	}
	if s.Topology == TopologyStacked {
		ps.add("spec.controlPlane.hosts", "the stacked topology runs etcd on the control-plane hosts, which are spec.hosts; remove spec.controlPlane, or use topology external for control-plane hosts apart from etcd")
		return
	}
	for i, h := range s.ControlPlane.Hosts {
		validateHost(fmt.Sprintf("spec.controlPlane.hosts[%d]", i), h.Name, h.Address, h.SSH, seen, hostRoles{
			name:    "the node name of the control-plane host",
			address: "the host's IP address",
			notOwn:  "is not a host's address",
		}, ps)
	}
}

// hostKeys are the names and addresses of the hosts checked so far, with
// the field that holds each.
type hostKeys struct{ names, addrs map[string]string }

// hostRoles say what a host's name and address are for, in messages.
type hostRoles struct{ name, address, dnsHint, notOwn string }

// validateHost checks a host's name, address and ssh settings, at field f.
func validateHost(f, name, address string, ssh HostSSH, seen hostKeys, roles hostRoles, ps *problems) {
	switch {
	case name == "":
		ps.add(f+".name", "is required: %s", roles.name)
	case len(validation.IsDNS1123Subdomain(name)) > 0:
		ps.add(f+".name", "%q is not a valid node name: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit", name)
	default:
		if other, dup := seen.names[name]; dup {
			ps.add(f+".name", "%q is already the name of %s; names must be unique", name, other)
		} else {
			seen.names[name] = f
		}
	}
	ip := net.ParseIP(address)
	switch {
	case address == "":
		ps.add(f+".address", "is required: %s", roles.address)
	case ip == nil && roles.dnsHint != "":
		ps.add(f+".address", "%q is not an IP address; use an IPv4 or IPv6 address (%s)", address, roles.dnsHint)
	case ip == nil:
		ps.add(f+".address", "%q is not an IP address; use an IPv4 or IPv6 address (a DNS name to reach it by goes in ssh.host)", address)
	case ip.IsUnspecified() || ip.IsMulticast():
		ps.add(f+".address", "%s %s; use the host's own address", address, roles.notOwn)
	default:
		key := ip.String()
		if other, dup := seen.addrs[key]; dup {
			ps.add(f+".address", "%s is already the address of %s; addresses must be unique", address, other)
		} else {
			seen.addrs[key] = f
		}
	}
	if ssh.Port < 0 || ssh.Port > 65535 {
		ps.add(f+".ssh.port", "%d is not a TCP port (1-65535, or 0 for spec.ssh.port)", ssh.Port)
	}
	if ssh.Host != "" && net.ParseIP(ssh.Host) == nil && len(validation.IsDNS1123Subdomain(strings.ToLower(ssh.Host))) > 0 {
		ps.add(f+".ssh.host", "%q is neither an IP address nor a host name", ssh.Host)
	}
	if ssh.ProxyJump != "" {
		validateProxyJump(f+".ssh.proxyJump", ssh.ProxyJump, ps)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func joinAlgorithms() string {
	s := make([]string, len(KeyAlgorithms))
	for i, a := range KeyAlgorithms {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
