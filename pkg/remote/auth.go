package remote

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// KeyCache keeps what the user typed for a run, in memory: decrypted
// private keys, so that a passphrase is asked once however many hosts use
// the key, and passwords by user@host, so that a second connection (another
// host behind the same jump host) does not ask again. Connections are made
// in parallel, but their questions take turns: one prompt on the terminal
// at a time. It also keeps each identity file as first read and parsed:
// parsing an RSA key checks it, which takes milliseconds, and every host
// reads the same files. The zero value is ready to use.
type KeyCache struct {
	once sync.Once
	// turn holds a token while someone asks the user; it also guards the maps.
	turn      chan struct{}
	signers   map[string]ssh.Signer
	passwords map[string][]byte

	filesMu sync.Mutex
	files   map[string]*identityFile
}

// identityFile is a private key file as read and parsed once for the run.
type identityFile struct {
	once     sync.Once
	data     []byte
	readErr  error
	signer   ssh.Signer
	parseErr error // *ssh.PassphraseMissingError for an encrypted key
}

// identity reads and parses the identity file at path, once per cache.
func (c *KeyCache) identity(path string) *identityFile {
	var f *identityFile
	if c == nil {
		f = &identityFile{}
	} else {
		c.filesMu.Lock()
		if f = c.files[path]; f == nil {
			if c.files == nil {
				c.files = map[string]*identityFile{}
			}
			f = &identityFile{}
			c.files[path] = f
		}
		c.filesMu.Unlock()
	}
	f.once.Do(func() {
		if f.data, f.readErr = os.ReadFile(path); f.readErr == nil {
			f.signer, f.parseErr = ssh.ParsePrivateKey(f.data)
		}
	})
	return f
}

// take waits for the user's attention, or for ctx to be done.
func (c *KeyCache) take(ctx context.Context) (release func(), err error) {
	c.once.Do(func() { c.turn = make(chan struct{}, 1) })
	select {
	case c.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// A cancelled run asks nothing more, even if the turn came first.
	if err := ctx.Err(); err != nil {
		<-c.turn
		return nil, err
	}
	return func() { <-c.turn }, nil
}

// unlock returns the cached signer for path, or decrypts it with decrypt
// in its turn.
func (c *KeyCache) unlock(ctx context.Context, path string, decrypt func() (ssh.Signer, error)) (ssh.Signer, error) {
	release, err := c.take(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	if s, ok := c.signers[path]; ok {
		return s, nil
	}
	s, err := decrypt()
	if err != nil {
		return nil, err
	}
	if c.signers == nil {
		c.signers = make(map[string]ssh.Signer)
	}
	c.signers[path] = s
	return s, nil
}

// password returns the cached password of userHost, or asks for it in its turn.
func (c *KeyCache) password(ctx context.Context, userHost string, ask func() ([]byte, error)) ([]byte, error) {
	release, err := c.take(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	if p, ok := c.passwords[userHost]; ok {
		return p, nil
	}
	p, err := ask()
	if err != nil {
		return nil, err
	}
	if c.passwords == nil {
		c.passwords = make(map[string][]byte)
	}
	c.passwords[userHost] = p
	return p, nil
}

// forgetPassword drops the password of userHost when it is still wrong: a
// server rejected it, so the next connection asks again.
func (c *KeyCache) forgetPassword(ctx context.Context, userHost string, wrong []byte) error {
	release, err := c.take(ctx)
	if err != nil {
		return err
	}
	defer release()
	if p, ok := c.passwords[userHost]; ok && bytes.Equal(p, wrong) {
		delete(c.passwords, userHost)
	}
	return nil
}

// authenticator builds the credentials for each server of a route.
type authenticator struct {
	ctx      context.Context // the connection's: no question is asked once it is done
	cfg      Config
	home     string
	log      *slog.Logger
	explicit map[string]bool // the Config's identity files: errors there are fatal

	agentConn    net.Conn
	agentSigners []ssh.Signer
	// agentErr is an agent that accepted the connection but did not answer:
	// something is wrong with it, and going on without it would hide that.
	agentErr error

	// pause, set during a handshake, stops its timeout while the user is asked.
	pause func() (resume func())
	// sent is the password given to each server (by user@host) in this
	// connection: asked for again, it was rejected.
	sent map[string][]byte
}

// defaultAgentTimeout bounds each call to the ssh-agent. An agent may ask
// its user to confirm a signature (ssh-add -c), which takes a few seconds.
const defaultAgentTimeout = 10 * time.Second

// asking suspends the handshake timeout; call the result when done.
func (a *authenticator) asking() (done func()) {
	if a.pause == nil {
		return func() {}
	}
	return a.pause()
}

func newAuthenticator(ctx context.Context, cfg Config, home, agentSocket string, log *slog.Logger) *authenticator {
	a := &authenticator{ctx: ctx, cfg: cfg, home: home, log: log, explicit: map[string]bool{}}
	for _, f := range cfg.IdentityFiles {
		a.explicit[expandHome(f, home)] = true
	}
	if agentSocket == "" {
		return a
	}
	timeout := cfg.agentTimeout
	if timeout <= 0 {
		timeout = defaultAgentTimeout
	}
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, timeout)
	conn, err := d.DialContext(dctx, "unix", agentSocket)
	cancel()
	if err != nil {
		log.Debug("ssh-agent unreachable, not using it", "socket", agentSocket, "err", err)
		return a
	}
	ac := &agentConn{conn: conn, timeout: timeout}
	signers, err := agent.NewClient(ac).Signers()
	if err != nil {
		conn.Close()
		if ac.timedOut.Load() {
			a.agentErr = fmt.Errorf("ssh-agent at %s did not list its keys within %s: check that it runs, or point SSH_AUTH_SOCK to one that does (IdentityAgent none in the ssh config does without)",
				agentSocket, timeout)
			return a
		}
		log.Debug("ssh-agent did not list its keys, not using it", "socket", agentSocket, "err", err)
		return a
	}
	for i, s := range signers {
		if as, ok := s.(ssh.AlgorithmSigner); ok {
			signers[i] = agentSigner{as, ac, agentSocket}
		}
	}
	a.agentConn, a.agentSigners = conn, signers
	log.Debug("using ssh-agent", "socket", agentSocket, "keys", len(signers))
	return a
}

// agentConn gives each call to the agent a deadline: an agent that never
// answers must not hang the connection. It has no Close, so that the agent
// client makes one call at a time, each a write then a read.
type agentConn struct {
	conn     net.Conn
	timeout  time.Duration
	timedOut atomic.Bool
}

func (c *agentConn) Write(p []byte) (int, error) {
	if c.timedOut.Load() {
		// The connection is out of step with the agent: no more calls.
		return 0, os.ErrDeadlineExceeded
	}
	// The deadline covers this request and the reading of its answer.
	if err := c.conn.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	n, err := c.conn.Write(p)
	c.check(err)
	return n, err
}

func (c *agentConn) Read(p []byte) (int, error) {
	n, err := c.conn.Read(p)
	c.check(err)
	return n, err
}

func (c *agentConn) check(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.timedOut.Store(true)
	}
}

// agentSigner names the agent in its errors, which the ssh package passes
// on as they are.
type agentSigner struct {
	ssh.AlgorithmSigner
	conn   *agentConn
	socket string
}

func (s agentSigner) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	sig, err := s.AlgorithmSigner.Sign(rand, data)
	return sig, s.wrap(err)
}

