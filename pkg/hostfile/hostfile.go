// Package hostfile is the vocabulary of what etcdadm puts on a host: a file
// (path, mode, bytes, or a large content streamed from this machine), a
// directory, and how each differs from the host's copy. It owns these types
// and their descriptions for people; it must not import plan, ops or
// anything that reaches a host.
package hostfile

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/release"
)

// Part groups files the way kubeadm's phases do; each can be rendered alone.
type Part string

// The parts, in the order they are applied.
const (
	PartCerts         Part = "certs"
	PartKubeadmConfig Part = "kubeadm-config"
	PartKubelet       Part = "kubelet"
	PartManifests     Part = "manifests"
	// PartBackup is what a member host runs its backups with.
	PartBackup Part = "backup"
)

// File is one file on a host.
type File struct {
	Path string      `json:"path"`
	Mode fs.FileMode `json:"mode"`
	Part Part        `json:"part"`
	// Secret files (private keys) are never printed.
	Secret bool   `json:"secret,omitempty"`
	Data   []byte `json:"-"`
	// Source, for a large file (a release's binary), is where its content
	// is streamed from when it is pushed; Data is then empty.
	Source *Source `json:"source,omitempty"`
}

// SHA256 is the hex digest of the file's content.
func (f File) SHA256() string {
	if f.Source != nil {
		return f.Source.SHA256
	}
	sum := sha256.Sum256(f.Data)
	return hex.EncodeToString(sum[:])
}

// Source is where a large file's content comes from on this machine: an
// entry of a release tarball, or a file of its own (no Entry: the etcdadm
// binary), streamed when it is pushed, never held in memory. Size and
// SHA256 are the content's as it was read.
type Source struct {
	Archive string `json:"archive"`
	Entry   string `json:"entry"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
}

// Open streams the content; the reader checks nothing, the host checks
// the sha256 of what it received.
func (s *Source) Open() (io.ReadCloser, error) {
	if s.Entry == "" {
		f, err := os.Open(s.Archive)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", s.Archive, err)
		}
		return f, nil
	}
	rc, err := release.Open(s.Archive, s.Entry)
	if err != nil {
		return nil, fmt.Errorf("read %s from %s: %w", s.Entry, s.Archive, err)
	}
	return rc, nil
}

// Dir is a directory a host needs, with the mode it must have when created.
// An owned directory is etcd's own: its mode and root owner are kept as
// planned. The others are parents shared with the rest of the host
// (/etc/kubernetes, the kubelet's drop-ins): made when missing, else left
// alone.
type Dir struct {
	Path  string      `json:"path"`
	Mode  fs.FileMode `json:"mode"`
	Owned bool        `json:"owned,omitempty"`
}

// ChangeKind says how a file differs from the plan.
type ChangeKind string

// Kinds of change.
const (
	Create    ChangeKind = "create"
	Update    ChangeKind = "update"
	ModeOnly  ChangeKind = "mode"
	OwnerOnly ChangeKind = "owner"
	Unchanged ChangeKind = "unchanged"
)

// Change compares one planned file with the host's copy.
type Change struct {
	File    File       `json:"-"`
	Path    string     `json:"path"`
	Kind    ChangeKind `json:"change"`
	Mode    string     `json:"mode"`
	OldMode string     `json:"oldMode,omitempty"`
	OldSHA  string     `json:"oldSHA256,omitempty"`
	NewSHA  string     `json:"sha256"`
	// Owner is uid:gid, root's; OldOwner the host copy's.
	Owner    string `json:"owner,omitempty"`
	OldOwner string `json:"oldOwner,omitempty"`
	// Cert describes old and new certificates, for .crt files that change.
	Cert *CertChange `json:"certificate,omitempty"`
}

// Writes reports whether the file's content is written (created or
// updated), not only its mode or owner set.
func (c Change) Writes() bool { return c.Kind == Create || c.Kind == Update }

// CertChange shows what a certificate change means.
type CertChange struct {
	Old *CertSummary `json:"old,omitempty"`
	New *CertSummary `json:"new"`
}

// CertSummary is what a reviewer checks in a certificate.
type CertSummary struct {
	Subject  string    `json:"subject"`
	Issuer   string    `json:"issuer,omitempty"`
	SANs     []string  `json:"sans,omitempty"`
	NotAfter time.Time `json:"notAfter"`
}

func (s *CertSummary) String() string {
	return fmt.Sprintf("%s, SANs [%s], expires %s", s.Subject, strings.Join(s.SANs, " "), s.NotAfter.Format(time.RFC3339))
}

func (c Change) String() string {
	switch c.Kind {
	case Create:
		return fmt.Sprintf("+ %s (mode %s, sha256 %s)", c.Path, c.Mode, Short(c.NewSHA))
	case Update:
		return fmt.Sprintf("~ %s (mode %s -> %s, sha256 %s -> %s%s)", c.Path, c.OldMode, c.Mode, Short(c.OldSHA), Short(c.NewSHA), c.ownerChange())
	case ModeOnly:
		return fmt.Sprintf("~ %s (mode %s -> %s%s, same content)", c.Path, c.OldMode, c.Mode, c.ownerChange())
	case OwnerOnly:
		return fmt.Sprintf("~ %s (owner %s -> %s, same content)", c.Path, c.OldOwner, c.Owner)
	}
	return fmt.Sprintf("  %s (unchanged)", c.Path)
}

func (c Change) ownerChange() string {
	if c.OldOwner == "" || c.OldOwner == c.Owner {
		return ""
	}
	return fmt.Sprintf(", owner %s -> %s", c.OldOwner, c.Owner)
}

// Short is the first 12 characters of a digest, for people.
func Short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
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
	return fmt.Sprintf("~ %s/ (directory %s)", c.Path, c.What())
}

// What says what differs: "mode 0755 -> 0700, owner 1000:1000 -> 0:0".
func (c DirChange) What() string {
	var what []string
	if c.Mode != c.OldMode {
		what = append(what, fmt.Sprintf("mode %s -> %s", c.OldMode, c.Mode))
	}
	if c.Owner != c.OldOwner {
		what = append(what, fmt.Sprintf("owner %s -> %s", c.OldOwner, c.Owner))
	}
	return strings.Join(what, ", ")
}
