package adopt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"reflect"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdservice"
	"github.com/etcdadm-io/etcdadm/pkg/kubelet"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
)

// podCommand reads an etcd static Pod's command (without "etcd") and image.
func podCommand(b []byte) ([]string, string, error) {
	var pod corev1.Pod
	if err := yaml.Unmarshal(b, &pod); err != nil {
		return nil, "", fmt.Errorf("not a Pod: %w", err)
	}
	for _, ct := range pod.Spec.Containers {
		if ct.Name != "etcd" {
			continue
		}
		if len(ct.Command) == 0 || ct.Command[0] != "etcd" || len(ct.Args) > 0 {
			return nil, "", fmt.Errorf("its etcd container does not run `etcd --flag=value ...` as kubeadm writes it")
		}
		return ct.Command[1:], ct.Image, nil
	}
	return nil, "", fmt.Errorf("no container named etcd")
}

// Marshal writes an inventory as a file: every field, defaults included,
// and nothing secret (the inventory holds paths, never keys).
func Marshal(c *config.Cluster) ([]byte, error) {
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("marshal the inventory: %w", err)
	}
	return b, nil
}

// clone copies an inventory through its file form.
func clone(c *config.Cluster) (*config.Cluster, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("copy the inventory: %w", err)
	}
	var out config.Cluster
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("copy the inventory: %w", err)
	}
	out.Dir = c.Dir
	return &out, nil
}

// same returns the value every host has, or false with each host's.
func same(c *config.Cluster, get func(config.Host) string) (string, []string, bool) {
	first := get(c.Spec.Hosts[0])
	var all []string
	ok := true
	for _, h := range c.Spec.Hosts {
		v := get(h)
		all = append(all, h.Name+": "+v)
		ok = ok && v == first
	}
	return first, all, ok
}

// observe makes the inventory of what runs: c with the layout, image, data
// directory, flags, SANs, key algorithm, validities and kubelet settings
// the hosts have.
func observe(c *config.Cluster, hosts map[string]Host, runs map[string]*running, res *Result, r *refusal) (*config.Cluster, error) {
	inv, err := clone(c)
	if err != nil {
		return nil, err
	}
	s := &inv.Spec
	switch res.Layout {
	case LayoutStacked:
		if len(c.Spec.ControlPlane.Hosts) > 0 {
			r.add("the members run a stacked control plane: spec.controlPlane.hosts is for the control-plane hosts of an external cluster; remove it")
			return nil, nil
		}
		s.Topology = config.TopologyStacked
	default:
		s.Topology = config.TopologyExternal
	}
	if res.Layout == LayoutSystemd {
		if c.Spec.Etcd.Runtime != config.RuntimeSystemd {
			r.add("%s: etcd runs under systemd (%s): write spec.etcd.runtime: systemd and spec.etcd.release (the etcd release tarball the hosts run, and its sha256) in the inventory", c.Spec.Hosts[0].Name, etcdservice.UnitPath)
			return nil, nil
		}
	} else {
		s.Etcd.Runtime, s.Etcd.Release = config.RuntimeKubelet, config.Release{}
	}

	dataDir, all, ok := same(c, func(h config.Host) string { return flag(runs[h.Name].flags, "data-dir") })
	if !ok || dataDir == "" {
		r.add("the members' --data-dir differ (%s): the inventory has one spec.etcd.dataDir; move the data to one path first", strings.Join(all, ", "))
		return nil, nil
	}
	s.Etcd.DataDir = dataDir

	if res.Layout != LayoutSystemd {
		image, all, ok := same(c, func(h config.Host) string { return runs[h.Name].image })
		if !ok {
			r.add("the members run different images (%s): the inventory has one; upgrade them to one image first", strings.Join(all, ", "))
			return nil, nil
		}
		i := strings.LastIndex(image, "/etcd:")
		if i < 0 {
			r.add("%s: the image %s is not REPOSITORY/etcd:TAG, as kubeadm names it", c.Spec.Hosts[0].Name, image)
			return nil, nil
		}
		s.Etcd.ImageRepository, s.Etcd.ImageTag = image[:i], ""
		if inv.EtcdImage() != image {
			s.Etcd.ImageTag = image[i+len("/etcd:"):]
		}
	}

	observePKI(inv, res, r)
	observeFlags(inv, runs, res, r)
	if res.Layout == LayoutGuide {
		observeKubelet(inv, hosts, res, r)
	}
	return inv, nil
}

