package remote

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	return serveAgentOn(t, kr)
}

// serveAgentOn serves ag on a new unix socket, until the test ends.
func serveAgentOn(t *testing.T, ag agent.Agent) string {
	t.Helper()
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
			go func() { defer c.Close(); _ = agent.ServeAgent(ag, c) }()
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

	a := newAuthenticator(context.Background(), cfg, dir, sock, log)
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
	a := newAuthenticator(context.Background(), Config{}.withDefaults(), home, serveAgent(t, inAgent), slog.New(slog.DiscardHandler))
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
	a := newAuthenticator(context.Background(), cfg, dir, "", log)
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
	b := newAuthenticator(context.Background(), cfg, dir, "", log)
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
		a := newAuthenticator(context.Background(), cfg.withDefaults(), dir, "", log)
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

// promptMeter stands for the user at the terminal: it counts questions and
// records how many were on screen at once.
type promptMeter struct {
	mu     sync.Mutex
	inside int
	most   int
	asked  map[string]int
}

func (m *promptMeter) ask(what string) {
	m.mu.Lock()
	m.inside++
	m.most = max(m.most, m.inside)
	if m.asked == nil {
		m.asked = map[string]int{}
	}
	m.asked[what]++
	m.mu.Unlock()
	time.Sleep(30 * time.Millisecond) // the user types
	m.mu.Lock()
	m.inside--
	m.mu.Unlock()
}

func (m *promptMeter) password(host, user string) ([]byte, error) {
	m.ask(user + "@" + host)
	return []byte("pw-" + user), nil
}

func (m *promptMeter) count(what string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.asked[what]
}

// Hosts connect in parallel, but their password and passphrase prompts are
// asked one at a time.
func TestPromptsTakeTurns(t *testing.T) {
	t.Setenv("HOME", t.TempDir()) // no default keys
	dir := t.TempDir()
	locked := newTestKey(t).write(t, filepath.Join(dir, "id_locked"), "phrase")
	var pw passwords
	s := startTestServer(t, &ssh.ServerConfig{
		PasswordCallback: pw.check,
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(k.Marshal(), locked.pub.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("unknown key")
		},
	})
	var user promptMeter
	cache := &KeyCache{}
	var cfgs []Config
	for _, u := range []string{"u0", "u1", "u2", "u3"} {
		cfg := s.config(u)
		cfg.KeyCache, cfg.AllowPassword, cfg.Password = cache, true, user.password
		cfgs = append(cfgs, cfg)
	}
	cfg := s.config("keyuser")
	cfg.KeyCache, cfg.IdentityFiles = cache, []string{locked.path}
	cfg.PassphrasePrompt = func(p string) ([]byte, error) {
		user.ask(p)
		return []byte("phrase"), nil
	}
	cfgs = append(cfgs, cfg)

	var wg sync.WaitGroup
	errs := make([]error, len(cfgs))
	for i, cfg := range cfgs {
		wg.Go(func() {
			tr, err := Dial(context.Background(), cfg)
			if err == nil {
				tr.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("%s: %v", cfgs[i].User, err)
		}
	}
	if user.most != 1 {
		t.Errorf("%d prompts on the terminal at once, want one at a time", user.most)
	}
	if n := len(user.asked); n != len(cfgs) {
		t.Errorf("asked %v, want one question per host", user.asked)
	}
}

// Once the run is cancelled at a prompt, the hosts waiting for their turn
// ask nothing.
func TestCancelledRunAsksNothingMore(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	var pw passwords
	s := startTestServer(t, &ssh.ServerConfig{PasswordCallback: pw.check})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var asked atomic.Int32
	cache := &KeyCache{}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		cfg := s.config("u" + string(rune('0'+i)))
		cfg.KeyCache, cfg.AllowPassword = cache, true
		cfg.Password = func(string, string) ([]byte, error) {
			asked.Add(1)
			time.Sleep(300 * time.Millisecond) // the other hosts get in line
			cancel()                           // Ctrl-C
			return nil, ctx.Err()
		}
		wg.Go(func() {
			tr, err := Dial(ctx, cfg)
			if err == nil {
				tr.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrAuth) {
			t.Errorf("err = %v, want context.Canceled, not an authentication failure", err)
		}
	}
	if n := asked.Load(); n != 1 {
		t.Errorf("%d questions, want 1: none after the cancelled one", n)
	}
}

// A password is asked once per user@host for the run: a second connection,
// or a jump host shared by two targets, uses the first answer.
func TestPasswordAskedOncePerUserAndHost(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	var pw passwords
	target := startTestServer(t, &ssh.ServerConfig{PasswordCallback: pw.check})
	jump := startTestServer(t, &ssh.ServerConfig{PasswordCallback: pw.check})
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	var both []byte
	for _, f := range []string{target.knownHosts, jump.knownHosts} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		both = append(both, b...)
	}
	if err := os.WriteFile(knownHosts, both, 0o600); err != nil {
		t.Fatal(err)
	}
	var user promptMeter
	cache := &KeyCache{}
	config := func(u, proxyJump string) Config {
		cfg := target.config(u)
		cfg.KnownHostsFile, cfg.ProxyJump = knownHosts, proxyJump
		cfg.KeyCache, cfg.AllowPassword, cfg.Password = cache, true, user.password
		return cfg
	}
	viaJump := "hop@" + jump.addr()

	for _, cfg := range []Config{config("alice", "none"), config("alice", "none"), config("bob", "none"), config("carol", viaJump), config("dave", viaJump)} {
		tr, err := Dial(context.Background(), cfg)
		if err != nil {
			t.Fatalf("%s via %s: %v", cfg.User, cfg.ProxyJump, err)
		}
		tr.Close()
	}
	for who, want := range map[string]int{"alice@127.0.0.1": 1, "bob@127.0.0.1": 1, "hop@127.0.0.1": 1, "carol@127.0.0.1": 1, "dave@127.0.0.1": 1} {
		if n := user.count(who); n != want {
			t.Errorf("asked %s's password %d times, want %d (all questions: %v)", who, n, want, user.asked)
		}
	}
}

// keyboard-interactive gets the password only for a question asking for a
// password; anything else (a one-time code) fails the login with a message
// naming the question, and never receives the password.
func TestKeyboardInteractiveAnswersOnlyPasswordQuestions(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	for _, tc := range []struct {
		name    string
		rounds  [][]string
		wantErr string
	}{
		{name: "password", rounds: [][]string{{"Password: "}}},
		{name: "openssh style", rounds: [][]string{{"root@127.0.0.1's password: "}}},
		{name: "no question then password", rounds: [][]string{{}, {"PASSWORD:"}}},
		{name: "one-time code", rounds: [][]string{{"Verification code: "}}, wantErr: `"Verification code:"`},
		{name: "password then code", rounds: [][]string{{"Password: "}, {"Verification code: "}}, wantErr: `"Verification code:"`},
		{name: "one-time password", rounds: [][]string{{"One-time password (OATH) for `root': "}}, wantErr: "One-time password"},
		{name: "expired password", rounds: [][]string{{"New password: "}}, wantErr: "New password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var leaked []string
			s := startTestServer(t, &ssh.ServerConfig{
				KeyboardInteractiveCallback: func(c ssh.ConnMetadata, client ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
					ok := true
					for _, qs := range tc.rounds {
						answers, err := client(c.User(), "", qs, make([]bool, len(qs)))
						if err != nil {
							return nil, err
						}
						for i, q := range qs {
							isPassword := strings.Contains(strings.ToLower(q), "password") && !strings.Contains(q, "One-time") && !strings.Contains(q, "New")
							if !isPassword && answers[i] == "pw-root" {
								mu.Lock()
								leaked = append(leaked, q)
								mu.Unlock()
							}
							ok = ok && isPassword && answers[i] == "pw-root"
						}
					}
					if !ok {
						return nil, errors.New("wrong answers")
					}
					return nil, nil
				},
			})
			var user promptMeter
			cfg := s.config("root")
			cfg.AllowPassword, cfg.Password = true, user.password
			tr, err := Dial(context.Background(), cfg)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("err = %v, want a login", err)
			case tc.wantErr != "" && (err == nil || !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("err = %v, want ErrAuth naming %s", err, tc.wantErr)
			}
			if err == nil {
				tr.Close()
			}
			mu.Lock()
			defer mu.Unlock()
			if len(leaked) > 0 {
				t.Errorf("the password was sent as the answer to %q", leaked)
			}
		})
	}
}

func TestIsPasswordQuestion(t *testing.T) {
	for q, want := range map[string]bool{
		"Password: ":                             true,
		"password:":                              true,
		"alice@db1's password: ":                 true,
		"Password for alice@db1: ":               true,
		"(current) UNIX password: ":              true,
		"Verification code: ":                    false,
		"Enter passcode: ":                       false,
		"One-time password (OATH) for `alice': ": false,
		"New password: ":                         false,
		"Retype new password: ":                  false,
		"":                                       false,
	} {
		if got := isPasswordQuestion(q, false); got != want {
			t.Errorf("isPasswordQuestion(%q) = %v, want %v", q, got, want)
		}
	}
	if isPasswordQuestion("Password: ", true) {
		t.Error("a question whose answer is echoed taken for a password")
	}
}

// silentAgent is an ssh-agent socket that accepts connections and never answers.
func silentAgent(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "agent")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		os.RemoveAll(dir)
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	return sock
}

// stuckSigner is an agent that lists its keys but never signs.
type stuckSigner struct {
	agent.ExtendedAgent
	release chan struct{}
}

func (s stuckSigner) Sign(ssh.PublicKey, []byte) (*ssh.Signature, error) {
	<-s.release
	return nil, errors.New("released")
}

func (s stuckSigner) SignWithFlags(ssh.PublicKey, []byte, agent.SignatureFlags) (*ssh.Signature, error) {
	<-s.release
	return nil, errors.New("released")
}

// An agent that stops answering fails the connection once the agent
// timeout has passed, naming its socket, whether it hangs listing its keys
// or signing.
func TestAgentThatDoesNotAnswer(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	key := newTestKey(t)
	s := startTestServer(t, &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(k.Marshal(), key.pub.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("unknown key")
		},
	})

	kr := agent.NewKeyring()
	if err := kr.Add(agent.AddedKey{PrivateKey: key.priv}); err != nil {
		t.Fatal(err)
	}
	stuck := stuckSigner{kr.(agent.ExtendedAgent), make(chan struct{})}
	t.Cleanup(func() { close(stuck.release) })
	signSock := serveAgentOn(t, stuck)

	for name, sock := range map[string]string{"list": silentAgent(t), "sign": signSock} {
		t.Run(name, func(t *testing.T) {
			cfg := s.config("root")
			cfg.AgentSocket = sock
			cfg.agentTimeout = 300 * time.Millisecond
			start := time.Now()
			done := make(chan error, 1)
			go func() {
				tr, err := Dial(context.Background(), cfg)
				if err == nil {
					tr.Close()
				}
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), sock) {
					t.Errorf("err = %v, want a failure naming the agent socket %s", err, sock)
				}
				if d := time.Since(start); d > 3*time.Second {
					t.Errorf("failed after %v, want about the agent timeout", d)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("connection still waiting for the agent after 5s")
			}
		})
	}
}

