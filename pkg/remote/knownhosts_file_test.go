package remote

import (
	"bytes"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func authorizedKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func TestMatchPattern(t *testing.T) {
	for _, c := range []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "[etcd-1.example]:2222", true},
		{"etcd-?", "etcd-1", true},
		{"etcd-?", "etcd-10", false},
		{"*.example", "etcd-1.example", true},
		{"*.example", "example", false},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYbZ", false},
		{"[*.example]:2222", "[etcd-1.example]:2222", true},
		{"[*.example]:2222", "[etcd-1.example]:22222", false},
		{"[127.0.0.?]:22*", "[127.0.0.1]:2200", true},
		{"[127.0.0.?]:22*", "[127.0.0.10]:2200", false},
		{"", "", true},
		{"", "a", false},
	} {
		if got := matchPattern(c.pattern, c.s); got != c.want {
			t.Errorf("matchPattern(%q, %q) = %v, want %v", c.pattern, c.s, got, c.want)
		}
	}
}

// Host fields are matched against the name the way ssh does: a port other
// than 22 is part of the name, wildcards reach into it, a negation wins,
// case does not count, and hashed names hash the whole name.
func TestHostKeyCheckMatchesHostsLikeOpenSSH(t *testing.T) {
	key := newEd25519PublicKey(t)
	line := func(hosts string) string { return hosts + " " + authorizedKey(key) }
	for _, c := range []struct {
		hosts string
		addr  string
		want  bool
	}{
		{"*", "etcd-1.test:2222", true},
		{"[*.test]:2222", "etcd-1.test:2222", true},
		{"[*.test]:2222", "etcd-1.test:22", false},
		{"[*.test]:*", "etcd-1.test:2379", true},
		{"[127.0.0.?]:2222", "127.0.0.1:2222", true},
		{"[127.0.0.?]:2222", "127.0.0.12:2222", false},
		{"*.test", "etcd-1.test:22", true},
		{"*.test", "etcd-1.test:2222", false},
		{"*.test,!etcd-2.test", "etcd-2.test:22", false},
		{"*.test,!etcd-2.test", "etcd-1.test:22", true},
		{"!etcd-2.test", "etcd-1.test:22", false},
		{"[ETCD-1.Test]:2222", "etcd-1.test:2222", true},
		{"[etcd-1.test]:2222", "ETCD-1.test:2222", true},
		{"other,[localhost]:2222", "localhost:2222", true},
		{knownhosts.HashHostname("[etcd-1.test]:2222"), "etcd-1.test:2222", true},
		{knownhosts.HashHostname("[etcd-1.test]:2222"), "etcd-1.test:22", false},
		{knownhosts.HashHostname("etcd-1.test"), "etcd-1.test:22", true},
	} {
		file := filepath.Join(t.TempDir(), "known_hosts")
		writeKnownHosts(t, file, line(c.hosts))
		ep := endpoint{Alias: "e", KnownHosts: []string{file}}
		host, port, _ := strings.Cut(c.addr, ":")
		ep.HostName = host
		ep.Port = map[string]int{"22": 22, "2222": 2222, "2379": 2379}[port]
		hk, err := newHostKeyCheck(ep, false, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		err = hk.callback(ep.addr(), zeroAddr(), key)
		if got := err == nil; got != c.want {
			t.Errorf("%q for %s: accepted = %v (%v), want %v", c.hosts, c.addr, got, err, c.want)
		}
		if !c.want && !errors.Is(err, ErrHostKeyUnknown) {
			t.Errorf("%q for %s: err = %v, want ErrHostKeyUnknown", c.hosts, c.addr, err)
		}
	}
}

// A line ssh cannot use is skipped with a warning; the others still count.
func TestKnownHostsSkipsUnusableLines(t *testing.T) {
	file := filepath.Join(t.TempDir(), "known_hosts")
	key := newEd25519PublicKey(t)
	writeKnownHosts(t, file,
		"h ssh-foo AAAAB3NzaC1yc2EAAAADAQABAAABAQ==",
		"h ssh-ed25519 not-base64!",
		"@trusted h "+authorizedKey(key),
		"h ssh-rsa "+strings.Fields(authorizedKey(key))[1],
		"|1|garbled h "+authorizedKey(key),
		"h",
		"# a comment",
		"",
		"h "+authorizedKey(key))
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	ep := endpoint{Alias: "h", HostName: "h", Port: 22, KnownHosts: []string{file}}
	hk, err := newHostKeyCheck(ep, false, log)
	if err != nil {
		t.Fatalf("one bad line fails every connection: %v", err)
	}
	if err := hk.callback(ep.addr(), zeroAddr(), key); err != nil {
		t.Errorf("key on a good line refused: %v", err)
	}
	warnings := buf.String()
	for i, want := range []string{"ssh-foo", "base64", "@trusted", "does not match", "hashed host", "want host patterns"} {
		if !strings.Contains(warnings, "line="+string(rune('1'+i))) || !strings.Contains(warnings, want) {
			t.Errorf("no warning for line %d (%s) in:\n%s", i+1, want, warnings)
		}
	}
	if strings.Contains(warnings, "line=7") || strings.Contains(warnings, "line=9") {
		t.Errorf("comment or good line warned about:\n%s", warnings)
	}
	if !strings.Contains(warnings, file) {
		t.Errorf("warnings do not name %s:\n%s", file, warnings)
	}
}
