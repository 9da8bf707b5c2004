package plan

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/etcdadm-io/etcdadm/pkg/apiserver"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/kubeadmconfig"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

// apiserverHost is a host whose kube-apiserver, kubeadm's static Pod, uses
// the cluster: a control-plane host of the external topology (reaching the
// members at --etcd-servers), or a stacked member's host (reaching its own
// member on loopback, kept as kubeadm has it).
type apiserverHost struct {
	name     string
	facts    *facts.Host
	dir      string
	external bool
}

// manifest is the host's kube-apiserver Pod; nil when it has none etcdadm
// can read (none there, or held aside by a stop).
func (a apiserverHost) manifest() *apiserver.Manifest {
	if a.facts == nil || a.facts.APIServer == nil {
		return nil
	}
	m := a.facts.APIServer.Manifest
	if m == nil || m.Err != "" {
		return nil
	}
	return m
}

// apiserverHosts are the hosts whose control plane etcdadm looks after, in
// the inventory's order; those that could not be read have no facts.
func apiserverHosts(in Input) []apiserverHost {
	c := in.Cluster
	var out []apiserverHost
	if c.Spec.Topology == config.TopologyExternal {
		for _, h := range c.Spec.ControlPlane.Hosts {
			out = append(out, apiserverHost{name: h.Name, facts: in.Hosts[h.Name], dir: apiserver.ManifestsDir, external: true})
		}
		return out
	}
	for _, h := range c.Spec.Hosts {
		out = append(out, apiserverHost{name: h.Name, facts: in.Hosts[h.Name], dir: c.Spec.Kubelet.StaticPodPath})
	}
	return out
}

// Servers are the client URLs of a cluster of hosts, in their order: the
// --etcd-servers of every kube-apiserver of the external topology, and
// kubeadm's etcd.external.endpoints.
func Servers(hosts []config.Host) []string {
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, manifests.ClientURL(h))
	}
	return out
}

// without is hosts less the one named.
func without(hosts []config.Host, name string) []config.Host {
	return slices.DeleteFunc(slices.Clone(hosts), func(h config.Host) bool { return h.Name == name })
}

// apiserverFiles are the etcd files a kube-apiserver reads: the CA bundle
// it trusts the members with (read only when it starts) and its client
// certificate and key.
var apiserverFiles = []string{kubeadmconfig.ExternalCAFile, kubeadmconfig.ExternalCertFile, kubeadmconfig.ExternalKeyFile}

// etcdFilesChange names the hosts of the plan on which a file a
// kube-apiserver reads etcd with changes.
func etcdFilesChange(p *Plan) map[string]bool {
	out := map[string]bool{}
	for _, h := range p.Hosts {
		for _, ch := range h.Changed() {
			if slices.Contains(apiserverFiles, ch.Path) {
				out[h.Name] = true
			}
		}
	}
	return out
}

