package plan

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/kubeadmconfig"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

// Build makes the plan that brings the hosts to the inventory, from the
// inventory, the operator's PKI and the facts, with no side effect. Every
// guard is checked first; a refused plan comes with a *RefusedError listing
// every reason, and holds the hosts' files and changes but no stage.
// The control-plane hosts of an external cluster come last, in a stage of
// their own: what they get changes no member.
func Build(in Input) (*Plan, error) {
	if err := in.check(); err != nil {
		return nil, err
	}
	p, err := buildMembers(in)
	var re *RefusedError
	if err != nil && !errors.As(err, &re) {
		return nil, err
	}
	var refused refusals
	hosts, cperr := planControlPlane(in, &refused)
	if cperr != nil {
		return nil, cperr
	}
	p.Hosts = append(p.Hosts, hosts...)
	if re == nil && len(refused) == 0 {
		p.Stages = append(p.Stages, controlPlaneStages(p, hosts, in.Hosts)...)
		if err := keepAPIServers(in, p); err != nil {
			return nil, err
		}
		return p, nil
	}
	if re != nil {
		refused = append(slices.Clone(re.Refusals), refused...)
	}
	p.Stages, p.Refused = nil, true
	return p, refused.err("apply")
}

// ControlPlaneFiles computes the files and directories of control-plane
// host h: the etcd CA bundle the members trust, its kube-apiserver's own
// apiserver-etcd-client certificate and key, and etcd-external.yaml. Nothing
// of a member: no kubelet files, no manifest, no data directory.
func ControlPlaneFiles(c *config.Cluster, p *certs.PKI, h config.ControlPlaneHost, parts []Part) (Host, error) {
	hp := Host{Name: h.Name, Address: h.Address}
	for _, part := range parts {
		switch part {
		case PartCerts:
			files, err := certFiles(c, p, h.Host())
			if err != nil {
				return Host{}, fmt.Errorf("plan for control-plane host %s: %w", h.Name, err)
			}
			hp.Files = append(hp.Files, files...)
		case PartKubeadmConfig:
			b, err := kubeadmconfig.MarshalExternal(c)
			if err != nil {
				return Host{}, fmt.Errorf("plan for control-plane host %s: %w", h.Name, err)
			}
			hp.Files = append(hp.Files, File{Path: kubeadmconfig.ExternalPath, Mode: kubeadmconfig.ExternalMode, Part: part, Data: b})
		case PartKubelet, PartManifests, PartBackup:
		default:
			return Host{}, fmt.Errorf("unknown part %q", part)
		}
	}
	hp.Dirs = dirsFor(c, hp.Files, false)
	return hp, nil
}

// controlPlaneFiles are the plans of the control-plane hosts opts selects
// that get a file of the parts: what render writes.
func controlPlaneFiles(c *config.Cluster, p *certs.PKI, opts Options, parts []Part) ([]Host, error) {
	var out []Host
	for _, h := range c.Spec.ControlPlane.Hosts {
		if len(opts.Hosts) > 0 && !slices.Contains(opts.Hosts, h.Name) {
			continue
		}
		hp, err := ControlPlaneFiles(c, p, h, parts)
		if err != nil {
			return nil, err
		}
		if len(hp.Files) > 0 {
			out = append(out, hp)
		}
	}
	return out, nil
}

