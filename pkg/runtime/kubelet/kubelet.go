// Package kubelet is the runtime that runs a member as a static Pod of its
// host's kubelet, as kubeadm does: both what it plans (the manifest, the
// kubelet's drop-ins for an external member, when the kubelet restarts)
// and how it runs a member (the manifest taken out and written back).
// It must not import plan, gather or the executor.
package kubelet

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/version"
	"sigs.k8s.io/yaml"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/hostfile"
	kubeletconf "github.com/etcdadm-io/etcdadm/pkg/kubelet"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/runtime"
)

// Runtime runs a member as a static Pod.
type Runtime struct{}

var _ runtime.Runtime = Runtime{}

func (Runtime) Name() config.Runtime { return config.RuntimeKubelet }

func (Runtime) StartPath(c *config.Cluster) string { return manifests.ManifestPath(c) }

// HeldStartPath is where a restart parks the manifest while the Pod goes.
func (Runtime) HeldStartPath(c *config.Cluster) string { return holdPath(c) }

func (Runtime) Unit() string { return "" }

// Files are the kubelet's configuration and drop-in (external topology:
// a stacked member's kubelet belongs to kubeadm), or the static Pod.
func (Runtime) Files(c *config.Cluster, h config.Host, m runtime.Member, part hostfile.Part) ([]hostfile.File, error) {
	switch part {
	case hostfile.PartKubelet:
		if c.Spec.Topology != config.TopologyExternal {
			return nil, nil
		}
		conf, err := kubeletconf.ConfigFile(c)
		if err != nil {
			return nil, err
		}
		dropIn, err := kubeletconf.DropIn()
		if err != nil {
			return nil, err
		}
		return []hostfile.File{
			{Path: kubeletconf.ConfigPath, Mode: 0o644, Part: part, Data: conf},
			{Path: kubeletconf.DropInPath, Mode: 0o644, Part: part, Data: dropIn}}, nil
	case hostfile.PartManifests:
		f, err := ManifestFile(c, h, m)
		if err != nil {
			return nil, err
		}
		return []hostfile.File{f}, nil
	}
	return nil, fmt.Errorf("no files of part %q run a member", part)
}

// FilePaths are the kubelet's files (external topology) and the manifest.
func (Runtime) FilePaths(c *config.Cluster) []string {
	var out []string
	if c.Spec.Topology == config.TopologyExternal {
		out = append(out, kubeletconf.ConfigPath, kubeletconf.DropInPath)
	}
	return append(out, manifests.ManifestPath(c))
}

// ManifestFile is the etcd static Pod of host h, whose member starts as m.
func ManifestFile(c *config.Cluster, h config.Host, m runtime.Member) (hostfile.File, error) {
	pod := manifests.EtcdPod(c, h, m.InitialCluster, m.State)
	if m.KubeadmOrder {
		pod = manifests.EtcdPodKubeadmOrder(c, h, m.InitialCluster, m.State)
	}
	pod.Spec.Containers[0].Command = append(pod.Spec.Containers[0].Command, m.Flags()...)
	if m.Restart != "" {
		pod.Annotations[manifests.RestartAnnotation] = m.Restart
	}
	b, err := manifests.Marshal(pod)
	if err != nil {
		return hostfile.File{}, err
	}
	return hostfile.File{Path: manifests.ManifestPath(c), Mode: 0o600, Part: hostfile.PartManifests, Data: b}, nil
}

// Preflight refuses an external member's host without the kubelet its
// drop-in runs.
func (Runtime) Preflight(h *runtime.Host) []string {
	c, hf := h.Cluster, h.Facts
	if c.Spec.Topology == config.TopologyExternal && !hf.KubeletBin {
		where := "not installed"
		if hf.Kubelet != "" {
			where = "at " + hf.Kubelet + ", not at /usr/bin/kubelet, where the drop-in runs it"
		}
		return []string{fmt.Sprintf("kubelet is %s: install the kubelet package of Kubernetes %s", where, c.Spec.KubernetesVersion)}
	}
	return nil
}

