// Package facts reads what the hosts and etcd say before anything is
// decided: per host, in one command, who runs commands, the kubelet, etcd's
// ports and process, the data directory and the member it holds, the etcd
// manifest, the state of every planned file and directory, the CA the host
// trusts, its clock and the work a previous run left pending; from etcd, the
// member list, every member's status, the active alarms, and whether a loss
// of quorum is confirmed.
//
// facts owns the one script per host and the parsing of what it prints;
// it is a leaf: it imports no package that plans or runs (plan, ops,
// gather, execute, pipeline).
package facts

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/apiserver"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// StateDir is etcdadm's own directory on a host: the lock and the markers
// of pending work live there.
const StateDir = "/var/lib/etcdadm"

// PendingDir holds one marker file per piece of work a run recorded before
// starting it, removed once done, so that a later run finishes it.
const PendingDir = StateDir + "/" + pendingName

const (
	pendingName = "pending"
	lockName    = "lock"
)

// Pending work a marker can record.
const (
	PendingKubeletRestart = "kubelet-restart"
	PendingEtcdRestart    = "etcd-restart"
	// PendingRecover is on the host whose data a recovery keeps, from
	// before its first change until every reachable host is back.
	PendingRecover = "recover"
	// PendingRejoin, followed by a host's name, is on the host whose data
	// a recovery keeps, one for each other host the recovery dropped: that
	// host's old data is the recovered cluster's, and it joins again once
	// it is back.
	PendingRejoin = "rejoin-"
	// PendingMoveFrom, followed by an address, is on the new host of a
	// member that moves from that address, until the move is done.
	PendingMoveFrom = "move-from-"
	// PendingRestore, followed by the snapshot's sha256 and the restored
	// cluster's token, is on every host from before a restore stops any
	// member until it is done or aborted.
	PendingRestore = "restore-"
	// PendingDefrag is on the host of a member while it is defragmented.
	PendingDefrag = "defrag"
)

// BackupDir holds, under the state directory, one directory per run with
// what it replaced or moved away.
const BackupDir = StateDir + "/" + backupName

const backupName = "backup"

// KeptFile, in a run's backup directory, says that it holds data a
// restore or a recovery replaced: pruning never removes such a directory.
// Each line is "WHAT PATH REF": what the data was (Kept.What), its path on
// the host, and what replaced it.
const KeptFile = "KEPT"

// What a run's backup directory keeps for good: a data directory's
// contents as they were before a restore, or before a recovery moved them
// aside.
const (
	KeptPreRestore  = "pre-restore"
	KeptPreRecovery = "pre-recovery"
)

// Kept is data a run's backup directory holds for good.
type Kept struct {
	// Dir is the run's backup directory.
	Dir string `json:"dir"`
	// What is KeptPreRestore or KeptPreRecovery.
	What string `json:"what"`
	// Path is where the data was on the host, under Dir now.
	Path string `json:"path"`
	// Ref names what replaced it: the restore's record.
	Ref string `json:"ref,omitempty"`
}

// Request says what to read on one host.
type Request struct {
	DataDir      string
	ManifestPath string
	// HeldManifestPath is where a restart parks the manifest while the
	// member stops: read as the host's Manifest when ManifestPath is
	// missing (a run cut in the middle of a restart); "" for none.
	HeldManifestPath string
	// CAPath is the etcd CA file etcd trusts (trusted-ca-file).
	CAPath string
	// Files are the planned files: state, and content for certificates.
	Files []string
	// Dirs are the planned directories.
	Dirs []string
	// ClientPort is etcd's client port, whose listener is etcd's process.
	ClientPort int
	// StateDir is etcdadm's directory on the host; StateDir when empty.
	StateDir string
	// ContainerdAddress is the socket of the containerd whose images are
	// read; DefaultContainerdAddress when empty.
	ContainerdAddress string
	// NoMember reads nothing of a member (kubelet, etcd's ports and
	// process, data directory, manifest, images): for a control-plane host
	// of an external cluster. DataDir and ManifestPath are not used.
	NoMember bool
	// EtcdUnit, when etcd runs as a systemd service, is the unit's name:
	// its state is read, ManifestPath is its environment file, and
	// containerd is not read.
	EtcdUnit string
	// Lease is how long the host's lock lasts unless its run renews it;
	// DefaultLease when 0. Takeover is the ID of a run whose lease may be
	// taken before it runs out: a run known to have ended.
	Lease    time.Duration
	Takeover string
	// ControlPlaneDir, when set, is the manifests directory whose
	// kube-apiserver (and the rest of kubeadm's control plane) is read:
	// on a control-plane host.
	ControlPlaneDir string
}