func (s agentSigner) SignWithAlgorithm(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	sig, err := s.AlgorithmSigner.SignWithAlgorithm(rand, data, algorithm)
	return sig, s.wrap(err)
}

func (s agentSigner) wrap(err error) error {
	switch {
	case err == nil:
		return nil
	case s.conn.timedOut.Load():
		return fmt.Errorf("ssh-agent at %s did not sign with key %s within %s: check that it runs and does not wait for a confirmation: %w",
			s.socket, ssh.FingerprintSHA256(s.PublicKey()), s.conn.timeout, ErrAuth)
	}
	return fmt.Errorf("ssh-agent at %s could not sign with key %s: %w", s.socket, ssh.FingerprintSHA256(s.PublicKey()), err)
}

// close drops the agent connection; signing is over once every hop is in.
func (a *authenticator) close() {
	if a.agentConn != nil {
		a.agentConn.Close()
	}
}

// methods returns the authentication methods for ep and a description of
// what they offer, for messages. Keys are all in one publickey method
// because the ssh package tries each method name once.
func (a *authenticator) methods(ep endpoint) ([]ssh.AuthMethod, string, error) {
	signers, offered, err := a.signers(ep)
	if err != nil {
		return nil, "", err
	}
	var methods []ssh.AuthMethod
	if len(signers) > 0 {
		methods = append(methods, ssh.PublicKeys(signers...))
	}
	if a.cfg.AllowPassword && a.cfg.Password != nil {
		// A mistyped password is asked again, as ssh does, three times.
		methods = append(methods,
			ssh.RetryableAuthMethod(ssh.PasswordCallback(func() (string, error) {
				p, err := a.password(ep)
				return string(p), err
			}), passwordTries),
			ssh.KeyboardInteractive(func(_, _ string, questions []string, echos []bool) ([]string, error) {
				return a.answer(ep, questions, echos)
			}))
		offered = append(offered, "password")
	}
	desc := "nothing"
	if len(offered) > 0 {
		desc = strings.Join(offered, ", ")
	}
	return methods, desc, nil
}

