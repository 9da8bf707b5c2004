package remote

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func newEd25519PublicKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// zeroAddr stands for the remote address, which host key checks ignore.
func zeroAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero} }

func countLines(t *testing.T, p string) int {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

func TestRecordHostKeyCreatesPrivateFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "new", "dir", "known_hosts")
	key := newEd25519PublicKey(t)
	if err := recordHostKey(file, "127.0.0.1:2222", key, false); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{file: 0o600, filepath.Dir(file): 0o700 | os.ModeDir} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s mode = %v, want %v", p, fi.Mode(), want)
		}
	}
	b, _ := os.ReadFile(file)
	if !strings.HasPrefix(string(b), "[127.0.0.1]:2222 ssh-ed25519 ") {
		t.Errorf("entry = %q, want it for [127.0.0.1]:2222", b)
	}
}

func TestRecordHostKeyConcurrent(t *testing.T) {
	file := filepath.Join(t.TempDir(), "known_hosts")
	// An entry without a final newline must not merge with ours.
	if err := os.WriteFile(file, []byte("# managed by hand"), 0o600); err != nil {
		t.Fatal(err)
	}
	same := newEd25519PublicKey(t)
	others := make([]ssh.PublicKey, 32)
	for i := range others {
		others[i] = newEd25519PublicKey(t)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 32 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs <- recordHostKey(file, "10.0.0.1:22", same, false)
		}()
		go func() {
			defer wg.Done()
			errs <- recordHostKey(file, fmt.Sprintf("10.0.1.%d:22", i), others[i], i%2 == 0)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := countLines(t, file); n != 1+1+32 {
		t.Errorf("known_hosts has %d lines, want the comment, one entry for the shared host and 32 others", n)
	}
	db, err := knownhosts.New(file)
	if err != nil {
		t.Fatalf("known_hosts no longer parses: %v", err)
	}
	if err := db("10.0.0.1:22", zeroAddr(), same); err != nil {
		t.Errorf("recorded key not accepted: %v", err)
	}
}

func TestRecordHostKeyHashed(t *testing.T) {
	file := filepath.Join(t.TempDir(), "known_hosts")
	key := newEd25519PublicKey(t)
	if err := recordHostKey(file, "etcd-1.example.com:2200", key, true); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(file)
	if strings.Contains(string(b), "etcd-1") || !strings.HasPrefix(string(b), "|1|") {
		t.Errorf("entry %q is not hashed", b)
	}
	db, err := knownhosts.New(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := db("etcd-1.example.com:2200", zeroAddr(), key); err != nil {
		t.Errorf("hashed entry not matched: %v", err)
	}
}

func writeKnownHosts(t *testing.T, file string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestHostKeyCheck(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "known_hosts")
	known, offered := newEd25519PublicKey(t), newEd25519PublicKey(t)
	writeKnownHosts(t, file, "# comment", knownhosts.Line([]string{"[10.0.0.5]:2222"}, known))
	ep := endpoint{Alias: "etcd-1", HostName: "10.0.0.5", Port: 2222, KnownHosts: []string{file}}
	log := slog.New(slog.DiscardHandler)

	for _, accept := range []bool{false, true} {
		hk, err := newHostKeyCheck(ep, accept, log)
		if err != nil {
			t.Fatal(err)
		}
		if err := hk.callback(ep.addr(), zeroAddr(), known); err != nil || !hk.verified {
			t.Fatalf("known key refused: %v", err)
		}
		err = hk.callback(ep.addr(), zeroAddr(), offered)
		var he *HostKeyError
		if !errors.As(err, &he) || !errors.Is(err, ErrHostKeyChanged) || errors.Is(err, ErrHostKeyUnknown) {
			t.Fatalf("accept=%v: changed key: err = %v, want ErrHostKeyChanged", accept, err)
		}
		msg := err.Error()
		for _, want := range []string{"[10.0.0.5]:2222", ssh.FingerprintSHA256(offered), ssh.FingerprintSHA256(known), file + ":2", "ssh-keygen -R '[10.0.0.5]:2222'"} {
			if !strings.Contains(msg, want) {
				t.Errorf("message %q lacks %q", msg, want)
			}
		}
	}
	if n := countLines(t, file); n != 2 {
		t.Errorf("known_hosts changed: %d lines", n)
	}

	other := endpoint{Alias: "etcd-2", HostName: "10.0.0.6", Port: 22, KnownHosts: []string{file}}
	hk, _ := newHostKeyCheck(other, false, log)
	err := hk.callback(other.addr(), zeroAddr(), offered)
	if !errors.Is(err, ErrHostKeyUnknown) {
		t.Fatalf("unknown host: err = %v, want ErrHostKeyUnknown", err)
	}
	for _, want := range []string{"etcd-2", "10.0.0.6", ssh.FingerprintSHA256(offered), AcceptNewHostKeysFlag} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	if hk.algorithms != nil {
		t.Errorf("algorithms for an unknown host = %v, want the defaults", hk.algorithms)
	}
	hk, _ = newHostKeyCheck(other, true, log)
	if err := hk.callback(other.addr(), zeroAddr(), offered); err != nil {
		t.Fatalf("accept-new refused a new key: %v", err)
	}
	hk, _ = newHostKeyCheck(other, false, log)
	if err := hk.callback(other.addr(), zeroAddr(), offered); err != nil {
		t.Fatalf("recorded key refused afterwards: %v", err)
	}
	if got := hk.algorithms; !cmp.Equal(got, []string{ssh.KeyAlgoED25519}) {
		t.Errorf("algorithms = %v, want only ed25519", got)
	}
}

func TestHostKeyCheckRevoked(t *testing.T) {
	file := filepath.Join(t.TempDir(), "known_hosts")
	key := newEd25519PublicKey(t)
	writeKnownHosts(t, file, "@revoked * "+strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))))
	ep := endpoint{Alias: "h", HostName: "h", Port: 22, KnownHosts: []string{file}}
	hk, err := newHostKeyCheck(ep, true, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := hk.callback(ep.addr(), zeroAddr(), key); !errors.Is(err, ErrHostKeyChanged) || !strings.Contains(err.Error(), "REVOKED") {
		t.Errorf("revoked key: err = %v", err)
	}
}

func TestHostKeyAlgorithms(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, _ := ssh.NewPublicKey(&rsaKey.PublicKey)
	file := filepath.Join(t.TempDir(), "known_hosts")
	writeKnownHosts(t, file, knownhosts.Line([]string{"h"}, rsaPub), knownhosts.Line([]string{"other"}, newEd25519PublicKey(t)))
	hk, err := newHostKeyCheck(endpoint{Alias: "h", HostName: "h", Port: 22, KnownHosts: []string{file}}, false, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}; !cmp.Equal(hk.algorithms, want) {
		t.Errorf("algorithms = %v, want %v", hk.algorithms, want)
	}
	got := hostKeyAlgorithms([]string{ssh.KeyAlgoRSA, ssh.KeyAlgoECDSA256, ssh.KeyAlgoED25519})
	if want := []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}; !cmp.Equal(got, want) {
		t.Errorf("hostKeyAlgorithms = %v, want %v", got, want)
	}
}
