package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// labState is everything teardown needs, saved in Dir/lab.json as soon as
// each thing exists, so a crashed run can be cleaned up.
type labState struct {
	Options Options
	Bridges []bridgeState
	Hosts   []hostState
}

type bridgeState struct {
	Name string
	CIDR string `json:",omitempty"` // address of the root namespace, if any
	// Unreachable is a network the root namespace must not reach: it gets
	// an "unreachable" route, so nothing is sent out of the machine's
	// default route either.
	Unreachable string `json:",omitempty"`
}

type hostState struct {
	Name    string
	NetNS   string
	Address string
	Bastion bool `json:",omitempty"`
	Links   []linkState
	// NetNSInode is the network namespace's inode, for diagnostics.
	NetNSInode uint64 `json:",omitempty"`
	// MntNSInode identifies the host's mount namespace, for processes
	// that entered it without its network namespace.
	MntNSInode uint64 `json:",omitempty"`
	AnchorPID  int    `json:",omitempty"`
}

type linkState struct {
	Veth    string // name of the root namespace end
	Inner   string // name inside the host
	Bridge  string
	Address string // CIDR inside the host
}

func statePath(dir string) string { return filepath.Join(dir, "lab.json") }

func (l *Lab) saveState() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return writeState(l.state)
}

func writeState(st *labState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	p := statePath(st.Options.Dir)
	if err := os.WriteFile(p+".tmp", b, 0o644); err != nil {
		return fmt.Errorf("save lab state: %w", err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		return fmt.Errorf("save lab state: %w", err)
	}
	return nil
}

func loadState(dir string) (*labState, error) {
	b, err := os.ReadFile(statePath(dir))
	if err != nil {
		return nil, err
	}
	var st labState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("read lab state %s: %w", statePath(dir), err)
	}
	return &st, nil
}

// plan names and addresses everything; nothing exists yet.
func (st *labState) plan() {
	o := st.Options
	outerNet := fmt.Sprintf("198.18.%d.", o.Subnet)
	innerNet := fmt.Sprintf("198.19.%d.", o.Subnet)
	outer := bridgeState{Name: o.NamePrefix + "br0", CIDR: outerNet + "1/24"}
	st.Bridges = []bridgeState{outer}
	hostNet, hostBridge := outerNet, outer.Name
	if o.Bastion {
		inner := bridgeState{Name: o.NamePrefix + "br1", Unreachable: innerNet + "0/24"}
		st.Bridges = append(st.Bridges, inner)
		hostNet, hostBridge = innerNet, inner.Name
		st.Hosts = append(st.Hosts, hostState{
			Name: "bastion", NetNS: o.NamePrefix + "-bastion", Address: outerNet + "2", Bastion: true,
			Links: []linkState{
				{Veth: o.NamePrefix + "vb0", Inner: "eth0", Bridge: outer.Name, Address: outerNet + "2/24"},
				{Veth: o.NamePrefix + "vb1", Inner: "eth1", Bridge: inner.Name, Address: innerNet + "2/24"},
			},
		})
	}
	for i := 0; i < o.Hosts; i++ {
		name := o.NamePrefix + strconv.Itoa(i)
		addr := hostNet + strconv.Itoa(o.FirstOctet+i)
		st.Hosts = append(st.Hosts, hostState{
			Name: name, NetNS: name, Address: addr,
			Links: []linkState{{Veth: o.NamePrefix + "v" + strconv.Itoa(i), Inner: "eth0", Bridge: hostBridge, Address: addr + "/24"}},
		})
	}
}

func kubeletSysctls() []string {
	return []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops", "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}
}

func sysctlPath(k string) string { return "/proc/sys/" + k }

// sysctlRecord keeps the kernel settings kubelet changes as they were before
// the first lab kubelet, machine-wide, so that labs running side by side
// restore the original values, whichever goes down last.
const sysctlRecord = "/run/etcdadm-lab-sysctls.json"