// A password the server rejects is asked again (three tries per
// connection) and never kept for the run: the next connection to that
// user@host asks anew; one it accepts is kept and not asked again.
func TestWrongPasswordIsNotKept(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	var pw passwords
	s := startTestServer(t, &ssh.ServerConfig{PasswordCallback: pw.check})
	var mu sync.Mutex
	var typed []string
	answers := []string{"typo", "pw-alice", "typo", "typo", "typo", "pw-alice"}
	cfg := s.config("alice")
	cfg.KeyCache, cfg.AllowPassword = &KeyCache{}, true
	cfg.Password = func(string, string) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		a := answers[len(typed)]
		typed = append(typed, a)
		return []byte(a), nil
	}
	dial := func() error {
		tr, err := Dial(context.Background(), cfg)
		if err == nil {
			tr.Close()
		}
		return err
	}
	// A typo, then the password: in, and kept.
	if err := dial(); err != nil {
		t.Fatalf("after a typo: %v", err)
	}
	if err := dial(); err != nil || len(typed) != 2 {
		t.Fatalf("second connection: %v, asked %d times in all, want 2", err, len(typed))
	}
	// Three typos fail the connection; the next asks again.
	cfg.KeyCache = &KeyCache{}
	typed = typed[:0]
	answers = answers[2:]
	if err := dial(); err == nil || !errors.Is(err, ErrAuth) || len(typed) != 3 {
		t.Fatalf("three typos: %v after %d questions", err, len(typed))
	}
	if err := dial(); err != nil || len(typed) != 4 {
		t.Errorf("the next connection: %v after %d questions, want in after a fourth", err, len(typed))
	}
}
