package remote

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// testKey is a client key pair; path is its private key file when written.
type testKey struct {
	priv   ed25519.PrivateKey
	pub    ssh.PublicKey
	signer ssh.Signer
	path   string
}

func newTestKey(t *testing.T) *testKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pub)
	s, _ := ssh.NewSignerFromKey(priv)
	return &testKey{priv: priv, pub: sp, signer: s}
}

// write saves the private key at p, encrypted when passphrase is not empty.
func (k *testKey) write(t *testing.T, p, passphrase string) *testKey {
	t.Helper()
	var block *pem.Block
	var err error
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(k.priv, "test")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(k.priv, "test", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	k.path = p
	return k
}

func (k *testKey) authorizedLine() string { return string(ssh.MarshalAuthorizedKey(k.pub)) }

// serveAgent runs an in-process ssh-agent holding keys on a unix socket.
func serveAgent(t *testing.T, keys ...*testKey) string {
	t.Helper()
	kr := agent.NewKeyring()
	for _, k := range keys {
		if err := kr.Add(agent.AddedKey{PrivateKey: k.priv}); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := os.MkdirTemp("", "agent")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); os.RemoveAll(dir) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _ = agent.ServeAgent(kr, c) }()
		}
	}()
	return sock
}

func pubs(signers []ssh.Signer) []string {
	var out []string
	for _, s := range signers {
		out = append(out, ssh.FingerprintSHA256(s.PublicKey()))
	}
	return out
}

func fps(keys ...*testKey) []string {
	var out []string
	for _, k := range keys {
		out = append(out, ssh.FingerprintSHA256(k.pub))
	}
	return out
}

func TestSignerOrder(t *testing.T) {
	dir := t.TempDir()
	explicit := newTestKey(t).write(t, filepath.Join(dir, "inventory_key"), "")
	fromConfig := newTestKey(t).write(t, filepath.Join(dir, "config_key"), "")
	agentOnly1, agentOnly2 := newTestKey(t), newTestKey(t)
	sock := serveAgent(t, agentOnly1, explicit, agentOnly2)
	log := slog.New(slog.DiscardHandler)
	cfg := Config{IdentityFiles: []string{explicit.path}}.withDefaults()

	a := newAuthenticator(cfg, dir, sock, log)
	defer a.close()
	ep := endpoint{IdentityFiles: []string{explicit.path, fromConfig.path, filepath.Join(dir, "absent")}}
	got, offered, err := a.signers(ep)
	if err != nil {
		t.Fatal(err)
	}
	if want := fps(explicit, fromConfig, agentOnly1, agentOnly2); !slicesEqual(pubs(got), want) {
		t.Errorf("order = %v, want identity files first, then the agent's other keys %v", pubs(got), want)
	}
	if want := []string{explicit.path, fromConfig.path, "2 key(s) from ssh-agent"}; !slicesEqual(offered, want) {
		t.Errorf("offered = %v, want %v", offered, want)
	}

	ep.IdentitiesOnly = true
	got, _, err = a.signers(ep)
	if err != nil {
		t.Fatal(err)
	}
	if want := fps(explicit, fromConfig); !slicesEqual(pubs(got), want) {
		t.Errorf("IdentitiesOnly order = %v, want only the identity files %v", pubs(got), want)
	}

	// A missing key the inventory names is an error; one from the ssh config is not.
	a.explicit[filepath.Join(dir, "absent")] = true
	if _, _, err := a.signers(ep); err == nil {
		t.Error("missing explicit identity file accepted")
	}
}

