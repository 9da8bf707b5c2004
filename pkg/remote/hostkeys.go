package remote

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/etcdadm-io/etcdadm/internal/shell"
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
	// Offered is the server's key, as "ED25519 SHA256:…"; for a host
	// certificate, the key it certifies.
	Offered string
	// Certificate describes the host certificate the server offered, if it did.
	Certificate string
	// CertError is why a certificate signed by a CA known_hosts lists for
	// the server was refused: another host's, expired, not a host certificate.
	CertError string
	// Known are the keys known_hosts holds for Address; empty for an unknown host.
	Known []KnownHostKey
	// Authorities are the @cert-authority keys known_hosts lists for Address.
	Authorities []KnownHostKey
	// Revoked is set when the offered key, or the CA of its certificate, is
	// marked @revoked.
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
	if len(e.Known) == 0 && len(e.Authorities) == 0 && !e.Revoked && e.CertError == "" {
		return target == ErrHostKeyUnknown
	}
	return target == ErrHostKeyChanged
}

func (e *HostKeyError) Error() string {
	offered := e.Offered
	if e.Certificate != "" {
		offered += " in a " + e.Certificate
	}
	if e.Revoked {
		return fmt.Sprintf("host key of %s (%s) is REVOKED in known_hosts: the server offered %s; refusing to connect",
			e.Server, e.Address, offered)
	}
	if e.CertError != "" {
		return fmt.Sprintf("host certificate of %s (%s) is not valid: %s; the server offered %s, trusted through %s; "+
			"refusing to connect: have the host's certificate reissued (ssh-keygen -s <CA key> -h -n %s <host key>.pub)",
			e.Server, e.Address, e.CertError, offered, describeKnown(e.Authorities), hostOf(e.Address))
	}
	if len(e.Known) == 0 && len(e.Authorities) > 0 {
		return fmt.Sprintf("host key of %s (%s) is not certified by its CA: the server offered %s, but known_hosts trusts for it "+
			"only host certificates signed by %s; refusing to connect: give the host a certificate signed by that CA, "+
			"or, if it never had one, add its key to %s; %s does not record keys of hosts that have a CA",
			e.Server, e.Address, offered, describeKnown(e.Authorities), e.File, AcceptNewHostKeysFlag)
	}
	if len(e.Known) == 0 {
		typ, _, _ := strings.Cut(e.Offered, " ")
		return fmt.Sprintf("unknown host key for %s (%s): the server offered %s, which %s does not list; "+
			"compare it with the host's own key (ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub on the host), "+
			"then re-run with %s to record it, or add it to %s yourself",
			e.Server, e.Address, offered, e.File, strings.ToLower(typ), AcceptNewHostKeysFlag, e.File)
	}
	known := describeKnown(e.Known)
	if len(e.Authorities) > 0 {
		known += ", and trusts certificates signed by " + describeKnown(e.Authorities)
	}
	first := e.Known[0]
	return fmt.Sprintf("HOST KEY CHANGED for %s (%s): the server offered %s, but known_hosts holds %s; "+
		"someone may be intercepting the connection, or the host was reinstalled. If you are sure it was, "+
		"delete line %d of %s (ssh-keygen -R %s -f %s) and connect again; %s never replaces a changed key",
		e.Server, e.Address, offered, known,
		first.Line, first.File, shell.Quote(e.Address), shell.Quote(first.File), AcceptNewHostKeysFlag)
}

// hostOf drops the port from a known_hosts name.
func hostOf(name string) string {
	if h, _, err := net.SplitHostPort(name); err == nil {
		return h
	}
	return name
}

func describeKnown(keys []KnownHostKey) string {
	s := make([]string, len(keys))
	for i, k := range keys {
		s[i] = fmt.Sprintf("%s (%s:%d)", k.Key, k.File, k.Line)
	}
	return strings.Join(s, ", ")
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
	db     *knownHosts
	// algorithms restricts the server to key types known_hosts holds for
	// it, so that it does not pick another type and look changed, and puts
	// certificates first when known_hosts names a CA for it.
	algorithms []string

	verified bool  // the key was accepted
	err      error // the refusal, kept because the handshake may rewrap it
}

func newHostKeyCheck(ep endpoint, accept bool, log *slog.Logger) (*hostKeyCheck, error) {
	db, skipped, err := readKnownHosts(ep.KnownHosts)
	if err != nil {
		return nil, fmt.Errorf("read known hosts: %w", err)
	}
	for _, s := range skipped {
		log.Warn("skipping known_hosts line", "file", s.file, "line", s.line, "reason", s.reason)
	}
	h := &hostKeyCheck{ep: ep, accept: accept, log: log, db: db}
	keys, authorities := db.forHost(knownHostsName(ep.addr()))
	types := make([]string, 0, len(keys))
	for _, k := range keys {
		types = append(types, k.key.Type())
	}
	h.algorithms = hostKeyAlgorithms(types)
	if len(authorities) > 0 {
		plain := h.algorithms
		if len(plain) == 0 {
			plain = hostKeyAlgorithms(plainKeyTypes)
		}
		h.algorithms = append(slices.Clone(certHostKeyAlgorithms), plain...)
	}
	return h, nil
}