func (r Request) stateDir() string {
	if r.StateDir == "" {
		return StateDir
	}
	return r.StateDir
}

// FileState is a file or directory as a host has it.
type FileState struct {
	Mode   fs.FileMode `json:"mode"`
	UID    int         `json:"uid"`
	GID    int         `json:"gid"`
	Dir    bool        `json:"dir,omitempty"`
	SHA256 string      `json:"sha256,omitempty"`
	// Data is the content of certificates (.crt), for showing what changes.
	Data []byte `json:"-"`
}

// Listener is a process listening on one of etcd's ports.
type Listener struct {
	Port    int    `json:"port"`
	Process string `json:"process"`
	PID     int    `json:"pid,omitempty"`
	Line    string `json:"-"`
}

// Process identifies one process across restarts: a PID may be reused, a
// PID with its start time may not.
type Process struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
	// Cgroup is the pod's cgroup directory when the process runs in a Pod.
	Cgroup string `json:"cgroup,omitempty"`
}

// DataDir is what etcd's data directory holds.
type DataDir struct {
	Exists  bool `json:"exists"`
	Entries int  `json:"entries"`
	// HasWAL is set when the directory holds a member (member/wal/*.wal).
	HasWAL bool `json:"hasWAL"`
	// MemberID and ClusterID are read from the WAL's metadata; 0 when
	// they could not be read.
	MemberID  uint64 `json:"memberID,omitempty"`
	ClusterID uint64 `json:"clusterID,omitempty"`
}

// Empty reports whether there is nothing in the directory, or no directory.
func (d DataDir) Empty() bool { return d.Entries == 0 }

// Host is what one host has.
type Host struct {
	Name string `json:"name"`
	// UID is the user commands run as; 0 is root (directly or through sudo).
	UID        int    `json:"uid"`
	Kubelet    string `json:"kubelet,omitempty"`
	KubeletBin bool   `json:"kubeletUsrBin"`
	// KubeletActive is what `systemctl is-active kubelet` says.
	KubeletActive string               `json:"kubeletActive,omitempty"`
	NoSS          bool                 `json:"-"`
	Listeners     []Listener           `json:"listeners,omitempty"`
	Etcd          []Process            `json:"etcdProcess,omitempty"`
	DataDir       DataDir              `json:"dataDir"`
	Manifest      *Manifest            `json:"manifest,omitempty"`
	Files         map[string]FileState `json:"files"`
	// CAData is the host's etcd CA file; TrustedCAs its certificates in order.
	CAData     []byte              `json:"-"`
	TrustedCAs []*x509.Certificate `json:"-"`
	// ClockSkew is the host's clock minus this machine's, within ClockError.
	ClockSkew  time.Duration `json:"clockSkew"`
	ClockError time.Duration `json:"clockError"`
	Pending    []string      `json:"pending,omitempty"`
	// Kept are the backups of data a restore or a recovery replaced.
	Kept []Kept `json:"kept,omitempty"`
	// LockHolder says who holds the host's lock when another run does;
	// LockRun is that run's ID, LockUntil when its lease runs out unless
	// renewed (zero for a lock of an etcdadm before leases).
	LockHolder string    `json:"-"`
	LockRun    string    `json:"-"`
	LockUntil  time.Time `json:"-"`
	// Containerd is what containerd has; nil when it was not read.
	Containerd *Containerd `json:"containerd,omitempty"`
	// EtcdActive is what `systemctl is-active` says of etcd's unit, when
	// etcd runs as a systemd service (Request.EtcdUnit).
	EtcdActive string `json:"etcdActive,omitempty"`
	// Arch is the machine's architecture, as `uname -m` says it.
	Arch string `json:"arch,omitempty"`
	// APIServer is the control plane kubeadm runs on the host; nil when
	// it was not read.
	APIServer *APIServer `json:"apiserver,omitempty"`
}

