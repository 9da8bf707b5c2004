package plan

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdservice"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/kubelet"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/release"
	"k8s.io/apimachinery/pkg/util/version"
)

// Runtime is how a member runs on its host: a static Pod of the host's
// kubelet, or a systemd service. It says which files run a member, which
// file says how it starts, and which operations start, restart and stop it;
// the rest of the plan (certificates, membership, health gates, guards) is
// the same for every runtime, and so is the executor's use of
// OpRestartEtcd, OpStopEtcd and OpWaitMember.
type Runtime interface {
	// Name is the inventory's spec.etcd.runtime.
	Name() config.Runtime
	// Files are the files of part (PartKubelet or PartManifests) that run
	// host h's member, which starts as m.
	Files(c *config.Cluster, h config.Host, m Member, part Part) ([]File, error)
	// StartPath is the file that says how the member starts (its flags):
	// the static Pod, or the service's environment file. The facts read
	// it as the host's Manifest.
	StartPath(c *config.Cluster) string
	// Unit is the systemd unit that runs the member, "" for none: the
	// facts read its state.
	Unit() string

	// work lists the operations that bring a host to its plan.
	work(in Input, h *host) work
	// preflight refuses a host the runtime cannot run a member on.
	preflight(in Input, h *host, refused *refusals)
	// cleanOps stop and take away what runs the member, after the stop
	// and the backups of its files (paths).
	cleanOps(c *config.Cluster, backedUp []string) []Op
	// rollback is what a member whose new version does not come up goes
	// back to (see Op.Rollback); nil for none.
	rollback(in Input, h *host, retry bool) *File
	// target is the etcd the inventory asks for, and the version it names
	// (nil for none); running what host h's member runs, "" when unknown.
	// A running member whose etcd is not the target upgrades.
	target(c *config.Cluster) (string, *version.Version)
	running(in Input, h *host) string
}

// RuntimeOf is the runtime the inventory runs its members with.
func RuntimeOf(c *config.Cluster) Runtime {
	if c.Systemd() {
		return systemdRuntime{}
	}
	return kubeletRuntime{}
}

// hostWork lists the operations that bring a host to its plan.
func hostWork(in Input, h *host) work {
	return RuntimeOf(in.Cluster).work(in, h)
}

// kubeletRuntime runs a member as a static Pod of the host's kubelet, as
// kubeadm does.
type kubeletRuntime struct{}

func (kubeletRuntime) Name() config.Runtime { return config.RuntimeKubelet }

func (kubeletRuntime) StartPath(c *config.Cluster) string { return manifests.ManifestPath(c) }

func (kubeletRuntime) Unit() string { return "" }

func (kubeletRuntime) Files(c *config.Cluster, h config.Host, m Member, part Part) ([]File, error) {
	switch part {
	case PartKubelet:
		if c.Spec.Topology != config.TopologyExternal {
			// A stacked member's kubelet belongs to kubeadm.
			return nil, nil
		}
		conf, err := kubelet.ConfigFile(c)
		if err != nil {
			return nil, err
		}
		dropIn, err := kubelet.DropIn()
		if err != nil {
			return nil, err
		}
		return []File{
			{Path: kubelet.ConfigPath, Mode: 0o644, Part: part, Data: conf},
			{Path: kubelet.DropInPath, Mode: 0o644, Part: part, Data: dropIn}}, nil
	case PartManifests:
		f, err := ManifestFile(c, h, m)
		if err != nil {
			return nil, err
		}
		return []File{f}, nil
	}
	return nil, fmt.Errorf("no files of part %q run a member", part)
}

func (kubeletRuntime) preflight(in Input, h *host, refused *refusals) {
	c, hf := in.Cluster, h.facts
	if c.Spec.Topology == config.TopologyExternal && !hf.KubeletBin {
		where := "not installed"
		if hf.Kubelet != "" {
			where = "at " + hf.Kubelet + ", not at /usr/bin/kubelet, where the drop-in runs it"
		}
		refused.add(h.cfg.Name, "kubelet is %s: install the kubelet package of Kubernetes %s", where, c.Spec.KubernetesVersion)
	}
}

