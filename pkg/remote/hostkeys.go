package remote

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// AcceptNewHostKeysFlag is the command-line flag that error messages tell the
// user to pass to trust a host key on first use.
const AcceptNewHostKeysFlag = "--accept-new-host-keys"

// HostKeyError is a host key that known_hosts does not vouch for. It matches
// ErrHostKeyUnknown or ErrHostKeyChanged with errors.Is.
type HostKeyError struct {
	// Server is the name of the server (target or jump host) as configured.
	Server string
	// Address is the server as known_hosts names it: host, or [host]:port.
	Address string
	// Offered is the server's key, as "ED25519 SHA256:…".
	Offered string
	// Known are the keys known_hosts holds for Address; empty for an unknown host.
	Known []KnownHostKey
	// Revoked is set when the offered key is marked @revoked.
	Revoked bool
	// File is the known_hosts file new keys are recorded in.
	File string
}

// KnownHostKey is one known_hosts entry.
type KnownHostKey struct {
	Key  string // "ED25519 SHA256:…"
	File string
	Line int
}

func (e *HostKeyError) Is(target error) bool {
	if len(e.Known) == 0 && !e.Revoked {
		return target == ErrHostKeyUnknown
	}
	return target == ErrHostKeyChanged
}

func (e *HostKeyError) Error() string {
	if e.Revoked {
		return fmt.Sprintf("host key of %s (%s) is REVOKED in known_hosts: the server offered %s; refusing to connect",
			e.Server, e.Address, e.Offered)
	}
	if len(e.Known) == 0 {
		typ, _, _ := strings.Cut(e.Offered, " ")
		return fmt.Sprintf("unknown host key for %s (%s): the server offered %s, which %s does not list; "+
			"compare it with the host's own key (ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub on the host), "+
			"then re-run with %s to record it, or add it to %s yourself",
			e.Server, e.Address, e.Offered, e.File, strings.ToLower(typ), AcceptNewHostKeysFlag, e.File)
	}
	known := make([]string, len(e.Known))
	for i, k := range e.Known {
		known[i] = fmt.Sprintf("%s (%s:%d)", k.Key, k.File, k.Line)
	}
	first := e.Known[0]
	return fmt.Sprintf("HOST KEY CHANGED for %s (%s): the server offered %s, but known_hosts holds %s; "+
		"someone may be intercepting the connection, or the host was reinstalled. If you are sure it was, "+
		"delete line %d of %s (ssh-keygen -R %s -f %s) and connect again; %s never replaces a changed key",
		e.Server, e.Address, e.Offered, strings.Join(known, ", "),
		first.Line, first.File, shellQuote(e.Address), shellQuote(first.File), AcceptNewHostKeysFlag)
}

// describeKey formats a key the way ssh-keygen -l names it.
func describeKey(k ssh.PublicKey) string {
	typ := k.Type()
	label := typ
	switch {
	case typ == ssh.KeyAlgoED25519:
		label = "ED25519"
	case typ == ssh.KeyAlgoRSA:
		label = "RSA"
	case strings.HasPrefix(typ, "ecdsa-"):
		label = "ECDSA"
	case typ == "ssh-dss":
		label = "DSA"
	}
	return label + " " + ssh.FingerprintSHA256(k)
}

// hostKeyCheck verifies one server's key during one handshake.
type hostKeyCheck struct {
	ep     endpoint
	accept bool
	log    *slog.Logger
	db     ssh.HostKeyCallback
	// algorithms restricts the server to key types known_hosts holds for
	// it, so that it does not pick another type and look changed.
	algorithms []string

	verified bool  // the key was accepted
	err      error // the refusal, kept because the handshake may rewrap it
}

func newHostKeyCheck(ep endpoint, accept bool, log *slog.Logger) (*hostKeyCheck, error) {
	var files []string
	for _, f := range ep.KnownHosts {
		if _, err := os.Stat(f); err == nil {
			files = append(files, f)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("read known hosts: %w", err)
		}
	}
	h := &hostKeyCheck{ep: ep, accept: accept, log: log}
	if len(files) == 0 {
		h.db = func(string, net.Addr, ssh.PublicKey) error { return &knownhosts.KeyError{} }
		return h, nil
	}
	db, err := knownhosts.New(files...)
	if err != nil {
		return nil, fmt.Errorf("read known hosts: %w", err)
	}
	h.db = db
	known, err := h.knownKeys()
	if err != nil {
		return nil, err
	}
	types := make([]string, 0, len(known))
	for _, k := range known {
		types = append(types, k.Key.Type())
	}
	h.algorithms = hostKeyAlgorithms(types)
	return h, nil
}