// HasPending reports whether a marker records the work.
func (h *Host) HasPending(what string) bool {
	for _, p := range h.Pending {
		if p == what {
			return true
		}
	}
	return false
}

// RunsEtcd reports whether an etcd process listens on the client port.
func (h *Host) RunsEtcd() bool { return len(h.Etcd) > 0 }

// Script is the command that reads req on a host. It changes nothing.
func Script(req Request) (string, error) {
	var b strings.Builder
	q := shell.Quote
	paths := append(append([]string{req.CAPath}, req.Files...), req.Dirs...)
	if !req.NoMember {
		paths = append(paths, req.DataDir, req.ManifestPath)
	}
	for _, p := range paths {
		if !path.IsAbs(p) || strings.ContainsAny(p, "\n") {
			return "", fmt.Errorf("path %q is not absolute", p)
		}
	}
	port := req.ClientPort
	if port == 0 {
		port = 2379
	}
	// Few processes: every fork costs, and a fleet's diff runs this on each
	// host at once. Contents are printed by the shell itself.
	b.WriteString("export LC_ALL=C\n")
	b.WriteString("echo \"clock $(date +%s.%N)\"\n")
	b.WriteString("echo \"uid $(id -u)\"\n")
	if !req.NoMember {
		memberScript(&b, req, port)
	}
	// "|" lines hold a file line by line; "|-" a last line without its newline.
	b.WriteString(`show() { [ -f "$2" ] || return 0; printf '%s\n' "$1"; while IFS= read -r l; do printf '| %s\n' "$l"; done < "$2"; [ -z "$l" ] || printf '|- %s\n' "$l"; }` + "\n")
	switch {
	case req.NoMember:
	case req.EtcdUnit != "":
		fmt.Fprintf(&b, "show envfile %s\n", q(req.ManifestPath))
	default:
		if req.HeldManifestPath != "" {
			fmt.Fprintf(&b, "if [ -f %s ]; then show manifest %[1]s; else show manifest %s; fi\n", q(req.ManifestPath), q(req.HeldManifestPath))
		} else {
			fmt.Fprintf(&b, "show manifest %s\n", q(req.ManifestPath))
		}
	}
	fmt.Fprintf(&b, "show ca %s\n", q(req.CAPath))
	if req.ControlPlaneDir != "" {
		if !path.IsAbs(req.ControlPlaneDir) {
			return "", fmt.Errorf("path %q is not absolute", req.ControlPlaneDir)
		}
		apiserverScript(&b, req.ControlPlaneDir)
	}
	if len(req.Files) > 0 {
		b.WriteString("set --\nfor f in")
		for _, f := range req.Files {
			b.WriteString(" " + q(f))
		}
		b.WriteString(`; do if [ -f "$f" ]; then set -- "$@" "$f"; elif [ -e "$f" ]; then printf 'other %s\n' "$f"; stat -L -c 'omode %f %u %g' -- "$f"; fi; done` + "\n")
		b.WriteString(`if [ $# -gt 0 ]; then printf 'regular %s\n' "$@"; sha256sum -- "$@" | while IFS= read -r l; do printf 'sum %s\n' "${l%% *}"; done; stat -L -c 'rmode %f %u %g' -- "$@"` + "\n")
		b.WriteString(`for f in "$@"; do case "$f" in *.crt) show "data $f" "$f";; esac; done; fi` + "\n")
	}
	if len(req.Dirs) > 0 {
		// One stat for every directory there, as for the files.
		b.WriteString("set --\nfor f in")
		for _, f := range req.Dirs {
			b.WriteString(" " + q(f))
		}
		b.WriteString(`; do [ -e "$f" ] && set -- "$@" "$f"; done` + "\n")
		b.WriteString(`if [ $# -gt 0 ]; then printf 'other %s\n' "$@"; stat -L -c 'omode %f %u %g' -- "$@"; fi` + "\n")
	}
	addr := req.ContainerdAddress
	if addr == "" {
		addr = DefaultContainerdAddress
	}
	if !req.NoMember && req.EtcdUnit == "" {
		b.WriteString(containerdScript(addr))
	}
	fmt.Fprintf(&b, "for m in %s/*; do [ -f \"$m\" ] && printf 'pending %%s\\n' \"${m##*/}\"; done\n", q(path.Join(req.stateDir(), pendingName)))
	// A mark whose data is not there (a run cut before its move, which
	// left the directory empty) says nothing.
	fmt.Fprintf(&b, "for k in %s/*/%s; do [ -f \"$k\" ] || continue; r=${k%%/*}; while read -r w p x; do [ -n \"$(ls -A \"$r$p\" 2>/dev/null)\" ] && printf 'kept %%s %%s %%s %%s\\n' \"$r\" \"$w\" \"$p\" \"$x\"; done < \"$k\"; done\n", q(path.Join(req.stateDir(), backupName)), KeptFile)
	b.WriteString("echo end\n")
	return b.String(), nil
}

