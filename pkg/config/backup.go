package config

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	goruntime "runtime"
	"strings"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/etcdadm-io/etcdadm/pkg/calendar"
)

// Backup defaults.
const (
	// DefaultBackupSchedule takes a backup every six hours.
	DefaultBackupSchedule = "*-*-* 00/6:00:00"
	// DefaultBackupKeep keeps a week of backups taken every six hours.
	DefaultBackupKeep = 28
	DefaultS3Region   = "us-east-1"
	maxBackupKeep     = 10000
	maxCredentials    = 64 << 10
)

// Backup is spec.backup: every member host runs etcdadm's backup on a
// systemd timer, and exactly one member per period streams a snapshot,
// encrypted, to an S3 bucket.
type Backup struct {
	// Schedule is a systemd calendar event (OnCalendar=).
	Schedule string `json:"schedule,omitempty"`
	// Keep is how many backups the bucket keeps; older ones are deleted.
	Keep       int              `json:"keep,omitempty"`
	Encryption BackupEncryption `json:"encryption,omitempty"`
	S3         S3               `json:"s3,omitempty"`

	// Credentials and CA are the contents of S3.CredentialsFile and
	// S3.CAFile, read when the inventory is loaded.
	Credentials *S3Credentials `json:"-"`
	CA          []byte         `json:"-"`
}

// BackupEncryption says who can decrypt the backups: the age recipients
// (public keys; the identities stay with the operator), or nobody's
// encryption at all, which must be asked for.
type BackupEncryption struct {
	Recipients []string `json:"recipients,omitempty"`
	None       bool     `json:"none,omitempty"`
}

// S3 is an S3 bucket and how to reach it.
type S3 struct {
	// Endpoint is the server's URL: https://s3.example.com or
	// https://10.0.0.9:7070.
	Endpoint string `json:"endpoint,omitempty"`
	Bucket   string `json:"bucket,omitempty"`
	// Prefix goes before the cluster's name in every object's key.
	Prefix string `json:"prefix,omitempty"`
	Region string `json:"region,omitempty"`
	// CredentialsFile holds AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,
	// as an environment file; relative to the inventory unless absolute.
	CredentialsFile string `json:"credentialsFile,omitempty"`
	// CAFile is the CA bundle that signed the endpoint's certificate,
	// when it is not one the system trusts.
	CAFile string `json:"caFile,omitempty"`
}

// S3Credentials are an S3 access key. They never print.
type S3Credentials struct {
	AccessKeyID     string `json:"-"`
	SecretAccessKey string `json:"-"`
	SessionToken    string `json:"-"`
}

// String hides the secret: the key ID alone says which key it is.
func (c *S3Credentials) String() string { return "access key " + c.AccessKeyID }

// GoString hides the secret from %#v too.
func (c *S3Credentials) GoString() string { return c.String() }

// EnvFile is the credentials as an environment file.
func (c *S3Credentials) EnvFile() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n", c.AccessKeyID, c.SecretAccessKey)
	if c.SessionToken != "" {
		fmt.Fprintf(&b, "AWS_SESSION_TOKEN=%s\n", c.SessionToken)
	}
	return b.Bytes()
}

// Encrypted reports whether backups are encrypted.
func (b *Backup) Encrypted() bool { return len(b.Encryption.Recipients) > 0 }

// AgeRecipients are the parsed recipients.
func (b *Backup) AgeRecipients() ([]age.Recipient, error) {
	var out []age.Recipient
	for i, r := range b.Encryption.Recipients {
		rs, err := age.ParseRecipients(strings.NewReader(r))
		if err != nil {
			return nil, fmt.Errorf("spec.backup.encryption.recipients[%d]: %w", i, err)
		}
		out = append(out, rs...)
	}
	return out, nil
}

func defaultBackup(b *Backup) {
	if b == nil {
		return
	}
	setString(&b.Schedule, DefaultBackupSchedule)
	if b.Keep == 0 {
		b.Keep = DefaultBackupKeep
	}
	setString(&b.S3.Region, DefaultS3Region)
}

