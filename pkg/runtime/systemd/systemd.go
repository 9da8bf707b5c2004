// Package systemd is the runtime that runs a member as etcd.service, from
// the binaries of the inventory's etcd release, with the flags its static
// Pod would have: both what it plans (the binaries, the unit, the
// environment file, when the service restarts) and how it runs a member
// (systemctl). It must not import plan, gather or the executor.
package systemd

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/version"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdservice"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/hostfile"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/release"
	"github.com/etcdadm-io/etcdadm/pkg/runtime"
)

// Commands the systemd runtime runs on a host.
const (
	// CmdRestartEtcd (re)starts a member run by systemd, and enables it
	// for the next boot. --no-block: etcd tells systemd it is ready only
	// once it has joined its cluster, which the health gate waits for.
	CmdRestartEtcd = "systemctl enable " + etcdservice.Unit + " && systemctl restart --no-block " + etcdservice.Unit
	// CmdStopEtcd stops a member run by systemd for good.
	CmdStopEtcd = "systemctl disable --now " + etcdservice.Unit
)

// Runtime runs a member as etcd.service.
type Runtime struct{}

var _ runtime.Runtime = Runtime{}

func (Runtime) Name() config.Runtime { return config.RuntimeSystemd }

func (Runtime) StartPath(*config.Cluster) string { return etcdservice.EnvPath }

// HeldStartPath: a restart leaves the environment file where it is.
func (Runtime) HeldStartPath(*config.Cluster) string { return "" }

func (Runtime) Unit() string { return etcdservice.Unit }

// releaseBinaries are the binaries the systemd runtime installs.
var releaseBinaries = []string{release.Etcd, release.Etcdctl}

// Files are, for PartManifests, the release's etcd and etcdctl (streamed
// from the tarball when pushed), etcd.service and the environment file
// with the member's flags: manifests.Flags, as its static Pod has them.
// Nothing of a kubelet.
func (Runtime) Files(c *config.Cluster, h config.Host, m runtime.Member, part hostfile.Part) ([]hostfile.File, error) {
	switch part {
	case hostfile.PartKubelet:
		return nil, nil
	case hostfile.PartManifests:
	default:
		return nil, fmt.Errorf("no files of part %q run a member", part)
	}
	rel := c.Spec.Etcd.Release.Info
	if rel == nil {
		return nil, fmt.Errorf("the etcd release %s was not read", c.Spec.Etcd.Release.File)
	}
	var files []hostfile.File
	for _, name := range releaseBinaries {
		b, ok := rel.Binaries[name]
		if !ok {
			return nil, fmt.Errorf("the etcd release %s holds no %s", rel.Path, name)
		}
		files = append(files, hostfile.File{Path: etcdservice.BinaryPath(name), Mode: etcdservice.BinaryMode, Part: part,
			Source: &hostfile.Source{Archive: rel.Path, Entry: b.Entry, Size: b.Size, SHA256: b.SHA256}})
	}
	env, err := EnvFile(c, h, m)
	if err != nil {
		return nil, err
	}
	files = append(files, hostfile.File{Path: etcdservice.UnitPath, Mode: etcdservice.UnitMode, Part: part, Data: etcdservice.UnitFile()}, env)
	return files, nil
}

// FilePaths are the release's binaries, the unit and the environment file.
func (Runtime) FilePaths(*config.Cluster) []string {
	var out []string
	for _, name := range releaseBinaries {
		out = append(out, etcdservice.BinaryPath(name))
	}
	return append(out, etcdservice.UnitPath, etcdservice.EnvPath)
}

// EnvFile is the environment file of host h's service, whose member
// starts as m: the flags of its static Pod.
func EnvFile(c *config.Cluster, h config.Host, m runtime.Member) (hostfile.File, error) {
	b, err := etcdservice.EnvFile(h.Name, append(manifests.Flags(c, h, m.InitialCluster, m.State), m.Flags()...))
	if err != nil {
		return hostfile.File{}, fmt.Errorf("the environment file of %s: %w", h.Name, err)
	}
	return hostfile.File{Path: etcdservice.EnvPath, Mode: etcdservice.EnvMode, Part: hostfile.PartManifests, Data: b}, nil
}

// Preflight refuses a host without systemd, an etcd that runs but not as
// the service, and a release for another platform than the hosts'.
func (Runtime) Preflight(h *runtime.Host) []string {
	var out []string
	hf, rel := h.Facts, h.Cluster.Spec.Etcd.Release.Info
	switch hf.EtcdActive {
	case "":
		out = append(out, "systemctl does not answer: the systemd runtime runs etcd as a systemd service; use a host with systemd, or spec.etcd.runtime: kubelet")
	case "inactive", "failed":
		if h.Runs() {
			out = append(out, fmt.Sprintf("an etcd process (pid %d) serves port %d, but not as %s, which is %s: a static Pod or an etcd started by hand; stop it first, the systemd runtime starts its own",
				hf.Etcd[0].PID, manifests.ClientPort, etcdservice.Unit, hf.EtcdActive))
		}
	}
	if rel != nil && rel.Platform() != h.Platform {
		out = append(out, fmt.Sprintf("the etcd release %s is for %s, the hosts are %s: use etcd-v%s-%s.tar.gz", rel.Dir, rel.Platform(), h.Platform, rel.Version, strings.ReplaceAll(h.Platform, "/", "-")))
	}
	return out
}