// planControlPlane compares every control-plane host's files with what the
// host has, refusing a host etcdadm cannot work on: commands not run as
// root, a clock off, or an etcd CA file of another cluster there (its
// kube-apiserver may be using it).
func planControlPlane(in Input, refused *refusals) ([]Host, error) {
	c := in.Cluster
	var out []Host
	for _, h := range c.Spec.ControlPlane.Hosts {
		hf := in.Hosts[h.Name]
		if hf == nil {
			return nil, fmt.Errorf("no facts for control-plane host %s", h.Name)
		}
		hp, err := ControlPlaneFiles(c, in.PKI, h, AllParts)
		if err != nil {
			return nil, err
		}
		Compare(&hp, hf)
		out = append(out, hp)
		if hf.UID != 0 {
			refused.add(h.Name, "commands run as uid %d, not root: log in as root or as a user with passwordless sudo", hf.UID)
		}
		if skew := hf.ClockSkew; skew > MaxClockSkew+hf.ClockError || -skew > MaxClockSkew+hf.ClockError {
			refused.add(h.Name, "clock is %s off this machine's (at most %s allowed): synchronise it with NTP", skew.Round(time.Millisecond), MaxClockSkew)
		}
		switch unknown := unknownCAs(hf, in.PKI); {
		case len(unknown) == 0:
		case len(unknown) == len(hf.TrustedCAs):
			refused.add(h.Name, "%s holds another etcd CA, %s; the local PKI's CA is %s. A kube-apiserver there may use it: if it is not this cluster's, move it away, else put the cluster's own CA in %s",
				kubeadmconfig.ExternalCAFile, describeCA(hf.TrustedCAs[0]), describeCA(in.PKI.CA.Cert), in.PKI.Dir)
		default:
			refusePartlyKnown(in, h.Name, unknown, refused)
		}
	}
	return out, nil
}

// unknownCAs are the CAs the host trusts that the local PKI does not hold.
func unknownCAs(hf *facts.Host, p *certs.PKI) []*x509.Certificate {
	var out []*x509.Certificate
	for _, ca := range hf.TrustedCAs {
		if !slices.ContainsFunc(p.Known, func(k *x509.Certificate) bool { return bytes.Equal(ca.Raw, k.Raw) }) {
			out = append(out, ca)
		}
	}
	return out
}

// refusePartlyKnown refuses a host that trusts, next to a CA the local PKI
// holds, one it does not: the bundle the local PKI writes would drop a CA
// the hosts were moved to by a rotation begun from another copy of the PKI.
func refusePartlyKnown(in Input, host string, unknown []*x509.Certificate, refused *refusals) {
	refused.add(host, "trusts, next to the local PKI's CA, an etcd CA the local PKI does not hold, %s: a CA rotation begun from another copy of the PKI (whose %s holds it). Copy that PKI directory to %s, then finish the rotation with `etcdadm certs rotate-ca` (or go back with `etcdadm certs rotate-ca --abort`)",
		describeCA(unknown[0]), certs.NewCABaseName+".crt", in.PKI.Dir)
}

// controlPlaneStages write the control-plane hosts' files, all at once:
// nothing there runs etcd, so no member waits on them, and a kube-apiserver
// reads its client certificate on every new connection.
func controlPlaneStages(p *Plan, hosts []Host, hostFacts map[string]*facts.Host) []Stage {
	st := Stage{Name: "control-plane hosts", Rollout: AllAtOnce,
		Why: "what a kube-apiserver reads to reach etcd; a new client certificate is used on its next connection, a new CA bundle once it restarts"}
	for _, h := range hosts {
		hp, _ := p.FindHost(h.Name)
		hf := hostFacts[h.Name]
		var steps []Op
		for _, d := range hp.Dirs {
			if st, ok := hf.Files[d.Path]; !ok || !st.Dir {
				steps = append(steps, ops.Mkdir{Path: d.Path, Mode: d.Mode})
			}
		}
		for _, dc := range hp.DirChanges {
			steps = append(steps, ops.Run{Path: dc.Path, Command: dc.Command(), Why: dc.What()})
		}
		for i, ch := range hp.Changes {
			if ch.Kind != Unchanged {
				steps = append(steps, ops.Write{Path: ch.Path, Change: &hp.Changes[i]})
			}
		}
		if len(steps) > 0 {
			st.Hosts = append(st.Hosts, HostOps{Host: h.Name, Ops: steps})
		}
	}
	if len(st.Hosts) == 0 {
		return nil
	}
	return []Stage{st}
}
