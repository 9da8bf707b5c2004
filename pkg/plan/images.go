package plan

import (
	"fmt"
	"runtime"
	"strings"

	"github.com/etcdadm-io/etcdadm/pkg/hostfile"
	"github.com/etcdadm-io/etcdadm/pkg/images"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

// ImageImport is one image an import-image operation brings to a host.
type ImageImport = ops.ImageImport

func (in Input) platform() string {
	if in.Platform != "" {
		return in.Platform
	}
	return "linux/" + runtime.GOARCH
}

// planImages decides, per host, which archives to import so that it has
// every image it needs: etcd's, the pause image, and containerd's own
// sandbox image when that is another. A host has an image when containerd
// lists it by name and, when the image is in the archives, with the
// archive's digest. An image neither on a host nor in the archives is
// refused when there are archives or the inventory is air-gapped;
// otherwise the kubelet will pull it, which the plan warns about.
func planImages(in Input, hosts []*host, refused *refusals) []string {
	c := in.Cluster
	airGapped := c.Spec.Images.AirGapped
	pause := c.PauseImage()
	platform := in.platform()
	var warnings []string
	pulls := map[string][]string{}
	var pullOrder []string
	sandboxes := map[string][]string{}
	var sandboxOrder []string
	for _, h := range hosts {
		cd := h.facts.Containerd
		if cd == nil {
			continue
		}
		name := h.cfg.Name
		refs := []string{}
		for _, n := range images.Needed(c) {
			refs = append(refs, n.Ref)
		}
		if cd.SandboxImage != "" && cd.SandboxImage != pause {
			refs = append(refs, cd.SandboxImage)
			key := cd.SandboxImage + "\x00" + cd.SandboxSetting
			if _, ok := sandboxes[key]; !ok {
				sandboxOrder = append(sandboxOrder, key)
			}
			sandboxes[key] = append(sandboxes[key], name)
		}
		var lacking []string
		var steps []Op
		for _, ref := range refs {
			have, onHost := cd.Image(ref)
			a, im, inDir := in.Images.Find(ref)
			switch {
			case onHost && (!inDir || have.Digest == im.Digest):
			case inDir && !im.Has(platform):
				refused.add(name, "needs %s, which %s holds only for %s, not for %s: export it for %s (`ctr images export --platform %s`)",
					ref, a.Path, platformList(im.Platforms), platform, platform, platform)
			case inDir:
				why := "not on the host"
				if onHost {
					why = fmt.Sprintf("the host has it as %s", hostfile.Short(strings.TrimPrefix(have.Digest, "sha256:")))
				}
				steps = addImport(steps, a, ImageImport{Ref: ref, Digest: im.Digest}, cd.Snapshotter, why)
			default:
				lacking = append(lacking, ref)
			}
		}
		if len(steps) > 0 && !cd.Known() {
			refused.add(name, "cannot import %s: %s; install containerd (with its ctr) and start it", importedRefs(steps), cd.Error)
			steps = nil
		}
		h.imports = steps
		if len(lacking) == 0 {
			continue
		}
		where := "is not on the host"
		if len(lacking) > 1 {
			where = "are not on the host"
		}
		if !cd.Known() {
			where = fmt.Sprintf("cannot be looked for (%s)", cd.Error)
		}
		switch {
		case in.Images != nil:
			refused.add(name, "needs %s, which %s and not in %s%s: add %s archive there (`ctr images export` or `docker save`)",
				strings.Join(lacking, " and "), where, in.Images.Dir, holding(in.Images), itsOrTheir(lacking))
		case airGapped:
			refused.add(name, "needs %s, which %s, and spec.images.airGapped says the hosts never pull: give the image archives with `etcdadm apply --images DIR` or spec.images.dir (`etcdadm images list` names them)",
				strings.Join(lacking, " and "), where)
		default:
			for _, ref := range lacking {
				if _, ok := pulls[ref]; !ok {
					pullOrder = append(pullOrder, ref)
				}
				pulls[ref] = append(pulls[ref], name)
			}
		}
	}
	for _, key := range sandboxOrder {
		image, setting, _ := strings.Cut(key, "\x00")
		warnings = append(warnings, fmt.Sprintf("containerd's sandbox image on %s is %s (%s), not the inventory's pause image %s: set it to %q in /etc/containerd/config.toml and restart containerd, so that the Pod sandbox is the image the cluster carries",
			strings.Join(sandboxes[key], ", "), image, setting, pause, pause))
	}
	for _, ref := range pullOrder {
		warnings = append(warnings, fmt.Sprintf("%s is not on %s: the kubelet will pull it from %s; without a registry, give the image archives with `etcdadm apply --images DIR` (or spec.images.dir), and set spec.images.airGapped to refuse pulls",
			ref, strings.Join(pulls[ref], ", "), registryOf(ref)))
	}
	return warnings
}

// addImport adds ref to the import of archive a, one operation per archive.
func addImport(steps []Op, a *images.Archive, im ImageImport, snapshotter, why string) []Op {
	for i := range steps {
		if o, ok := steps[i].(ops.ImportImage); ok && o.Source == a.Path {
			o.Images = append(o.Images, im)
			o.Why += "; " + im.Ref + ": " + why
			steps[i] = o
			return steps
		}
	}
	return append(steps, ops.ImportImage{Source: a.Path, Archive: a, Images: []ImageImport{im}, Snapshotter: snapshotter, Why: im.Ref + ": " + why})
}

func importedRefs(steps []Op) string {
	var refs []string
	for _, op := range steps {
		for _, im := range op.(ops.ImportImage).Images {
			refs = append(refs, im.Ref)
		}
	}
	return strings.Join(refs, " and ")
}

func holding(s *images.Set) string {
	refs := s.Refs()
	if len(refs) == 0 {
		return ", which holds no image archive"
	}
	return fmt.Sprintf(" (its archives hold %s)", strings.Join(refs, ", "))
}

func itsOrTheir(refs []string) string {
	if len(refs) > 1 {
		return "their"
	}
	return "its"
}

func platformList(ps []string) string {
	if len(ps) == 0 {
		return "no platform whole (blobs are missing)"
	}
	return strings.Join(ps, ", ")
}

// registryOf is the registry part of an image reference.
func registryOf(ref string) string {
	if i := strings.Index(ref, "/"); i > 0 {
		return ref[:i]
	}
	return "docker.io"
}