// apiserverStage restarts the kube-apiservers, one host at a time, each
// waited for until it answers /readyz before the next: those of the
// external topology whose --etcd-servers is not what servers makes of it
// (servers nil: kept), those whose etcd files change in this plan
// (changed), and those that started before their etcd files were last
// written (they have not read them). Hosts that cannot be read are left
// to warnings.
func apiserverStage(in Input, name, why string, servers func(current []string) []string, changed map[string]bool) (Stage, []string) {
	st := Stage{Name: name, Rollout: OneAtATime, Why: why}
	var warnings []string
	for _, a := range apiserverHosts(in) {
		m := a.manifest()
		if a.facts == nil {
			if a.external && servers != nil {
				warnings = append(warnings, fmt.Sprintf("%s cannot be reached: its kube-apiserver's --etcd-servers is not checked; once it is back, run `etcdadm apply`", a.name))
			}
			continue
		}
		if m == nil {
			continue
		}
		data, want := m.Data, m.EtcdServers
		var reasons []string
		if a.external && servers != nil {
			if want = servers(m.EtcdServers); !m.Servers(want) {
				b, err := apiserver.SetEtcdServers(m.Data, want)
				if err != nil {
					warnings = append(warnings, fmt.Sprintf("%s: %v: set --etcd-servers=%s in %s by hand", a.name, err, strings.Join(want, ","), apiserver.ManifestPath(a.dir)))
					continue
				}
				data = b
				reasons = append(reasons, fmt.Sprintf("--etcd-servers was %s", strings.Join(m.EtcdServers, ",")))
				if !apiserver.RoundTrips(m.Data) {
					warnings = append(warnings, fmt.Sprintf("%s: %s is not as kubeadm writes it: it is written back in kubeadm's layout with the new --etcd-servers", a.name, apiserver.ManifestPath(a.dir)))
				}
			}
		}
		if changed[a.name] {
			reasons = append(reasons, "the etcd CA or client certificate it reads changes")
		}
		if stale := a.facts.APIServer.Stale(); len(stale) > 0 {
			slices.Sort(stale)
			reasons = append(reasons, "it started before "+strings.Join(stale, " and ")+" changed")
		}
		if a.facts.APIServer.RestartHeld {
			reasons = append(reasons, "a restart was cut before its Pod was written back")
		}
		if len(reasons) == 0 {
			continue
		}
		restart, err := apiserverRestart(in, a, data, want, strings.Join(reasons, "; "))
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("%s: %v", a.name, err))
			continue
		}
		st.Hosts = append(st.Hosts, HostOps{Host: a.name, Ops: []Op{restart}})
	}
	return st, warnings
}

// apiserverRestart restarts a's kube-apiserver on data: a Pod that does
// not change gets a new restart annotation, so that the kubelet starts it
// at once.
func apiserverRestart(in Input, a apiserverHost, data []byte, servers []string, why string) (ops.RestartAPIServer, error) {
	m := a.manifest()
	var err error
	if bytes.Equal(data, m.Data) && !a.facts.APIServer.RestartHeld {
		if data, err = apiserver.WithRestart(data, in.restartStamp(false)); err != nil {
			return ops.RestartAPIServer{}, err
		}
	}
	retry, err := apiserver.WithRestart(data, in.restartStamp(true))
	if err != nil {
		return ops.RestartAPIServer{}, err
	}
	p := apiserver.ManifestPath(a.dir)
	return ops.RestartAPIServer{
		File:    File{Path: p, Mode: 0o600, Data: data},
		Retry:   &File{Path: p, Mode: 0o600, Data: retry},
		Servers: servers,
		Why:     why,
	}, nil
}

// kubeadmRecordStage keeps kubeadm's record of the endpoints and each
// control-plane host's etcd-external.yaml on servers, the client URLs of
// hosts: its ClusterConfiguration in the kubeadm-config ConfigMap, set
// through the API from the first control-plane host with an admin.conf
// (kubeadm's next upgrade writes --etcd-servers from it), and the file.
// With files false the files are left to the control-plane hosts' own
// stage (apply's). Nothing for the stacked topology, whose kube-apiservers
// use their own member.
func kubeadmRecordStage(in Input, hosts []config.Host, files bool) (*Stage, []string, error) {
	c := in.Cluster
	if c.Spec.Topology != config.TopologyExternal || len(c.Spec.ControlPlane.Hosts) == 0 {
		return nil, nil, nil
	}
	servers := Servers(hosts)
	st := Stage{Name: "kubeadm's record of the etcd endpoints", Rollout: AllAtOnce,
		Why: "kubeadm's next `kubeadm upgrade` writes every kube-apiserver's --etcd-servers from its ClusterConfiguration"}
	var warnings []string
	record := false
	if files {
		follow := *c
		follow.Spec.Hosts = hosts
		for _, h := range c.Spec.ControlPlane.Hosts {
			hf := in.Hosts[h.Name]
			if hf == nil {
				continue
			}
			hp, err := ControlPlaneFiles(&follow, in.PKI, h, []Part{PartKubeadmConfig})
			if err != nil {
				return nil, nil, err
			}
			Compare(&hp, hf)
			for _, ch := range hp.Changed() {
				st.Hosts = append(st.Hosts, HostOps{Host: h.Name, Ops: []Op{ops.Write{Path: ch.Path, Change: &ch, Why: "the endpoints of the cluster's members"}}})
				record = true
			}
		}
	}
	admin := ""
	for _, a := range apiserverHosts(in) {
		if m := a.manifest(); m != nil && a.external && !m.Servers(servers) {
			record = true
		}
		if a.facts != nil && a.facts.APIServer != nil && a.facts.APIServer.AdminConf && admin == "" {
			admin = a.name
		}
	}
	if !record {
		return nil, nil, nil
	}
	if admin == "" {
		warnings = append(warnings, fmt.Sprintf("no control-plane host has %s: set etcd.external.endpoints in the %s key of the %s/%s ConfigMap to [%s] (`kubectl -n %s edit configmap %s`), or kubeadm's next upgrade puts the old endpoints back",
			apiserver.AdminConf, kubeadmconfig.StoredKey, kubeadmconfig.StoredNamespace, kubeadmconfig.StoredConfigMap, strings.Join(servers, ", "), kubeadmconfig.StoredNamespace, kubeadmconfig.StoredConfigMap))
	} else {
		up := ops.UpdateKubeadmConfig{Endpoints: servers}
		if i := slices.IndexFunc(st.Hosts, func(h HostOps) bool { return h.Host == admin }); i >= 0 {
			st.Hosts[i].Ops = append(st.Hosts[i].Ops, up)
		} else {
			st.Hosts = append(st.Hosts, HostOps{Host: admin, Ops: []Op{up}})
		}
	}
	if len(st.Hosts) == 0 {
		return nil, warnings, nil
	}
	return &st, warnings, nil
}