// CleanOps: the kubelet files were moved under the backup directory;
// systemd reloads, and the kubelet that ran only etcd stops.
func (Runtime) CleanOps(c *config.Cluster, backedUp []string) []ops.Op {
	if c.Spec.Topology != config.TopologyExternal || !slices.ContainsFunc(backedUp, func(p string) bool { return strings.HasPrefix(p, "/etc/systemd/") }) {
		return nil
	}
	return []ops.Op{ops.Run{Command: ops.CmdDaemonReload}, ops.Run{Command: ops.CmdStopKube, Why: "it ran only etcd"}}
}

// StopOp takes the static Pod away.
func (Runtime) StopOp() ops.StopEtcd { return ops.StopEtcd{} }

// StartOp writes the manifest, and writes it again under another restart
// annotation (retry) should the kubelet hold the first back.
func (Runtime) StartOp(c *config.Cluster, h config.Host, ch *hostfile.Change, retry runtime.Member) (ops.RestartEtcd, error) {
	f, err := ManifestFile(c, h, retry)
	if err != nil {
		return ops.RestartEtcd{}, err
	}
	return ops.RestartEtcd{Path: ch.Path, Change: ch, Retry: &f}, nil
}

// Target is the inventory's image.
func (Runtime) Target(c *config.Cluster) (string, *version.Version) {
	image := c.EtcdImage()
	return image, runtime.EtcdVersion(image)
}

// Running is the image of the member's manifest.
func (Runtime) Running(h *runtime.Host) string {
	if m := h.Facts.Manifest; m != nil && m.Err == "" {
		return m.Image
	}
	return ""
}

// Rollback is the manifest a member goes back to when its upgrade does
// not come up: the one its host has now, under another restart annotation
// so that the kubelet makes a new Pod of it at once.
func (Runtime) Rollback(h *runtime.Host, retry bool) *hostfile.File {
	m := h.Facts.Manifest
	if m == nil || len(m.Data) == 0 {
		return nil
	}
	data := m.Data
	var pod corev1.Pod
	if err := yaml.Unmarshal(m.Data, &pod); err == nil && pod.Kind == "Pod" {
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[manifests.RestartAnnotation] = runtime.RestartStamp(h.Now, retry) + " (rolled back)"
		if b, err := manifests.Marshal(&pod); err == nil {
			data = b
		}
	}
	return &hostfile.File{Path: manifests.ManifestPath(h.Cluster), Mode: 0o600, Part: hostfile.PartManifests, Data: data}
}

