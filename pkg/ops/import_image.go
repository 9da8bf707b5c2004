package ops

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/hostfile"
	"github.com/etcdadm-io/etcdadm/pkg/images"
)

// KindImportImage imports an image archive into the host's containerd.
const KindImportImage Kind = "import-image"

// ImportImage pushes the image archive Source (Archive, as it was read on
// this machine) to the host and imports it into containerd, then checks
// that containerd holds Images with their digests. Snapshotter is the one
// the CRI plugin unpacks images for (containerd's default if empty).
type ImportImage struct {
	Source      string          `json:"source"`
	Archive     *images.Archive `json:"-"`
	Images      []ImageImport   `json:"images"`
	Snapshotter string          `json:"snapshotter,omitempty"`
	Why         string          `json:"why,omitempty"`
}

// ImageImport is one image an import brings to a host.
type ImageImport struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
}

func (ImportImage) Kind() Kind   { return KindImportImage }
func (o ImportImage) Meta() Meta { return Meta{Why: o.Why} }

func (o ImportImage) String() string {
	var refs []string
	for _, im := range o.Images {
		refs = append(refs, fmt.Sprintf("%s (%s)", im.Ref, hostfile.Short(strings.TrimPrefix(im.Digest, "sha256:"))))
	}
	what := filepath.Base(o.Source)
	if o.Archive != nil {
		what = fmt.Sprintf("%s (%s, %s)", what, o.Archive.Form, humanBytes(o.Archive.Size))
	}
	return fmt.Sprintf("import %s from %s into containerd", strings.Join(refs, ", "), what)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// importedMarker separates ctr's listing from the rest of the output.
const importedMarker = "etcdadm: images after the import"

// importImage streams the archive to a private file under the host's
// state directory, imports it into the kubelet's containerd namespace
// (unpacked for the CRI plugin's snapshotter, for the host's own
// platform), removes the file, and checks that containerd now holds every
// image of the operation with the archive's digest.
func importImage(ctx context.Context, e Env, o ImportImage) error {
	name := e.Host().Name
	f, err := os.Open(o.Source)
	if err != nil {
		return fmt.Errorf("import %s: %w", o.Source, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("import %s: %w", o.Source, err)
	}
	if o.Archive != nil && st.Size() != o.Archive.Size {
		return fmt.Errorf("import %s: it changed since it was read (%d bytes, then %d): run again", o.Source, o.Archive.Size, st.Size())
	}
	gz := o.Archive != nil && o.Archive.Gzip
	var refs, others []string
	for _, im := range o.Images {
		refs = append(refs, im.Ref)
	}
	if o.Archive != nil {
		for _, im := range o.Archive.Images {
			if !slices.Contains(refs, im.Ref) && !slices.Contains(others, im.Ref) {
				others = append(others, im.Ref)
			}
		}
	}
	script := ImportScript(path.Join(e.StateDir(), "import"), filepath.Base(o.Source), st.Size(), gz,
		facts.CtrCommand(facts.ContainerdAddress(e.Cluster().Spec.Kubelet.ContainerRuntimeEndpoint)), o.Snapshotter, others...)
	e.Log().Host(name, "importing %s from %s (%d bytes)", strings.Join(refs, ", "), o.Source, st.Size())
	start := time.Now()
	out, err := e.Transport().Run(ctx, script, f)
	if err != nil {
		return fmt.Errorf("import %s from %s: %w", strings.Join(refs, ", "), o.Source, err)
	}
	_, list, ok := bytes.Cut(out, []byte(importedMarker+"\n"))
	if !ok {
		return fmt.Errorf("import %s: the host did not list its images after the import", o.Source)
	}
	have := facts.ParseImages(list)
	for _, want := range o.Images {
		got := "nothing"
		for _, im := range have {
			if im.Ref == want.Ref {
				got = im.Digest
			}
		}
		if got != want.Digest {
			return fmt.Errorf("import %s: containerd holds %s as %s after importing %s, whose digest for it is %s; the image is not the archive's", o.Source, want.Ref, got, o.Source, want.Digest)
		}
	}
	e.Log().Host(name, "imported %s (digests checked) in %s", strings.Join(refs, ", "), time.Since(start).Round(time.Millisecond))
	if len(others) > 0 {
		e.Log().Host(name, "removed again the archive's other images the host did not hold before: %s", strings.Join(others, ", "))
	}
	e.Report(Done{Imported: refs})
	return nil
}

// ImportScript receives size bytes on stdin into a private file of dir,
// imports it with ctr (through gzip -d for a gzip'd archive), removes it
// however the script ends, and lists containerd's images after a marker.
// Files a cut run left in dir go first: the run holds the host's lock.
// ctr imports for the host's own platform: a multi-platform archive need
// not hold the others' blobs. ctr imports every image an archive names:
// those of others the host did not hold before go again (containerd's
// garbage collector then drops their content).
func ImportScript(dir, base string, size int64, gz bool, ctr, snapshotter string, others ...string) string {
	q := shell.Quote
	imp := ctr + " images import"
	if snapshotter != "" {
		imp += " --snapshotter " + q(snapshotter)
	}
	src := `"$f"`
	if gz {
		imp = `gzip -dc "$f" | ` + imp
		src = "-"
	}
	drop := ""
	if len(others) > 0 {
		var qs []string
		for _, r := range others {
			qs = append(qs, q(r))
		}
		drop = fmt.Sprintf(`for r in %s; do printf '%%s\n' "$before" | grep -qxF -- "$r" || %s images rm "$r" >&2 || true; done`, strings.Join(qs, " "), ctr)
	}
	return fmt.Sprintf(`set -e; umask 077; d=%[1]s
mkdir -p "$d"; chmod 0700 "$d"
find "$d" -mindepth 1 -maxdepth 1 -type f -delete
f="$d/%[2]s.$$"
trap 'rm -f "$f"' EXIT
trap 'exit 1' HUP INT TERM
cat > "$f"
n=$(wc -c < "$f")
[ "$n" -eq %[3]d ] || { echo "received $n of %[3]d bytes" >&2; exit 1; }
before=$(%[7]s images ls -q 2>/dev/null || true)
%[4]s %[5]s >&2
rm -f "$f"
%[8]s
echo %[6]s
%[7]s images ls
`, q(dir), SafeName(base), size, imp, src, q(importedMarker), ctr, drop)
}
