package remote

import (
	"context"
	"log/slog"
	"net"
	"time"
)

// Config says how to reach one host over SSH. Explicit fields win over
// ~/.ssh/config, which wins over the defaults, as with the ssh command.
type Config struct {
	// Host is the inventory name; it is in every log line and error.
	Host string
	// Address is what one would type after "ssh": an IP address, a DNS name
	// or an alias of the ssh config file (whose HostName then applies).
	// Empty means Host.
	Address string
	// Port 0 means the ssh config's Port, else 22.
	Port int
	// User "" means the ssh config's User, else DefaultUser.
	User string
	// DefaultUser logs in to the target when neither User nor the ssh
	// config names a user; "" means the local user name, as with ssh.
	DefaultUser string

	// IdentityFiles are private keys, offered before any other key. "~/" is
	// expanded. They are also offered to jump hosts, after the jump host's own
	// IdentityFile entries from the ssh config.
	IdentityFiles []string
	// IdentitiesOnly offers only IdentityFiles and the ssh config's
	// IdentityFile keys, never the agent's other keys (which may exhaust the
	// server's MaxAuthTries). The ssh config's IdentitiesOnly also sets it.
	IdentitiesOnly bool
	// PassphraseEnv names an environment variable holding the passphrase of
	// encrypted keys. It is tried before PassphrasePrompt.
	PassphraseEnv string
	// PassphrasePrompt asks for the passphrase of keyPath, only when the
	// server is ready to accept that key. Nil means encrypted keys that the
	// agent does not hold cannot be used.
	PassphrasePrompt func(keyPath string) ([]byte, error)
	// KeyCache keeps decrypted keys and passwords, so that one prompt serves
	// every host of a run, and makes prompts take turns. Nil means a cache
	// private to this connection.
	KeyCache *KeyCache
	// AgentSocket is the ssh-agent socket; "" means the ssh config's
	// IdentityAgent, else $SSH_AUTH_SOCK; "none" disables the agent.
	AgentSocket string
	// AllowPassword enables password and keyboard-interactive authentication,
	// with the password from Password, asked once per user@host. Only the
	// keyboard-interactive questions for the password are answered.
	AllowPassword bool
	Password      func(host, user string) ([]byte, error)

	// KnownHostsFile is where host keys are checked and, with
	// AcceptNewHostKeys, recorded. "" means the ssh config's
	// UserKnownHostsFile, else ~/.ssh/known_hosts (plus the global
	// /etc/ssh/ssh_known_hosts, read only).
	KnownHostsFile string
	// AcceptNewHostKeys records the key of a host that known_hosts does not
	// know yet (trust on first use). A changed key is refused regardless.
	AcceptNewHostKeys bool

	// ProxyJump lists jump hosts, "[user@]host[:port],…", each resolved
	// through the ssh config like a host of its own. "" means the ssh
	// config's ProxyJump; "none" means a direct connection.
	ProxyJump string
	// SSHConfigFile is the ssh client configuration to read; "" means
	// ~/.ssh/config (absent is fine), "none" reads none.
	SSHConfigFile string

	// ConnectTimeout bounds each hop's TCP connection, handshake and
	// authentication, per attempt. Zero means 15s.
	ConnectTimeout time.Duration
	// KeepAliveInterval is the period of keep-alive requests; after three
	// unanswered ones the connection is closed. Zero means 15s; negative
	// disables them.
	KeepAliveInterval time.Duration
	// Attempts is how many times a connection is tried when it fails for a
	// network reason (refused, reset, timeout); authentication and host key
	// failures are never retried. Zero means 3.
	Attempts int
	// RetryBackoff is the wait before the second attempt, doubled before each
	// next one (at most 30s). Zero means 1s.
	RetryBackoff time.Duration

	// Logger receives debug and progress records with the host attached.
	// Nil discards them. Records never hold key material, passphrases,
	// passwords or file contents.
	Logger *slog.Logger

	// netDial replaces the TCP dialer of the first hop, in tests.
	netDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// agentTimeout replaces the ssh-agent's answer timeout, in tests.
	agentTimeout time.Duration
}

const (
	defaultConnectTimeout = 15 * time.Second
	defaultKeepAlive      = 15 * time.Second
	defaultAttempts       = 3
	defaultRetryBackoff   = time.Second
	maxRetryBackoff       = 30 * time.Second
)

func (c Config) withDefaults() Config {
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = defaultConnectTimeout
	}
	if c.KeepAliveInterval == 0 {
		c.KeepAliveInterval = defaultKeepAlive
	}
	if c.Attempts <= 0 {
		c.Attempts = defaultAttempts
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = defaultRetryBackoff
	}
	if c.KeyCache == nil {
		c.KeyCache = &KeyCache{}
	}
	if c.Address == "" {
		c.Address = c.Host
	}
	if c.Host == "" {
		c.Host = c.Address
	}
	return c
}

func newLogger(l *slog.Logger, host string) *slog.Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return l.With("host", host)
}
