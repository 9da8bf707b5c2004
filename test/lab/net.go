package lab

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// run runs a command in the root namespaces; the error carries its stderr.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// checkConflicts refuses to touch names or addresses that already exist, so
// that everything the state file names was made by this lab.
func checkConflicts(ctx context.Context, st *labState) error {
	var taken []string
	for _, b := range st.Bridges {
		if linkExists(b.Name) {
			taken = append(taken, "interface "+b.Name)
		}
		if b.Unreachable != "" && routeExists(ctx, b.Unreachable) {
			taken = append(taken, "route "+b.Unreachable)
		}
	}
	for _, h := range st.Hosts {
		if nsInode("/run/netns/"+h.NetNS) != 0 {
			taken = append(taken, "network namespace "+h.NetNS)
		}
		for _, ln := range h.Links {
			if linkExists(ln.Veth) {
				taken = append(taken, "interface "+ln.Veth)
			}
		}
	}
	out, err := run(ctx, "ip", "-4", "-o", "addr", "show")
	if err != nil {
		return err
	}
	prefix := fmt.Sprintf(" 198.18.%d.", st.Options.Subnet)
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, prefix) {
			taken = append(taken, "address "+strings.Fields(line)[3]+" on "+strings.Fields(line)[1])
		}
	}
	if len(taken) > 0 {
		return fmt.Errorf("another lab seems to be running (%s): tear it down with `lab down --dir DIR`, or use another name prefix and subnet", strings.Join(taken, ", "))
	}
	return nil
}

// createNetwork makes the bridges and, per host, the network namespace with
// its loopback up and veths on the bridges.
func (l *Lab) createNetwork(ctx context.Context) error {
	for _, b := range l.state.Bridges {
		if _, err := run(ctx, "ip", "link", "add", b.Name, "type", "bridge"); err != nil {
			return fmt.Errorf("create bridge: %w", err)
		}
		if b.CIDR != "" {
			if _, err := run(ctx, "ip", "addr", "add", b.CIDR, "dev", b.Name); err != nil {
				return fmt.Errorf("address bridge: %w", err)
			}
		}
		if _, err := run(ctx, "ip", "link", "set", b.Name, "up"); err != nil {
			return fmt.Errorf("bring up bridge: %w", err)
		}
		if b.Unreachable != "" {
			if _, err := run(ctx, "ip", "route", "add", "unreachable", b.Unreachable); err != nil {
				return fmt.Errorf("isolate inner network: %w", err)
			}
		}
	}
	for i := range l.state.Hosts {
		hs := &l.state.Hosts[i]
		if _, err := run(ctx, "ip", "netns", "add", hs.NetNS); err != nil {
			return fmt.Errorf("create network namespace of %s: %w", hs.Name, err)
		}
		l.mu.Lock()
		hs.NetNSInode = nsInode("/run/netns/" + hs.NetNS)
		l.mu.Unlock()
		if err := l.saveState(); err != nil {
			return err
		}
		steps := [][]string{{"ip", "-n", hs.NetNS, "link", "set", "lo", "up"}}
		for _, ln := range hs.Links {
			steps = append(steps,
				[]string{"ip", "link", "add", ln.Veth, "type", "veth", "peer", "name", ln.Inner, "netns", hs.NetNS},
				[]string{"ip", "link", "set", ln.Veth, "master", ln.Bridge},
				[]string{"ip", "link", "set", ln.Veth, "up"},
				[]string{"ip", "-n", hs.NetNS, "addr", "add", ln.Address, "dev", ln.Inner},
				[]string{"ip", "-n", hs.NetNS, "link", "set", ln.Inner, "up"},
			)
		}
		for _, s := range steps {
			if _, err := run(ctx, s[0], s[1:]...); err != nil {
				return fmt.Errorf("network of %s: %w", hs.Name, err)
			}
		}
	}
	return nil
}