func (kubeletRuntime) cleanOps(c *config.Cluster, backedUp []string) []Op {
	if c.Spec.Topology != config.TopologyExternal || !slices.ContainsFunc(backedUp, func(p string) bool { return strings.HasPrefix(p, "/etc/systemd/") }) {
		return nil
	}
	return []Op{{Kind: OpRun, Command: CmdDaemonReload}, {Kind: OpRun, Command: CmdStopKube, Why: "it ran only etcd"}}
}

func (kubeletRuntime) rollback(in Input, h *host, retry bool) *File {
	return rollbackFile(in, h, retry)
}

// target is the inventory's image.
func (kubeletRuntime) target(c *config.Cluster) (string, *version.Version) {
	image := c.EtcdImage()
	return image, etcdVersion(image)
}

// running is the image of the member's manifest.
func (kubeletRuntime) running(_ Input, h *host) string {
	if m := h.facts.Manifest; m != nil && m.Err == "" {
		return m.Image
	}
	return ""
}

// Commands the systemd runtime runs on a host.
const (
	// CmdRestartEtcd (re)starts a member run by systemd, and enables it
	// for the next boot. --no-block: etcd tells systemd it is ready only
	// once it has joined its cluster, which the health gate waits for.
	CmdRestartEtcd = "systemctl enable " + etcdservice.Unit + " && systemctl restart --no-block " + etcdservice.Unit
	// CmdStopEtcd stops a member run by systemd for good.
	CmdStopEtcd = "systemctl disable --now " + etcdservice.Unit
)

// StopOp stops the member of a host for good: its manifest, or its
// service's environment file, is kept under the backup directory.
func StopOp(c *config.Cluster) Op {
	if c.Systemd() {
		return Op{Kind: OpStopEtcd, Command: CmdStopEtcd}
	}
	return Op{Kind: OpStopEtcd}
}

// systemdRuntime runs a member as etcd.service, from the binaries of the
// inventory's etcd release, with the flags its static Pod would have.
type systemdRuntime struct{}

func (systemdRuntime) Name() config.Runtime { return config.RuntimeSystemd }

func (systemdRuntime) StartPath(*config.Cluster) string { return etcdservice.EnvPath }

func (systemdRuntime) Unit() string { return etcdservice.Unit }

// releaseBinaries are the binaries the systemd runtime installs.
var releaseBinaries = []string{release.Etcd, release.Etcdctl}

// Files are, for PartManifests, the release's etcd and etcdctl (streamed
// from the tarball when pushed), etcd.service and the environment file
// with the member's flags: manifests.Flags, as its static Pod has them.
// Nothing of a kubelet.
func (systemdRuntime) Files(c *config.Cluster, h config.Host, m Member, part Part) ([]File, error) {
	switch part {
	case PartKubelet:
		return nil, nil
	case PartManifests:
	default:
		return nil, fmt.Errorf("no files of part %q run a member", part)
	}
	rel := c.Spec.Etcd.Release.Info
	if rel == nil {
		return nil, fmt.Errorf("the etcd release %s was not read", c.Spec.Etcd.Release.File)
	}
	var files []File
	for _, name := range releaseBinaries {
		b, ok := rel.Binaries[name]
		if !ok {
			return nil, fmt.Errorf("the etcd release %s holds no %s", rel.Path, name)
		}
		files = append(files, File{Path: etcdservice.BinaryPath(name), Mode: etcdservice.BinaryMode, Part: part,
			Source: &Source{Archive: rel.Path, Entry: b.Entry, Size: b.Size, SHA256: b.SHA256}})
	}
	env, err := EnvFile(c, h, m)
	if err != nil {
		return nil, err
	}
	files = append(files, File{Path: etcdservice.UnitPath, Mode: etcdservice.UnitMode, Part: part, Data: etcdservice.UnitFile()}, env)
	return files, nil
}