// validateBackup checks spec.backup and reads its credentials and CA files.
func validateBackup(c *Cluster, ps *problems) []Warning {
	b := c.Spec.Backup
	if b == nil {
		return nil
	}
	var warnings []Warning
	if _, err := calendar.Parse(b.Schedule, time.UTC); err != nil {
		ps.add("spec.backup.schedule", "%v; write a systemd calendar event (OnCalendar=), e.g. \"*-*-* 00/6:00:00\" (every six hours) or daily", err)
	}
	if b.Keep < 1 || b.Keep > maxBackupKeep {
		ps.add("spec.backup.keep", "%d backups: keep at least 1 and at most %d", b.Keep, maxBackupKeep)
	}
	validateEncryption(&b.Encryption, ps)
	s := &b.S3
	warnings = append(warnings, validateEndpoint(s.Endpoint, ps)...)
	if msg := bucketProblem(s.Bucket); msg != "" {
		ps.add("spec.backup.s3.bucket", "%s", msg)
	}
	switch {
	case strings.HasPrefix(s.Prefix, "/"):
		ps.add("spec.backup.s3.prefix", "%q starts with /: an object key has none; write it like backups/etcd/", s.Prefix)
	case strings.Contains(s.Prefix, "//") || strings.Contains("/"+s.Prefix+"/", "/../") || strings.Contains("/"+s.Prefix+"/", "/./"):
		ps.add("spec.backup.s3.prefix", "%q has an empty, \".\" or \"..\" element; write it like backups/etcd/", s.Prefix)
	}
	if s.Region == "" || strings.ContainsAny(s.Region, " /\t") {
		ps.add("spec.backup.s3.region", "%q is not a region; write it like us-east-1 (what your S3 server calls its region)", s.Region)
	}
	b.Credentials = readCredentials(c, s.CredentialsFile, ps)
	if s.CAFile != "" && validateLocalPath("spec.backup.s3.caFile", s.CAFile, "s3-ca.crt", ps) {
		b.CA = readCABundle(c, s.CAFile, ps)
	}
	return warnings
}

func validateEncryption(e *BackupEncryption, ps *problems) {
	switch {
	case e.None && len(e.Recipients) > 0:
		ps.add("spec.backup.encryption", "has both recipients and none: true; keep the recipients (backups hold every Secret of the cluster), or remove them to store backups unencrypted")
		return
	case e.None:
		return
	case len(e.Recipients) == 0:
		ps.add("spec.backup.encryption", "is required: list the age recipients that may decrypt the backups (recipients: [age1...], from age-keygen -y KEY), or write none: true to store them unencrypted, although they hold every Secret of the cluster")
		return
	}
	seen := map[string]bool{}
	for i, r := range e.Recipients {
		f := fmt.Sprintf("spec.backup.encryption.recipients[%d]", i)
		switch {
		case strings.HasPrefix(strings.ToUpper(r), "AGE-SECRET-KEY-"):
			// Never echo a private key.
			ps.add(f, "is an age identity (a private key), which must stay with you: give its recipient instead, the age1... line `age-keygen -y KEY` prints")
			continue
		case seen[r]:
			ps.add(f, "%q is listed twice; keep one", r)
			continue
		}
		seen[r] = true
		if _, err := age.ParseRecipients(strings.NewReader(r)); err != nil {
			ps.add(f, "%q is not an age recipient; write the age1... public key `age-keygen -y KEY` prints", r)
		}
	}
}

