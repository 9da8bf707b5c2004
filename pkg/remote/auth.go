package remote

import (
	"bytes"
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
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// KeyCache keeps decrypted private keys in memory for a run, so that a
// passphrase is asked once however many hosts use the key, and prompts for
// parallel connections do not interleave. The zero value is ready to use.
type KeyCache struct {
	mu      sync.Mutex
	signers map[string]ssh.Signer
}

// unlock returns the cached signer for path, or decrypts it with decrypt
// while holding the lock.
func (c *KeyCache) unlock(path string, decrypt func() (ssh.Signer, error)) (ssh.Signer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
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

// authenticator builds the credentials for each server of a route.
type authenticator struct {
	cfg      Config
	home     string
	log      *slog.Logger
	explicit map[string]bool // the Config's identity files: errors there are fatal

	agentConn    net.Conn
	agentSigners []ssh.Signer

	mu        sync.Mutex
	passwords map[string][]byte // by user@server, asked once

	// pause, set during a handshake, stops its timeout while the user is asked.
	pause func() (resume func())
}

// asking suspends the handshake timeout; call the result when done.
func (a *authenticator) asking() (done func()) {
	if a.pause == nil {
		return func() {}
	}
	return a.pause()
}

func newAuthenticator(cfg Config, home, agentSocket string, log *slog.Logger) *authenticator {
	a := &authenticator{cfg: cfg, home: home, log: log, explicit: map[string]bool{}}
	for _, f := range cfg.IdentityFiles {
		a.explicit[expandHome(f, home)] = true
	}
	if agentSocket == "" {
		return a
	}
	conn, err := net.DialTimeout("unix", agentSocket, 5*time.Second)
	if err != nil {
		log.Debug("ssh-agent unreachable, not using it", "socket", agentSocket, "err", err)
		return a
	}
	signers, err := agent.NewClient(conn).Signers()
	if err != nil {
		conn.Close()
		log.Debug("ssh-agent did not list its keys, not using it", "socket", agentSocket, "err", err)
		return a
	}
	a.agentConn, a.agentSigners = conn, signers
	log.Debug("using ssh-agent", "socket", agentSocket, "keys", len(signers))
	return a
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
		methods = append(methods,
			ssh.PasswordCallback(func() (string, error) {
				p, err := a.password(ep)
				return string(p), err
			}),
			ssh.KeyboardInteractive(func(_, _ string, questions []string, echos []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range questions {
					if echos[i] {
						return nil, fmt.Errorf("keyboard-interactive question %q is not a password", questions[i])
					}
					p, err := a.password(ep)
					if err != nil {
						return nil, err
					}
					answers[i] = string(p)
				}
				return answers, nil
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

func (a *authenticator) password(ep endpoint) ([]byte, error) {
	defer a.asking()()
	a.mu.Lock()
	defer a.mu.Unlock()
	k := ep.String()
	if p, ok := a.passwords[k]; ok {
		return p, nil
	}
	p, err := a.cfg.Password(ep.Alias, ep.User)
	if err != nil {
		return nil, fmt.Errorf("read password for %s: %w: %w", k, ErrAuth, err)
	}
	if a.passwords == nil {
		a.passwords = make(map[string][]byte)
	}
	a.passwords[k] = p
	return p, nil
}

// loadKey reads a private key file. An encrypted key whose public half is
// readable (in the file, or in path.pub) is decrypted only if a server asks
// for a signature with it.
func (a *authenticator) loadKey(path string) (ssh.Signer, error) {
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read identity file: %w", err)
	}
	s, err := ssh.ParsePrivateKey(pemBytes)
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
	return a.cfg.KeyCache.unlock(path, func() (ssh.Signer, error) {
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