func recordSysctls() error {
	if _, err := os.Stat(sysctlRecord); err == nil {
		return nil
	}
	vals := map[string]string{}
	for _, k := range kubeletSysctls() {
		if v, err := os.ReadFile(sysctlPath(k)); err == nil {
			vals[k] = strings.TrimSpace(string(v))
		}
	}
	b, err := json.Marshal(vals)
	if err != nil {
		return err
	}
	if err := os.WriteFile(sysctlRecord, b, 0o644); err != nil {
		return fmt.Errorf("record kernel settings: %w", err)
	}
	return nil
}

// restoreSysctls puts the recorded settings back once no kubelet runs.
func restoreSysctls() error {
	b, err := os.ReadFile(sysctlRecord)
	if err != nil {
		return nil
	}
	for _, pid := range allPIDs() {
		if comm(pid) == "kubelet" && alive(pid) {
			return nil
		}
	}
	var vals map[string]string
	if err := json.Unmarshal(b, &vals); err != nil {
		return fmt.Errorf("read %s: %w", sysctlRecord, err)
	}
	var errs []error
	for k, v := range vals {
		if err := os.WriteFile(sysctlPath(k), []byte(v), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", k, err))
		}
	}
	if len(errs) == 0 {
		_ = os.Remove(sysctlRecord)
	}
	return errors.Join(errs...)
}

