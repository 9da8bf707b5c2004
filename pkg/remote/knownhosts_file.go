package remote

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// knownHosts is what known_hosts files say, read as OpenSSH reads them:
// comma-separated host patterns with * and ? wildcards and ! negations,
// hashed names (|1|salt|hash), and the @cert-authority and @revoked markers.
type knownHosts struct {
	entries []knownHostsEntry
}

type knownHostsMarker int

const (
	markerNone knownHostsMarker = iota
	markerCertAuthority
	markerRevoked
)

// knownHostsEntry is one usable line.
type knownHostsEntry struct {
	marker knownHostsMarker
	hosts  string // the host field, as written
	key    ssh.PublicKey
	file   string
	line   int
}

// skippedLine is a line OpenSSH would ignore: it is ignored here too, rather
// than failing every connection, and reported.
type skippedLine struct {
	file   string
	line   int
	reason string
}

// readKnownHosts reads files in order; missing files are skipped.
func readKnownHosts(files []string) (*knownHosts, []skippedLine, error) {
	db := &knownHosts{}
	var skipped []skippedLine
	for _, file := range files {
		f, err := os.Open(file)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		data, err := io.ReadAll(f)
		f.Close()
		var entries []knownHostsEntry
		var s []skippedLine
		if err == nil {
			entries, s, err = parsedKnownHosts(file, data)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", file, err)
		}
		db.entries = append(db.entries, entries...)
		skipped = append(skipped, s...)
	}
	return db, skipped, nil
}

// knownHostsParsed keeps the last parse of each known_hosts file with the
// content it was made from. Every connection reads the files again, so that
// it sees a key recorded since, but parses them again only when their
// content changed: a known_hosts of a few thousand lines takes milliseconds
// to parse, once per host of a run otherwise.
var knownHostsParsed struct {
	sync.Mutex
	files map[string]*parsedKnownHostsFile
}

// parsedKnownHostsFile is one file's last parse; mu makes the connections
// of a run, which start together, wait for one parse rather than each make
// its own.
type parsedKnownHostsFile struct {
	mu      sync.Mutex
	data    []byte
	entries []knownHostsEntry
	skipped []skippedLine
}

// parsedKnownHosts is parseKnownHosts of data, the content of file, from
// the cache when file had that content last time. The entries are shared:
// callers copy them and do not change them.
func parsedKnownHosts(file string, data []byte) ([]knownHostsEntry, []skippedLine, error) {
	knownHostsParsed.Lock()
	p := knownHostsParsed.files[file]
	if p == nil {
		if knownHostsParsed.files == nil {
			knownHostsParsed.files = map[string]*parsedKnownHostsFile{}
		}
		p = &parsedKnownHostsFile{}
		knownHostsParsed.files[file] = p
	}
	knownHostsParsed.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.data != nil && bytes.Equal(p.data, data) {
		return p.entries, p.skipped, nil
	}
	entries, skipped, err := parseKnownHosts(bytes.NewReader(data), file)
	if err != nil {
		return nil, nil, err
	}
	p.data, p.entries, p.skipped = data, entries, skipped
	return entries, skipped, nil
}

func parseKnownHosts(r io.Reader, file string) ([]knownHostsEntry, []skippedLine, error) {
	var entries []knownHostsEntry
	var skipped []skippedLine
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		e, reason := parseKnownHostsLine(sc.Text())
		switch {
		case reason != "":
			skipped = append(skipped, skippedLine{file: file, line: n, reason: reason})
		case e.key != nil:
			e.file, e.line = file, n
			entries = append(entries, e)
		}
	}
	return entries, skipped, sc.Err()
}