// memberScript reads what only a member's host has: the kubelet, who holds
// etcd's ports and runs its process, and the data directory.
func memberScript(b *strings.Builder, req Request, port int) {
	b.WriteString("echo \"kubelet $(command -v kubelet 2>/dev/null)\"\n")
	b.WriteString("[ -x /usr/bin/kubelet ] && echo kubelet-usr-bin\n")
	b.WriteString("echo \"kubelet-active $(systemctl is-active kubelet 2>/dev/null)\"\n")
	b.WriteString("echo \"arch $(uname -m)\"\n")
	if req.EtcdUnit != "" {
		fmt.Fprintf(b, "echo \"etcd-active $(systemctl is-active %s 2>/dev/null)\"\n", shell.Quote(req.EtcdUnit))
	}
	b.WriteString("if command -v ss >/dev/null 2>&1; then\n")
	filter := "2379 or sport = :2380 or sport = :2381"
	if port < 2379 || port > 2381 {
		filter += " or sport = :" + strconv.Itoa(port)
	}
	b.WriteString(processes(filter, port, true))
	b.WriteString("else echo no-ss; fi\n")
	fmt.Fprintf(b, "d=%s\n", shell.Quote(req.DataDir))
	b.WriteString(`if [ -d "$d" ]; then n=0; for e in "$d"/* "$d"/.[!.]* "$d"/..?*; do if [ -e "$e" ] || [ -L "$e" ]; then n=$((n+1)); fi; done; echo "datadir $n"; fi` + "\n")
	b.WriteString(`for w in "$d"/member/wal/*.wal; do [ -f "$w" ] && echo "wal $(head -c 4096 "$w" | base64 -w 0)"; break; done` + "\n")
}

// Gather reads req on the host in one command. With holder set it also
// takes the host's lock (see Lock), which the returned Lock holds until
// released; without, it writes nothing on the host.
func Gather(ctx context.Context, t remote.Transport, req Request, holder string) (*Host, *Lock, error) {
	script, err := Script(req)
	if err != nil {
		return nil, nil, err
	}
	before := time.Now()
	var out []byte
	var lock *Lock
	if holder == "" {
		out, err = t.Run(ctx, script, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("read the host's state: %w", err)
		}
	} else {
		lock = newLock(t, req, holder)
		out, err = t.Run(ctx, lock.acquireScript(script), nil)
		if err != nil {
			return refusedLock(t, out, err)
		}
		lock.start(before)
	}
	after := time.Now()
	h, err := Parse(out, before, after)
	if err != nil {
		lock.Release()
		return nil, nil, fmt.Errorf("read the host's state on %s: %w", t.Host(), err)
	}
	h.Name = t.Host()
	return h, lock, nil
}

