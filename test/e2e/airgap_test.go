package e2e

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/images"
	"github.com/etcdadm-io/etcdadm/test/lab"
)

// airGapStory is a lab whose hosts have no image and no registry, with
// the image archives an operator would carry.
type airGapStory struct {
	*story
	images string
	// digests are the archives' digests by image: the OCI manifest's as
	// its index.json names it, and for the docker-archive the one etcdadm
	// expects containerd to make.
	digests map[string]string
}

// TestIntegrationAirGap brings up a cluster on hosts with no image at all
// and no route to a registry: an air-gapped inventory is refused without
// archives, naming the images; with --images, the archives (etcd as a
// gzip'd OCI-archive, pause as a docker-archive) are pushed and imported,
// containerd lists their digests, and three members come up healthy; a
// re-apply imports nothing.
func TestIntegrationAirGap(t *testing.T) {
	requireLab(t)
	bin := buildEtcdadm(t)
	l := upLab(t, lab.Options{Hosts: 3, Dir: "/var/tmp/etcdadm-e2e-airgap", NamePrefix: "air", Subnet: 9, NoImages: true})
	dir := t.TempDir()
	s := &airGapStory{story: &story{bin: bin, lab: l, dir: dir, known: filepath.Join(dir, "known_hosts"), file: filepath.Join(dir, "cluster.yaml")}}
	copyFile(t, l.KnownHostsFile, s.known)
	s.write(t, l.Hosts, func(inv string) string {
		return strings.Replace(inv, "  hosts:\n", "  images: {airGapped: true}\n  hosts:\n", 1)
	})
	s.images, s.digests = airGapArchives(t, l, filepath.Join(dir, "images"))
	steps := []struct {
		name string
		run  func(*testing.T, *airGapStory)
	}{
		{"the hosts have no image", stepNoImages},
		{"images list names etcd's and the sandbox's images", stepImagesList},
		{"without archives, an air-gapped inventory is refused, naming the images; nothing is written", stepAirGapRefused},
		{"apply --images imports the archives and brings up 3 healthy members", stepAirGapApply},
		{"a re-apply, with the archives or without, imports nothing", stepAirGapReapply},
	}
	for _, st := range steps {
		if !t.Run(st.name, func(t *testing.T) { st.run(t, s) }) {
			t.Fatalf("stopping the story after %q failed", st.name)
		}
	}
}

// airGapArchives writes the lab's etcd image as a gzip'd OCI-archive and
// its pause image as a docker-archive into dir.
func airGapArchives(t *testing.T, l *lab.Lab, dir string) (string, map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	etcd := filepath.Join(dir, "etcd-3.7.0-0.tar.gz")
	in, err := os.Open(l.Artifacts.EtcdImage)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(etcd)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(out)
	if _, err := io.Copy(zw, in); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	pause := filepath.Join(dir, "pause-3.10.2.tar")
	if err := lab.DockerArchive(l.Artifacts.PauseImage, pause); err != nil {
		t.Fatal(err)
	}
	a, err := images.Read(pause)
	if err != nil {
		t.Fatal(err)
	}
	im, ok := a.Find(lab.PauseImage)
	if !ok || a.Form != images.FormDocker {
		t.Fatalf("the pause archive holds %+v as a %s", a.Images, a.Form)
	}
	return dir, map[string]string{lab.EtcdImage: ociManifestDigest(t, l.Artifacts.EtcdImage), lab.PauseImage: im.Digest}
}

// ociManifestDigest reads the digest of the one manifest an OCI image
// layout tarball's index.json names.
func ociManifestDigest(t *testing.T, tarball string) string {
	t.Helper()
	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s has no index.json", tarball)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != "index.json" {
			continue
		}
		var idx struct{ Manifests []struct{ Digest string } }
		if err := json.NewDecoder(tr).Decode(&idx); err != nil || len(idx.Manifests) != 1 {
			t.Fatalf("index.json of %s: %+v, %v", tarball, idx, err)
		}
		return idx.Manifests[0].Digest
	}
}

// hostImages is what `ctr -n k8s.io images ls` shows on h: digest by name.
func hostImages(t *testing.T, h *lab.Host) map[string]string {
	t.Helper()
	out, err := h.Exec(context.Background(), "ctr", "-n", "k8s.io", "images", "ls")
	if err != nil {
		t.Fatalf("list images on %s: %v", h.Name, err)
	}
	ims := map[string]string{}
	for _, line := range strings.Split(string(out), "\n")[1:] {
		if f := strings.Fields(line); len(f) >= 3 {
			ims[f[0]] = f[2]
		}
	}
	return ims
}