// heldControlPlane lists the control plane's static Pods a stop holds
// aside on a's host (a restore cut short).
func heldControlPlane(a apiserverHost) []string {
	if a.facts == nil || a.facts.APIServer == nil {
		return nil
	}
	return a.facts.APIServer.Held
}

// controlPlaneNames are the control plane's static Pods on a host, there or
// held aside, in kubeadm's order.
func controlPlaneNames(a apiserverHost) []string {
	var out []string
	for _, n := range apiserver.ControlPlaneManifests {
		if slices.Contains(a.facts.APIServer.Running, n) || slices.Contains(a.facts.APIServer.Held, n) {
			out = append(out, n)
		}
	}
	return out
}

// withControlPlaneStopped wraps stages, the stages of a change that takes every
// member's data away (a restore), with the control plane's stop and start:
// before the first stage that stops a member, every kube-apiserver,
// kube-controller-manager and kube-scheduler static Pod is moved aside
// (its host records it first) and waited for until gone; after the last
// stage, they are put back (a kube-apiserver of the external topology
// with --etcd-servers the client URLs of hosts) and every kube-apiserver
// is waited for until it answers /readyz. The controllers start again
// with the data they will watch, instead of a cache of the old.
func withControlPlaneStopped(in Input, stages []Stage, hosts []config.Host) ([]Stage, error) {
	stop := Stage{Name: "stop the control plane", Rollout: AllAtOnce,
		Why: "no kube-apiserver may serve, and no controller act on, the data being replaced"}
	start := Stage{Name: "start the control plane", Rollout: AllAtOnce,
		Why: "the kube-apiservers, controller managers and schedulers start on the restored data, each kube-apiserver waited for until ready"}
	servers := Servers(hosts)
	for _, a := range apiserverHosts(in) {
		if a.facts == nil || a.facts.APIServer == nil {
			continue
		}
		names := controlPlaneNames(a)
		if len(names) == 0 {
			continue
		}
		stop.Hosts = append(stop.Hosts, HostOps{Host: a.name, Ops: []Op{
			ops.Mark{Marker: facts.PendingControlPlane, Why: "the control plane is stopped until the data is back"},
			ops.StopControlPlane{Dir: a.dir, Names: names},
		}})
		up, err := startOp(a, names, servers)
		if err != nil {
			return nil, err
		}
		start.Hosts = append(start.Hosts, HostOps{Host: a.name, Ops: []Op{up, ops.Unmark{Marker: facts.PendingControlPlane}}})
	}
	if len(stop.Hosts) == 0 {
		return stages, nil
	}
	first := slices.IndexFunc(stages, func(s Stage) bool {
		return slices.ContainsFunc(s.Hosts, func(h HostOps) bool {
			return slices.ContainsFunc(h.Ops, func(o Op) bool { return o.Kind() == ops.KindStopEtcd })
		})
	})
	if first < 0 {
		first = 0
	}
	out := append(slices.Clone(stages[:first]), stop)
	out = append(out, stages[first:]...)
	out = append(out, start)
	record, _, err := kubeadmRecordStage(in, hosts, true)
	if err != nil {
		return nil, err
	}
	if record != nil {
		out = append(out, *record)
	}
	return out, nil
}

