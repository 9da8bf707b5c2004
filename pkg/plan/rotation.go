package plan

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"path"
	"strings"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
)

// RotationStage is where a CA rotation stands, read from the hosts alone.
type RotationStage string

// The stages of moving a cluster from one CA (other) to another (target).
const (
	// TrustBoth: every host trusts the target first, then the other, and
	// every member restarted to load that.
	TrustBoth RotationStage = "trust both CAs"
	// MoveLeaves: every leaf is issued by the target.
	MoveLeaves RotationStage = "move the leaves to the new CA"
	// DropOther: every host trusts the target only.
	DropOther RotationStage = "drop the old CA"
	// RotationDone: nothing is left to do on the hosts.
	RotationDone RotationStage = "done"
)

// Rotation says, from the hosts' facts, the next stage of a rotation from
// other to target, and why. A host is past a stage once what the stage
// makes is there and no restart is pending, so that a rotation cut at any
// point, or reversed, goes on from where the hosts are.
func Rotation(in Input, target, other *x509.Certificate) (RotationStage, string) {
	var notA, notB, notC []string
	for _, h := range in.Cluster.Spec.Hosts {
		hf := in.Hosts[h.Name]
		if hf == nil {
			notA = append(notA, h.Name)
			continue
		}
		trustsTarget := trusts(hf, target)
		leaves := leavesIssuedBy(hf, target)
		pending := hf.HasPending(facts.PendingEtcdRestart)
		onlyTarget := len(hf.TrustedCAs) == 1 && trustsTarget
		if !(trustsTarget && (trusts(hf, other) || leaves) && !pending) {
			notA = append(notA, h.Name)
		}
		if !(trustsTarget && leaves && !pending) {
			notB = append(notB, h.Name)
		}
		if !(onlyTarget && leaves && !pending) {
			notC = append(notC, h.Name)
		}
	}
	switch {
	case len(notA) > 0:
		return TrustBoth, fmt.Sprintf("%s do not trust both CAs yet (the new one first), or have not restarted since", strings.Join(notA, ", "))
	case len(notB) > 0:
		return MoveLeaves, fmt.Sprintf("%s still hold certificates of the old CA", strings.Join(notB, ", "))
	case len(notC) > 0:
		return DropOther, fmt.Sprintf("%s still trust the old CA", strings.Join(notC, ", "))
	}
	return RotationDone, "every host trusts the new CA only and holds certificates it issued"
}

// LeavesIssuedBy reports whether every leaf certificate on the host was
// issued by ca.
func LeavesIssuedBy(hf *facts.Host, ca *x509.Certificate) bool { return leavesIssuedBy(hf, ca) }

func leavesIssuedBy(hf *facts.Host, ca *x509.Certificate) bool {
	for _, spec := range certs.LeafSpecs() {
		c, err := certs.ParseCert(hf.Files[path.Join(manifests.CertificatesDir, spec.BaseName+".crt")].Data)
		if err != nil || !certs.IssuedBy(c, ca) {
			return false
		}
	}
	return true
}

func trusts(hf *facts.Host, ca *x509.Certificate) bool {
	for _, c := range hf.TrustedCAs {
		if bytes.Equal(c.Raw, ca.Raw) {
			return true
		}
	}
	return false
}