// teardown undoes everything st records; what is already gone is skipped.
func teardown(ctx context.Context, st *labState, log io.Writer) error {
	var errs []error
	rootNet := nsInode("/proc/1/ns/net")
	for i := len(st.Hosts) - 1; i >= 0; i-- {
		hs := st.Hosts[i]
		if err := killHost(ctx, hs, rootNet, log); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", hs.Name, err))
			continue
		}
		if err := removeCgroupRoot(ctx, "lab-"+hs.Name); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", hs.Name, err))
		}
		if _, err := os.Stat("/run/netns/" + hs.NetNS); err == nil {
			if _, err := run(ctx, "ip", "netns", "delete", hs.NetNS); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", hs.Name, err))
			}
		}
		for _, ln := range hs.Links {
			if linkExists(ln.Veth) {
				if _, err := run(ctx, "ip", "link", "delete", ln.Veth); err != nil && linkExists(ln.Veth) {
					errs = append(errs, fmt.Errorf("%s: %w", hs.Name, err))
				}
			}
		}
		hostDir := filepath.Join(st.Options.Dir, "hosts", hs.Name)
		entries, _ := os.ReadDir(hostDir)
		for _, e := range entries {
			if e.Name() != "log" {
				if err := os.RemoveAll(filepath.Join(hostDir, e.Name())); err != nil {
					errs = append(errs, fmt.Errorf("%s: remove host data: %w", hs.Name, err))
				}
			}
		}
	}
	for _, b := range st.Bridges {
		if b.Unreachable != "" && routeExists(ctx, b.Unreachable) {
			if _, err := run(ctx, "ip", "route", "delete", "unreachable", b.Unreachable); err != nil {
				errs = append(errs, err)
			}
		}
		if linkExists(b.Name) {
			if _, err := run(ctx, "ip", "link", "delete", b.Name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := restoreSysctls(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	_ = os.RemoveAll(filepath.Join(st.Options.Dir, "usrbin"))
	if err := os.Remove(statePath(st.Options.Dir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove lab state: %w", err)
	}
	fmt.Fprintf(log, "lab: down (logs kept in %s)\n", filepath.Join(st.Options.Dir, "hosts"))
	return nil
}

func routeExists(ctx context.Context, cidr string) bool {
	out, err := run(ctx, "ip", "route", "show", "exact", cidr)
	return err == nil && len(strings.TrimSpace(string(out))) > 0
}

func linkExists(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

// nsInode returns the inode of a namespace file, 0 if unreadable.
func nsInode(path string) uint64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	return st.Ino
}

// procNSInode returns the inode of process pid's namespace kind ("net", "mnt").
func procNSInode(pid int, kind string) uint64 {
	l, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/" + kind)
	if err != nil {
		return 0
	}
	i := strings.IndexByte(l, '[')
	if i < 0 {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSuffix(l[i+1:], "]"), 10, 64)
	return n
}

func allPIDs() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// hostPIDs lists the processes of a host: those in its network namespace
// and those in its kubelet's cgroup root.
func hostPIDs(hs hostState, rootNet uint64) []int {
	// Recorded namespace inodes are trusted only while the namespace is
	// provably the host's (its /run/netns entry, its live anchor): a freed
	// namespace's inode number can be reused by an unrelated one.
	netIno := nsInode("/run/netns/" + hs.NetNS)
	var mntIno uint64
	if hs.AnchorPID > 0 && alive(hs.AnchorPID) && netIno != 0 &&
		procNSInode(hs.AnchorPID, "net") == netIno && procNSInode(hs.AnchorPID, "mnt") == hs.MntNSInode {
		mntIno = hs.MntNSInode
	}
	set := map[int]bool{}
	self := os.Getpid()
	rootMnt := procNSInode(1, "mnt")
	for _, pid := range allPIDs() {
		if pid == self {
			continue
		}
		if netIno != 0 && netIno != rootNet && procNSInode(pid, "net") == netIno {
			set[pid] = true
		}
		if mntIno != 0 && mntIno != rootMnt && procNSInode(pid, "mnt") == mntIno {
			set[pid] = true
		}
	}
	for _, pid := range cgroupPIDs("lab-" + hs.Name) {
		if pid != self {
			set[pid] = true
		}
	}
	pids := make([]int, 0, len(set))
	for p := range set {
		pids = append(pids, p)
	}
	sort.Ints(pids)
	return pids
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return !(i > 0 && i+2 < len(b) && b[i+2] == 'Z')
}

func comm(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}

// killHost ends every process of a host: SIGTERM, then SIGKILL after a grace
// period, and waits until none is left.
func killHost(ctx context.Context, hs hostState, rootNet uint64, log io.Writer) error {
	live := func() []int {
		var out []int
		for _, p := range hostPIDs(hs, rootNet) {
			if alive(p) {
				out = append(out, p)
			}
		}
		return out
	}
	pids := live()
	if len(pids) == 0 {
		return nil
	}
	fmt.Fprintf(log, "lab: %s: stopping %d process(es)\n", hs.Name, len(pids))
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGTERM)
	}
	grace := time.Now().Add(5 * time.Second)
	deadline := grace.Add(15 * time.Second)
	for {
		pids = live()
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			var names []string
			for _, p := range pids {
				names = append(names, fmt.Sprintf("%d (%s)", p, comm(p)))
			}
			return fmt.Errorf("processes still running after SIGKILL: %s", strings.Join(names, ", "))
		}
		if time.Now().After(grace) {
			for _, p := range pids {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cgroupMounts lists the cgroup hierarchies: each v1 hierarchy, or the v2
// root.
func cgroupMounts() []string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && (f[2] == "cgroup" || (f[2] == "cgroup2" && f[1] == "/sys/fs/cgroup")) {
			out = append(out, f[1])
		}
	}
	return out
}

func cgroupPIDs(root string) []int {
	var pids []int
	for _, m := range cgroupMounts() {
		_ = filepath.WalkDir(filepath.Join(m, root), func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	return pids
}

// removeCgroupRoot removes a kubelet cgroup root and everything kubelet made
// below it, deepest first; the kernel frees a cgroup a little after its last
// process, so it retries briefly.
func removeCgroupRoot(ctx context.Context, root string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []string
		for _, m := range cgroupMounts() {
			var dirs []string
			_ = filepath.WalkDir(filepath.Join(m, root), func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			for i := len(dirs) - 1; i >= 0; i-- {
				if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
					left = append(left, dirs[i])
				}
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("remove cgroups: %s still busy", strings.Join(left, ", "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
