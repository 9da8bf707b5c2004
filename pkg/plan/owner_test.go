package plan

// The owner and mode of what the plan puts on a host: files are root's with
// their planned mode, and so are the directories the plan owns; a host that
// differs gets them back without a restart.

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

const (
	serverKey = "/etc/kubernetes/pki/etcd/server.key"
	etcdPKI   = "/etc/kubernetes/pki/etcd"
)

func TestCompareOwnerAndMode(t *testing.T) {
	w := newWorld(t, 3)
	hp := w.planned(t, "n0", Bootstrap(w.c))
	key, _ := hp.File(serverKey)
	for _, tc := range []struct {
		name   string
		edit   func(*facts.FileState)
		kind   ChangeKind
		text   string
		absent string
	}{
		{"as planned", func(*facts.FileState) {}, Unchanged, "unchanged", "owner"},
		{"owned by uid 1000", func(st *facts.FileState) { st.UID, st.GID = 1000, 1000 }, OwnerOnly, "owner 1000:1000 -> 0:0, same content", "mode"},
		{"group 5 only", func(st *facts.FileState) { st.GID = 5 }, OwnerOnly, "owner 0:5 -> 0:0", ""},
		{"mode and owner", func(st *facts.FileState) { st.Mode, st.UID = 0o644, 1000 }, ModeOnly, "mode 0644 -> 0600, owner 1000:0 -> 0:0, same content", ""},
		{"mode only", func(st *facts.FileState) { st.Mode = 0o640 }, ModeOnly, "mode 0640 -> 0600, same content", "owner"},
		{"content and owner", func(st *facts.FileState) { st.SHA256, st.UID = "00ff", 1000 }, Update, "owner 1000:0 -> 0:0", ""},
		{"content only", func(st *facts.FileState) { st.SHA256 = "00ff" }, Update, "sha256 00ff -> ", "owner"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hf := w.bootstrapped(t, "n0")
			st := hf.Files[serverKey]
			tc.edit(&st)
			hf.Files[serverKey] = st
			h := hp
			Compare(&h, hf)
			var got *Change
			for i := range h.Changes {
				if h.Changes[i].Path == serverKey {
					got = &h.Changes[i]
				} else if h.Changes[i].Kind != Unchanged {
					t.Errorf("%s: %s, want unchanged", h.Changes[i].Path, h.Changes[i].Kind)
				}
			}
			if got == nil {
				t.Fatalf("no change for %s", serverKey)
			}
			if got.Kind != tc.kind {
				t.Errorf("kind %s, want %s", got.Kind, tc.kind)
			}
			if s := got.String(); !strings.Contains(s, tc.text) || (tc.absent != "" && strings.Contains(s, tc.absent)) {
				t.Errorf("%q: want %q in it and not %q", s, tc.text, tc.absent)
			}
			if old := fmt.Sprintf("%d:%d", st.UID, st.GID); got.Owner != "0:0" || got.OldOwner != old {
				t.Errorf("owner %q, old owner %q; want 0:0 and %q", got.Owner, got.OldOwner, old)
			}
			if got.File.Mode != key.Mode {
				t.Errorf("the change carries mode %04o, want the planned %04o", got.File.Mode, key.Mode)
			}
		})
	}
}

