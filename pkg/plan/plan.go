// Package plan computes, with no side effect, everything etcdadm would put on
// each host: the files (path, mode, bytes), the directories they need and the
// steps to run. Render, diff and apply all consume the same plan.
package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"slices"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/kubeadmconfig"
	"github.com/etcdadm-io/etcdadm/pkg/kubelet"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
)

// Part groups files the way kubeadm's phases do; each can be rendered alone.
type Part string

// The parts, in the order they are applied.
const (
	PartCerts         Part = "certs"
	PartKubeadmConfig Part = "kubeadm-config"
	PartKubelet       Part = "kubelet"
	PartManifests     Part = "manifests"
)

// AllParts lists every part in apply order.
var AllParts = []Part{PartCerts, PartKubeadmConfig, PartKubelet, PartManifests}

// File is one file on a host.
type File struct {
	Path string      `json:"path"`
	Mode fs.FileMode `json:"mode"`
	Part Part        `json:"part"`
	// Secret files (private keys) are never printed.
	Secret bool   `json:"secret,omitempty"`
	Data   []byte `json:"-"`
}

// SHA256 is the hex digest of the file's content.
func (f File) SHA256() string {
	sum := sha256.Sum256(f.Data)
	return hex.EncodeToString(sum[:])
}

// Dir is a directory a host needs, with the mode it must have when created.
type Dir struct {
	Path string      `json:"path"`
	Mode fs.FileMode `json:"mode"`
}

// StepKind names an action on a host.
type StepKind string

// Steps, in the order apply runs them.
const (
	StepDaemonReload   StepKind = "daemon-reload"
	StepRestartKubelet StepKind = "restart-kubelet"
	StepWaitHealthy    StepKind = "wait-healthy"
)

// Step is an action on a host, run only when a file of one of its trigger parts changed.
type Step struct {
	Kind StepKind `json:"kind"`
	// Command is run on the host; empty for steps etcdadm does itself.
	Command string `json:"command,omitempty"`
	// When lists the parts whose change triggers the step; empty means always.
	When []Part `json:"when,omitempty"`
}

// Host is everything one host needs.
type Host struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Dirs    []Dir  `json:"dirs"`
	Files   []File `json:"files"`
	Steps   []Step `json:"steps"`
}

// Plan is the per-host plan of a cluster.
type Plan struct {
	Cluster  string          `json:"cluster"`
	Topology config.Topology `json:"topology"`
	Hosts    []Host          `json:"hosts"`
}

// Options narrow a plan.
type Options struct {
	// Parts to include; empty means all.
	Parts []Part
	// Hosts to include; empty means all.
	Hosts []string
}

// Compute makes sure the operator's PKI is complete when certificates are
// among the parts (creating or reissuing what certs.Ensure decides), then
// builds the plan. The PKI and its events are nil without certificates.
func Compute(c *config.Cluster, opts Options) (*Plan, *certs.PKI, []certs.Event, error) {
	var pki *certs.PKI
	var events []certs.Event
	if len(opts.Parts) == 0 || slices.Contains(opts.Parts, PartCerts) {
		var err error
		if pki, events, err = certs.Ensure(c, certs.Options{}); err != nil {
			return nil, nil, nil, err
		}
	}
	p, err := Build(c, pki, opts)
	if err != nil {
		return nil, nil, nil, err
	}
	return p, pki, events, nil
}

// Build computes the plan of every host from the cluster and its PKI.
func Build(c *config.Cluster, p *certs.PKI, opts Options) (*Plan, error) {
	parts := opts.Parts
	if len(parts) == 0 {
		parts = AllParts
	}
	out := &Plan{Cluster: c.Metadata.Name, Topology: c.Spec.Topology}
	for _, h := range c.Spec.Hosts {
		if len(opts.Hosts) > 0 && !slices.Contains(opts.Hosts, h.Name) {
			continue
		}
		hp, err := buildHost(c, p, h, parts)
		if err != nil {
			return nil, fmt.Errorf("plan for %s: %w", h.Name, err)
		}
		out.Hosts = append(out.Hosts, hp)
	}
	return out, nil
}

func buildHost(c *config.Cluster, p *certs.PKI, h config.Host, parts []Part) (Host, error) {
	hp := Host{Name: h.Name, Address: h.Address}
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
			b, err := kubeadmconfig.Build(c, h, c.Spec.Hosts, manifests.StateNew).Marshal()
			if err != nil {
				return Host{}, err
			}
			hp.Files = append(hp.Files, File{Path: kubeadmconfig.Path, Mode: 0o644, Part: part, Data: b})
		case PartKubelet:
			if !external {
				// A stacked member's kubelet belongs to kubeadm.
				continue
			}
			conf, err := kubelet.ConfigFile(c)
			if err != nil {
				return Host{}, err
			}
			dropIn, err := kubelet.DropIn()
			if err != nil {
				return Host{}, err
			}
			hp.Files = append(hp.Files,
				File{Path: kubelet.ConfigPath, Mode: 0o644, Part: part, Data: conf},
				File{Path: kubelet.DropInPath, Mode: 0o644, Part: part, Data: dropIn})
			hp.Steps = append(hp.Steps,
				Step{Kind: StepDaemonReload, Command: "systemctl daemon-reload", When: []Part{PartKubelet}},
				Step{Kind: StepRestartKubelet, Command: "systemctl restart kubelet", When: []Part{PartKubelet}})
		case PartManifests:
			b, err := manifests.Marshal(manifests.EtcdPod(c, h, c.Spec.Hosts, manifests.StateNew))
			if err != nil {
				return Host{}, err
			}
			hp.Files = append(hp.Files, File{Path: manifests.ManifestPath(c), Mode: 0o600, Part: part, Data: b})
			hp.Steps = append(hp.Steps, Step{Kind: StepWaitHealthy})
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
	files := []File{{Path: path.Join(manifests.CertificatesDir, certs.CABaseName+".crt"), Mode: certs.CertMode, Part: PartCerts, Data: p.CA.CertPEM}}
	if c.Spec.Topology == config.TopologyStacked {
		files = append(files, File{Path: path.Join(manifests.CertificatesDir, certs.CABaseName+".key"), Mode: certs.KeyMode, Part: PartCerts, Secret: true, Data: p.CA.KeyPEM})
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
// manifests directory and etcd's data directory are private.
func dirsFor(c *config.Cluster, files []File, withData bool) []Dir {
	modes := map[string]fs.FileMode{
		c.Spec.Kubelet.StaticPodPath: 0o700,
	}
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
		dirs = append(dirs, Dir{Path: p, Mode: mode})
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

// FindHost returns the plan of the named host.
func (p *Plan) FindHost(name string) (*Host, bool) {
	for i := range p.Hosts {
		if p.Hosts[i].Name == name {
			return &p.Hosts[i], true
		}
	}
	return nil, false
}
