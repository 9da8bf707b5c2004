package plan

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
)

// Refusal is one reason a plan will not run, on one host ("" for the cluster).
type Refusal struct {
	Host   string `json:"host,omitempty"`
	Reason string `json:"reason"`
}

// RefusedError lists every reason a plan was refused before any operation.
type RefusedError struct {
	What     string
	Refusals []Refusal
}

func (e *RefusedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s refused, nothing was changed (%d problem(s)):", e.What, len(e.Refusals))
	for _, r := range e.Refusals {
		if r.Host != "" {
			fmt.Fprintf(&b, "\n  - %s: %s", r.Host, strings.ReplaceAll(r.Reason, "\n", "\n    "))
		} else {
			fmt.Fprintf(&b, "\n  - %s", strings.ReplaceAll(r.Reason, "\n", "\n    "))
		}
	}
	return b.String()
}

type refusals []Refusal

func (r *refusals) add(host, format string, args ...any) {
	*r = append(*r, Refusal{Host: host, Reason: fmt.Sprintf(format, args...)})
}

func (r refusals) err(what string) error {
	if len(r) == 0 {
		return nil
	}
	sorted := append([]Refusal(nil), r...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Host < sorted[j].Host })
	return &RefusedError{What: what, Refusals: sorted}
}

// Fingerprint is a certificate's SHA-256, as `openssl x509 -fingerprint -sha256` prints it.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

func describeCA(c *x509.Certificate) string {
	return fmt.Sprintf("%s (sha256 %s, expires %s)", c.Subject.String(), Fingerprint(c), c.NotAfter.UTC().Format("2006-01-02"))
}