// observePKI fills the key algorithm, validities and extra SANs the hosts'
// certificates have.
func observePKI(inv *config.Cluster, res *Result, r *refusal) {
	ca, err := parseCert(res.CA.CertPEM)
	if err != nil {
		return
	}
	inv.Spec.PKI.CACertificateValidity = validity(ca)
	first := inv.Spec.Hosts[0].Name
	server, err := parseCert(res.Leaves[first][certs.EtcdServer].CertPEM)
	if err != nil {
		return
	}
	alg, ok := keyAlgorithm(server)
	if !ok {
		r.add("%s: %s has a key etcdadm cannot make (%T): it would renew it with another", first, res.Leaves[first][certs.EtcdServer].CertPath, server.PublicKey)
		return
	}
	inv.Spec.PKI.KeyAlgorithm = alg
	inv.Spec.PKI.CertificateValidity = validity(server)
	sans := func(name string, cluster []string) ([]string, map[string][]string) {
		per := map[string][]string{}
		for _, h := range inv.Spec.Hosts {
			cert, err := parseCert(res.Leaves[h.Name][name].CertPEM)
			if err != nil {
				continue
			}
			per[h.Name] = extraSANs(cert, h)
		}
		var common []string
		for _, san := range cluster {
			if !slices.ContainsFunc(inv.Spec.Hosts, func(h config.Host) bool { return !slices.Contains(per[h.Name], san) }) {
				common = append(common, san)
			}
		}
		for h, list := range per {
			per[h] = slices.DeleteFunc(list, func(san string) bool { return slices.Contains(common, san) })
		}
		return common, per
	}
	var serverPer, peerPer map[string][]string
	inv.Spec.Etcd.ServerCertSANs, serverPer = sans(certs.EtcdServer, inv.Spec.Etcd.ServerCertSANs)
	inv.Spec.Etcd.PeerCertSANs, peerPer = sans(certs.EtcdPeer, inv.Spec.Etcd.PeerCertSANs)
	for i := range inv.Spec.Hosts {
		h := &inv.Spec.Hosts[i]
		h.ServerCertSANs, h.PeerCertSANs = keepOrder(h.ServerCertSANs, serverPer[h.Name]), keepOrder(h.PeerCertSANs, peerPer[h.Name])
	}
}

