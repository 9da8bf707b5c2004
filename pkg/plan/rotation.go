package plan

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"path"
	"strings"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
)

// RotationStage is where a CA rotation stands, read from the hosts alone.
type RotationStage int

// The stages of moving a cluster from one CA (the other) to another (the
// target).
const (
	// TrustBoth: every host trusts the target first, then the other, and
	// every member restarted to load that.
	TrustBoth RotationStage = iota
	// MoveLeaves: every leaf is issued by the target.
	MoveLeaves
	// DropOther: every host trusts the target only.
	DropOther
	// RotationDone: nothing is left to do on the hosts.
	RotationDone
)

// CAMove names the CAs of a rotation: forward, the target is the new CA;
// aborted, the old one.
type CAMove struct {
	Target, Other         *x509.Certificate
	TargetName, OtherName string
}

// Describe names a stage for people.
func (m CAMove) Describe(s RotationStage) string {
	switch s {
	case TrustBoth:
		return "(a) trust both CAs, " + m.TargetName + " first"
	case MoveLeaves:
		return "(b) move the leaves to " + m.TargetName
	case DropOther:
		return "(c) drop " + m.OtherName
	}
	return "done"
}

// Rotation says, from the hosts' facts, the next stage of a rotation and
// why. A host is past a stage once what the stage makes is there and no
// restart is pending, so that a rotation cut at any point, or reversed,
// goes on from where the hosts are.
func Rotation(in Input, m CAMove) (RotationStage, string) {
	target, other := m.Target, m.Other
	var notA, notB, notC []string
	// Control-plane hosts go through the same stages: their ca.crt and
	// apiserver-etcd-client are what their kube-apiservers reach etcd with.
	for _, h := range in.Cluster.AllHosts() {
		hf := in.Hosts[h.Name]
		if hf == nil {
			notA = append(notA, h.Name)
			continue
		}
		trustsTarget := trusts(hf, target)
		leaves := leavesIssuedBy(hf, target, certs.SpecsFor(in.Cluster, h.Name))
		// A kube-apiserver reads its CA bundle only when it starts: one
		// that started before its etcd files changed is not past a stage.
		pending := hf.HasPending(facts.PendingEtcdRestart) || len(hf.APIServer.Stale()) > 0
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
		return TrustBoth, fmt.Sprintf("%s do not trust both CAs yet (%s first), or have not restarted since", strings.Join(notA, ", "), m.TargetName)
	case len(notB) > 0:
		return MoveLeaves, fmt.Sprintf("%s still hold certificates %s did not issue", strings.Join(notB, ", "), m.TargetName)
	case len(notC) > 0:
		return DropOther, fmt.Sprintf("%s still trust %s", strings.Join(notC, ", "), m.OtherName)
	}
	return RotationDone, fmt.Sprintf("every host trusts %s only and holds certificates it issued", m.TargetName)
}

// LeavesIssuedBy reports whether every leaf certificate the named host
// gets was issued by ca on the host.
func LeavesIssuedBy(c *config.Cluster, host string, hf *facts.Host, ca *x509.Certificate) bool {
	return leavesIssuedBy(hf, ca, certs.SpecsFor(c, host))
}

func leavesIssuedBy(hf *facts.Host, ca *x509.Certificate, specs []certs.Spec) bool {
	for _, spec := range specs {
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
