// Package lab runs N realistic etcd hosts on one Linux machine for
// end-to-end tests: each host has its own network, UTS and mount namespaces,
// a real OpenSSH sshd, and (unless SSH-only) a real containerd + runc and a
// real kubelet that etcdadm starts through a systemctl stand-in. Only systemd
// is missing. Everything needs root.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// DefaultDir is where a lab keeps its state unless told otherwise.
const DefaultDir = "/var/tmp/etcdadm-lab"

// Users the lab creates on the machine, authorized with the lab key on every
// host. SudoUser has passwordless sudo; PasswordUser's sudo asks for
// PasswordUserPassword, so `sudo -n` fails for it.
const (
	SudoUser             = "labsudo"
	PasswordUser         = "labpw"
	PasswordUserPassword = "labpw-sudo-password"
)

// Options describe the lab to bring up.
type Options struct {
	// Hosts is the number of hosts, named NamePrefix0, NamePrefix1, …
	Hosts int
	// Dir keeps all state: keys, known_hosts, per-host directories, logs.
	// DefaultDir when empty.
	Dir string
	// Artifacts is the build output directory (see Build); the default of
	// BuildOptions when empty. Up builds what is missing or stale.
	Artifacts string
	// SSHOnly starts only sshd on each host: no containerd, no kubelet.
	SSHOnly bool
	// NoImages starts containerd with no image at all, for the air-gapped
	// path where etcdadm imports them; the hosts have no route to a
	// registry either way.
	NoImages bool
	// Bastion adds a host named "bastion" on the outer network and moves
	// the other hosts to an inner network that only the bastion reaches.
	Bastion bool
	// NamePrefix prefixes host, namespace, bridge and veth names; "lab"
	// when empty. At most 8 characters (interface names are short).
	NamePrefix string
	// FirstOctet is the last octet of the first host's address; 10 when 0.
	FirstOctet int
	// Subnet is the third octet of the lab's networks: hosts are on
	// 198.18.Subnet.0/24 (or 198.19.Subnet.0/24 behind the bastion). Labs
	// that run at the same time need distinct subnets and name prefixes.
	Subnet int
}

// Lab is a running lab.
type Lab struct {
	// Dir is the lab's state directory.
	Dir string
	// Hosts are the etcd hosts, in order.
	Hosts []*Host
	// Bastion is the jump host when Options.Bastion is set, else nil.
	Bastion *Host
	// KeyFile is the client's private key (ed25519, OpenSSH format, 0600),
	// authorized for root, SudoUser and PasswordUser on every host.
	KeyFile string
	// AuthorizedKey is the public half, in authorized_keys format.
	AuthorizedKey string
	// KnownHostsFile lists every host's key by address, as written at Up.
	KnownHostsFile string
	// Artifacts are the binaries and images the hosts run.
	Artifacts *Artifacts

	opts  Options
	state *labState
	log   io.Writer
	mu    sync.Mutex // guards state and snap
	snap  string     // containerd snapshotter, once probed
}

func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		o.Dir = DefaultDir
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return o, fmt.Errorf("lab dir %s: %w", o.Dir, err)
	}
	o.Dir = dir
	if o.NamePrefix == "" {
		o.NamePrefix = "lab"
	}
	if o.FirstOctet == 0 {
		o.FirstOctet = 10
	}
	switch {
	case o.Hosts < 1:
		return o, fmt.Errorf("hosts = %d: need at least 1", o.Hosts)
	case len(o.NamePrefix) > 8 || strings.Trim(o.NamePrefix, "abcdefghijklmnopqrstuvwxyz0123456789") != "":
		return o, fmt.Errorf("name prefix %q: use at most 8 lower-case letters or digits", o.NamePrefix)
	case o.FirstOctet < 3 || o.FirstOctet+o.Hosts > 255:
		return o, fmt.Errorf("first octet %d with %d hosts does not fit in a /24 (3..254)", o.FirstOctet, o.Hosts)
	case o.Subnet < 0 || o.Subnet > 255:
		return o, fmt.Errorf("subnet %d: want 0..255", o.Subnet)
	}
	// The hosts get their own view of these; a lab directory below one
	// would not be reachable from inside the hosts.
	for _, p := range []string{"/etc", "/var/lib", "/var/log", "/run", "/var/run", "/tmp", "/root", "/usr/bin"} {
		if o.Dir == p || strings.HasPrefix(o.Dir, p+"/") {
			return o, fmt.Errorf("lab dir %s: must not be below %s, which every host replaces (use e.g. %s)", o.Dir, p, DefaultDir)
		}
	}
	return o, nil
}