// Work lists the operations that bring a host to its plan: directories,
// certificates, kubeadm configuration and kubelet files (the kubelet
// restarted behind a marker), then the manifest, or a restart when only
// what etcd reads at start changed, or when a previous run recorded one.
func (Runtime) Work(h *runtime.Host) (runtime.Work, error) {
	c, hf := h.Cluster, h.Facts
	var w runtime.Work
	running := h.Runs()
	w.Prepare = slices.Clone(h.Prepare)
	var manifest *hostfile.Change
	certRestart := false
	for i, ch := range h.Changes {
		if ch.File.Part == hostfile.PartManifests && ch.Writes() {
			manifest = &h.Changes[i]
		}
		if slices.Contains(runtime.EtcdFiles(), ch.Path) && ch.Writes() {
			certRestart = true
		}
	}
	hasManifest := hf.Manifest != nil
	restartEtcd := manifest == nil && hasManifest && (certRestart || hf.HasPending(facts.PendingEtcdRestart))
	newManifest := manifest != nil && running
	switch {
	case hf.HasPending(facts.PendingEtcdRestart):
	case restartEtcd:
		w.Prepare = append(w.Prepare, ops.Mark{Marker: facts.PendingEtcdRestart, Why: "etcd reads its CA and keeps its peer streams until it restarts"})
	case newManifest:
		w.Prepare = append(w.Prepare, ops.Mark{Marker: facts.PendingEtcdRestart, Why: "a run cut while the member restarts leaves it to the next, which waits for it"})
	}
	write := func(part hostfile.Part) {
		for i, ch := range h.Changes {
			if ch.File.Part == part && ch.Kind != hostfile.Unchanged {
				w.Prepare = append(w.Prepare, ops.Write{Path: ch.Path, Change: &h.Changes[i]})
			}
		}
	}
	write(hostfile.PartCerts)
	write(hostfile.PartKubeadmConfig)
	if manifest == nil {
		// Its mode or owner only: set in place, the kubelet keeps the Pod.
		write(hostfile.PartManifests)
	}
	switch {
	case h.PartChanged(hostfile.PartKubelet):
		w.Prepare = append(w.Prepare, ops.Mark{Marker: facts.PendingKubeletRestart, Why: "the kubelet's files change"})
		write(hostfile.PartKubelet)
		w.Prepare = append(w.Prepare,
			ops.Run{Command: ops.CmdDaemonReload},
			ops.Run{Command: ops.CmdRestartKube},
			ops.Unmark{Marker: facts.PendingKubeletRestart})
		w.Kubelet = true
	case hf.HasPending(facts.PendingKubeletRestart):
		w.Prepare = append(w.Prepare,
			ops.Run{Command: ops.CmdDaemonReload, Why: "a previous run recorded a kubelet restart it did not finish"},
			ops.Run{Command: ops.CmdRestartKube},
			ops.Unmark{Marker: facts.PendingKubeletRestart})
		w.Kubelet = true
	case c.Spec.Topology == config.TopologyExternal && (hf.KubeletActive == "inactive" || hf.KubeletActive == "failed"):
		w.Prepare = append(w.Prepare, ops.Run{Command: ops.CmdStartKube, Why: "the kubelet runs etcd and is " + hf.KubeletActive})
		w.Kubelet = true
	}
	switch {
	case manifest != nil && running:
		retry, err := restartFile(h, true)
		if err != nil {
			return w, err
		}
		w.Start = append(w.Start, ops.RestartEtcd{Path: manifest.Path, Change: manifest, Retry: &retry, Disruptive: true, Why: "its manifest changes"})
		w.Restarts = true
		w.Why = append(w.Why, "its manifest changes")
	case manifest != nil:
		w.Start = append(w.Start, ops.Write{Path: manifest.Path, Change: manifest})
		w.Restarts = true
		_, there := hf.Files[manifest.Path]
		switch {
		case hasManifest && !there:
			// A restart cut in the middle held it back.
			w.Start = append(w.Start, ops.Run{Command: "rm -f " + shell.Quote(holdPath(c)), Why: "the manifest a cut restart held back is written back"})
			w.Why = append(w.Why, "its manifest was held back by a cut restart")
		case hasManifest:
			w.Why = append(w.Why, "its manifest changes")
		default:
			w.Why = append(w.Why, "its manifest is missing")
		}
	case restartEtcd:
		why := "a previous run recorded a restart it did not finish"
		if certRestart {
			why = "the CA or its server or peer certificate changes"
		}
		f, err := restartFile(h, false)
		if err != nil {
			return w, err
		}
		retry, err := restartFile(h, true)
		if err != nil {
			return w, err
		}
		ch := &hostfile.Change{File: f, Path: f.Path, Kind: hostfile.Update, Mode: fmt.Sprintf("%04o", f.Mode.Perm()), NewSHA: f.SHA256()}
		if cur, ok := hf.Files[f.Path]; ok {
			ch.OldSHA, ch.OldMode = cur.SHA256, fmt.Sprintf("%04o", cur.Mode.Perm())
		}
		w.Start = append(w.Start, ops.RestartEtcd{Path: f.Path, Change: ch, Retry: &retry, Disruptive: running, Why: why})
		w.Restarts = true
		w.Why = append(w.Why, why)
	}
	if len(w.Start) > 0 && hf.HasPending(facts.PendingEtcdRestart) || restartEtcd || newManifest {
		w.Start = append(w.Start, ops.Unmark{Marker: facts.PendingEtcdRestart})
	}
	return w, nil
}

// restartFile is the host's manifest with a new restart annotation, for a
// restart; retry gives another, should the kubelet hold the first back.
func restartFile(h *runtime.Host, retry bool) (hostfile.File, error) {
	m := h.Member
	m.Restart = runtime.RestartStamp(h.Now, retry)
	return ManifestFile(h.Cluster, h.Config, m)
}
