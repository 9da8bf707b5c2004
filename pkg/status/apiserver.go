package status

import (
	"slices"
	"strings"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
)

// APIServerReport is a control-plane host's kube-apiserver as its manifest
// and the host say: the members it uses, whether they are the cluster's,
// and whether it answers /readyz.
type APIServerReport struct {
	EtcdServers []string `json:"etcdServers"`
	// Matches says whether EtcdServers are the members' client URLs (or,
	// stacked, its own member on loopback); Mismatch says how not.
	Matches  bool   `json:"matches"`
	Mismatch string `json:"mismatch,omitempty"`
	// Ready is "ok" when /readyz answered 200, what it said otherwise, ""
	// when it was not asked.
	Ready string `json:"readyz,omitempty"`
	// Stopped names the control plane's static Pods a cut restore holds
	// aside.
	Stopped []string `json:"stopped,omitempty"`
}

// apiserverReport reads a host's kube-apiserver from its facts; nil when
// it has none. members are the client URLs it should use.
func apiserverReport(hf *facts.Host, members []string, stacked bool) *APIServerReport {
	if hf == nil || hf.APIServer == nil {
		return nil
	}
	a := hf.APIServer
	r := &APIServerReport{Stopped: a.Held}
	m := a.Manifest
	if m == nil || m.Err != "" {
		if len(a.Held) == 0 {
			return nil
		}
		r.Mismatch = "stopped"
		return r
	}
	r.EtcdServers = m.EtcdServers
	switch {
	case stacked:
		r.Matches = m.Loopback()
		if !r.Matches {
			r.Mismatch = "not its own member on loopback"
		}
	case m.Servers(members):
		r.Matches = true
	default:
		var lacks, extra []string
		for _, u := range members {
			if !slices.Contains(m.EtcdServers, u) {
				lacks = append(lacks, u)
			}
		}
		for _, u := range m.EtcdServers {
			if !slices.Contains(members, u) {
				extra = append(extra, u)
			}
		}
		var why []string
		if len(lacks) > 0 {
			why = append(why, "lacks "+strings.Join(lacks, ","))
		}
		if len(extra) > 0 {
			why = append(why, "not a member: "+strings.Join(extra, ","))
		}
		r.Mismatch = strings.Join(why, "; ")
	}
	return r
}

// memberClientURLs are the client URLs the kube-apiservers should use: the
// started members', as the member list has them, or the inventory's when
// etcd was not asked.
func memberClientURLs(c *config.Cluster, e *facts.Cluster) []string {
	var out []string
	if e != nil && e.Known() {
		for _, m := range e.Members {
			out = append(out, m.ClientURLs...)
		}
		return out
	}
	for _, h := range c.Spec.Hosts {
		out = append(out, manifests.ClientURL(h))
	}
	return out
}

// WithReadyz sets what each host's kube-apiserver answered to /readyz, by
// host: nil for ready.
func (r *Report) WithReadyz(ready map[string]error) {
	for i := range r.ControlPlane {
		a := r.ControlPlane[i].APIServer
		if a == nil {
			continue
		}
		err, asked := ready[r.ControlPlane[i].Name]
		switch {
		case !asked:
		case err == nil:
			a.Ready = "ok"
		default:
			a.Ready = err.Error()
		}
	}
}

// apiserverColumns are the table's kube-apiserver columns of a row.
func apiserverColumns(a *APIServerReport) (servers, matches, ready string) {
	if a == nil {
		return "-", "-", "-"
	}
	servers = orDash(strings.Join(a.EtcdServers, ","))
	switch {
	case len(a.Stopped) > 0 && len(a.EtcdServers) == 0:
		matches = "stopped (" + strings.Join(a.Stopped, ", ") + " held aside)"
	case a.Matches:
		matches = "yes"
	default:
		matches = "no: " + a.Mismatch
	}
	return servers, matches, orDash(a.Ready)
}
