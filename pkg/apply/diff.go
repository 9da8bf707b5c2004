package apply

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// ChangeKind says how a file differs from the plan.
type ChangeKind string

// Kinds of change.
const (
	Create    ChangeKind = "create"
	Update    ChangeKind = "update"
	ModeOnly  ChangeKind = "mode"
	Unchanged ChangeKind = "unchanged"
)

// FileChange compares one planned file with the host's copy.
type FileChange struct {
	File    plan.File  `json:"-"`
	Path    string     `json:"path"`
	Kind    ChangeKind `json:"change"`
	Mode    string     `json:"mode"`
	OldMode string     `json:"oldMode,omitempty"`
	OldSHA  string     `json:"oldSHA256,omitempty"`
	NewSHA  string     `json:"sha256"`
	// Cert describes old and new certificates, for .crt files that change.
	Cert *CertChange `json:"certificate,omitempty"`
}

// CertChange shows what a certificate change means.
type CertChange struct {
	Old *CertSummary `json:"old,omitempty"`
	New *CertSummary `json:"new"`
}

// CertSummary is what a reviewer checks in a certificate.
type CertSummary struct {
	Subject  string    `json:"subject"`
	SANs     []string  `json:"sans,omitempty"`
	NotAfter time.Time `json:"notAfter"`
}

// HostDiff is the diff of one host.
type HostDiff struct {
	Host    string       `json:"host"`
	Changes []FileChange `json:"files"`
}

// Changed lists the files that must be written.
func (d HostDiff) Changed() []FileChange {
	var out []FileChange
	for _, c := range d.Changes {
		if c.Kind != Unchanged {
			out = append(out, c)
		}
	}
	return out
}

// PartChanged reports whether a file of the part must be written.
func (d HostDiff) PartChanged(p plan.Part) bool {
	for _, c := range d.Changed() {
		if c.File.Part == p {
			return true
		}
	}
	return false
}

// Diff compares every host's plan with what the host has, by sha256 and
// mode, in one command per host. Nothing is changed.
func Diff(ctx context.Context, p *plan.Plan, hs *Hosts, concurrency int) ([]HostDiff, error) {
	out := make([]HostDiff, len(p.Hosts))
	index := map[string]int{}
	for i, h := range p.Hosts {
		index[h.Name] = i
	}
	var hosts []config.Host
	for _, h := range hs.Order {
		if _, ok := index[h.Name]; ok {
			hosts = append(hosts, h)
		}
	}
	err := ForEach(ctx, hosts, concurrency, func(ctx context.Context, h config.Host) error {
		i := index[h.Name]
		d, err := diffHost(ctx, p.Hosts[i], hs.T[h.Name])
		if err != nil {
			return err
		}
		out[i] = d
		return nil
	})
	return out, named(err, "diff")
}

type remoteState struct {
	mode fs.FileMode
	sha  string
}

func diffHost(ctx context.Context, hp plan.Host, t remote.Transport) (HostDiff, error) {
	state, err := readState(ctx, t, hp.Files)
	if err != nil {
		return HostDiff{}, err
	}
	d := HostDiff{Host: hp.Name}
	for _, f := range hp.Files {
		fc := FileChange{File: f, Path: f.Path, Mode: fmt.Sprintf("%04o", f.Mode.Perm()), NewSHA: f.SHA256()}
		st, exists := state[f.Path]
		switch {
		case !exists:
			fc.Kind = Create
		case st.sha != fc.NewSHA:
			fc.Kind = Update
		case st.mode != f.Mode.Perm():
			fc.Kind = ModeOnly
		default:
			fc.Kind = Unchanged
		}
		if exists {
			fc.OldSHA = st.sha
			fc.OldMode = fmt.Sprintf("%04o", st.mode)
		}
		if fc.Kind != Unchanged && fc.Kind != ModeOnly && strings.HasSuffix(f.Path, ".crt") {
			fc.Cert = &CertChange{New: summarize(f.Data)}
			if exists {
				if old, err := t.ReadFile(ctx, f.Path); err == nil {
					fc.Cert.Old = summarize(old)
				}
			}
		}
		d.Changes = append(d.Changes, fc)
	}
	return d, nil
}

// readState gets mode and sha256 of every path in one round trip.
func readState(ctx context.Context, t remote.Transport, files []plan.File) (map[string]remoteState, error) {
	var script strings.Builder
	script.WriteString("for f in")
	for _, f := range files {
		script.WriteString(" " + remote.ShellQuote(f.Path))
	}
	script.WriteString(`; do if [ -f "$f" ]; then printf '%s ' "$(stat -c %a "$f")"; sha256sum "$f"; fi; done`)
	out, err := t.Run(ctx, script.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("read file state: %w", err)
	}
	state := map[string]remoteState{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		// "<mode> <sha256>  <path>"
		fields := strings.SplitN(line, " ", 3)
		if len(fields) != 3 {
			return nil, fmt.Errorf("read file state: unexpected line %q", line)
		}
		mode, err := strconv.ParseUint(fields[0], 8, 32)
		if err != nil {
			return nil, fmt.Errorf("read file state: bad mode in %q", line)
		}
		state[strings.TrimPrefix(fields[2], " ")] = remoteState{mode: fs.FileMode(mode), sha: fields[1]}
	}
	return state, nil
}

func summarize(data []byte) *CertSummary {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil
	}
	s := &CertSummary{Subject: c.Subject.String(), NotAfter: c.NotAfter.UTC()}
	s.SANs = append(s.SANs, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		s.SANs = append(s.SANs, ip.String())
	}
	return s
}

// WriteDiff prints diffs for people: per host, each file that would change.
func WriteDiff(w io.Writer, diffs []HostDiff) {
	for _, d := range diffs {
		changed := d.Changed()
		if len(changed) == 0 {
			fmt.Fprintf(w, "%s: up to date (%d files)\n", d.Host, len(d.Changes))
			continue
		}
		fmt.Fprintf(w, "%s: %d of %d files would change\n", d.Host, len(changed), len(d.Changes))
		for _, c := range changed {
			switch c.Kind {
			case Create:
				fmt.Fprintf(w, "  + %s (mode %s, sha256 %s)\n", c.Path, c.Mode, short(c.NewSHA))
			case Update:
				fmt.Fprintf(w, "  ~ %s (mode %s -> %s, sha256 %s -> %s)\n", c.Path, c.OldMode, c.Mode, short(c.OldSHA), short(c.NewSHA))
			case ModeOnly:
				fmt.Fprintf(w, "  ~ %s (mode %s -> %s, same content)\n", c.Path, c.OldMode, c.Mode)
			}
			if c.Cert != nil {
				if c.Cert.Old != nil {
					fmt.Fprintf(w, "      was: %s\n", c.Cert.Old)
				}
				if c.Cert.New != nil {
					fmt.Fprintf(w, "      now: %s\n", c.Cert.New)
				}
			}
		}
	}
}

func (s *CertSummary) String() string {
	return fmt.Sprintf("%s, SANs [%s], expires %s", s.Subject, strings.Join(s.SANs, " "), s.NotAfter.Format(time.RFC3339))
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
