package plan

import (
	"path"
	"slices"

	"github.com/etcdadm-io/etcdadm/pkg/backup"
	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/kubeadmconfig"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/runtime"
)

// Paths are the files a plan can write on host h, and the directories they
// and etcd's data need, without making their content: what the facts of a
// host read. A control-plane host's are its own (ControlPlanePaths).
func Paths(c *config.Cluster, rt runtime.Runtime, h config.Host) (files, dirs []string) {
	if cp, ok := c.ControlPlaneHost(h.Name); ok {
		return ControlPlanePaths(c, cp)
	}
	files = certPaths(c, h.Name)
	files = append(files, kubeadmconfig.Path)
	if c.Spec.Topology != config.TopologyExternal {
		p := kubeadmconfig.JoinPath
		if kubeadmconfig.IsFirst(c, h) {
			p = kubeadmconfig.InitPath
		}
		files = append(files, p)
	}
	files = append(files, rt.FilePaths(c)...)
	files = append(files, backupPaths(c)...)
	dirs = dirsOf(c, files, true)
	// What a previous apply installed for backups the inventory no longer
	// takes is read too, to be taken away.
	for _, p := range backup.Paths() {
		if !slices.Contains(files, p) {
			files = append(files, p)
		}
	}
	return files, dirs
}

// ControlPlanePaths are Paths for control-plane host h.
func ControlPlanePaths(c *config.Cluster, h config.ControlPlaneHost) (files, dirs []string) {
	files = append(certPaths(c, h.Name), kubeadmconfig.ExternalPath)
	return files, dirsOf(c, files, false)
}

// certPaths are the paths of certFiles.
func certPaths(c *config.Cluster, host string) []string {
	out := []string{path.Join(manifests.CertificatesDir, certs.CABaseName+".crt")}
	if c.Spec.Topology == config.TopologyStacked && !c.IsControlPlaneHost(host) {
		out = append(out, path.Join(manifests.CertificatesDir, certs.CABaseName+".key"))
	}
	for _, spec := range certs.SpecsFor(c, host) {
		base := path.Join(manifests.CertificatesDir, spec.BaseName)
		out = append(out, base+".crt", base+".key")
	}
	return out
}

func dirsOf(c *config.Cluster, files []string, withData bool) []string {
	fs := make([]File, len(files))
	for i, f := range files {
		fs[i].Path = f
	}
	var out []string
	for _, d := range dirsFor(c, fs, withData) {
		out = append(out, d.Path)
	}
	return out
}