// A file or an owned directory whose owner or mode drifted on a running
// member is set right in place: a write (the executor's write gives the file
// root's owner and its mode) or a chown and chmod, and no restart.
func TestBuildFixesOwnersAndModesWithoutRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(w *world, hf *facts.Host)
		// steps are n1's operations; text must be in the plan's text.
		steps []string
		text  []string
		dirs  []DirChange
	}{
		{
			name:  "a key owned by uid 1000",
			edit:  func(_ *world, hf *facts.Host) { setOwner(hf, serverKey, 1000, 1000) },
			steps: []string{"write " + serverKey, string(ops.KindWaitCluster)},
			text:  []string{"n1: 1 of 13 files would change", "~ " + serverKey + " (owner 1000:1000 -> 0:0, same content)"},
		},
		{
			name:  "the manifest owned by group 1000",
			edit:  func(w *world, hf *facts.Host) { setOwner(hf, w.manifestPath(), 0, 1000) },
			steps: []string{"write /etc/kubernetes/manifests/etcd.yaml", string(ops.KindWaitCluster)},
			text:  []string{"owner 0:1000 -> 0:0, same content"},
		},
		{
			name:  "the manifest at 0644",
			edit:  func(w *world, hf *facts.Host) { setMode(hf, w.manifestPath(), 0o644) },
			steps: []string{"write /etc/kubernetes/manifests/etcd.yaml", string(ops.KindWaitCluster)},
			text:  []string{"mode 0644 -> 0600, same content"},
		},
		{
			name:  "the data directory at 0755",
			edit:  func(w *world, hf *facts.Host) { setMode(hf, w.c.Spec.Etcd.DataDir, 0o755) },
			steps: []string{"run chmod 0700 '/var/lib/etcd'", string(ops.KindWaitCluster)},
			text:  []string{"n1: files up to date (13 files)", "n1: ~ /var/lib/etcd/ (directory mode 0755 -> 0700)", "$ chmod 0700 '/var/lib/etcd'"},
			dirs:  []DirChange{{Path: "/var/lib/etcd", Mode: "0700", OldMode: "0755", Owner: "0:0", OldOwner: "0:0"}},
		},
		{
			name:  "the data directory owned by uid 1000",
			edit:  func(w *world, hf *facts.Host) { setOwner(hf, w.c.Spec.Etcd.DataDir, 1000, 1000) },
			steps: []string{"run chown 0:0 '/var/lib/etcd'", string(ops.KindWaitCluster)},
			text:  []string{"n1: ~ /var/lib/etcd/ (directory owner 1000:1000 -> 0:0)"},
			dirs:  []DirChange{{Path: "/var/lib/etcd", Mode: "0700", OldMode: "0700", Owner: "0:0", OldOwner: "1000:1000"}},
		},
		{
			name: "the manifests directory at 0755, owned by uid 1000",
			edit: func(w *world, hf *facts.Host) {
				setMode(hf, w.c.Spec.Kubelet.StaticPodPath, 0o755)
				setOwner(hf, w.c.Spec.Kubelet.StaticPodPath, 1000, 0)
			},
			steps: []string{"run chown 0:0 '/etc/kubernetes/manifests' && chmod 0700 '/etc/kubernetes/manifests'", string(ops.KindWaitCluster)},
			text:  []string{"(directory mode 0755 -> 0700, owner 1000:0 -> 0:0)"},
			dirs:  []DirChange{{Path: "/etc/kubernetes/manifests", Mode: "0700", OldMode: "0755", Owner: "0:0", OldOwner: "1000:0"}},
		},
		{
			name:  "etcd's certificate directory at 0700",
			edit:  func(_ *world, hf *facts.Host) { setMode(hf, etcdPKI, 0o700) },
			steps: []string{"run chmod 0755 '/etc/kubernetes/pki/etcd'", string(ops.KindWaitCluster)},
			dirs:  []DirChange{{Path: etcdPKI, Mode: "0755", OldMode: "0700", Owner: "0:0", OldOwner: "0:0"}},
		},
		{
			// Parents shared with the rest of the host are not etcdadm's.
			name: "/etc/kubernetes and the kubelet's drop-ins as their owners left them",
			edit: func(_ *world, hf *facts.Host) {
				setMode(hf, "/etc/kubernetes", 0o750)
				setOwner(hf, "/etc/kubernetes/pki", 1000, 1000)
				setMode(hf, "/etc/systemd/system/kubelet.service.d", 0o700)
			},
			text: []string{"nothing to do"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, 3)
			hosts := w.allBootstrapped(t)
			tc.edit(w, hosts["n1"])
			p := mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n0", names3...), Now: fixedNow})
			text := planText(p)
			if got := kinds(opsOf(p, "n1")); strings.Join(got, "\n") != strings.Join(tc.steps, "\n") {
				t.Errorf("n1's operations %q, want %q\n%s", got, tc.steps, text)
			}
			for _, n := range []string{"n0", "n2"} {
				if steps := opsOf(p, n); len(steps) > 0 {
					t.Errorf("%s has operations %v", n, kinds(steps))
				}
			}
			if d := anyDisruptive(p); len(d) > 0 {
				t.Errorf("disruptive operations: %v", d)
			}
			for _, op := range opsOf(p, "n1") {
				if op.Kind() == ops.KindRestartEtcd || op.Kind() == ops.KindWaitMember {
					t.Errorf("n1's member restarts or is waited for: %s", op)
				}
			}
			for _, s := range tc.text {
				if !strings.Contains(text, s) {
					t.Errorf("the plan does not say %q:\n%s", s, text)
				}
			}
			hp, _ := p.FindHost("n1")
			if got, want := mustJSON(t, hp.DirChanges), mustJSON(t, tc.dirs); got != want {
				t.Errorf("directory changes %s, want %s", got, want)
			}
		})
	}
}