// signers lists the keys to offer ep, in order: its identity files (signed
// by the agent when it holds them), then the agent's other keys unless
// IdentitiesOnly. With no identity file at all: the agent's keys, then the
// default ~/.ssh keys, as ssh does. offered describes them for messages.
func (a *authenticator) signers(ep endpoint) (signers []ssh.Signer, offered []string, err error) {
	if a.agentErr != nil {
		return nil, nil, a.agentErr
	}
	seen := map[string]bool{}
	add := func(s ssh.Signer) bool {
		k := string(s.PublicKey().Marshal())
		if seen[k] {
			return false
		}
		seen[k] = true
		signers = append(signers, s)
		return true
	}
	inAgent := func(pub ssh.PublicKey) ssh.Signer {
		for _, s := range a.agentSigners {
			if bytes.Equal(s.PublicKey().Marshal(), pub.Marshal()) {
				return s
			}
		}
		return nil
	}

	files := ep.IdentityFiles
	defaults := len(files) == 0
	if defaults && a.home != "" {
		for _, name := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			files = append(files, filepath.Join(a.home, ".ssh", name))
		}
	}
	type fileSigner struct {
		path string
		ssh.Signer
	}
	var fileSigners []fileSigner
	for _, f := range files {
		s, err := a.loadKey(f)
		if err != nil {
			if a.explicit[f] {
				return nil, nil, err
			}
			if !errors.Is(err, fs.ErrNotExist) {
				a.log.Warn("skipping identity file", "file", f, "err", err)
			}
			continue
		}
		// The agent may hold the decrypted key: no passphrase needed then.
		if as := inAgent(s.PublicKey()); as != nil {
			s = as
		}
		fileSigners = append(fileSigners, fileSigner{f, s})
	}
	if !defaults {
		for _, s := range fileSigners {
			if add(s.Signer) {
				offered = append(offered, s.path)
			}
		}
	}
	if !ep.IdentitiesOnly || defaults {
		n := 0
		for _, s := range a.agentSigners {
			if add(s) {
				n++
			}
		}
		if n > 0 {
			offered = append(offered, fmt.Sprintf("%d key(s) from ssh-agent", n))
		}
	}
	if defaults {
		for _, s := range fileSigners {
			if add(s.Signer) {
				offered = append(offered, s.path)
			}
		}
	}
	return signers, offered, nil
}

// passwordTries is how many passwords a connection asks for, per server.
const passwordTries = 3

// answer answers a keyboard-interactive round with the password, asked once
// for the round. Other questions, for a one-time code or a new password,
// are not answered: the login fails naming the question, and the password
// is never sent to them.
func (a *authenticator) answer(ep endpoint, questions []string, echos []bool) ([]string, error) {
	answers := make([]string, len(questions))
	var p []byte
	for i, q := range questions {
		if !isPasswordQuestion(q, echos[i]) {
			return nil, fmt.Errorf("%s asks %q (keyboard-interactive), which is not for the password: only the password is answered; log in to it with a key instead: %w",
				ep, strings.TrimSpace(q), ErrAuth)
		}
		if p == nil {
			var err error
			if p, err = a.password(ep); err != nil {
				return nil, err
			}
		}
		answers[i] = string(p)
	}
	return answers, nil
}

// rejected forgets the password this connection gave ep, which the server
// did not accept: it is not used again, by this run's other connections
// either.
func (a *authenticator) rejected(ep endpoint) {
	k := ep.String()
	if p, ok := a.sent[k]; ok {
		delete(a.sent, k)
		_ = a.cfg.KeyCache.forgetPassword(context.WithoutCancel(a.ctx), k, p)
	}
}

// isPasswordQuestion tells a question for the account's password from one
// for a one-time code or for a new password. An echoed answer is no secret.
func isPasswordQuestion(q string, echo bool) bool {
	q = strings.ToLower(q)
	if echo || !strings.Contains(q, "password") {
		return false
	}
	for _, other := range []string{"one-time", "one time", "new password"} {
		if strings.Contains(q, other) {
			return false
		}
	}
	return true
}

// password returns ep's password, asked once per user@host for the run
// while servers accept it: asked for again by the same server, the one
// given was rejected, and the user is asked anew.
func (a *authenticator) password(ep endpoint) ([]byte, error) {
	// Waiting for another host's prompt counts as asking too.
	defer a.asking()()
	k := ep.String()
	a.rejected(ep)
	p, err := a.cfg.KeyCache.password(a.ctx, k, func() ([]byte, error) { return a.cfg.Password(ep.Alias, ep.User) })
	switch {
	case err == nil:
		if a.sent == nil {
			a.sent = map[string][]byte{}
		}
		a.sent[k] = p
		return p, nil
	case a.ctx.Err() != nil || errors.Is(err, context.Canceled):
		return nil, fmt.Errorf("read password for %s: %w", k, err)
	}
	return nil, fmt.Errorf("read password for %s: %w: %w", k, ErrAuth, err)
}