// Work is, for a member run by systemd: directories, certificates and
// kubeadm configuration as for a static Pod, then the binaries and the
// unit (systemd reloaded when the unit changes), then the environment file
// and `systemctl restart`. A running member's restart is recorded by a
// marker first, since its files are written before it restarts. A member
// that does not run while its unit is stopped or failed is started.
func (Runtime) Work(h *runtime.Host) (runtime.Work, error) {
	var w runtime.Work
	hf := h.Facts
	running := h.Runs()
	w.Prepare = slices.Clone(h.Prepare)
	var env *hostfile.Change
	var why []string
	certRestart, unitChanged, binaries := false, false, false
	for i, ch := range h.Changes {
		if !ch.Writes() {
			continue
		}
		switch {
		case ch.Path == etcdservice.EnvPath:
			env = &h.Changes[i]
		case ch.Path == etcdservice.UnitPath:
			unitChanged = true
		case ch.File.Source != nil && ch.File.Part == hostfile.PartManifests:
			// The release's binaries; etcdadm's own (for its backups) is
			// no concern of etcd's.
			binaries = true
		case slices.Contains(runtime.EtcdFiles(), ch.Path):
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
		w.Prepare = append(w.Prepare, ops.Mark{Marker: facts.PendingEtcdRestart, Why: "etcd reads its flags, binaries, CA and certificates when it starts"})
	}
	for _, part := range []hostfile.Part{hostfile.PartCerts, hostfile.PartKubeadmConfig, hostfile.PartManifests} {
		for i, ch := range h.Changes {
			if ch.File.Part != part || ch.Kind == hostfile.Unchanged || (&h.Changes[i] == env) {
				continue
			}
			w.Prepare = append(w.Prepare, ops.Write{Path: ch.Path, Change: &h.Changes[i]})
		}
	}
	if unitChanged {
		w.Prepare = append(w.Prepare, ops.Run{Command: ops.CmdDaemonReload, Why: "etcd.service changes"})
	}
	if !restart && !start {
		return w, nil
	}
	w.Start = append(w.Start, ops.RestartEtcd{Path: etcdservice.EnvPath, Change: env, Command: CmdRestartEtcd, Binaries: binaries, Disruptive: running, Why: strings.Join(why, ", ")})
	w.Restarts = true
	w.Why = why
	if pending || restart {
		w.Start = append(w.Start, ops.Unmark{Marker: facts.PendingEtcdRestart})
	}
	return w, nil
}

// CleanOps: the unit's files were moved under the backup directory;
// systemd forgets the unit.
func (Runtime) CleanOps(_ *config.Cluster, backedUp []string) []ops.Op {
	if !slices.Contains(backedUp, etcdservice.UnitPath) {
		return nil
	}
	return []ops.Op{ops.Run{Command: ops.CmdDaemonReload, Why: "etcd.service is gone"}}
}

// StopOp stops and disables the service.
func (Runtime) StopOp() ops.StopEtcd { return ops.StopEtcd{Command: CmdStopEtcd} }

// StartOp writes the environment file and restarts the service.
func (Runtime) StartOp(_ *config.Cluster, _ config.Host, ch *hostfile.Change, _ runtime.Member) (ops.RestartEtcd, error) {
	return ops.RestartEtcd{Path: ch.Path, Change: ch, Command: CmdRestartEtcd}, nil
}

// Target is the inventory's release, by its directory's name, and the
// version that name holds.
func (Runtime) Target(c *config.Cluster) (string, *version.Version) {
	rel := c.Spec.Etcd.Release.Info
	if rel == nil {
		return "", nil
	}
	return rel.Dir, runtime.EtcdVersion(rel.Version)
}

// Running is the release whose etcd the host has when its binary is the
// release's and the member reports the release's version (or nothing);
// otherwise the version the member reports, or what differs.
func (Runtime) Running(h *runtime.Host) string {
	rel := h.Cluster.Spec.Etcd.Release.Info
	if rel == nil {
		return ""
	}
	reported := ""
	if h.Status != nil {
		reported = strings.TrimPrefix(h.Status.Version, "v")
	}
	bin, ok := h.Facts.Files[etcdservice.BinaryPath(release.Etcd)]
	switch {
	case ok && bin.SHA256 == rel.Binaries[release.Etcd].SHA256 && (reported == "" || reported == rel.Version):
		return rel.Dir
	case reported != "":
		return "etcd " + reported
	case !ok:
		return "no " + etcdservice.BinaryPath(release.Etcd)
	}
	return "another " + etcdservice.BinaryPath(release.Etcd) + " (sha256 " + hostfile.Short(bin.SHA256) + ")"
}

// Rollback is the environment file as the host has it: the executor puts
// the binaries it replaced back from the copies it kept, writes it, and
// restarts the member.
func (Runtime) Rollback(h *runtime.Host, _ bool) *hostfile.File {
	m := h.Facts.Manifest
	if m == nil || len(m.Data) == 0 {
		return nil
	}
	return &hostfile.File{Path: etcdservice.EnvPath, Mode: etcdservice.EnvMode, Part: hostfile.PartManifests, Data: m.Data}
}