// plainKeyTypes are the host key types negotiated when known_hosts holds
// only a CA for the server.
var plainKeyTypes = []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA521, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA256, ssh.KeyAlgoRSA}

// certHostKeyAlgorithms ask the server for its host certificate.
var certHostKeyAlgorithms = []string{
	ssh.CertAlgoED25519v01,
	ssh.CertAlgoECDSA521v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA256v01,
	ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
}

// hostKeyAlgorithms maps key types to the algorithms that negotiate them,
// strongest first.
func hostKeyAlgorithms(keyTypes []string) []string {
	var algos []string
	for _, t := range plainKeyTypes {
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
		if !slices.Contains(plainKeyTypes, t) && !slices.Contains(algos, t) {
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
func (h *hostKeyCheck) callback(hostname string, _ net.Addr, key ssh.PublicKey) error {
	if err := h.check(hostname, key); err != nil {
		h.err = err
		return err
	}
	h.verified = true
	return nil
}

// check follows ssh: a certificate is accepted when signed by a CA that
// known_hosts lists for the host and valid for its name; otherwise the key
// under it must be a known one, as a plain key must.
func (h *hostKeyCheck) check(hostname string, key ssh.PublicKey) error {
	name := knownHostsName(hostname)
	plain := key
	cert, isCert := key.(*ssh.Certificate)
	if isCert {
		plain = cert.Key
	}
	he := &HostKeyError{Server: h.ep.Alias, Address: name, Offered: describeKey(plain), File: h.recordFile()}
	if isCert {
		he.Certificate = describeCert(cert)
	}
	if h.db.revoked(plain) != nil || (isCert && h.db.revoked(cert.SignatureKey) != nil) {
		he.Revoked = true
		return he
	}
	keys, authorities := h.db.forHost(name)
	if isCert {
		if ca := find(authorities, cert.SignatureKey); ca != nil {
			if err := checkHostCert(strings.ToLower(hostname), cert, ca.key); err != nil {
				he.CertError = strings.TrimPrefix(err.Error(), "ssh: ")
				he.Authorities = knownHostKeys([]knownHostsEntry{*ca})
				return he
			}
			return nil
		}
	}
	if find(keys, plain) != nil {
		return nil
	}
	he.Known, he.Authorities = knownHostKeys(keys), knownHostKeys(authorities)
	if len(he.Known) > 0 || len(he.Authorities) > 0 || !h.accept {
		return he
	}
	// Only the key is recorded: a certificate expires, and its key does not.
	if err := recordHostKey(he.File, hostname, plain, h.ep.HashKnownHosts); err != nil {
		var changed *HostKeyError
		if errors.As(err, &changed) {
			changed.Server = h.ep.Alias
			changed.Certificate = he.Certificate
			return changed
		}
		return fmt.Errorf("record host key of %s in %s: %w", h.ep.Alias, he.File, err)
	}
	h.log.Warn("recorded new host key", "server", h.ep.Alias, "address", he.Address, "key", he.Offered, "file", he.File)
	return nil
}

// checkHostCert checks that cert is a host certificate signed by ca, valid
// now and for the host in addr.
func checkHostCert(addr string, cert *ssh.Certificate, ca ssh.PublicKey) error {
	checker := &ssh.CertChecker{
		IsHostAuthority: func(auth ssh.PublicKey, _ string) bool { return sameKey(auth, ca) },
	}
	return checker.CheckHostKey(addr, nil, cert)
}

// describeCert names a host certificate by its CA, principals and serial.
func describeCert(c *ssh.Certificate) string {
	principals := "any host"
	if len(c.ValidPrincipals) > 0 {
		principals = strings.Join(c.ValidPrincipals, ",")
	}
	return fmt.Sprintf("certificate for %s signed by CA %s (serial %d)", principals, describeKey(c.SignatureKey), c.Serial)
}

func knownHostKeys(entries []knownHostsEntry) []KnownHostKey {
	var keys []KnownHostKey
	for _, e := range entries {
		keys = append(keys, KnownHostKey{Key: describeKey(e.key), File: e.file, Line: e.line})
	}
	return keys
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

	db, _, err := readKnownHosts([]string{file})
	if err != nil {
		return err
	}
	name := knownHostsName(hostname)
	keys, _ := db.forHost(name)
	if find(keys, key) != nil {
		return nil
	}
	if len(keys) > 0 {
		return &HostKeyError{Address: name, Offered: describeKey(key), File: file, Known: knownHostKeys(keys)}
	}

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
