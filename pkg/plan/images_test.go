package plan

// Images: facts of containerd's images in, import operations (or refusals
// and warnings) out. The archives are described in memory: the planner
// never reads them.

import (
	"slices"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/images"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/runtime/kubelet"
)

const (
	etcdRef  = "registry.k8s.io/etcd:3.7.0-0"
	pauseRef = "registry.k8s.io/pause:3.10.2"
	// Digests as an archive has them, and another one, as a pull would.
	etcdDigest   = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	pauseDigest  = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	pulledDigest = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
)

// imageSet is a directory with an OCI-archive of etcd and a gzip'd
// docker-archive of pause, both for linux/amd64.
func imageSet() *images.Set {
	return &images.Set{Dir: "/srv/images", Archives: []*images.Archive{
		{Path: "/srv/images/etcd.tar", Size: 30 << 20, Form: images.FormOCI, Images: []images.Image{
			{Ref: etcdRef, Digest: etcdDigest, MediaType: images.MediaTypeOCIManifest, Platforms: []string{"linux/amd64"}}}},
		{Path: "/srv/images/pause.tar.gz", Size: 300 << 10, Form: images.FormDocker, Gzip: true, Images: []images.Image{
			{Ref: pauseRef, Digest: pauseDigest, MediaType: images.MediaTypeDockerManifest, Platforms: []string{"linux/amd64"}}}},
	}}
}

// withImages gives the host a containerd holding the images (ref ->
// digest), whose sandbox image is the inventory's pause image.
func withImages(hf *facts.Host, ims map[string]string) *facts.Host {
	cd := &facts.Containerd{SandboxImage: pauseRef, SandboxSetting: `sandbox_image under [plugins."io.containerd.grpc.v1.cri"]`, Snapshotter: "overlayfs"}
	for _, ref := range sorted(mapKeys(ims)) {
		cd.Images = append(cd.Images, facts.Image{Ref: ref, Digest: ims[ref]})
	}
	hf.Containerd = cd
	return hf
}

func mapKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func freshHosts(ims map[string]string) map[string]*facts.Host {
	hosts := map[string]*facts.Host{}
	for _, n := range names3 {
		hosts[n] = withImages(emptyHost(n), ims)
	}
	return hosts
}

func airGapped(t *testing.T, c *config.Cluster) *config.Cluster {
	t.Helper()
	cc := *c
	cc.Spec.Images.AirGapped = true
	return &cc
}

func importOps(steps []Op) []ops.ImportImage {
	var out []ops.ImportImage
	for _, op := range steps {
		if op, ok := op.(ops.ImportImage); ok {
			out = append(out, op)
		}
	}
	return out
}

// A new cluster on hosts without images: every host imports each archive
// once, in the prepare stage, before its kubelet restarts and long before
// the manifests are written; the operations name the digests to check.
func TestBuildImportsMissingImages(t *testing.T) {
	c := parseInventory(t, inventoryYAML(3, ""), t.TempDir())
	p := mustBuild(t, Input{Cluster: c, Runtime: rtOf(c), PKI: computePKI(t, c), Hosts: freshHosts(nil), Now: fixedNow, Images: imageSet(), Platform: "linux/amd64"})
	if len(p.Warnings) > 0 {
		t.Errorf("warnings: %v", p.Warnings)
	}
	prep := p.Stages[0]
	for _, n := range names3 {
		steps := stageOps(prep, n)
		imps := importOps(steps)
		if len(imps) != 2 {
			t.Fatalf("%s imports %d archives, want 2:\n%s", n, len(imps), planText(p))
		}
		etcd, pause := imps[0], imps[1]
		if etcd.Source != "/srv/images/etcd.tar" || !slices.Equal(etcd.Images, []ImageImport{{Ref: etcdRef, Digest: etcdDigest}}) || etcd.Snapshotter != "overlayfs" {
			t.Errorf("%s: etcd import %+v", n, etcd)
		}
		if pause.Source != "/srv/images/pause.tar.gz" || !slices.Equal(pause.Images, []ImageImport{{Ref: pauseRef, Digest: pauseDigest}}) {
			t.Errorf("%s: pause import %+v", n, pause)
		}
		_, imp := findOp(steps, isKind(ops.KindImportImage))
		_, restart := findOp(steps, isRun(CmdRestartKube))
		if imp < 0 || restart < 0 || imp > restart {
			t.Errorf("%s: import at %d, kubelet restart at %d: the images must come first\n%v", n, imp, restart, kinds(steps))
		}
	}
	if got := len(importOps(stageOps(p.Stages[1], "n0"))); got != 0 {
		t.Errorf("the start stage imports %d archives", got)
	}
	text := planText(p)
	for _, want := range []string{
		"import registry.k8s.io/etcd:3.7.0-0 (111111111111) from etcd.tar (oci-archive, 30.0 MiB) into containerd (registry.k8s.io/etcd:3.7.0-0: not on the host)",
		"import registry.k8s.io/pause:3.10.2 (222222222222) from pause.tar.gz (docker-archive, 300.0 KiB)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("plan text lacks %q:\n%s", want, text)
		}
	}
}

