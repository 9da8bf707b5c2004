package remote

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kevinburke/ssh_config"
)

const testSSHConfig = `
Host etcd-*
  User ubuntu
  Port 2200
  IdentityFile ~/.ssh/etcd_ed25519
  ProxyJump bastion2

Host etcd-a
  HostName 10.0.0.11

Host bastion1
  HostName 192.0.2.1
  User jump
  IdentityFile ~/.ssh/bastion_key
  UserKnownHostsFile ~/.ssh/bastion_known_hosts

Host bastion2
  HostName %h.internal
  ProxyJump bastion1
  IdentitiesOnly yes

Host legacy
  ProxyCommand nc %h %p

Host loop-a
  ProxyJump loop-b
Host loop-b
  ProxyJump loop-a

Host *
  User fallback
  HashKnownHosts yes
`

func testResolver(t *testing.T, cfg Config, config string) resolver {
	t.Helper()
	var sc *ssh_config.Config
	if config != "" {
		var err error
		if sc, err = ssh_config.Decode(strings.NewReader(config)); err != nil {
			t.Fatal(err)
		}
	}
	return resolver{
		cfg:       cfg.withDefaults(),
		sc:        sc,
		home:      "/home/op",
		localUser: "op",
		getenv: func(k string) string {
			return map[string]string{"SSH_AUTH_SOCK": "/run/agent.sock", "MY_AGENT": "/run/my.sock"}[k]
		},
	}
}

func TestResolveFromSSHConfig(t *testing.T) {
	rt, err := testResolver(t, Config{Host: "etcd-1", Address: "etcd-a"}, testSSHConfig).resolve()
	if err != nil {
		t.Fatal(err)
	}
	want := route{
		Jumps: []endpoint{
			{Alias: "bastion1", HostName: "192.0.2.1", Port: 22, User: "jump",
				IdentityFiles:  []string{"/home/op/.ssh/bastion_key"},
				KnownHosts:     []string{"/home/op/.ssh/bastion_known_hosts", "/etc/ssh/ssh_known_hosts"},
				HashKnownHosts: true},
			{Alias: "bastion2", HostName: "bastion2.internal", Port: 22, User: "fallback",
				IdentitiesOnly: true, HashKnownHosts: true,
				KnownHosts: []string{"/home/op/.ssh/known_hosts", "/etc/ssh/ssh_known_hosts"}},
		},
		Target: endpoint{Alias: "etcd-a", HostName: "10.0.0.11", Port: 2200, User: "ubuntu",
			IdentityFiles:  []string{"/home/op/.ssh/etcd_ed25519"},
			KnownHosts:     []string{"/home/op/.ssh/known_hosts", "/etc/ssh/ssh_known_hosts"},
			HashKnownHosts: true},
		AgentSocket: "/run/agent.sock",
	}
	if diff := cmp.Diff(want, rt); diff != "" {
		t.Errorf("route (-want +got):\n%s", diff)
	}
}

func TestResolveExplicitWins(t *testing.T) {
	cfg := Config{
		Host:           "etcd-1",
		Address:        "etcd-a",
		Port:           22,
		User:           "root",
		IdentityFiles:  []string{"~/keys/inventory"},
		KnownHostsFile: "~/kh",
		ProxyJump:      "ops@bastion1:2022",
		AgentSocket:    "none",
	}
	rt, err := testResolver(t, cfg, testSSHConfig).resolve()
	if err != nil {
		t.Fatal(err)
	}
	tg := rt.Target
	if tg.Port != 22 || tg.User != "root" || tg.HostName != "10.0.0.11" {
		t.Errorf("target = %+v, want explicit port and user over ssh config, HostName from it", tg)
	}
	// The inventory's key goes first on the target, after the jump host's own key on jumps.
	if want := []string{"/home/op/keys/inventory", "/home/op/.ssh/etcd_ed25519"}; !cmp.Equal(tg.IdentityFiles, want) {
		t.Errorf("target identity files = %v, want %v", tg.IdentityFiles, want)
	}
	if want := []string{"/home/op/kh"}; !cmp.Equal(tg.KnownHosts, want) {
		t.Errorf("known hosts = %v, want %v", tg.KnownHosts, want)
	}
	if len(rt.Jumps) != 1 {
		t.Fatalf("jumps = %+v, want only the explicit one (bastion1 has no ProxyJump)", rt.Jumps)
	}
	j := rt.Jumps[0]
	if j.User != "ops" || j.Port != 2022 || j.HostName != "192.0.2.1" {
		t.Errorf("jump = %+v, want user and port from the ProxyJump spec, HostName from the ssh config", j)
	}
	if want := []string{"/home/op/.ssh/bastion_key", "/home/op/keys/inventory"}; !cmp.Equal(j.IdentityFiles, want) {
		t.Errorf("jump identity files = %v, want %v", j.IdentityFiles, want)
	}
	if rt.AgentSocket != "" {
		t.Errorf("agent socket = %q, want none", rt.AgentSocket)
	}
}