// startOp puts a's control-plane Pods names back; a kube-apiserver of the
// external topology gets --etcd-servers servers.
func startOp(a apiserverHost, names, servers []string) (ops.StartControlPlane, error) {
	up := ops.StartControlPlane{Dir: a.dir, Names: names}
	if !a.external {
		return up, nil
	}
	var data []byte
	if m := a.manifest(); m != nil {
		data = m.Data
	} else if h := a.facts.APIServer.HeldManifest; h != nil && h.Err == "" {
		data = h.Data
	}
	if data == nil || apiserver.Parse(data).Servers(servers) {
		return up, nil
	}
	b, err := apiserver.SetEtcdServers(data, servers)
	if err != nil {
		return up, fmt.Errorf("plan for %s: %w", a.name, err)
	}
	up.APIServer = &File{Path: apiserver.ManifestPath(a.dir), Mode: 0o600, Data: b}
	return up, nil
}

// restartControlPlane puts back, after a run's last stage, the control
// plane a cut restore left stopped: its Pods held aside and its record.
func restartControlPlane(in Input, servers []string) (*Stage, error) {
	st := Stage{Name: "start the control plane a cut run stopped", Rollout: AllAtOnce,
		Why: "a restore was cut after it stopped the kube-apiservers, controller managers and schedulers"}
	for _, a := range apiserverHosts(in) {
		held := heldControlPlane(a)
		if len(held) == 0 && (a.facts == nil || !a.facts.HasPending(facts.PendingControlPlane)) {
			continue
		}
		steps := []Op{ops.Unmark{Marker: facts.PendingControlPlane}}
		if len(held) > 0 {
			start, err := startOp(a, held, servers)
			if err != nil {
				return nil, err
			}
			steps = append([]Op{start}, steps...)
		}
		st.Hosts = append(st.Hosts, HostOps{Host: a.name, Ops: steps})
	}
	if len(st.Hosts) == 0 {
		return nil, nil
	}
	return &st, nil
}

// keepAPIServers adds to apply's plan p what keeps the control plane on
// the inventory's members, after everything else: the kube-apiservers
// restarted one at a time where their --etcd-servers differ from the
// members, their etcd files change or they have not read them, kubeadm's
// record of the endpoints, and a control plane a cut restore stopped.
func keepAPIServers(in Input, p *Plan) error {
	waitStackedAPIServers(in, p)
	servers := Servers(in.Cluster.Spec.Hosts)
	st, warnings := apiserverStage(in, "kube-apiservers", "each kube-apiserver restarted one at a time, and ready before the next: the others serve meanwhile",
		func([]string) []string { return servers }, etcdFilesChange(p))
	p.Warnings = append(p.Warnings, warnings...)
	if len(st.Hosts) > 0 {
		p.Stages = append(p.Stages, st)
	}
	record, warnings, err := kubeadmRecordStage(in, in.Cluster.Spec.Hosts, false)
	if err != nil {
		return err
	}
	p.Warnings = append(p.Warnings, warnings...)
	if record != nil {
		p.Stages = append(p.Stages, *record)
	}
	held, err := restartControlPlane(in, servers)
	if err != nil {
		return err
	}
	if held != nil {
		p.Stages = append(p.Stages, *held)
	}
	return nil
}