// EnvFile is the environment file of host h's service, whose member
// starts as m: the flags of its static Pod.
func EnvFile(c *config.Cluster, h config.Host, m Member) (File, error) {
	b, err := etcdservice.EnvFile(h.Name, manifests.Flags(c, h, m.InitialCluster, m.State))
	if err != nil {
		return File{}, fmt.Errorf("the environment file of %s: %w", h.Name, err)
	}
	return File{Path: etcdservice.EnvPath, Mode: etcdservice.EnvMode, Part: PartManifests, Data: b}, nil
}

func (systemdRuntime) preflight(in Input, h *host, refused *refusals) {
	hf, rel := h.facts, in.Cluster.Spec.Etcd.Release.Info
	switch hf.EtcdActive {
	case "":
		refused.add(h.cfg.Name, "systemctl does not answer: the systemd runtime runs etcd as a systemd service; use a host with systemd, or spec.etcd.runtime: kubelet")
	case "inactive", "failed":
		if h.runs() {
			refused.add(h.cfg.Name, "an etcd process (pid %d) serves port %d, but not as %s, which is %s: a static Pod or an etcd started by hand; stop it first, the systemd runtime starts its own",
				hf.Etcd[0].PID, manifests.ClientPort, etcdservice.Unit, hf.EtcdActive)
		}
	}
	if rel != nil && rel.Platform() != in.platform() {
		refused.add(h.cfg.Name, "the etcd release %s is for %s, the hosts are %s: use etcd-v%s-%s.tar.gz", rel.Dir, rel.Platform(), in.platform(), rel.Version, strings.ReplaceAll(in.platform(), "/", "-"))
	}
}

// work is, for a member run by systemd: directories, certificates and
// kubeadm configuration as for a static Pod, then the binaries and the
// unit (systemd reloaded when the unit changes), then the environment file
// and `systemctl restart`. A running member's restart is recorded by a
// marker first, since its files are written before it restarts. A member
// that does not run while its unit is stopped or failed is started.
func (systemdRuntime) work(in Input, h *host) work {
	var w work
	hp, hf := h.plan, h.facts
	running := h.runs()
	w.prepare = prepareDirs(h)
	var env *Change
	var why []string
	certRestart, unitChanged, binaries := false, false, false
	for i, ch := range hp.Changes {
		if ch.Kind != Create && ch.Kind != Update {
			continue
		}
		switch {
		case ch.Path == etcdservice.EnvPath:
			env = &hp.Changes[i]
		case ch.Path == etcdservice.UnitPath:
			unitChanged = true
		case ch.File.Source != nil:
			binaries = true
		case slices.Contains(etcdFiles(), ch.Path):
			certRestart = true
		}
	}
	pending := hf.HasPending(facts.PendingEtcdRestart)
	switch {
	case env != nil && hf.Manifest == nil:
		why = append(why, "its environment file is missing")
	case env != nil:
		why = append(why, "its flags change")
	}
	if binaries {
		why = append(why, "its etcd binaries change")
	}
	if unitChanged && hf.Manifest != nil {
		why = append(why, "its unit changes")
	}
	if certRestart {
		why = append(why, "the CA or its server or peer certificate changes")
	}
	stopped := hf.EtcdActive == "inactive" || hf.EtcdActive == "failed"
	restart := running && (len(why) > 0 || pending)
	start := !running && (len(why) > 0 || pending || (hf.Manifest != nil && stopped))
	if pending && len(why) == 0 {
		why = append(why, "a previous run recorded a restart it did not finish")
	}
	if !running && len(why) == 0 && start {
		why = append(why, "its unit is "+hf.EtcdActive)
	}
	if restart && !pending {
		w.prepare = append(w.prepare, Op{Kind: OpMark, Marker: facts.PendingEtcdRestart, Why: "etcd reads its flags, binaries, CA and certificates when it starts"})
	}
	for _, part := range []Part{PartCerts, PartKubeadmConfig, PartManifests} {
		for i, ch := range hp.Changes {
			if ch.File.Part != part || ch.Kind == Unchanged || (&hp.Changes[i] == env) {
				continue
			}
			w.prepare = append(w.prepare, Op{Kind: OpWrite, Path: ch.Path, Change: &hp.Changes[i]})
		}
	}
	if unitChanged {
		w.prepare = append(w.prepare, Op{Kind: OpRun, Command: CmdDaemonReload, Why: "etcd.service changes"})
	}
	if !restart && !start {
		return w
	}
	op := Op{Kind: OpRestartEtcd, Path: etcdservice.EnvPath, Command: CmdRestartEtcd, Disruptive: running, Why: strings.Join(why, ", ")}
	if env != nil {
		op.Change = env
	}
	w.start = append(w.start, op)
	w.restarts = true
	w.why = why
	if pending || restart {
		w.start = append(w.start, Op{Kind: OpUnmark, Marker: facts.PendingEtcdRestart})
	}
	return w
}