// Parse reads the output of Script, run between before and after.
func Parse(out []byte, before, after time.Time) (*Host, error) {
	h := &Host{Files: map[string]FileState{}}
	ended := false
	var p parser
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if content, ok := strings.CutPrefix(line, "|- "); ok {
			if p.block == nil {
				return nil, fmt.Errorf("unexpected line %q", line)
			}
			*p.block = append(*p.block, content...)
			continue
		}
		if content, ok := strings.CutPrefix(line, "| "); ok || line == "|" {
			if p.block == nil {
				return nil, fmt.Errorf("unexpected line %q", line)
			}
			*p.block = append(append(*p.block, content...), '\n')
			continue
		}
		if err := p.endBlock(h); err != nil {
			return nil, err
		}
		tag, rest, _ := strings.Cut(line, " ")
		var err error
		switch tag {
		case "clock":
			err = h.parseClock(rest, before, after)
		case "uid":
			h.UID, err = strconv.Atoi(strings.TrimSpace(rest))
		case "kubelet":
			h.Kubelet = strings.TrimSpace(rest)
		case "kubelet-usr-bin":
			h.KubeletBin = true
		case "kubelet-active":
			h.KubeletActive = strings.TrimSpace(rest)
		case "arch":
			h.Arch = strings.TrimSpace(rest)
		case "etcd-active":
			h.EtcdActive = strings.TrimSpace(rest)
		case "no-ss":
			h.NoSS = true
		case "listen":
			h.Listeners = append(h.Listeners, parseListener(rest))
		case "proc":
			pr, ok := parseProcess(rest)
			if !ok {
				return nil, fmt.Errorf("unexpected line %q", line)
			}
			h.Etcd = append(h.Etcd, pr)
		case "datadir":
			h.DataDir.Exists = true
			h.DataDir.Entries, err = strconv.Atoi(strings.TrimSpace(rest))
		case "wal":
			h.DataDir.HasWAL = true
			var b []byte
			if b, err = base64.StdEncoding.DecodeString(rest); err == nil {
				// An unreadable WAL still holds a member; its ID stays unknown.
				h.DataDir.MemberID, h.DataDir.ClusterID, _ = WALMetadata(b)
			}
		case "cp-read", "cp-admin", "cp-restart-held", "cp-running", "cp-held", "cp-mtime", "cp-btime", "cp-proc":
			err = h.parseAPIServer(tag, rest)
		case "manifest", "envfile", "ca", "data", "apiserver", "apiserver-held":
			p.start(tag, rest)
		case "regular":
			p.regular = append(p.regular, rest)
		case "sum":
			// sha256sum marks a name it had to escape with a backslash.
			p.sums = append(p.sums, strings.TrimPrefix(rest, "\\"))
		case "rmode":
			var st FileState
			if st, err = parseMode(rest); err == nil {
				p.rmodes = append(p.rmodes, st)
			}
		case "other":
			p.other = append(p.other, rest)
		case "omode":
			var st FileState
			if st, err = parseMode(rest); err == nil {
				p.omodes = append(p.omodes, st)
			}
		case "pending":
			h.Pending = append(h.Pending, strings.TrimSpace(rest))
		case "kept":
			if k, ok := parseKept(rest); ok {
				h.Kept = append(h.Kept, k)
			}
		case "containerd", "image", "containerd-conf":
			h.parseContainerd(tag, rest)
		case "end":
			ended = true
		case "":
		default:
			return nil, fmt.Errorf("unexpected line %q", line)
		}
		if err != nil {
			return nil, fmt.Errorf("line %q: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if err := p.endBlock(h); err != nil {
		return nil, err
	}
	if !ended {
		return nil, errors.New("the output ended early")
	}
	if err := p.files(h); err != nil {
		return nil, err
	}
	return h, nil
}

// parser keeps what spans lines: a file's content, and the lists of files
// whose state comes in order from one command each.
type parser struct {
	tag, path      string
	block          *[]byte
	regular, sums  []string
	rmodes, omodes []FileState
	other          []string
	data           map[string][]byte
}

func (p *parser) start(tag, path string) {
	p.tag, p.path = tag, path
	b := []byte{}
	p.block = &b
}

func (p *parser) endBlock(h *Host) error {
	if p.block == nil {
		return nil
	}
	b := *p.block
	switch p.tag {
	case "manifest":
		h.Manifest = ParseManifest(b)
	case "envfile":
		h.Manifest = ParseEnvFile(b)
	case "apiserver":
		if h.APIServer == nil {
			h.APIServer = &APIServer{}
		}
		h.APIServer.Manifest = apiserver.Parse(b)
	case "apiserver-held":
		if h.APIServer == nil {
			h.APIServer = &APIServer{}
		}
		h.APIServer.HeldManifest = apiserver.Parse(b)
	case "ca":
		h.CAData = b
		h.TrustedCAs = ParseCerts(b)
	case "data":
		if p.data == nil {
			p.data = map[string][]byte{}
		}
		p.data[p.path] = b
	}
	p.block = nil
	return nil
}

// files pairs every path with its state, by order.
func (p *parser) files(h *Host) error {
	if len(p.sums) != len(p.regular) || len(p.rmodes) != len(p.regular) || len(p.omodes) != len(p.other) {
		return fmt.Errorf("the files changed while they were read (%d files, %d sums, %d modes; %d others, %d modes): try again",
			len(p.regular), len(p.sums), len(p.rmodes), len(p.other), len(p.omodes))
	}
	for i, path := range p.regular {
		st := p.rmodes[i]
		st.SHA256 = p.sums[i]
		st.Data = p.data[path]
		h.Files[path] = st
	}
	for i, path := range p.other {
		h.Files[path] = p.omodes[i]
	}
	return nil
}

// parseKept reads "DIR WHAT PATH [REF]"; a line that says less is not a mark.
func parseKept(rest string) (Kept, bool) {
	f := strings.Fields(rest)
	if len(f) < 3 {
		return Kept{}, false
	}
	k := Kept{Dir: f[0], What: f[1], Path: f[2]}
	if len(f) > 3 {
		k.Ref = f[3]
	}
	return k, true
}

// parseMode reads "<hex mode> <uid> <gid>" as stat -c '%f %u %g' prints it.
func parseMode(rest string) (FileState, error) {
	f := strings.Fields(rest)
	if len(f) != 3 {
		return FileState{}, errors.New("want mode, uid and gid")
	}
	raw, err := strconv.ParseUint(f[0], 16, 32)
	if err != nil {
		return FileState{}, err
	}
	st := FileState{Mode: fs.FileMode(raw&0o777) | specialBits(raw), Dir: raw&0o170000 == 0o040000}
	if st.UID, err = strconv.Atoi(f[1]); err != nil {
		return FileState{}, err
	}
	if st.GID, err = strconv.Atoi(f[2]); err != nil {
		return FileState{}, err
	}
	return st, nil
}

func (h *Host) parseClock(rest string, before, after time.Time) error {
	secs, frac, _ := strings.Cut(strings.TrimSpace(rest), ".")
	s, err := strconv.ParseInt(secs, 10, 64)
	if err != nil {
		return err
	}
	var ns int64
	if frac != "" && frac != "N" {
		frac = (frac + "000000000")[:9]
		if ns, err = strconv.ParseInt(frac, 10, 64); err != nil {
			return err
		}
	}
	remoteNow := time.Unix(s, ns)
	mid := before.Add(after.Sub(before) / 2)
	h.ClockSkew = remoteNow.Sub(mid)
	h.ClockError = after.Sub(before)/2 + time.Millisecond
	return nil
}

func specialBits(raw uint64) fs.FileMode {
	var m fs.FileMode
	if raw&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if raw&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if raw&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// parseListener reads one line of `ss -Hltnp`.
func parseListener(line string) Listener {
	l := Listener{Line: line, Process: "an unknown process"}
	fields := strings.Fields(line)
	if len(fields) >= 4 {
		if i := strings.LastIndex(fields[3], ":"); i >= 0 {
			l.Port, _ = strconv.Atoi(fields[3][i+1:])
		}
	}
	if i := strings.Index(line, `(("`); i >= 0 {
		if j := strings.Index(line[i+3:], `"`); j >= 0 {
			l.Process = line[i+3 : i+3+j]
		}
	}
	if i := strings.Index(line, "pid="); i >= 0 {
		end := i + 4
		for end < len(line) && line[end] >= '0' && line[end] <= '9' {
			end++
		}
		l.PID, _ = strconv.Atoi(line[i+4 : end])
	}
	return l
}

// ParseCerts reads every certificate of a PEM bundle, in order.
func ParseCerts(data []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

// ProcessScript prints the etcd processes listening on the client port, as
// Script does: "proc <pid> <start> <pod cgroup directory or ->" lines. The
// kubelet removes a pod's cgroup once it is done with the pod.
func ProcessScript(port int) string {
	if port == 0 {
		port = 2379
	}
	return processes(strconv.Itoa(port), port, false) + "true\n"
}

// processes lists the listeners on the ss filter's ports (when listen is
// set) and the processes on the client port, with shell builtins only but
// for ss. `ss -p` reads the file descriptors of every process on the host
// to name the listeners' owners, the most costly part of the facts: it runs
// only when a plain `ss` shows something listening on those ports.
func processes(filter string, port int, listen bool) string {
	return tagged(filter, strconv.Itoa(port), listen, "proc")
}

// tagged is processes for the port a shell word names ("$port"), each
// process printed on a line starting with tag.
func tagged(filter, port string, listen bool, tag string) string {
	printListen := ""
	if listen {
		printListen = `case $l in *:2379\ *|*:2380\ *|*:2381\ *) printf 'listen %s\n' "$l";; esac; `
	}
	return fmt.Sprintf(`ssout=$(ss -Hltn "( sport = :%[1]s )" 2>/dev/null); [ -z "$ssout" ] || ssout=$(ss -Hltnp "( sport = :%[1]s )" 2>/dev/null); pids=
while IFS= read -r l; do [ -n "$l" ] || continue; %[3]scase $l in *:%[2]s\ *) r=$l; while :; do case $r in *pid=*) r=${r#*pid=}; p=${r%%%%,*}; case " $pids " in *" $p "*) ;; *) pids="$pids $p";; esac;; *) break;; esac; done;; esac; done <<EOF
$ssout
EOF
for p in $pids; do
  [ -r /proc/$p/stat ] || continue
  read -r st < /proc/$p/stat; st=${st##*) }; set -- $st; start=${20}; cg=-
  while IFS= read -r cl; do
    case $cl in *:memory:*) cp=${cl#*:memory:}; base=/sys/fs/cgroup/memory;; 0::*) [ "$cg" = - ] || continue; cp=${cl#0::}; base=/sys/fs/cgroup;; *) continue;; esac
    acc=; found=; oifs=$IFS; IFS=/
    for comp in $cp; do [ -n "$comp" ] || continue; acc="$acc/$comp"; case $comp in pod*|*-pod*) found=1; break;; esac; done
    IFS=$oifs
    [ -n "$found" ] && cg=$base$acc
  done < /proc/$p/cgroup
  echo "%[4]s $p $start $cg"
done
`, filter, port, printListen, tag)
}

// ParseProcesses reads the output of ProcessScript.
func ParseProcesses(out []byte) []Process {
	var ps []Process
	for _, line := range strings.Split(string(out), "\n") {
		if p, ok := parseProcess(strings.TrimPrefix(line, "proc ")); ok && strings.HasPrefix(line, "proc ") {
			ps = append(ps, p)
		}
	}
	return ps
}

func parseProcess(rest string) (Process, bool) {
	f := strings.Fields(rest)
	if len(f) < 2 {
		return Process{}, false
	}
	var p Process
	var err error
	if p.PID, err = strconv.Atoi(f[0]); err != nil {
		return Process{}, false
	}
	if p.Start, err = strconv.ParseUint(f[1], 10, 64); err != nil {
		return Process{}, false
	}
	if len(f) > 2 && f[2] != "-" {
		p.Cgroup = f[2]
	}
	return p, true
}

// Same reports whether p and q are one process.
func (p Process) Same(q Process) bool { return p.PID == q.PID && p.Start == q.Start }

// Processes returns the etcd processes listening on the host's client port.
func Processes(ctx context.Context, t remote.Transport, port int) ([]Process, error) {
	out, err := t.Run(ctx, ProcessScript(port), nil)
	if err != nil {
		return nil, fmt.Errorf("look for etcd's process: %w", err)
	}
	return ParseProcesses(out), nil
}