// aroundMembership adds to p, a change of membership or addresses that
// ends with the members of final, what keeps the kube-apiservers on them:
// before its first stage, the client URLs in gone are taken out of every
// kube-apiserver's --etcd-servers (a member stops only once no apiserver
// uses it); after its last, every --etcd-servers is the members' client
// URLs (a new member is used once it is promoted), and kubeadm's record
// and etcd-external.yaml follow. With no gone, nothing comes before.
func aroundMembership(in Input, p *Plan, final []config.Host, gone []string) error {
	servers := Servers(final)
	var before []Stage
	if len(gone) > 0 {
		st, warnings := apiserverStage(in, "take "+strings.Join(gone, ", ")+" out of the kube-apiservers",
			"a member leaves the kube-apiservers' --etcd-servers before it stops serving; one kube-apiserver at a time, ready before the next",
			func(cur []string) []string {
				left := slices.DeleteFunc(slices.Clone(cur), func(s string) bool { return slices.Contains(gone, s) })
				if len(left) == 0 {
					return servers
				}
				return left
			}, nil)
		p.Warnings = append(p.Warnings, warnings...)
		if len(st.Hosts) > 0 {
			before = append(before, st)
		}
	}
	st, warnings := apiserverStage(restarted(in, before), "kube-apiservers on the members", "every kube-apiserver's --etcd-servers is the members' client URLs; one at a time, ready before the next",
		func([]string) []string { return servers }, nil)
	p.Warnings = append(p.Warnings, warnings...)
	var after []Stage
	if len(st.Hosts) > 0 {
		after = append(after, st)
	}
	record, warnings, err := kubeadmRecordStage(in, final, true)
	if err != nil {
		return err
	}
	p.Warnings = append(p.Warnings, warnings...)
	if record != nil {
		after = append(after, *record)
	}
	if len(before)+len(after) > 0 && len(p.Stages) > 0 {
		p.Stages = append(append(before, p.Stages...), after...)
	}
	return nil
}

// goneURLs are the client URLs of member m and of inventory host h (nil
// for none) that the members of final do not serve.
func goneURLs(final []config.Host, urls ...string) []string {
	keep := Servers(final)
	var out []string
	for _, u := range urls {
		if u != "" && !slices.Contains(keep, u) && !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

// restarted is in as the hosts will be once the kube-apiserver restarts of
// stages are done: each on its new Pod, started after its files changed.
func restarted(in Input, stages []Stage) Input {
	out := in
	out.Hosts = maps.Clone(in.Hosts)
	for _, st := range stages {
		for _, h := range st.Hosts {
			for _, op := range h.Ops {
				r, ok := op.(ops.RestartAPIServer)
				if !ok || out.Hosts[h.Host] == nil || out.Hosts[h.Host].APIServer == nil {
					continue
				}
				hf := *out.Hosts[h.Host]
				a := *hf.APIServer
				a.Manifest, a.Modified, a.RestartHeld = apiserver.Parse(r.File.Data), nil, false
				hf.APIServer = &a
				out.Hosts[h.Host] = &hf
			}
		}
	}
	return out
}

// waitStackedAPIServers makes a roll of stacked members wait, after each
// member that restarts on a host running a kube-apiserver, until that
// kube-apiserver is ready again: it reaches its own member alone, so the
// next member's restart would otherwise leave the cluster with none.
func waitStackedAPIServers(in Input, p *Plan) {
	if in.Cluster.Spec.Topology != config.TopologyStacked {
		return
	}
	dirs := map[string]string{}
	for _, a := range apiserverHosts(in) {
		if a.manifest() != nil {
			dirs[a.name] = a.dir
		}
	}
	for i := range p.Stages {
		st := &p.Stages[i]
		if st.Rollout != OneAtATime {
			continue
		}
		for j := range st.Hosts {
			h := &st.Hosts[j]
			dir, ok := dirs[h.Host]
			if !ok || !slices.ContainsFunc(h.Ops, func(o Op) bool { return o.Kind() == ops.KindRestartEtcd }) {
				continue
			}
			h.Ops = append(h.Ops, ops.WaitAPIServer{Dir: dir, Why: "it reaches its own member alone: the next member restarts once it serves again"})
		}
	}
}