func TestResolveDefaults(t *testing.T) {
	rt, err := testResolver(t, Config{Host: "10.1.2.3"}, "").resolve()
	if err != nil {
		t.Fatal(err)
	}
	want := endpoint{Alias: "10.1.2.3", HostName: "10.1.2.3", Port: 22, User: "op",
		KnownHosts: []string{"/home/op/.ssh/known_hosts", "/etc/ssh/ssh_known_hosts"}}
	if diff := cmp.Diff(want, rt.Target); diff != "" {
		t.Errorf("target (-want +got):\n%s", diff)
	}
	if len(rt.Jumps) != 0 {
		t.Errorf("jumps = %v, want none", rt.Jumps)
	}
}

func TestResolveProxyJumpNoneOverridesConfig(t *testing.T) {
	rt, err := testResolver(t, Config{Host: "etcd-b", ProxyJump: "none"}, testSSHConfig).resolve()
	if err != nil {
		t.Fatal(err)
	}
	if len(rt.Jumps) != 0 {
		t.Errorf("jumps = %v, want none", rt.Jumps)
	}
}

func TestResolveErrors(t *testing.T) {
	for name, cfg := range map[string]Config{
		"ProxyCommand": {Host: "legacy"},
		"loop":         {Host: "x", ProxyJump: "loop-a"},
		"bad jump":     {Host: "x", ProxyJump: "a,,b"},
	} {
		if _, err := testResolver(t, cfg, testSSHConfig).resolve(); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
	bad := "Host x\n  Port nope\n"
	if _, err := testResolver(t, Config{Host: "x"}, bad).resolve(); err == nil || !strings.Contains(err.Error(), "Port") {
		t.Errorf("bad port: err = %v, want one naming Port", err)
	}
}

func TestResolveIdentityAgent(t *testing.T) {
	for conf, want := range map[string]string{
		"Host *\n  IdentityAgent none\n":          "",
		"Host *\n  IdentityAgent $MY_AGENT\n":     "/run/my.sock",
		"Host *\n  IdentityAgent ~/agent.sock\n":  "/home/op/agent.sock",
		"Host *\n  IdentityAgent SSH_AUTH_SOCK\n": "/run/agent.sock",
	} {
		rt, err := testResolver(t, Config{Host: "h"}, conf).resolve()
		if err != nil {
			t.Fatal(err)
		}
		if rt.AgentSocket != want {
			t.Errorf("%q: agent socket = %q, want %q", conf, rt.AgentSocket, want)
		}
	}
}

func TestLoadSSHConfig(t *testing.T) {
	dir := t.TempDir()
	if sc, err := loadSSHConfig("", dir); err != nil || sc != nil {
		t.Errorf("missing default config: %v, %v; want nothing and no error", sc, err)
	}
	if _, err := loadSSHConfig(filepath.Join(dir, "nope"), dir); err == nil {
		t.Error("missing explicit config: want an error")
	}
	if sc, err := loadSSHConfig("none", dir); err != nil || sc != nil {
		t.Errorf("none: %v, %v", sc, err)
	}
	p := filepath.Join(dir, "config")
	if err := os.WriteFile(p, []byte("Match exec \"true\"\n  User x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadSSHConfig(p, dir); err == nil || !strings.Contains(err.Error(), "none") {
		t.Errorf("unparsable config: err = %v, want one suggesting none", err)
	}
	if err := os.WriteFile(p, []byte("Host a\n  User b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sc, err := loadSSHConfig("~/config", dir)
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := sc.Get("a", "User"); u != "b" {
		t.Errorf("User = %q, want b", u)
	}
}

func TestResolveDefaultUserComesAfterTheSSHConfig(t *testing.T) {
	rt, err := testResolver(t, Config{Host: "10.1.2.3", DefaultUser: "root"}, "").resolve()
	if err != nil || rt.Target.User != "root" {
		t.Fatalf("without ssh config: user %q, %v; want root", rt.Target.User, err)
	}
	rt, err = testResolver(t, Config{Host: "10.1.2.3", DefaultUser: "root"}, "Host *\n  User ops\n").resolve()
	if err != nil || rt.Target.User != "ops" {
		t.Fatalf("with ssh config User ops: user %q, %v", rt.Target.User, err)
	}
	rt, err = testResolver(t, Config{Host: "10.1.2.3", DefaultUser: "root", ProxyJump: "bastion"}, "").resolve()
	if err != nil || rt.Jumps[0].User != "op" {
		t.Fatalf("jump host user %q, %v; want the local user", rt.Jumps[0].User, err)
	}
}