// knownKeys lists the keys known_hosts holds for the server, by checking a
// key that cannot be among them: the mismatch lists them.
func (h *hostKeyCheck) knownKeys() ([]knownhosts.KnownKey, error) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	probe, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var ke *knownhosts.KeyError
	if err := h.db(h.ep.addr(), zeroAddr(), probe); errors.As(err, &ke) {
		return ke.Want, nil
	}
	return nil, nil
}

// zeroAddr stands for the remote address, which knownhosts ignores when
// given a host name.
func zeroAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero} }

// hostKeyAlgorithms maps key types to the algorithms that negotiate them,
// strongest first.
func hostKeyAlgorithms(keyTypes []string) []string {
	order := []string{
		ssh.KeyAlgoED25519,
		ssh.KeyAlgoECDSA521, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA256,
		ssh.KeyAlgoRSA,
	}
	var algos []string
	for _, t := range order {
		if !slices.Contains(keyTypes, t) {
			continue
		}
		if t == ssh.KeyAlgoRSA {
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
		} else {
			algos = append(algos, t)
		}
	}
	for _, t := range keyTypes {
		if !slices.Contains(order, t) && !slices.Contains(algos, t) {
			algos = append(algos, t)
		}
	}
	return algos
}

func (h *hostKeyCheck) recordFile() string {
	if len(h.ep.KnownHosts) == 0 {
		return "known_hosts"
	}
	return h.ep.KnownHosts[0]
}

// callback is the ssh.HostKeyCallback. hostname is the address given to the
// handshake, so a key is checked against the name we dialled, not the IP a
// jump host resolved it to.
func (h *hostKeyCheck) callback(hostname string, remote net.Addr, key ssh.PublicKey) error {
	err := h.db(hostname, remote, key)
	if err == nil {
		h.verified = true
		return nil
	}
	h.err = h.refusal(hostname, key, err)
	if h.err == nil {
		h.verified = true
	}
	return h.err
}

func (h *hostKeyCheck) refusal(hostname string, key ssh.PublicKey, err error) error {
	he := &HostKeyError{
		Server:  h.ep.Alias,
		Address: knownhosts.Normalize(hostname),
		Offered: describeKey(key),
		File:    h.recordFile(),
	}
	var revoked *knownhosts.RevokedError
	if errors.As(err, &revoked) {
		he.Revoked = true
		return he
	}
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return fmt.Errorf("check host key of %s: %w", h.ep.Alias, err)
	}
	for _, k := range ke.Want {
		he.Known = append(he.Known, KnownHostKey{Key: describeKey(k.Key), File: k.Filename, Line: k.Line})
	}
	if len(he.Known) > 0 || !h.accept {
		return he
	}
	if err := recordHostKey(he.File, hostname, key, h.ep.HashKnownHosts); err != nil {
		var changed *HostKeyError
		if errors.As(err, &changed) {
			changed.Server = h.ep.Alias
			return changed
		}
		return fmt.Errorf("record host key of %s in %s: %w", h.ep.Alias, he.File, err)
	}
	h.log.Warn("recorded new host key", "server", h.ep.Alias, "address", he.Address, "key", he.Offered, "file", he.File)
	return nil
}

// recordHostKey appends the key to file, creating it 0600 in a 0700
// directory. The append is one O_APPEND write under an exclusive lock, and
// the file is checked again under that lock, so that concurrent connections,
// here or in other processes, neither corrupt it nor add a host twice.
func recordHostKey(file, hostname string, key ssh.PublicKey, hash bool) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	unlock, err := lockFile(f)
	if err != nil {
		return fmt.Errorf("lock %s: %w", file, err)
	}
	defer unlock()

	db, err := knownhosts.New(file)
	if err != nil {
		return err
	}
	var ke *knownhosts.KeyError
	switch err := db(hostname, zeroAddr(), key); {
	case err == nil:
		return nil
	case errors.As(err, &ke) && len(ke.Want) > 0:
		he := &HostKeyError{Address: knownhosts.Normalize(hostname), Offered: describeKey(key), File: file}
		for _, k := range ke.Want {
			he.Known = append(he.Known, KnownHostKey{Key: describeKey(k.Key), File: k.Filename, Line: k.Line})
		}
		return he
	}

	name := knownhosts.Normalize(hostname)
	if hash {
		name = knownhosts.HashHostname(name)
	}
	line := knownhosts.Line([]string{name}, key) + "\n"
	if needsNewline(file) {
		line = "\n" + line
	}
	if _, err := io.WriteString(f, line); err != nil {
		return err
	}
	return f.Sync()
}

// needsNewline reports whether file ends without a newline, so that an
// appended entry does not merge with the last line.
func needsNewline(file string) bool {
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return false
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, st.Size()-1); err != nil {
		return false
	}
	return b[0] != '\n'
}
