// Package plan computes, with no side effect, everything etcdadm would put on
// each host: the files (path, mode, bytes), the directories they need and the
// steps to run. Render, diff and apply all consume the same plan.
//
// plan owns the decisions: stages, rollouts, guards and refusals. It must
// not reach a host or choose the runtime: it imports none of remote,
// hosts, gather, execute, status, render, pipeline or the runtimes
// themselves (its Input carries the runtime).
package plan

import (
	"fmt"
	"io/fs"
	"path"
	"slices"

	"github.com/etcdadm-io/etcdadm/pkg/backup"
	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/kubeadmconfig"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/runtime"
)

// AllParts lists every part in apply order.
var AllParts = []Part{PartCerts, PartKubeadmConfig, PartKubelet, PartManifests, PartBackup}

// Host is everything one host needs, and how that differs from what it has.
type Host struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	// Member is how the host's etcd member starts: the --initial-cluster
	// and --initial-cluster-state its manifest and kubeadmcfg.yaml carry.
	Member Member `json:"member"`
	Dirs   []Dir  `json:"dirs"`
	Files  []File `json:"files"`
	// Changes compare every planned file with the host's copy; empty when
	// the plan was made without the hosts' facts.
	Changes []Change `json:"changes,omitempty"`
	// DirChanges are the owned directories whose mode or owner differ.
	DirChanges []DirChange `json:"dirChanges,omitempty"`
}

// Member says how a member starts (runtime.Member).
type Member = runtime.Member

// Plan is what etcdadm would do: every host's files, and the stages that
// bring the hosts to them.
type Plan struct {
	Cluster  string          `json:"cluster"`
	Topology config.Topology `json:"topology"`
	Hosts    []Host          `json:"hosts"`
	Stages   []Stage         `json:"stages"`
	// Warnings are things the plan leaves alone that an operator should know.
	Warnings []string `json:"warnings,omitempty"`
	// Refused is set when a guard refused the plan: it has no stages.
	Refused bool `json:"refused,omitempty"`
}

// Options narrow a plan.
type Options struct {
	// Parts to include; empty means all.
	Parts []Part
	// Hosts to include; empty means all.
	Hosts []string
}

// Compute works out the operator's PKI in memory when certificates are among
// the parts (certs.Compute: nothing is saved), then builds the files of a
// cluster brought up from nothing. The PKI and its events are nil without
// certificates.
func Compute(c *config.Cluster, rt runtime.Runtime, opts Options) (*Plan, *certs.PKI, []certs.Event, error) {
	var pki *certs.PKI
	var events []certs.Event
	if len(opts.Parts) == 0 || slices.Contains(opts.Parts, PartCerts) {
		var err error
		if pki, events, err = certs.Compute(c, certs.Options{}); err != nil {
			return nil, nil, nil, err
		}
	}
	p, err := Files(c, rt, pki, opts)
	if err != nil {
		return nil, nil, nil, err
	}
	return p, pki, events, nil
}

// Bootstrap is how every member of a cluster brought up from nothing starts:
// with every host of the inventory, as a new cluster.
func Bootstrap(c *config.Cluster) Member {
	return Member{InitialCluster: manifests.InitialCluster(c.Spec.Hosts), State: manifests.StateNew, Why: "a new cluster of every host in the inventory"}
}

// Files computes every host's files for a cluster brought up from nothing,
// without looking at any host: what render writes.
func Files(c *config.Cluster, rt runtime.Runtime, p *certs.PKI, opts Options) (*Plan, error) {
	parts := opts.Parts
	if len(parts) == 0 {
		parts = AllParts
	}
	out := &Plan{Cluster: c.Metadata.Name, Topology: c.Spec.Topology}
	for _, h := range c.Spec.Hosts {
		if len(opts.Hosts) > 0 && !slices.Contains(opts.Hosts, h.Name) {
			continue
		}
		hp, err := HostFiles(c, rt, p, h, Bootstrap(c), parts)
		if err != nil {
			return nil, err
		}
		out.Hosts = append(out.Hosts, hp)
	}
	cp, err := controlPlaneFiles(c, p, opts, parts)
	if err != nil {
		return nil, err
	}
	out.Hosts = append(out.Hosts, cp...)
	return out, nil
}

// HostFiles computes the files and directories of host h, whose member
// starts as m.
func HostFiles(c *config.Cluster, rt runtime.Runtime, p *certs.PKI, h config.Host, m Member, parts []Part) (Host, error) {
	hp, err := buildHost(c, rt, p, h, m, parts)
	if err != nil {
		return Host{}, fmt.Errorf("plan for %s: %w", h.Name, err)
	}
	return hp, nil
}