func stepNoImages(t *testing.T, s *airGapStory) {
	for _, h := range s.lab.Hosts {
		if ims := hostImages(t, h); len(ims) > 0 {
			t.Errorf("%s has images: %v", h.Name, ims)
		}
		// Nothing but the lab's own network: no route to any registry.
		out, err := h.Exec(context.Background(), "ip", "route", "show", "default")
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("%s has a default route: %q (%v)", h.Name, out, err)
		}
	}
}

func stepImagesList(t *testing.T, s *airGapStory) {
	r := s.etcdadm(t, "images", "list", "-f", s.file)
	if r.err != nil || r.stdout != lab.EtcdImage+"\n"+lab.PauseImage+"\n" {
		t.Errorf("images list: %q, %v", r.stdout, r.err)
	}
}

func stepAirGapRefused(t *testing.T, s *airGapStory) {
	for _, args := range [][]string{{"apply", "-f", s.file}, {"apply", "-f", s.file, "--dry-run"}} {
		r := s.etcdadm(t, args...)
		if r.err == nil {
			t.Fatalf("%v was not refused", args)
		}
		for _, h := range s.lab.Hosts {
			want := fmt.Sprintf("%s: needs %s and %s, which are not on the host, and spec.images.airGapped says the hosts never pull", h.Name, lab.EtcdImage, lab.PauseImage)
			if !strings.Contains(r.stderr, want) {
				t.Errorf("%v: the refusal does not say %q", args, want)
			}
		}
	}
	untouched(t, s.lab.Hosts)
	for _, h := range s.lab.Hosts {
		if ims := hostImages(t, h); len(ims) > 0 {
			t.Errorf("%s got images: %v", h.Name, ims)
		}
	}
	// The plan with the archives shows every host's imports, writing nothing.
	r := s.etcdadm(t, "apply", "-f", s.file, "--dry-run", "--images", s.images)
	if r.err != nil || strings.Count(r.stdout, "import "+lab.EtcdImage) != 3 || strings.Count(r.stdout, "import "+lab.PauseImage) != 3 {
		t.Errorf("dry run with the archives: %v\n%s", r.err, r.stdout)
	}
	untouched(t, s.lab.Hosts)
}

type applyResult struct {
	Hosts []struct {
		Host     string   `json:"host"`
		Imported []string `json:"imported"`
	} `json:"hosts"`
	Members []struct {
		Name    string `json:"name"`
		Healthy bool   `json:"healthy"`
	} `json:"members"`
}

func (s *airGapStory) apply(t *testing.T, args ...string) applyResult {
	t.Helper()
	r := s.etcdadm(t, append([]string{"apply", "-f", s.file, "-o", "json"}, args...)...)
	if r.err != nil {
		t.Fatalf("apply: %v", r.err)
	}
	var res applyResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("apply -o json: %v\n%s", err, r.stdout)
	}
	return res
}

func stepAirGapApply(t *testing.T, s *airGapStory) {
	res := s.apply(t, "--images", s.images)
	imported := map[string][]string{}
	for _, h := range res.Hosts {
		imported[h.Host] = h.Imported
	}
	for _, h := range s.lab.Hosts {
		if got := imported[h.Name]; !slices.Equal(got, []string{lab.EtcdImage, lab.PauseImage}) {
			t.Errorf("%s imported %v, want etcd's and pause's images", h.Name, got)
		}
		ims := hostImages(t, h)
		for ref, digest := range s.digests {
			if ims[ref] != digest {
				t.Errorf("%s: ctr shows %s as %q, the archive's digest is %s", h.Name, ref, ims[ref], digest)
			}
		}
		if out, err := h.Exec(context.Background(), "sh", "-c", "ls -A /var/lib/etcdadm/import"); err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("%s: pushed archives left: %q (%v)", h.Name, out, err)
		}
	}
	healthy := 0
	for _, m := range res.Members {
		if m.Healthy {
			healthy++
		}
	}
	if healthy != 3 {
		t.Errorf("%d healthy members after apply, want 3: %+v", healthy, res.Members)
	}
	if got := s.members(t); len(got) != 3 {
		t.Errorf("member list %v, want 3 members", got)
	}
}

func stepAirGapReapply(t *testing.T, s *airGapStory) {
	members := s.lab.Hosts
	etcdPIDs := pids(members, "etcd")
	for _, args := range [][]string{{"--images", s.images}, nil} {
		r := s.etcdadm(t, append([]string{"apply", "-f", s.file}, args...)...)
		if r.err != nil {
			t.Fatalf("re-apply %v: %v", args, r.err)
		}
		if !strings.Contains(r.stdout, "nothing to do") || strings.Contains(r.stderr, "import") {
			t.Errorf("re-apply %v:\n%s\n%s", args, r.stdout, r.stderr)
		}
	}
	if got := pids(members, "etcd"); fmt.Sprint(got) != fmt.Sprint(etcdPIDs) {
		t.Errorf("etcd PIDs changed: %v -> %v", etcdPIDs, got)
	}
}
