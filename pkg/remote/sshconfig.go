package remote

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
)

// endpoint is one SSH server to authenticate to: a jump host or the target.
type endpoint struct {
	// Alias is the name looked up in the ssh config and shown in messages.
	Alias    string
	HostName string
	Port     int
	User     string
	// IdentityFiles are offered first, in this order.
	IdentityFiles  []string
	IdentitiesOnly bool
	// KnownHosts are read in order; new keys are appended to the first one.
	KnownHosts     []string
	HashKnownHosts bool
}

// addr is host:port, the form known_hosts entries are derived from.
func (e endpoint) addr() string {
	return net.JoinHostPort(e.HostName, strconv.Itoa(e.Port))
}

func (e endpoint) String() string {
	return e.User + "@" + e.addr()
}

// route is how to reach a host: through Jumps in order, then Target.
type route struct {
	Jumps       []endpoint
	Target      endpoint
	AgentSocket string
}

func (r route) via() string {
	if len(r.Jumps) == 0 {
		return "direct"
	}
	names := make([]string, len(r.Jumps))
	for i, j := range r.Jumps {
		names[i] = j.String()
	}
	return strings.Join(names, ",")
}

// resolver applies a Config over an ssh config file, like the ssh command.
type resolver struct {
	cfg       Config
	sc        *ssh_config.Config // nil when no ssh config is read
	home      string
	localUser string
	getenv    func(string) string
}

const maxJumpDepth = 8

// loadSSHConfig reads the ssh client configuration named by the Config.
// A missing default file is no error; a file that does not parse is, because
// ignoring it could bypass a bastion the user relies on.
func loadSSHConfig(name, home string) (*ssh_config.Config, error) {
	explicit := name != ""
	if strings.EqualFold(name, "none") {
		return nil, nil
	}
	if !explicit {
		if home == "" {
			return nil, nil
		}
		name = filepath.Join(home, ".ssh", "config")
	}
	name = expandHome(name, home)
	f, err := os.Open(name)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("read ssh config: %w", err)
	}
	defer f.Close()
	sc, err := ssh_config.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("read ssh config %s: %w (fix it, or read none with SSHConfigFile \"none\")", name, err)
	}
	return sc, nil
}

func (r resolver) get(alias, key string) (string, error) {
	if r.sc == nil {
		return "", nil
	}
	v, err := r.sc.Get(alias, key)
	if err != nil {
		return "", fmt.Errorf("ssh config %s for %s: %w", key, alias, err)
	}
	return strings.TrimSpace(v), nil
}

func (r resolver) getAll(alias, key string) ([]string, error) {
	if r.sc == nil {
		return nil, nil
	}
	v, err := r.sc.GetAll(alias, key)
	if err != nil {
		return nil, fmt.Errorf("ssh config %s for %s: %w", key, alias, err)
	}
	return v, nil
}

// resolve computes the whole route to the Config's host.
func (r resolver) resolve() (route, error) {
	var rt route
	c := r.cfg
	target, err := r.endpoint(c.Address, c.User, c.Port, true)
	if err != nil {
		return rt, err
	}
	rt.Target = target

	if c.AgentSocket != "" {
		rt.AgentSocket = c.AgentSocket
	} else if v, err := r.get(c.Address, "IdentityAgent"); err != nil {
		return rt, err
	} else {
		switch v = strings.Trim(v, `"`); {
		case v == "" || v == "SSH_AUTH_SOCK":
			rt.AgentSocket = r.getenv("SSH_AUTH_SOCK")
		case strings.HasPrefix(v, "$"):
			rt.AgentSocket = r.getenv(strings.Trim(v[1:], "{}"))
		default:
			rt.AgentSocket = r.expand(v, target)
		}
	}
	if strings.EqualFold(rt.AgentSocket, "none") {
		rt.AgentSocket = ""
	}

	jump := c.ProxyJump
	if jump == "" {
		if jump, err = r.get(c.Address, "ProxyJump"); err != nil {
			return rt, err
		}
		if jump == "" {
			if pc, err := r.get(c.Address, "ProxyCommand"); err != nil {
				return rt, err
			} else if pc != "" && !strings.EqualFold(pc, "none") {
				return rt, fmt.Errorf("ssh config sets ProxyCommand for %s, which is not supported; use ProxyJump", c.Address)
			}
		}
	}
	rt.Jumps, err = r.jumps(jump, 0)
	if err != nil {
		return rt, err
	}
	return rt, nil
}