func buildHost(c *config.Cluster, rt runtime.Runtime, p *certs.PKI, h config.Host, m Member, parts []Part) (Host, error) {
	hp := Host{Name: h.Name, Address: h.Address, Member: m}
	external := c.Spec.Topology == config.TopologyExternal
	for _, part := range parts {
		switch part {
		case PartCerts:
			files, err := certFiles(c, p, h)
			if err != nil {
				return Host{}, err
			}
			hp.Files = append(hp.Files, files...)
		case PartKubeadmConfig:
			b, err := kubeadmconfig.Build(c, h, m.InitialCluster, m.State).Marshal()
			if err != nil {
				return Host{}, err
			}
			hp.Files = append(hp.Files, File{Path: kubeadmconfig.Path, Mode: 0o644, Part: part, Data: b})
			if !external {
				// kubeadm runs on stacked hosts too: init on the first, join on the others.
				f, err := kubeadmconfig.ForKubeadm(c, h, m.InitialCluster, m.State)
				if err != nil {
					return Host{}, err
				}
				hp.Files = append(hp.Files, File{Path: f.Path, Mode: f.Mode, Part: part, Data: f.Data})
			}
		case PartKubelet, PartManifests:
			// What runs the member: its runtime's files.
			files, err := rt.Files(c, h, m, part)
			if err != nil {
				return Host{}, err
			}
			hp.Files = append(hp.Files, files...)
		case PartBackup:
			files, err := backupFiles(c, h)
			if err != nil {
				return Host{}, err
			}
			hp.Files = append(hp.Files, files...)
		default:
			return Host{}, fmt.Errorf("unknown part %q", part)
		}
	}
	hp.Dirs = dirsFor(c, hp.Files, slices.Contains(parts, PartManifests))
	return hp, nil
}

// certFiles are a host's certificates and keys under /etc/kubernetes/pki. The
// CA key goes only to stacked members, which kubeadm needs it on; an external
// member never gets it.
func certFiles(c *config.Cluster, p *certs.PKI, h config.Host) ([]File, error) {
	if p == nil {
		return nil, fmt.Errorf("no PKI to take certificates from")
	}
	files := []File{{Path: path.Join(manifests.CertificatesDir, certs.CABaseName+".crt"), Mode: certs.CertMode, Part: PartCerts, Data: p.Trust}}
	if c.Spec.Topology == config.TopologyStacked {
		files = append(files, File{Path: path.Join(manifests.CertificatesDir, certs.CABaseName+".key"), Mode: certs.KeyMode, Part: PartCerts, Secret: true, Data: p.HostCAKey})
	}
	leaves, ok := p.Hosts[h.Name]
	if !ok {
		return nil, fmt.Errorf("the PKI has no certificates for %s", h.Name)
	}
	for _, kp := range leaves {
		base := path.Join(manifests.CertificatesDir, kp.BaseName)
		files = append(files,
			File{Path: base + ".crt", Mode: certs.CertMode, Part: PartCerts, Data: kp.CertPEM},
			File{Path: base + ".key", Mode: certs.KeyMode, Part: PartCerts, Secret: true, Data: kp.KeyPEM})
	}
	return files, nil
}

// dirsFor lists the directories the files need, with kubeadm's modes: the
// manifests directory and etcd's data directory are private. Those two and
// etcd's certificate directory are owned.
func dirsFor(c *config.Cluster, files []File, withData bool) []Dir {
	modes := map[string]fs.FileMode{
		c.Spec.Kubelet.StaticPodPath: 0o700,
		backup.Dir:                   0o700,
	}
	owned := map[string]bool{c.Spec.Kubelet.StaticPodPath: true, manifests.EtcdPKIDir: true, c.Spec.Etcd.DataDir: true, backup.Dir: true}
	seen := map[string]bool{}
	var dirs []Dir
	add := func(p string) {
		if seen[p] {
			return
		}
		seen[p] = true
		mode, ok := modes[p]
		if !ok {
			mode = 0o755
		}
		dirs = append(dirs, Dir{Path: p, Mode: mode, Owned: owned[p]})
	}
	for _, f := range files {
		add(path.Dir(f.Path))
	}
	if withData {
		modes[c.Spec.Etcd.DataDir] = 0o700
		add(c.Spec.Etcd.DataDir)
	}
	slices.SortFunc(dirs, func(a, b Dir) int {
		if a.Path < b.Path {
			return -1
		}
		if a.Path > b.Path {
			return 1
		}
		return 0
	})
	return dirs
}

// File returns the planned file at path.
func (h *Host) File(path string) (File, bool) {
	for _, f := range h.Files {
		if f.Path == path {
			return f, true
		}
	}
	return File{}, false
}

// FindHost returns the plan of the named host.
func (p *Plan) FindHost(name string) (*Host, bool) {
	for i := range p.Hosts {
		if p.Hosts[i].Name == name {
			return &p.Hosts[i], true
		}
	}
	return nil, false
}