func TestSignerDefaults(t *testing.T) {
	home := t.TempDir()
	if err := os.Mkdir(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	def := newTestKey(t).write(t, filepath.Join(home, ".ssh", "id_ed25519"), "")
	inAgent := newTestKey(t)
	a := newAuthenticator(Config{}.withDefaults(), home, serveAgent(t, inAgent), slog.New(slog.DiscardHandler))
	defer a.close()
	got, _, err := a.signers(endpoint{})
	if err != nil {
		t.Fatal(err)
	}
	if want := fps(inAgent, def); !slicesEqual(pubs(got), want) {
		t.Errorf("order = %v, want the agent's keys then ~/.ssh/id_ed25519 %v", pubs(got), want)
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

func TestEncryptedKeyAsksOnlyWhenSigning(t *testing.T) {
	dir := t.TempDir()
	k := newTestKey(t).write(t, filepath.Join(dir, "id"), "s3cret")
	var prompts atomic.Int32
	cache := &KeyCache{}
	cfg := Config{
		KeyCache: cache,
		PassphrasePrompt: func(p string) ([]byte, error) {
			prompts.Add(1)
			if p != k.path {
				t.Errorf("prompt for %q, want %q", p, k.path)
			}
			return []byte("s3cret"), nil
		},
	}.withDefaults()
	log := slog.New(slog.DiscardHandler)
	a := newAuthenticator(cfg, dir, "", log)
	signers, _, err := a.signers(endpoint{IdentityFiles: []string{k.path}})
	if err != nil {
		t.Fatal(err)
	}
	if n := prompts.Load(); n != 0 {
		t.Fatalf("prompted %d times before any signature", n)
	}
	if !bytes.Equal(signers[0].PublicKey().Marshal(), k.pub.Marshal()) {
		t.Fatal("public key of the encrypted file not read without decrypting")
	}
	sig, err := signers[0].(ssh.AlgorithmSigner).SignWithAlgorithm(rand.Reader, []byte("data"), ssh.KeyAlgoED25519)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.pub.Verify([]byte("data"), sig); err != nil {
		t.Errorf("signature does not verify: %v", err)
	}
	// Another host of the same run shares the cache: no second prompt.
	b := newAuthenticator(cfg, dir, "", log)
	signers, _, _ = b.signers(endpoint{IdentityFiles: []string{k.path}})
	if _, err := signers[0].Sign(rand.Reader, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if n := prompts.Load(); n != 1 {
		t.Errorf("prompted %d times, want 1", n)
	}
}

func TestEncryptedKeyPassphraseSources(t *testing.T) {
	dir := t.TempDir()
	k := newTestKey(t).write(t, filepath.Join(dir, "id"), "right")
	log := slog.New(slog.DiscardHandler)
	sign := func(cfg Config) error {
		a := newAuthenticator(cfg.withDefaults(), dir, "", log)
		signers, _, err := a.signers(endpoint{IdentityFiles: []string{k.path}})
		if err != nil {
			return err
		}
		_, err = signers[0].Sign(rand.Reader, []byte("x"))
		return err
	}

	t.Setenv("TEST_KEY_PASSPHRASE", "right")
	if err := sign(Config{PassphraseEnv: "TEST_KEY_PASSPHRASE"}); err != nil {
		t.Errorf("passphrase from the environment: %v", err)
	}

	t.Setenv("TEST_KEY_PASSPHRASE", "wrong-value")
	err := sign(Config{PassphraseEnv: "TEST_KEY_PASSPHRASE"})
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "$TEST_KEY_PASSPHRASE") || strings.Contains(err.Error(), "wrong-value") {
		t.Errorf("wrong passphrase in the environment: err = %v, want ErrAuth naming the variable, not its value", err)
	}

	var asked int
	err = sign(Config{PassphraseEnv: "TEST_KEY_PASSPHRASE", PassphrasePrompt: func(string) ([]byte, error) {
		asked++
		if asked < 3 {
			return []byte("nope"), nil
		}
		return []byte("right"), nil
	}})
	if err != nil || asked != 3 {
		t.Errorf("prompt after a wrong environment value: err = %v after %d prompts, want success on the third", err, asked)
	}

	err = sign(Config{PassphrasePrompt: func(string) ([]byte, error) { return []byte("nope"), nil }})
	if !errors.Is(err, ErrAuth) {
		t.Errorf("three wrong answers: err = %v, want ErrAuth", err)
	}
	if err := sign(Config{}); !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "encrypted") {
		t.Errorf("no passphrase source: err = %v", err)
	}
}
