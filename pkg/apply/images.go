package apply

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// importedMarker separates ctr's listing from the rest of the output.
const importedMarker = "etcdadm: images after the import"

// importImage streams an image archive from this machine to a private
// file under the host's state directory, imports it into the kubelet's
// containerd namespace (unpacked for the CRI plugin's snapshotter, for the
// host's own platform), removes the file, and checks that containerd now
// holds every image of the operation with the archive's digest.
func (x *Executor) importImage(ctx context.Context, t remote.Transport, name string, op plan.Op) error {
	f, err := os.Open(op.Source)
	if err != nil {
		return fmt.Errorf("import %s: %w", op.Source, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("import %s: %w", op.Source, err)
	}
	if op.Archive != nil && st.Size() != op.Archive.Size {
		return fmt.Errorf("import %s: it changed since it was read (%d bytes, then %d): run again", op.Source, op.Archive.Size, st.Size())
	}
	gz := op.Archive != nil && op.Archive.Gzip
	script := importScript(path.Join(x.StateDir, "import"), filepath.Base(op.Source), st.Size(), gz,
		facts.CtrCommand(facts.ContainerdAddress(x.Cluster.Spec.Kubelet.ContainerRuntimeEndpoint)), op.Snapshotter)
	var refs []string
	for _, im := range op.Images {
		refs = append(refs, im.Ref)
	}
	x.Log.Host(name, "importing %s from %s (%d bytes)", strings.Join(refs, ", "), op.Source, st.Size())
	start := time.Now()
	out, err := t.Run(ctx, script, f)
	if err != nil {
		return fmt.Errorf("import %s from %s: %w", strings.Join(refs, ", "), op.Source, err)
	}
	_, list, ok := bytes.Cut(out, []byte(importedMarker+"\n"))
	if !ok {
		return fmt.Errorf("import %s: the host did not list its images after the import", op.Source)
	}
	have := facts.ParseImages(list)
	for _, want := range op.Images {
		got := "nothing"
		for _, im := range have {
			if im.Ref == want.Ref {
				got = im.Digest
			}
		}
		if got != want.Digest {
			return fmt.Errorf("import %s: containerd holds %s as %s after importing %s, whose digest for it is %s; the image is not the archive's", op.Source, want.Ref, got, op.Source, want.Digest)
		}
	}
	x.Log.Host(name, "imported %s (digests checked) in %s", strings.Join(refs, ", "), time.Since(start).Round(time.Millisecond))
	x.record(name, func(r *HostResult) { r.Imported = append(r.Imported, refs...) })
	return nil
}

// importScript receives size bytes on stdin into a private file of dir,
// imports it with ctr (through gzip -d for a gzip'd archive), removes it
// however the script ends, and lists containerd's images after a marker.
// Files a cut run left in dir go first: the run holds the host's lock.
// ctr imports for the host's own platform: a multi-platform archive need
// not hold the others' blobs.
func importScript(dir, base string, size int64, gz bool, ctr, snapshotter string) string {
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
	return fmt.Sprintf(`set -e; umask 077; d=%[1]s
mkdir -p "$d"; chmod 0700 "$d"
find "$d" -mindepth 1 -maxdepth 1 -type f -delete
f="$d/%[2]s.$$"
trap 'rm -f "$f"' EXIT
trap 'exit 1' HUP INT TERM
cat > "$f"
n=$(wc -c < "$f")
[ "$n" -eq %[3]d ] || { echo "received $n of %[3]d bytes" >&2; exit 1; }
%[4]s %[5]s >&2
rm -f "$f"
echo %[6]s
%[7]s images ls
`, q(dir), safeName(base), size, imp, src, q(importedMarker), ctr)
}

// safeName keeps letters, digits, dots, dashes and underscores of a file
// name, for a name written inside double quotes.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}
