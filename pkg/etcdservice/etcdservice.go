// Package etcdservice makes the files that run an etcd member as a systemd
// service: the unit etcd.service, and the environment file that carries
// the member's flags, the same flags its static Pod would run etcd with.
// It is a leaf: it imports nothing of etcdadm's.
package etcdservice

import (
	_ "embed"
	"errors"
	"fmt"
	"path"
	"strings"
)

// Where the service's files go on a host.
const (
	// Unit is the service's name for systemctl.
	Unit     = "etcd"
	UnitPath = "/etc/systemd/system/etcd.service"
	EnvPath  = "/etc/etcd/etcd.env"
	BinDir   = "/usr/local/bin"
	// ArgsVar carries the flags from the environment file to ExecStart.
	// Not ETCD_*: etcd reads those as flags itself, and warns about one it
	// does not know.
	ArgsVar = "ETCDADM_ARGS"
)

// Modes of the files.
const (
	UnitMode   = 0o644
	EnvMode    = 0o644
	BinaryMode = 0o755
)

// BinaryPath is where the release's binary name goes on a host.
func BinaryPath(name string) string { return path.Join(BinDir, name) }

//go:embed etcd.service
var unit []byte

// UnitFile is etcd.service: Type=notify, as etcd tells systemd once it has
// joined its cluster; no start timeout, since a member waits for its peers
// as long as they take; restarted when it fails.
func UnitFile() []byte { return append([]byte(nil), unit...) }

// EnvFile is the environment file of member name, whose etcd runs with flags.
func EnvFile(name string, flags []string) ([]byte, error) {
	for _, f := range flags {
		if strings.ContainsAny(f, " \t\n\r\"'\\") {
			return nil, fmt.Errorf("etcd flag %s holds a space, a quote or a backslash: the environment file cannot carry it", f)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# etcd member %s: the flags its static Pod would run etcd with. Written by etcdadm.\n", name)
	fmt.Fprintf(&b, "%s=\"%s\"\n", ArgsVar, strings.Join(flags, " "))
	return []byte(b.String()), nil
}

// ParseEnvFile reads the flags of an environment file EnvFile wrote.
func ParseEnvFile(data []byte) ([]string, error) {
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		v, ok := strings.CutPrefix(line, ArgsVar+"=")
		if !ok {
			continue
		}
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return strings.Fields(v), nil
	}
	return nil, errors.New("no " + ArgsVar + "= line")
}