// keepOrder is want, in the order of had for those had lists.
func keepOrder(had, want []string) []string {
	var out []string
	for _, s := range had {
		if slices.Contains(want, s) {
			out = append(out, s)
		}
	}
	for _, s := range want {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// split cuts a member's flags where kubeadm's sorted defaults end: the
// fewest flags after them that, with the defaults, give the command.
func split(defaults, flags []manifests.Arg) ([]manifests.Arg, bool) {
	want := make([]string, len(flags))
	for i, a := range flags {
		want[i] = "--" + a.Name + "=" + a.Value
	}
	for k := len(flags); k >= 0; k-- {
		if slices.Equal(manifests.Command(defaults, flags[k:]), want) {
			return flags[k:], true
		}
	}
	return nil, false
}

// splitStart finds how member h started and its flags beyond kubeadm's
// defaults: --initial-cluster and its state first among those (etcdadm's
// order), or, on a stacked control plane, among the defaults (kubeadm's).
func splitStart(inv *config.Cluster, h config.Host, flags []manifests.Arg, stacked bool) (Start, []manifests.Arg, bool) {
	if !stacked || !sortedUpTo(flags, "initial-cluster") {
		extra, ok := split(manifests.DefaultArgs(inv, h), flags)
		if ok && len(extra) >= 2 && extra[0].Name == "initial-cluster" && extra[1].Name == "initial-cluster-state" {
			return Start{InitialCluster: extra[0].Value, State: extra[1].Value}, extra[2:], true
		}
		return Start{}, nil, false
	}
	st := Start{InitialCluster: flag(flags, "initial-cluster"), State: flag(flags, "initial-cluster-state"), KubeadmOrder: true}
	defaults := manifests.DefaultArgs(inv, h)
	for i := range defaults {
		if defaults[i].Name == "initial-cluster" {
			defaults[i].Value = st.InitialCluster
		}
	}
	if st.State != "" {
		defaults = append(defaults, manifests.Arg{Name: "initial-cluster-state", Value: st.State})
	}
	extra, ok := split(defaults, flags)
	if !ok || st.InitialCluster == "" || slices.ContainsFunc(extra, func(a manifests.Arg) bool { return a.Name == "initial-cluster" || a.Name == "initial-cluster-state" }) {
		return Start{}, nil, false
	}
	return st, extra, true
}

// sortedUpTo reports whether the flags are sorted by name from the first
// to the flag name: where kubeadm's own phases put --initial-cluster.
func sortedUpTo(flags []manifests.Arg, name string) bool {
	for i, a := range flags {
		if i > 0 && a.Name < flags[i-1].Name {
			return false
		}
		if a.Name == name {
			return true
		}
	}
	return false
}

// observeFlags finds each member's flags beyond kubeadm's defaults: those
// every member has alike, sorted by name, become spec.etcd.extraArgs; the
// others, in their order, the host's extraArgs.
func observeFlags(inv *config.Cluster, runs map[string]*running, res *Result, r *refusal) {
	rest := map[string][]manifests.Arg{}
	for _, h := range inv.Spec.Hosts {
		rn := runs[h.Name]
		st, extra, ok := splitStart(inv, h, rn.flags, res.Layout == LayoutStacked)
		if !ok {
			r.add("%s: etcd's command has neither --initial-cluster and --initial-cluster-state after kubeadm's sorted defaults (as `kubeadm init phase etcd local` writes them from a kubeadmcfg.yaml that sets them) nor, on a stacked control plane, among them (as kubeadm init and join write them): etcdadm would write it otherwise, and restart the member; its flags: %s",
				h.Name, describe(rn.flags))
			continue
		}
		res.Members[h.Name] = st
		rest[h.Name] = extra
		for _, a := range extra {
			if _, managed := config.ManagedEtcdFlags[a.Name]; managed && !slices.Contains([]string{"name", "listen-peer-urls", "initial-advertise-peer-urls", "advertise-client-urls"}, a.Name) {
				r.add("%s: etcd runs with --%s=%s among its extra flags, which etcdadm sets itself from %s", h.Name, a.Name, a.Value, config.ManagedEtcdFlags[a.Name])
			}
		}
	}
	if len(rest) < len(inv.Spec.Hosts) {
		return
	}
	// Flags every member has alike, if each lists them first, sorted.
	var common []manifests.Arg
	for _, a := range rest[inv.Spec.Hosts[0].Name] {
		if !slices.ContainsFunc(inv.Spec.Hosts, func(h config.Host) bool { return !slices.Contains(rest[h.Name], a) }) {
			common = append(common, a)
		}
	}
	sort.SliceStable(common, func(i, j int) bool { return common[i].Name < common[j].Name })
	for _, h := range inv.Spec.Hosts {
		if len(rest[h.Name]) < len(common) || !slices.Equal(rest[h.Name][:len(common)], common) {
			common = nil
			break
		}
	}
	inv.Spec.Etcd.ExtraArgs = nil
	if len(common) > 0 {
		inv.Spec.Etcd.ExtraArgs = map[string]string{}
		for _, a := range common {
			inv.Spec.Etcd.ExtraArgs[a.Name] = a.Value
		}
	}
	for i := range inv.Spec.Hosts {
		h := &inv.Spec.Hosts[i]
		h.ExtraArgs = nil
		for _, a := range rest[h.Name][len(common):] {
			h.ExtraArgs = append(h.ExtraArgs, config.Arg{Name: a.Name, Value: a.Value})
		}
	}
}

func describe(args []manifests.Arg) string {
	var out []string
	for _, a := range args {
		out = append(out, "--"+a.Name)
	}
	return strings.Join(out, " ")
}

// kubeletFields are the KubeletConfiguration fields etcdadm sets itself.
var kubeletFields = []string{"apiVersion", "kind", "address", "authentication", "authorization", "cgroupDriver", "containerRuntimeEndpoint", "staticPodPath"}

// observeKubelet takes the guide's kubelet.conf as spec.kubelet: the fields
// etcdadm sets, and the others as extraConfig. Its bytes are etcdadm's
// once applied: the settings must be the same.
func observeKubelet(inv *config.Cluster, hosts map[string]Host, res *Result, r *refusal) {
	var first map[string]any
	for _, h := range inv.Spec.Hosts {
		b, _ := hosts[h.Name].file(kubelet.ConfigPath)
		var m map[string]any
		if err := yaml.Unmarshal(b, &m); err != nil {
			r.add("%s: %s is not YAML: %v", h.Name, kubelet.ConfigPath, err)
			return
		}
		if first == nil {
			first = m
		} else if !reflect.DeepEqual(first, m) {
			r.add("%s: %s differs from %s's: the inventory has one kubelet configuration; make them the same first", h.Name, kubelet.ConfigPath, inv.Spec.Hosts[0].Name)
			return
		}
	}
	str := func(k string) string { v, _ := first[k].(string); return v }
	k := &inv.Spec.Kubelet
	k.CgroupDriver, k.ContainerRuntimeEndpoint = str("cgroupDriver"), str("containerRuntimeEndpoint")
	if p := str("staticPodPath"); path.Clean(p) != path.Dir(manifestPath(inv)) {
		r.add("%s: %s runs static Pods from %q, not from the directory etcd.yaml was read in (%s): set spec.kubelet.staticPodPath to it", inv.Spec.Hosts[0].Name, kubelet.ConfigPath, p, path.Dir(manifestPath(inv)))
		return
	}
	k.ExtraConfig = nil
	for key, v := range first {
		if !slices.Contains(kubeletFields, key) {
			if k.ExtraConfig == nil {
				k.ExtraConfig = map[string]any{}
			}
			k.ExtraConfig[key] = v
		}
	}
	// What etcdadm would write must say the same as the host's file.
	ours, err := kubelet.ConfigFile(inv)
	if err != nil {
		r.add("%s: %s cannot be written by etcdadm: %v", inv.Spec.Hosts[0].Name, kubelet.ConfigPath, err)
		return
	}
	theirs, _ := hosts[inv.Spec.Hosts[0].Name].file(kubelet.ConfigPath)
	if d := kubeletDiff(theirs, ours); d != "" {
		r.add("%s: %s sets what etcdadm's does not (%s): etcdadm writes address 127.0.0.1, no anonymous or webhook authentication and AlwaysAllow authorization", inv.Spec.Hosts[0].Name, kubelet.ConfigPath, d)
		return
	}
	for _, h := range inv.Spec.Hosts {
		conf, _ := hosts[h.Name].file(kubelet.ConfigPath)
		dropIn, _ := hosts[h.Name].file(kubelet.DropInPath)
		wantDropIn, err := kubelet.DropIn()
		if err != nil {
			return
		}
		if !bytes.Equal(conf, ours) || !bytes.Equal(dropIn, wantDropIn) {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: the kubelet's %s and %s say what etcdadm's say, in other words: the first apply writes etcdadm's and restarts the kubelet once; etcd keeps running (same process)", h.Name, kubelet.ConfigPath, kubelet.DropInPath))
		}
	}
}

// kubeletDiff names the fields where two KubeletConfigurations differ, as
// the kubelet reads them; "" when none.
func kubeletDiff(a, b []byte) string {
	read := func(data []byte) map[string]any {
		var k kubeletv1beta1.KubeletConfiguration
		if err := yaml.Unmarshal(data, &k); err != nil {
			return nil
		}
		j, _ := json.Marshal(k)
		var m map[string]any
		_ = json.Unmarshal(j, &m)
		return m
	}
	ma, mb := read(a), read(b)
	var out []string
	for _, key := range slices.Sorted(maps.Keys(merge(ma, mb))) {
		if !reflect.DeepEqual(ma[key], mb[key]) {
			out = append(out, key)
		}
	}
	return strings.Join(out, ", ")
}

func merge(a, b map[string]any) map[string]any {
	out := maps.Clone(a)
	if out == nil {
		out = map[string]any{}
	}
	maps.Copy(out, b)
	return out
}

// checkRenders refuses a member whose etcd.yaml (or environment file) the
// adopted inventory would not write byte for byte.
func checkRenders(inv *config.Cluster, hosts map[string]Host, runs map[string]*running, res *Result, r *refusal) {
	for _, h := range inv.Spec.Hosts {
		p, ours, err := Render(inv, h, res.Members[h.Name], hosts[h.Name])
		if err != nil {
			r.add("%s: %v", h.Name, err)
			continue
		}
		theirs, _ := hosts[h.Name].file(p)
		if !bytes.Equal(ours, theirs) {
			r.add("%s: %s cannot be written byte for byte from an inventory, so apply would rewrite it and restart the member:\n%s", h.Name, p,
				Unified(h.Name+":"+p+" (running)", h.Name+":"+p+" (etcdadm)", theirs, ours))
		}
	}
}

// Render is what inventory c writes as member h's start file (its static
// Pod, or its systemd environment), started as st, keeping the restart
// annotation the host's manifest has.
func Render(c *config.Cluster, h config.Host, st Start, files Host) (string, []byte, error) {
	if c.Spec.Etcd.Runtime == config.RuntimeSystemd {
		b, err := etcdservice.EnvFile(h.Name, manifests.Flags(c, h, st.InitialCluster, st.State))
		return etcdservice.EnvPath, b, err
	}
	pod := manifests.EtcdPod(c, h, st.InitialCluster, st.State)
	if st.KubeadmOrder {
		pod = manifests.EtcdPodKubeadmOrder(c, h, st.InitialCluster, st.State)
	}
	if b, ok := files.file(manifestPath(c)); ok {
		var running corev1.Pod
		if yaml.Unmarshal(b, &running) == nil {
			if v, ok := running.Annotations[manifests.RestartAnnotation]; ok {
				pod.Annotations[manifests.RestartAnnotation] = v
			}
		}
	}
	b, err := manifests.Marshal(pod)
	return manifestPath(c), b, err
}