// Up brings up a lab as opts says, after cleaning up any lab left in the
// same directory. On failure it tears down what it made. Progress goes to
// log.
func Up(ctx context.Context, opts Options, log io.Writer) (*Lab, error) {
	if log == nil {
		log = io.Discard
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := Check(opts); err != nil {
		return nil, err
	}
	if _, err := os.Stat(statePath(opts.Dir)); err == nil {
		fmt.Fprintf(log, "lab: cleaning up the lab left in %s\n", opts.Dir)
		if err := Cleanup(ctx, opts.Dir, log); err != nil {
			return nil, fmt.Errorf("clean up previous lab in %s: %w", opts.Dir, err)
		}
	}
	start := time.Now()
	arts, err := Build(ctx, BuildOptions{Out: opts.Artifacts, SSHOnly: opts.SSHOnly}, log)
	if err != nil {
		return nil, fmt.Errorf("build lab artifacts: %w", err)
	}
	l := &Lab{
		Dir:            opts.Dir,
		KeyFile:        filepath.Join(opts.Dir, "id_ed25519"),
		KnownHostsFile: filepath.Join(opts.Dir, "known_hosts"),
		Artifacts:      arts,
		opts:           opts,
		log:            log,
	}
	if err := l.up(ctx); err != nil {
		// Tear down with a fresh context: ctx may be what failed.
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if derr := l.Down(dctx); derr != nil {
			err = errors.Join(err, fmt.Errorf("tear down after failure: %w", derr))
		}
		return nil, err
	}
	fmt.Fprintf(log, "lab: %d host(s) up in %s\n", len(l.Hosts), time.Since(start).Round(100*time.Millisecond))
	return l, nil
}

func (l *Lab) up(ctx context.Context) error {
	o := l.opts
	st := &labState{Options: o}
	st.plan()
	if err := checkConflicts(ctx, st); err != nil {
		return err
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return fmt.Errorf("create lab dir: %w", err)
	}
	if err := os.Chmod(o.Dir, 0o755); err != nil {
		return fmt.Errorf("create lab dir: %w", err)
	}
	for _, d := range []string{"hosts", "usrbin"} {
		if err := os.RemoveAll(filepath.Join(o.Dir, d)); err != nil {
			return fmt.Errorf("clear %s: %w", d, err)
		}
	}
	l.state = st
	if err := l.saveState(); err != nil {
		return err
	}
	if !o.SSHOnly {
		// kubelet changes these kernel-wide; Down puts them back.
		if err := recordSysctls(); err != nil {
			return err
		}
	}
	if err := l.writeClientKey(); err != nil {
		return err
	}
	if err := ensureUsers(ctx, l.log); err != nil {
		return err
	}
	if err := l.prepareUsrBin(); err != nil {
		return err
	}
	t0 := time.Now()
	if err := l.createNetwork(ctx); err != nil {
		return err
	}
	fmt.Fprintf(l.log, "lab: network for %d host(s) in %s\n", len(l.state.Hosts), time.Since(t0).Round(10*time.Millisecond))
	for _, hs := range l.state.Hosts {
		h := &Host{
			Name:    hs.Name,
			Address: hs.Address,
			SSHPort: 22,
			NetNS:   hs.NetNS,
			Dir:     filepath.Join(o.Dir, "hosts", hs.Name),
			lab:     l,
		}
		if hs.Bastion {
			l.Bastion = h
		} else {
			l.Hosts = append(l.Hosts, h)
		}
	}
	all := l.all()
	t0 = time.Now()
	if err := parallel(ctx, all, 8, func(ctx context.Context, h *Host) error { return h.boot(ctx) }); err != nil {
		return err
	}
	fmt.Fprintf(l.log, "lab: namespaces, mounts and sshd on %d host(s) in %s\n", len(all), time.Since(t0).Round(10*time.Millisecond))
	var kh strings.Builder
	for _, h := range all {
		kh.WriteString(h.KnownHostsLine + "\n")
	}
	if err := os.WriteFile(l.KnownHostsFile, []byte(kh.String()), 0o644); err != nil {
		return fmt.Errorf("write known_hosts: %w", err)
	}
	if o.SSHOnly {
		return nil
	}
	return parallel(ctx, l.Hosts, 2, func(ctx context.Context, h *Host) error { return h.startContainerd(ctx) })
}

// all returns the bastion (if any) and the hosts.
func (l *Lab) all() []*Host {
	var hs []*Host
	if l.Bastion != nil {
		hs = append(hs, l.Bastion)
	}
	return append(hs, l.Hosts...)
}

// Host returns the host named name, the bastion included, or nil.
func (l *Lab) Host(name string) *Host {
	for _, h := range l.all() {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Down stops everything the lab started (kubelets, containers and their
// shims, containerd, sshd), deletes its namespaces, veths and bridges,
// restores the kernel settings kubelet changed, and removes the per-host
// data (logs stay under Dir/hosts/NAME/log). It is idempotent.
func (l *Lab) Down(ctx context.Context) error {
	if l.state == nil {
		return nil
	}
	return teardown(ctx, l.state, l.log)
}

// Cleanup tears down the lab whose state is in dir, e.g. one left behind by
// a crashed test run. A directory without lab state is not an error.
func Cleanup(ctx context.Context, dir string, log io.Writer) error {
	if log == nil {
		log = io.Discard
	}
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	st, err := loadState(dir)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(log, "lab: no lab state in %s, nothing to clean up\n", dir)
		return nil
	}
	if err != nil {
		return err
	}
	return teardown(ctx, st, log)
}

// parallel runs f for each host, at most limit at a time, and joins the
// errors, each prefixed by its host.
func parallel(ctx context.Context, hosts []*Host, limit int, f func(context.Context, *Host) error) error {
	sem := make(chan struct{}, limit)
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := f(ctx, h); err != nil {
				errs[i] = fmt.Errorf("%s: %w", h.Name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Open returns the running lab whose state is in dir, e.g. one that
// `lab up` started, so that tests and tools can use it without owning it.
func Open(dir string, log io.Writer) (*Lab, error) {
	if log == nil {
		log = io.Discard
	}
	st, err := loadState(dir)
	if err != nil {
		return nil, fmt.Errorf("open lab in %s: %w", dir, err)
	}
	l := &Lab{
		Dir:            st.Options.Dir,
		KeyFile:        filepath.Join(st.Options.Dir, "id_ed25519"),
		KnownHostsFile: filepath.Join(st.Options.Dir, "known_hosts"),
		opts:           st.Options,
		state:          st,
		log:            log,
	}
	if b, err := os.ReadFile(l.KeyFile + ".pub"); err == nil {
		l.AuthorizedKey = strings.TrimSpace(string(b))
	}
	known := map[string]string{}
	if b, err := os.ReadFile(l.KnownHostsFile); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 0 {
				known[f[0]] = line
			}
		}
	}
	for _, hs := range st.Hosts {
		if hs.AnchorPID <= 0 || !alive(hs.AnchorPID) || procNSInode(hs.AnchorPID, "net") != nsInode("/run/netns/"+hs.NetNS) {
			return nil, fmt.Errorf("open lab in %s: host %s is not running", dir, hs.Name)
		}
		h := &Host{
			Name: hs.Name, Address: hs.Address, SSHPort: 22, NetNS: hs.NetNS,
			Dir: filepath.Join(st.Options.Dir, "hosts", hs.Name), KnownHostsLine: known[hs.Address],
			lab: l, anchorPID: hs.AnchorPID,
		}
		if hs.Bastion {
			l.Bastion = h
		} else {
			l.Hosts = append(l.Hosts, h)
		}
	}
	return l, nil
}

// ExecArgv returns the command line that runs argv inside h, for callers
// that need to run it themselves (interactively, say).
func (h *Host) ExecArgv(argv ...string) []string { return h.nsenter(argv...) }