// cleanOps: the unit's files were moved under the backup directory; systemd
// forgets the unit.
func (systemdRuntime) cleanOps(_ *config.Cluster, backedUp []string) []Op {
	if !slices.Contains(backedUp, etcdservice.UnitPath) {
		return nil
	}
	return []Op{{Kind: OpRun, Command: CmdDaemonReload, Why: "etcd.service is gone"}}
}

// target is the inventory's release, by its directory's name, and the
// version that name holds.
func (systemdRuntime) target(c *config.Cluster) (string, *version.Version) {
	rel := c.Spec.Etcd.Release.Info
	if rel == nil {
		return "", nil
	}
	return rel.Dir, etcdVersion(rel.Version)
}

// running is the release whose etcd the host has when its binary is the
// release's and the member reports the release's version (or nothing);
// otherwise the version the member reports, or what differs.
func (r systemdRuntime) running(in Input, h *host) string {
	rel := in.Cluster.Spec.Etcd.Release.Info
	if rel == nil {
		return ""
	}
	reported := ""
	if st, ok := in.Etcd.Status[h.member.ID]; ok && h.listed {
		reported = strings.TrimPrefix(st.Version, "v")
	}
	bin, ok := h.facts.Files[etcdservice.BinaryPath(release.Etcd)]
	switch {
	case ok && bin.SHA256 == rel.Binaries[release.Etcd].SHA256 && (reported == "" || reported == rel.Version):
		return rel.Dir
	case reported != "":
		return "etcd " + reported
	case !ok:
		return "no " + etcdservice.BinaryPath(release.Etcd)
	}
	return "another " + etcdservice.BinaryPath(release.Etcd) + " (sha256 " + short(bin.SHA256) + ")"
}

// rollback is the environment file as the host has it: the executor puts
// the binaries it replaced back from the copies it kept, writes it, and
// restarts the member.
func (systemdRuntime) rollback(_ Input, h *host, _ bool) *File {
	m := h.facts.Manifest
	if m == nil || len(m.Data) == 0 {
		return nil
	}
	return &File{Path: etcdservice.EnvPath, Mode: etcdservice.EnvMode, Part: PartManifests, Data: m.Data}
}

// Source is where a large file's content comes from on this machine: an
// entry of a release tarball, streamed when it is pushed, never held in
// memory. Size and SHA256 are the entry's as the tarball was read.
type Source struct {
	Archive string `json:"archive"`
	Entry   string `json:"entry"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
}

// Open streams the content; the reader checks nothing, the host checks
// the sha256 of what it received.
func (s *Source) Open() (io.ReadCloser, error) {
	rc, err := release.Open(s.Archive, s.Entry)
	if err != nil {
		return nil, fmt.Errorf("read %s from %s: %w", s.Entry, s.Archive, err)
	}
	return rc, nil
}
