package plan

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
)

// rootOwner is the owner of every file and owned directory the plan makes.
const rootOwner = "0:0"

func ownerOf(st facts.FileState) string { return fmt.Sprintf("%d:%d", st.UID, st.GID) }

// Compare fills h.Changes: every planned file against the host's copy, by
// sha256, mode and owner; and h.DirChanges: every directory the plan owns
// that the host has with another mode or owner.
func Compare(h *Host, hf *facts.Host) {
	h.Changes = nil
	for _, f := range h.Files {
		c := Change{File: f, Path: f.Path, Mode: fmt.Sprintf("%04o", f.Mode.Perm()), Owner: rootOwner, NewSHA: f.SHA256()}
		st, exists := hf.Files[f.Path]
		exists = exists && !st.Dir
		switch {
		case !exists:
			c.Kind = Create
		case st.SHA256 != c.NewSHA:
			c.Kind = Update
		case st.Mode.Perm() != f.Mode.Perm():
			c.Kind = ModeOnly
		case ownerOf(st) != rootOwner:
			c.Kind = OwnerOnly
		default:
			c.Kind = Unchanged
		}
		if exists {
			c.OldSHA = st.SHA256
			c.OldMode = fmt.Sprintf("%04o", st.Mode.Perm())
			c.OldOwner = ownerOf(st)
		}
		if (c.Kind == Create || c.Kind == Update) && strings.HasSuffix(f.Path, ".crt") {
			c.Cert = &CertChange{New: Summarize(f.Data)}
			if exists {
				c.Cert.Old = Summarize(st.Data)
			}
		}
		h.Changes = append(h.Changes, c)
	}
	h.DirChanges = nil
	for _, d := range h.Dirs {
		st, ok := hf.Files[d.Path]
		if !d.Owned || !ok || !st.Dir {
			// A missing directory is made with its mode (OpMkdir).
			continue
		}
		c := DirChange{Path: d.Path, Mode: fmt.Sprintf("%04o", d.Mode.Perm()), OldMode: fmt.Sprintf("%04o", st.Mode.Perm()), Owner: rootOwner, OldOwner: ownerOf(st)}
		if c.Mode != c.OldMode || c.Owner != c.OldOwner {
			h.DirChanges = append(h.DirChanges, c)
		}
	}
}

// DirChange is a directory the plan owns that the host has with another
// mode or owner. It is set right in place: etcd keeps running.
type DirChange struct {
	Path     string `json:"path"`
	Mode     string `json:"mode"`
	OldMode  string `json:"oldMode"`
	Owner    string `json:"owner"`
	OldOwner string `json:"oldOwner"`
}

// Command sets the directory's owner, then its mode, as root on the host.
func (c DirChange) Command() string {
	p := shell.Quote(c.Path)
	var cmds []string
	if c.Owner != c.OldOwner {
		cmds = append(cmds, "chown "+c.Owner+" "+p)
	}
	if c.Mode != c.OldMode {
		cmds = append(cmds, "chmod "+c.Mode+" "+p)
	}
	return strings.Join(cmds, " && ")
}

func (c DirChange) String() string {
	return fmt.Sprintf("~ %s/ (directory %s)", c.Path, c.what())
}

// what says what differs: "mode 0755 -> 0700, owner 1000:1000 -> 0:0".
func (c DirChange) what() string {
	var what []string
	if c.Mode != c.OldMode {
		what = append(what, fmt.Sprintf("mode %s -> %s", c.OldMode, c.Mode))
	}
	if c.Owner != c.OldOwner {
		what = append(what, fmt.Sprintf("owner %s -> %s", c.OldOwner, c.Owner))
	}
	return strings.Join(what, ", ")
}

// Summarize describes a PEM certificate, nil when it is not one.
func Summarize(data []byte) *CertSummary {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil
	}
	s := &CertSummary{Subject: c.Subject.String(), Issuer: c.Issuer.String(), NotAfter: c.NotAfter.UTC()}
	s.SANs = append(s.SANs, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		s.SANs = append(s.SANs, ip.String())
	}
	return s
}
