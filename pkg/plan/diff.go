package plan

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"

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
			// A missing directory is made with its mode (ops.KindMkdir).
			continue
		}
		c := DirChange{Path: d.Path, Mode: fmt.Sprintf("%04o", d.Mode.Perm()), OldMode: fmt.Sprintf("%04o", st.Mode.Perm()), Owner: rootOwner, OldOwner: ownerOf(st)}
		if c.Mode != c.OldMode || c.Owner != c.OldOwner {
			h.DirChanges = append(h.DirChanges, c)
		}
	}
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