// jumps resolves a ProxyJump list. As with OpenSSH, the first jump host's
// own ProxyJump applies (it is reached like any host); the later ones are
// reached through the list.
func (r resolver) jumps(spec string, depth int) ([]endpoint, error) {
	hops, err := parseProxyJump(spec)
	if err != nil || len(hops) == 0 {
		return nil, err
	}
	if depth >= maxJumpDepth {
		return nil, fmt.Errorf("proxy jump %q: more than %d nested jump hosts (a loop in the ssh config?)", spec, maxJumpDepth)
	}
	var out []endpoint
	first, err := r.get(hops[0].Host, "ProxyJump")
	if err != nil {
		return nil, err
	}
	if first != "" {
		prev, err := r.jumps(first, depth+1)
		if err != nil {
			return nil, err
		}
		out = append(out, prev...)
	}
	for _, h := range hops {
		ep, err := r.endpoint(h.Host, h.User, h.Port, false)
		if err != nil {
			return nil, err
		}
		out = append(out, ep)
	}
	return out, nil
}

// endpoint resolves one server. The target offers the Config's identity
// files before the ssh config's; a jump host offers its own first.
func (r resolver) endpoint(alias, user string, port int, isTarget bool) (endpoint, error) {
	ep := endpoint{Alias: alias, HostName: alias}
	hn, err := r.get(alias, "HostName")
	if err != nil {
		return ep, err
	}
	if hn != "" {
		ep.HostName = strings.NewReplacer("%h", alias, "%%", "%").Replace(hn)
	}
	ep.Port = port
	if ep.Port == 0 {
		p, err := r.get(alias, "Port")
		if err != nil {
			return ep, err
		}
		if p != "" {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				return ep, fmt.Errorf("ssh config Port for %s: %q is not a TCP port", alias, p)
			}
			ep.Port = n
		}
	}
	if ep.Port == 0 {
		ep.Port = 22
	}
	ep.User = user
	if ep.User == "" {
		if ep.User, err = r.get(alias, "User"); err != nil {
			return ep, err
		}
	}
	if ep.User == "" && isTarget {
		ep.User = r.cfg.DefaultUser
	}
	if ep.User == "" {
		ep.User = r.localUser
	}

	var fromConfig []string
	files, err := r.getAll(alias, "IdentityFile")
	if err != nil {
		return ep, err
	}
	for _, f := range files {
		if !strings.EqualFold(f, "none") {
			fromConfig = append(fromConfig, r.expand(strings.Trim(f, `"`), ep))
		}
	}
	var explicit []string
	for _, f := range r.cfg.IdentityFiles {
		explicit = append(explicit, expandHome(f, r.home))
	}
	if isTarget {
		ep.IdentityFiles = dedupe(append(explicit, fromConfig...))
	} else {
		ep.IdentityFiles = dedupe(append(fromConfig, explicit...))
	}
	only, err := r.get(alias, "IdentitiesOnly")
	if err != nil {
		return ep, err
	}
	ep.IdentitiesOnly = r.cfg.IdentitiesOnly || strings.EqualFold(only, "yes")
	hash, err := r.get(alias, "HashKnownHosts")
	if err != nil {
		return ep, err
	}
	ep.HashKnownHosts = strings.EqualFold(hash, "yes")

	if r.cfg.KnownHostsFile != "" {
		ep.KnownHosts = []string{expandHome(r.cfg.KnownHostsFile, r.home)}
		return ep, nil
	}
	userFiles, err := r.get(alias, "UserKnownHostsFile")
	if err != nil {
		return ep, err
	}
	if userFiles == "" {
		userFiles = "~/.ssh/known_hosts"
	}
	global, err := r.get(alias, "GlobalKnownHostsFile")
	if err != nil {
		return ep, err
	}
	if global == "" {
		global = "/etc/ssh/ssh_known_hosts"
	}
	for _, f := range append(strings.Fields(userFiles), strings.Fields(global)...) {
		if !strings.EqualFold(f, "none") {
			ep.KnownHosts = append(ep.KnownHosts, r.expand(f, ep))
		}
	}
	return ep, nil
}

// expand applies the ssh config tokens that make sense here and "~/".
func (r resolver) expand(s string, ep endpoint) string {
	s = strings.NewReplacer(
		"%%", "%",
		"%d", r.home,
		"%h", ep.HostName,
		"%n", ep.Alias,
		"%p", strconv.Itoa(ep.Port),
		"%r", ep.User,
		"%u", r.localUser,
	).Replace(s)
	return expandHome(s, r.home)
}

func expandHome(p, home string) string {
	if p == "~" {
		return home
	}
	if strings.HasPrefix(p, "~/") && home != "" {
		return filepath.Join(home, p[2:])
	}
	return p
}

func dedupe(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := in[:0]
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