// loadKey reads a private key file. An encrypted key whose public half is
// readable (in the file, or in path.pub) is decrypted only if a server asks
// for a signature with it.
func (a *authenticator) loadKey(path string) (ssh.Signer, error) {
	f := a.cfg.KeyCache.identity(path)
	if f.readErr != nil {
		return nil, fmt.Errorf("read identity file: %w", f.readErr)
	}
	pemBytes, s, err := f.data, f.signer, f.parseErr
	if err == nil {
		return s, nil
	}
	var missing *ssh.PassphraseMissingError
	if !errors.As(err, &missing) {
		return nil, fmt.Errorf("parse identity file %s: %w", path, err)
	}
	k := &lazyKey{path: path, pub: missing.PublicKey, unlock: func() (ssh.Signer, error) { return a.decrypt(path, pemBytes) }}
	if k.pub == nil {
		if b, err := os.ReadFile(path + ".pub"); err == nil {
			if pub, _, _, _, err := ssh.ParseAuthorizedKey(b); err == nil {
				k.pub = pub
			}
		}
	}
	if k.pub == nil {
		return k.signer()
	}
	return k, nil
}

// decrypt unlocks an encrypted key with the passphrase from the environment,
// else from the prompt (three tries), caching the result for the run.
func (a *authenticator) decrypt(path string, pemBytes []byte) (ssh.Signer, error) {
	// Waiting for another host's prompt counts as asking too.
	defer a.asking()()
	return a.cfg.KeyCache.unlock(a.ctx, path, func() (ssh.Signer, error) {
		prompt := a.cfg.PassphrasePrompt
		if env := a.cfg.PassphraseEnv; env != "" {
			if p := os.Getenv(env); p != "" {
				s, err := ssh.ParsePrivateKeyWithPassphrase(pemBytes, []byte(p))
				switch {
				case err == nil:
					return s, nil
				case !errors.Is(err, x509.IncorrectPasswordError):
					return nil, fmt.Errorf("decrypt identity file %s: %w: %w", path, ErrAuth, err)
				case prompt == nil:
					return nil, fmt.Errorf("the passphrase in $%s does not decrypt identity file %s: %w", env, path, ErrAuth)
				}
				a.log.Warn("passphrase from the environment does not decrypt the key, asking", "file", path, "env", env)
			}
		}
		if prompt == nil {
			return nil, fmt.Errorf("identity file %s is encrypted: put its passphrase in an environment variable, add the key to ssh-agent, or run interactively: %w", path, ErrAuth)
		}
		for range 3 {
			p, err := prompt(path)
			if err != nil {
				if a.ctx.Err() != nil || errors.Is(err, context.Canceled) {
					return nil, fmt.Errorf("read passphrase for %s: %w", path, err)
				}
				return nil, fmt.Errorf("read passphrase for %s: %w: %w", path, ErrAuth, err)
			}
			s, err := ssh.ParsePrivateKeyWithPassphrase(pemBytes, p)
			clear(p)
			if err == nil {
				return s, nil
			}
			if !errors.Is(err, x509.IncorrectPasswordError) {
				return nil, fmt.Errorf("decrypt identity file %s: %w: %w", path, ErrAuth, err)
			}
		}
		return nil, fmt.Errorf("wrong passphrase for identity file %s, three times: %w", path, ErrAuth)
	})
}

// lazyKey is an encrypted private key that asks for its passphrase on the
// first signature.
type lazyKey struct {
	path   string
	pub    ssh.PublicKey
	unlock func() (ssh.Signer, error)
}

func (k *lazyKey) signer() (ssh.Signer, error) { return k.unlock() }

func (k *lazyKey) PublicKey() ssh.PublicKey { return k.pub }

func (k *lazyKey) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	s, err := k.signer()
	if err != nil {
		return nil, err
	}
	return s.Sign(rand, data)
}

// SignWithAlgorithm lets RSA keys sign with SHA-2, which servers require.
func (k *lazyKey) SignWithAlgorithm(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	s, err := k.signer()
	if err != nil {
		return nil, err
	}
	if as, ok := s.(ssh.AlgorithmSigner); ok {
		return as.SignWithAlgorithm(rand, data, algorithm)
	}
	if algorithm != "" && algorithm != k.pub.Type() {
		return nil, fmt.Errorf("key %s cannot sign with %s", k.path, algorithm)
	}
	return s.Sign(rand, data)
}