// A host being brought up whose data directory exists with the package's
// mode gets etcd's before its member starts; missing owned directories are
// made with theirs, as before.
func TestBuildFreshHostGetsOwnedDirModes(t *testing.T) {
	c := parseInventory(t, inventoryYAML(3, ""), t.TempDir())
	pki := computePKI(t, c)
	hosts := map[string]*facts.Host{}
	for _, n := range names3 {
		hosts[n] = emptyHost(n)
	}
	hosts["n2"].Files[c.Spec.Etcd.DataDir] = facts.FileState{Dir: true, Mode: 0o755}
	p := mustBuild(t, Input{Cluster: c, Runtime: rtOf(c), PKI: pki, Hosts: hosts, Now: fixedNow})
	prep := stageOps(p.Stages[0], "n2")
	chmod, i := findOp(prep, isRun("chmod 0700 '/var/lib/etcd'"))
	if i < 0 {
		t.Fatalf("n2 does not get its data directory's mode: %v", kinds(prep))
	}
	if chmod := as[ops.Run](t, chmod); chmod.Path != "/var/lib/etcd" {
		t.Errorf("chmod op names %q", chmod.Path)
	}
	if _, j := findOp(prep, func(op Op) bool { o, ok := op.(ops.Mkdir); return ok && o.Path == "/var/lib/etcd" }); j >= 0 {
		t.Error("n2's existing data directory is made again")
	}
	if _, j := findOp(stageOps(p.Stages[0], "n0"), func(op Op) bool { o, ok := op.(ops.Mkdir); return ok && o.Path == "/var/lib/etcd" && o.Mode == 0o700 }); j < 0 {
		t.Error("n0's missing data directory is not made 0700")
	}
}

// The command a directory change runs sets it right: run as root on a
// directory as the facts describe it, then read again, it leaves nothing to
// change.
func TestDirChangeCommandConverges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to root needs root; run the tests as root")
	}
	dataDir := filepath.Join(t.TempDir(), "it's data")
	if err := os.Mkdir(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dataDir, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, 1)
	c := parseInventory(t, inventoryYAML(1, `dataDir: "`+dataDir+`"`), w.dir)
	hp, err := HostFiles(c, rtOf(c), w.pki, cfgHost("n0"), Bootstrap(c), AllParts)
	if err != nil {
		t.Fatal(err)
	}
	hf := &facts.Host{Files: map[string]facts.FileState{}}
	read := func() {
		st, err := os.Stat(dataDir)
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		hf.Files[dataDir] = facts.FileState{Dir: true, Mode: st.Mode().Perm(), UID: int(sys.Uid), GID: int(sys.Gid)}
	}
	read()
	Compare(&hp, hf)
	var ch *DirChange
	for i := range hp.DirChanges {
		if hp.DirChanges[i].Path == dataDir {
			ch = &hp.DirChanges[i]
		}
	}
	if ch == nil {
		t.Fatalf("no change for %s: %+v", dataDir, hp.DirChanges)
	}
	if out, err := exec.Command("sh", "-c", ch.Command()).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", ch.Command(), err, out)
	}
	read()
	if st := hf.Files[dataDir]; st.Mode != fs.FileMode(0o700) || st.UID != 0 || st.GID != 0 {
		t.Errorf("after %s: %+v", ch.Command(), st)
	}
	Compare(&hp, hf)
	for _, dc := range hp.DirChanges {
		if dc.Path == dataDir {
			t.Errorf("still a change after its command: %s", dc)
		}
	}
}

func setOwner(hf *facts.Host, p string, uid, gid int) {
	st := hf.Files[p]
	st.UID, st.GID = uid, gid
	hf.Files[p] = st
}

func setMode(hf *facts.Host, p string, mode fs.FileMode) {
	st := hf.Files[p]
	st.Mode = mode
	hf.Files[p] = st
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