// parseKnownHostsLine returns the entry on a line, no key for a blank line
// or a comment, or why the line cannot be used.
func parseKnownHostsLine(line string) (knownHostsEntry, string) {
	fields := strings.Fields(line)
	if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
		return knownHostsEntry{}, ""
	}
	var e knownHostsEntry
	if strings.HasPrefix(fields[0], "@") {
		switch fields[0] {
		case "@cert-authority":
			e.marker = markerCertAuthority
		case "@revoked":
			e.marker = markerRevoked
		default:
			return e, fmt.Sprintf("unknown marker %q (known: @cert-authority, @revoked)", fields[0])
		}
		fields = fields[1:]
	}
	if len(fields) < 3 {
		return e, "want host patterns, a key type and a base64 key"
	}
	e.hosts = fields[0]
	if strings.HasPrefix(e.hosts, "|") {
		if _, _, ok := parseHashedHost(e.hosts); !ok {
			return e, fmt.Sprintf("hashed host %q is not |1|salt|hash", e.hosts)
		}
	}
	typ := fields[1]
	blob, err := base64.StdEncoding.DecodeString(fields[2])
	if err != nil {
		return e, fmt.Sprintf("%s key is not valid base64", typ)
	}
	key, err := ssh.ParsePublicKey(blob)
	if err != nil {
		return e, fmt.Sprintf("cannot read %s key: %v", typ, err)
	}
	if key.Type() != typ {
		return e, fmt.Sprintf("key type %s does not match the key, which is %s", typ, key.Type())
	}
	if _, ok := key.(*ssh.Certificate); ok {
		return e, "a certificate is no host key; trust its CA with a @cert-authority line instead"
	}
	e.key = key
	return e, ""
}

// knownHostsName is how known_hosts names the server at addr (host:port):
// host for port 22, [host]:port otherwise, in lower case like ssh.
func knownHostsName(addr string) string {
	return strings.ToLower(knownhosts.Normalize(addr))
}

// matches reports whether the entry's host field matches name, as given by
// knownHostsName.
func (e knownHostsEntry) matches(name string) bool {
	if strings.HasPrefix(e.hosts, "|") {
		salt, hash, ok := parseHashedHost(e.hosts)
		if !ok {
			return false
		}
		mac := hmac.New(sha1.New, salt)
		mac.Write([]byte(name))
		return hmac.Equal(mac.Sum(nil), hash)
	}
	return matchPatternList(e.hosts, name)
}

// matchPatternList is OpenSSH's match_pattern_list for host names: a match
// of a negated pattern rules the name out whatever else matches.
func matchPatternList(list, name string) bool {
	matched := false
	for _, p := range strings.Split(list, ",") {
		negated := strings.HasPrefix(p, "!")
		if negated {
			p = p[1:]
		}
		if matchPattern(strings.ToLower(p), name) {
			if negated {
				return false
			}
			matched = true
		}
	}
	return matched
}

// matchPattern matches s against p, where * stands for any run of bytes and
// ? for any one byte.
func matchPattern(p, s string) bool {
	star, retry := -1, 0
	i, j := 0, 0
	for j < len(s) {
		switch {
		case i < len(p) && (p[i] == '?' || p[i] == s[j]):
			i++
			j++
		case i < len(p) && p[i] == '*':
			star, retry = i, j
			i++
		case star >= 0:
			retry++
			i, j = star+1, retry
		default:
			return false
		}
	}
	for i < len(p) && p[i] == '*' {
		i++
	}
	return i == len(p)
}

func parseHashedHost(field string) (salt, hash []byte, ok bool) {
	parts := strings.Split(field, "|")
	if len(parts) != 4 || parts[0] != "" || parts[1] != "1" {
		return nil, nil, false
	}
	salt, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, nil, false
	}
	hash, err = base64.StdEncoding.DecodeString(parts[3])
	if err != nil || len(hash) != sha1.Size {
		return nil, nil, false
	}
	return salt, hash, true
}

// forHost returns the host keys and the certificate authorities known for
// name.
func (db *knownHosts) forHost(name string) (keys, authorities []knownHostsEntry) {
	for _, e := range db.entries {
		if e.marker == markerRevoked || !e.matches(name) {
			continue
		}
		if e.marker == markerCertAuthority {
			authorities = append(authorities, e)
		} else {
			keys = append(keys, e)
		}
	}
	return keys, authorities
}

// revoked returns the @revoked entry for key. It applies whatever its host
// patterns say: a key revoked for one host is not to be trusted for another.
func (db *knownHosts) revoked(key ssh.PublicKey) *knownHostsEntry {
	for i, e := range db.entries {
		if e.marker == markerRevoked && sameKey(e.key, key) {
			return &db.entries[i]
		}
	}
	return nil
}

// find returns the first entry holding key.
func find(entries []knownHostsEntry, key ssh.PublicKey) *knownHostsEntry {
	for i, e := range entries {
		if sameKey(e.key, key) {
			return &entries[i]
		}
	}
	return nil
}

func sameKey(a, b ssh.PublicKey) bool {
	return bytes.Equal(a.Marshal(), b.Marshal())
}