func validateEndpoint(endpoint string, ps *problems) []Warning {
	const field = "spec.backup.s3.endpoint"
	if endpoint == "" {
		ps.add(field, "is required: the S3 server's URL, e.g. https://s3.eu-west-1.amazonaws.com or https://10.0.0.9:7070")
		return nil
	}
	u, err := url.Parse(endpoint)
	switch {
	case err != nil || u.Host == "" || u.Opaque != "":
		ps.add(field, "%q is not a URL; write it like https://s3.example.com or https://10.0.0.9:7070", endpoint)
		return nil
	case u.Scheme != "https" && u.Scheme != "http":
		ps.add(field, "%q: use https:// (or http://)", endpoint)
		return nil
	case u.User != nil:
		ps.add(field, "%q holds a user: credentials go in spec.backup.s3.credentialsFile", strings.Replace(endpoint, u.User.String()+"@", "", 1))
		return nil
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		ps.add(field, "%q has a path: give the server alone (https://host[:port]); the bucket goes in spec.backup.s3.bucket", endpoint)
		return nil
	}
	if port := u.Port(); port != "" && !validPort(port) {
		ps.add(field, "%q has an invalid port %q", endpoint, port)
		return nil
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return []Warning{{Field: field, Message: fmt.Sprintf("%s is plain http: the backups travel unprotected but for their encryption; use https", endpoint)}}
	}
	return nil
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// bucketProblem says what is wrong with an S3 bucket name; "" when nothing.
func bucketProblem(b string) string {
	if b == "" {
		return "is required: the bucket the backups go to"
	}
	ok := len(b) >= 3 && len(b) <= 63 && !strings.Contains(b, "..")
	for i, r := range b {
		letter := r >= 'a' && r <= 'z' || r >= '0' && r <= '9'
		inner := r == '-' || r == '.'
		if !letter && !(inner && i > 0 && i < len(b)-1) {
			ok = false
		}
	}
	if !ok {
		return fmt.Sprintf("%q is not an S3 bucket name: 3 to 63 lower-case letters, digits, dots and dashes, starting and ending with a letter or digit", b)
	}
	return ""
}

// readCredentials reads the credentials file: KEY=VALUE lines, as a
// systemd or shell environment file has them. No message holds a value.
func readCredentials(c *Cluster, file string, ps *problems) *S3Credentials {
	const field = "spec.backup.s3.credentialsFile"
	if file == "" {
		ps.add(field, "is required: a file next to the inventory with the lines AWS_ACCESS_KEY_ID=... and AWS_SECRET_ACCESS_KEY=... (mode 0600)")
		return nil
	}
	if !validateLocalPath(field, file, "s3-credentials.env", ps) {
		return nil
	}
	p := c.ResolvePath(file)
	f, err := os.Open(p)
	if err != nil {
		ps.add(field, "cannot read %s: %v; write AWS_ACCESS_KEY_ID=... and AWS_SECRET_ACCESS_KEY=... there (mode 0600)", p, unwrapPathError(err))
		return nil
	}
	defer f.Close()
	creds, err := ParseCredentials(io.LimitReader(f, maxCredentials))
	if err != nil {
		ps.add(field, "%s: %v", p, err)
		return nil
	}
	return creds
}

// ParseCredentials reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
// AWS_SESSION_TOKEN from an environment file; errors name lines, never
// values.
func ParseCredentials(r io.Reader) (*S3Credentials, error) {
	creds := &S3Credentials{}
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d is not KEY=VALUE", n)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		switch strings.TrimSpace(k) {
		case "AWS_ACCESS_KEY_ID":
			creds.AccessKeyID = v
		case "AWS_SECRET_ACCESS_KEY":
			creds.SecretAccessKey = v
		case "AWS_SESSION_TOKEN":
			creds.SessionToken = v
		default:
			return nil, fmt.Errorf("line %d sets %s: only AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN belong there", n, strings.TrimSpace(k))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	switch {
	case creds.AccessKeyID == "":
		return nil, fmt.Errorf("no AWS_ACCESS_KEY_ID= line; add the access key's ID")
	case creds.SecretAccessKey == "":
		return nil, fmt.Errorf("no AWS_SECRET_ACCESS_KEY= line; add the access key's secret")
	case strings.ContainsAny(creds.AccessKeyID+creds.SecretAccessKey+creds.SessionToken, " \t\"'\\"):
		return nil, fmt.Errorf("a value holds a space, a quote or a backslash; write each key as the S3 server gave it")
	}
	return creds, nil
}

func readCABundle(c *Cluster, file string, ps *problems) []byte {
	const field = "spec.backup.s3.caFile"
	p := c.ResolvePath(file)
	data, err := os.ReadFile(p)
	if err != nil {
		ps.add(field, "cannot read %s: %v; point it at the PEM bundle of the CA that signed the S3 server's certificate, or remove it to trust the system's", p, unwrapPathError(err))
		return nil
	}
	n := 0
	for rest := data; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			ps.add(field, "%s holds a certificate that does not parse: %v", p, err)
			return nil
		}
		n++
	}
	if n == 0 {
		ps.add(field, "%s holds no PEM certificate; point it at the CA bundle of the S3 server", p)
		return nil
	}
	return data
}

// Executable is the etcdadm binary this process runs from: what apply
// installs on the member hosts for their backups.
type Executable struct {
	Path     string
	Size     int64
	SHA256   string
	Platform string
}

// executable reads the running binary once per inventory.
type executable struct {
	once sync.Once
	exe  *Executable
	err  error
}

// Etcdadm is the running etcdadm binary, its size and sha256, read the
// first time it is asked for.
func (c *Cluster) Etcdadm() (*Executable, error) {
	if c.self == nil {
		c.self = &executable{}
	}
	c.self.once.Do(func() { c.self.exe, c.self.err = readExecutable() })
	return c.self.exe, c.self.err
}

func readExecutable() (*Executable, error) {
	p, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the etcdadm binary: %w", err)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("read the etcdadm binary: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, fmt.Errorf("read the etcdadm binary %s: %w", p, err)
	}
	return &Executable{Path: p, Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Platform: goruntime.GOOS + "/" + goruntime.GOARCH}, nil
}