// Hosts that have the archives' images get nothing: a running cluster
// whose files and images are as planned has nothing to do, archives or not.
func TestBuildHostWithImagesGetsNothing(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	for _, hf := range hosts {
		withImages(hf, map[string]string{etcdRef: etcdDigest, pauseRef: pauseDigest})
	}
	for _, set := range []*images.Set{imageSet(), nil} {
		p := mustBuild(t, Input{Cluster: airGapped(t, w.c), Runtime: kubelet.Runtime{}, PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n0", names3...), Now: fixedNow, Images: set, Platform: "linux/amd64"})
		if !p.Empty() || len(p.Warnings) > 0 {
			t.Errorf("archives %v: the plan is not empty or warns:\n%s", set != nil, planText(p))
		}
	}
}

// With archives, a host is compared by digest too: an etcd pulled from a
// registry (another digest) is replaced by the archive's, without a restart.
func TestBuildImportsOtherDigest(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	for _, hf := range hosts {
		withImages(hf, map[string]string{etcdRef: etcdDigest, pauseRef: pauseDigest})
	}
	withImages(hosts["n1"], map[string]string{etcdRef: pulledDigest, pauseRef: pauseDigest})
	p := mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n0", names3...), Now: fixedNow, Images: imageSet(), Platform: "linux/amd64"})
	if len(p.Stages) != 1 || !slices.Equal(stageHosts(p.Stages[0]), []string{"n1"}) {
		t.Fatalf("want one stage for n1:\n%s", planText(p))
	}
	steps := stageOps(p.Stages[0], "n1")
	if got := kindsOnly(steps); !slices.Equal(got, []ops.Kind{ops.KindImportImage, ops.KindWaitCluster}) {
		t.Errorf("n1's operations %v, want an import and the cluster check", got)
	}
	if !strings.Contains(steps[0].Meta().Why, "the host has it as 333333333333") || anyDisruptive(p) != nil {
		t.Errorf("import %q; disruptive %v", steps[0].Meta().Why, anyDisruptive(p))
	}
}

// An image neither on a host nor in the archives: with archives given, or
// an air-gapped inventory, the plan is refused naming the images and the
// hosts; otherwise it warns that the kubelet will pull them.
func TestBuildMissingImages(t *testing.T) {
	c := parseInventory(t, inventoryYAML(3, ""), t.TempDir())
	pki := computePKI(t, c)
	onlyEtcd := imageSet()
	onlyEtcd.Archives = onlyEtcd.Archives[:1]
	hosts := freshHosts(nil)
	withImages(hosts["n2"], map[string]string{pauseRef: pulledDigest})

	p, err := build(t, Input{Cluster: c, Runtime: rtOf(c), PKI: pki, Hosts: hosts, Now: fixedNow, Images: onlyEtcd, Platform: "linux/amd64"})
	re := mustRefuse(t, p, err)
	if len(re.Refusals) != 2 {
		t.Fatalf("want a refusal for n0 and n1: %v", err)
	}
	for i, n := range []string{"n0", "n1"} {
		r := re.Refusals[i]
		want := "needs registry.k8s.io/pause:3.10.2, which is not on the host and not in /srv/images (its archives hold registry.k8s.io/etcd:3.7.0-0): add its archive there"
		if r.Host != n || !strings.HasPrefix(r.Reason, want) {
			t.Errorf("refusal %+v, want %s: %q", r, n, want)
		}
	}

	p, err = build(t, Input{Cluster: airGapped(t, c), Runtime: kubelet.Runtime{}, PKI: pki, Hosts: hosts, Now: fixedNow, Platform: "linux/amd64"})
	re = mustRefuse(t, p, err)
	if len(re.Refusals) != 3 || !strings.Contains(err.Error(), "n0: needs registry.k8s.io/etcd:3.7.0-0 and registry.k8s.io/pause:3.10.2, which are not on the host, and spec.images.airGapped says the hosts never pull") ||
		!strings.Contains(err.Error(), "n2: needs registry.k8s.io/etcd:3.7.0-0, which is not on the host") {
		t.Errorf("air-gapped refusal:\n%v", err)
	}

	p = mustBuild(t, Input{Cluster: c, Runtime: rtOf(c), PKI: pki, Hosts: hosts, Now: fixedNow, Platform: "linux/amd64"})
	want := []string{
		"registry.k8s.io/etcd:3.7.0-0 is not on n0, n1, n2: the kubelet will pull it from registry.k8s.io;",
		"registry.k8s.io/pause:3.10.2 is not on n0, n1: the kubelet will pull it from registry.k8s.io;",
	}
	if len(p.Warnings) != 2 || !strings.HasPrefix(p.Warnings[0], want[0]) || !strings.HasPrefix(p.Warnings[1], want[1]) {
		t.Errorf("warnings %q, want %q", p.Warnings, want)
	}
	if n := len(importOps(stageOps(p.Stages[0], "n0"))); n != 0 {
		t.Errorf("%d imports without archives", n)
	}
}

// containerd's sandbox image is what Pods start with: another one than the
// inventory's pause image is warned about with the setting to change, and
// imported when an archive holds it; missing on an air-gapped cluster, it
// is refused.
func TestBuildSandboxImage(t *testing.T) {
	c := parseInventory(t, inventoryYAML(3, ""), t.TempDir())
	pki := computePKI(t, c)
	const oldPause = "registry.k8s.io/pause:3.6"
	hosts := freshHosts(map[string]string{etcdRef: etcdDigest, pauseRef: pauseDigest})
	for _, hf := range hosts {
		hf.Containerd.SandboxImage = oldPause
	}
	p, err := build(t, Input{Cluster: airGapped(t, c), Runtime: kubelet.Runtime{}, PKI: pki, Hosts: hosts, Now: fixedNow, Images: imageSet(), Platform: "linux/amd64"})
	re := mustRefuse(t, p, err)
	if len(re.Refusals) != 3 || !strings.Contains(re.Refusals[0].Reason, "needs registry.k8s.io/pause:3.6, which is not on the host and not in /srv/images") {
		t.Errorf("refusals: %v", err)
	}
	wantWarning := `containerd's sandbox image on n0, n1, n2 is registry.k8s.io/pause:3.6 (sandbox_image under [plugins."io.containerd.grpc.v1.cri"]), not the inventory's pause image registry.k8s.io/pause:3.10.2: set it to "registry.k8s.io/pause:3.10.2" in /etc/containerd/config.toml and restart containerd`
	if len(p.Warnings) == 0 || !strings.HasPrefix(p.Warnings[0], wantWarning) {
		t.Errorf("warnings %q, want %q", p.Warnings, wantWarning)
	}
	// The old sandbox image in the archives: imported, with the warning.
	set := imageSet()
	set.Archives = append(set.Archives, &images.Archive{Path: "/srv/images/pause-3.6.tar", Form: images.FormOCI, Images: []images.Image{{Ref: oldPause, Digest: pulledDigest, Platforms: []string{"linux/amd64"}}}})
	p = mustBuild(t, Input{Cluster: airGapped(t, c), Runtime: kubelet.Runtime{}, PKI: pki, Hosts: hosts, Now: fixedNow, Images: set, Platform: "linux/amd64"})
	imps := importOps(stageOps(p.Stages[0], "n1"))
	if len(imps) != 1 || imps[0].Images[0].Ref != oldPause {
		t.Errorf("n1 imports %+v, want the sandbox image alone", imps)
	}
	if len(p.Warnings) != 1 || !strings.HasPrefix(p.Warnings[0], wantWarning) {
		t.Errorf("warnings %q", p.Warnings)
	}
}

// An archive holding the image for another platform only, and a host whose
// containerd cannot be asked, are refused before anything is written.
func TestBuildImagesCannotBeImported(t *testing.T) {
	c := parseInventory(t, inventoryYAML(3, ""), t.TempDir())
	pki := computePKI(t, c)
	p, err := build(t, Input{Cluster: c, Runtime: rtOf(c), PKI: pki, Hosts: freshHosts(nil), Now: fixedNow, Images: imageSet(), Platform: "linux/arm64"})
	re := mustRefuse(t, p, err)
	want := "needs registry.k8s.io/etcd:3.7.0-0, which /srv/images/etcd.tar holds only for linux/amd64, not for linux/arm64"
	if len(re.Refusals) != 6 || !strings.HasPrefix(re.Refusals[0].Reason, want) {
		t.Errorf("refusals %v, want two per host starting %q", err, want)
	}

	hosts := freshHosts(nil)
	hosts["n1"].Containerd = &facts.Containerd{Error: "ctr (containerd's client) is not installed"}
	p, err = build(t, Input{Cluster: c, Runtime: rtOf(c), PKI: pki, Hosts: hosts, Now: fixedNow, Images: imageSet(), Platform: "linux/amd64"})
	re = mustRefuse(t, p, err)
	want = "cannot import registry.k8s.io/etcd:3.7.0-0 and registry.k8s.io/pause:3.10.2: ctr (containerd's client) is not installed; install containerd"
	if len(re.Refusals) != 1 || re.Refusals[0].Host != "n1" || !strings.HasPrefix(re.Refusals[0].Reason, want) {
		t.Errorf("refusals %v, want n1: %q", err, want)
	}
	// Without archives it cannot tell: a warning, or a refusal when air-gapped.
	p = mustBuild(t, Input{Cluster: c, Runtime: rtOf(c), PKI: pki, Hosts: hosts, Now: fixedNow, Platform: "linux/amd64"})
	if len(p.Warnings) != 2 || !strings.Contains(p.Warnings[0], "is not on n0, n1, n2") {
		t.Errorf("warnings %q", p.Warnings)
	}
	_, err = build(t, Input{Cluster: airGapped(t, c), Runtime: kubelet.Runtime{}, PKI: pki, Hosts: hosts, Now: fixedNow, Platform: "linux/amd64"})
	if err == nil || !strings.Contains(err.Error(), "n1: needs registry.k8s.io/etcd:3.7.0-0 and registry.k8s.io/pause:3.10.2, which cannot be looked for (ctr (containerd's client) is not installed)") {
		t.Errorf("air-gapped, no ctr: %v", err)
	}
}
