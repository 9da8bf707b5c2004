// Package status reports a cluster as etcdadm sees it: every member (voter,
// learner, not started, not in the inventory) and every inventory host that
// is not one, with what etcd says of it and its certificates' expiry read
// from its host, then the control-plane hosts. It owns the report and its
// table and JSON forms; it reads gathered facts and changes nothing.
package status

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/gather"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
)

// Membership says what a row of the status is to the cluster.
type Membership string

// Memberships.
const (
	Voter          Membership = "voter"
	Learner        Membership = "learner"
	NotStarted     Membership = "not started"
	NotInInventory Membership = "not in inventory"
	NotAMember     Membership = "not a member"
	Unknown        Membership = "unknown"
)

// MemberReport is one member, or one inventory host that is not a member:
// what etcd says of it and its certificates' expiry read from its host.
type MemberReport struct {
	etcdclient.MemberStatus
	Membership Membership `json:"membership"`
	PeerURLs   []string   `json:"peerURLs,omitempty"`
	// HostError says why the host's facts could not be read.
	HostError    string             `json:"hostError,omitempty"`
	Certificates []certs.Expiration `json:"certificates,omitempty"`
	// Alarms are the active alarms raised for this member ("NOSPACE",
	// "CORRUPT"); an alarm holds for the whole cluster.
	Alarms []string `json:"alarms"`
	// Kept are the host's backups of data a restore or a recovery
	// replaced, which pruning never removes.
	Kept []facts.Kept `json:"kept,omitempty"`
	// Pending is the work runs recorded on the host before starting it and
	// have not finished: what a cut run left (see PendingWork).
	Pending []string `json:"pending,omitempty"`
}

// Report is the status of a cluster.
type Report struct {
	Members []MemberReport `json:"members"`
	// ListFrom and Serializable say where the member list came from.
	ListFrom     string `json:"listFrom,omitempty"`
	Serializable bool   `json:"serializable,omitempty"`
	ListError    string `json:"listError,omitempty"`
	// Alarms are the cluster's active alarms; one without a member was
	// read from a status, when the alarm list needs a quorum there is not.
	Alarms []etcdclient.Alarm `json:"alarms,omitempty"`
	// QuorumLost is set when the loss of quorum is confirmed; QuorumWhy
	// says what the reads saw when no member named a leader.
	QuorumLost bool   `json:"quorumLost,omitempty"`
	QuorumWhy  string `json:"quorumWhy,omitempty"`
	// ControlPlane are the control-plane hosts of an external cluster.
	ControlPlane []ControlPlaneReport `json:"controlPlane,omitempty"`
}

// Status builds the report from the facts: every member of the member list,
// then every inventory host that is not one.
func Status(c *config.Cluster, f *gather.Facts, unreachable map[string]error, now time.Time) *Report {
	e := f.Etcd
	if e == nil {
		e = &facts.Cluster{ListError: "etcd was not asked"}
	}
	r := &Report{ListFrom: e.ListFrom, Serializable: e.Serializable, ListError: e.ListError,
		Alarms: e.Alarms, QuorumLost: e.QuorumLost, QuorumWhy: e.QuorumWhy}
	seen := map[string]bool{}
	for _, m := range e.Members {
		mr := MemberReport{PeerURLs: m.PeerURLs, Membership: Voter, Alarms: alarmsOf(e, m.ID)}
		mr.Name, mr.ID = m.Name, m.HexID()
		if len(m.ClientURLs) > 0 {
			mr.Endpoint = m.ClientURLs[0]
		}
		switch {
		case m.Learner:
			mr.Membership = Learner
		case !m.Started():
			mr.Membership = NotStarted
		}
		h, inInventory := inventoryHost(c, m)
		if inInventory {
			seen[h.Name] = true
			mr.Name = h.Name
			mr.Endpoint = manifests.ClientURL(h)
			hostFacts(c, &mr, f, unreachable, h, now)
		} else {
			mr.Membership = NotInInventory
		}
		if st, ok := e.Status[m.ID]; ok {
			mr.MemberStatus = withName(st, mr.Name, mr.Endpoint)
		} else if st, ok := e.Unanswered[mr.Endpoint]; ok {
			mr.Error = st.Error
		} else if !m.Started() {
			mr.Error = "never started"
		}
		mr.ID = m.HexID()
		r.Members = append(r.Members, mr)
	}
	for _, h := range c.Spec.Hosts {
		if seen[h.Name] {
			continue
		}
		mr := MemberReport{Membership: NotAMember, Alarms: []string{}}
		if !e.Known() {
			mr.Membership = Unknown
		}
		mr.Name, mr.Endpoint = h.Name, manifests.ClientURL(h)
		if st, ok := e.Unanswered[mr.Endpoint]; ok {
			mr.Error = st.Error
		}
		for _, st := range e.Status {
			if st.Endpoint == mr.Endpoint {
				mr.MemberStatus = withName(st, h.Name, mr.Endpoint)
			}
		}
		hostFacts(c, &mr, f, unreachable, h, now)
		r.Members = append(r.Members, mr)
	}
	rank := func(name string) int {
		for i, h := range c.Spec.Hosts {
			if h.Name == name {
				return i
			}
		}
		return len(c.Spec.Hosts)
	}
	slices.SortStableFunc(r.Members, func(a, b MemberReport) int { return rank(a.Name) - rank(b.Name) })
	r.ControlPlane = controlPlaneStatus(c, f, unreachable, now)
	return r
}

// alarmsOf are the types of the alarms raised for member id.
func alarmsOf(e *facts.Cluster, id uint64) []string {
	out := []string{}
	for _, a := range e.Alarms {
		if a.MemberID == id && !slices.Contains(out, a.Type) {
			out = append(out, a.Type)
		}
	}
	return out
}

func withName(st etcdclient.MemberStatus, name, endpoint string) etcdclient.MemberStatus {
	st.Name, st.Endpoint = name, endpoint
	return st
}

func inventoryHost(c *config.Cluster, m etcdclient.Member) (config.Host, bool) {
	for _, h := range c.Spec.Hosts {
		if m.HasPeerURL(manifests.PeerURL(h)) {
			return h, true
		}
	}
	for _, h := range c.Spec.Hosts {
		if m.Name != "" && m.Name == h.Name {
			return h, true
		}
	}
	return config.Host{}, false
}

// hostFacts adds what the host itself says: its certificates' expiry.
func hostFacts(c *config.Cluster, mr *MemberReport, f *gather.Facts, unreachable map[string]error, h config.Host, now time.Time) {
	if err := unreachable[h.Name]; err != nil {
		mr.HostError = err.Error()
		return
	}
	hf := f.Hosts[h.Name]
	if hf == nil {
		return
	}
	mr.Certificates = HostCertificates(c, h.Name, hf, now)
	mr.Kept = hf.Kept
	mr.Pending = hf.Pending
}

// HostCertificates are the rows of the certificates read on a host, each
// compared with the local PKI's copy.
func HostCertificates(c *config.Cluster, host string, hf *facts.Host, now time.Time) []certs.Expiration {
	var out []certs.Expiration
	for _, spec := range certs.KindsFor(c, host) {
		p := path.Join(manifests.CertificatesDir, spec.BaseName+".crt")
		data := hf.Files[p].Data
		cert, err := certs.ParseCert(data)
		if err != nil {
			out = append(out, certs.Missing(host, spec.Name, p))
			continue
		}
		e := certs.ExpirationOf(host, spec.Name, p, cert, now)
		local, err := os.ReadFile(certs.LocalPath(c.PKIDir(), host, spec))
		e.DiffersFromLocal = err != nil || !bytes.Equal(local, data)
		out = append(out, e)
	}
	return out
}

// Statuses are the members' statuses, learners and members not in the
// inventory included, hosts that are no member left out.
func (r *Report) Statuses() []etcdclient.MemberStatus {
	var out []etcdclient.MemberStatus
	for _, m := range r.Members {
		if m.Membership != NotAMember && m.Membership != Unknown {
			out = append(out, m.MemberStatus)
		}
	}
	return out
}

// WriteStatusTable prints one row per member, then notes.
func WriteStatusTable(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tID\tENDPOINT\tMEMBERSHIP\tLEADER\tVERSION\tDB SIZE\tALARMS\tRAFT TERM\tRAFT INDEX\tHEALTH\tCERTS EXPIRE")
	for _, m := range r.Members {
		health := "healthy"
		switch {
		case m.Membership == NotAMember && !m.Healthy:
			health = "-"
		case m.HostError != "" && !m.Healthy:
			health = "unhealthy: " + m.Error + "; host unreachable: " + m.HostError
		case !m.Healthy && m.Error != "":
			health = "unhealthy: " + m.Error
		case !m.Healthy:
			health = "unhealthy"
		}
		first := "-"
		var soonest time.Time
		for _, e := range m.Certificates {
			if e.NotAfter.IsZero() {
				first = "missing " + e.Name
				break
			}
			if soonest.IsZero() || e.NotAfter.Before(soonest) {
				soonest, first = e.NotAfter, e.Residual+" ("+e.Name+")"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", orDash(m.Name), orDash(m.ID), orDash(m.Endpoint), m.Membership, m.Leader,
			orDash(m.Version), humanBytes(m.DBSize), orDash(strings.Join(m.Alarms, ",")), m.RaftTerm, m.RaftIndex, health, first)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	switch {
	case r.ListError != "":
		fmt.Fprintf(w, "no member list: %s\n", r.ListError)
	case r.Serializable:
		fmt.Fprintf(w, "no quorum: the member list is %s's own view\n", r.ListFrom)
	}
	switch {
	case r.QuorumLost:
		fmt.Fprintf(w, "quorum lost: %s\n", r.QuorumWhy)
	case r.QuorumWhy != "":
		fmt.Fprintf(w, "no leader at first, but quorum is not lost: %s\n", r.QuorumWhy)
	}
	writeAlarms(w, r)
	for _, m := range r.Members {
		for _, p := range m.Pending {
			fmt.Fprintf(w, "%s: %s\n", m.Name, PendingWork(p))
		}
	}
	return writeControlPlaneTable(w, r.ControlPlane)
}

// PendingWork says what a host's marker p records and which command
// finishes it.
func PendingWork(p string) string {
	switch {
	case strings.HasPrefix(p, facts.PendingRestore):
		return "an unfinished snapshot restore (" + p + "): the same `etcdadm snapshot restore FILE --yes` again finishes it, `etcdadm snapshot restore --abort` goes back; other commands that start etcd refuse until then"
	case p == facts.PendingControlPlane:
		return "its kube-apiserver, controller manager and scheduler are held aside by a cut restore: the restore run again, or `etcdadm apply`, starts them"
	case p == facts.PendingRecover:
		return "an unfinished recovery keeps this host's data: `etcdadm recover` again goes on"
	case strings.HasPrefix(p, facts.PendingRejoin):
		return "a recovery dropped " + strings.TrimPrefix(p, facts.PendingRejoin) + "'s member: `etcdadm apply` adds it again once its host is back"
	case strings.HasPrefix(p, facts.PendingMoveFrom):
		return "an unfinished member move from " + strings.TrimPrefix(p, facts.PendingMoveFrom) + ": `etcdadm member move` again finishes it"
	case p == facts.PendingDefrag:
		return "a defragmentation was cut: the next `etcdadm defrag` (or any rolling command) waits for this member first"
	case p == facts.PendingEtcdRestart, p == facts.PendingKubeletRestart:
		return "a recorded " + strings.TrimSuffix(p, "-restart") + " restart a cut run did not do: `etcdadm apply` does it"
	default:
		return "work a cut run recorded (" + p + "): run the same command again"
	}
}

// writeAlarms says what each alarm stops and what to do, after the table.
func writeAlarms(w io.Writer, r *Report) {
	for _, a := range r.Alarms {
		who := "raised for " + a.Member
		if a.MemberID == 0 {
			who = "raised (for which member cannot be read without quorum)"
		}
		switch a.Type {
		case "NOSPACE":
			fmt.Fprintf(w, "alarm NOSPACE %s: a database reached its quota; the cluster takes no writes until it is disarmed: `etcdadm defrag`, or raise quota-backend-bytes and `etcdadm apply`, then `etcdadm alarm disarm`\n", who)
		case "CORRUPT":
			fmt.Fprintf(w, "alarm CORRUPT %s: etcd found data that differs from the peers'; the cluster takes no writes, and etcdadm changes nothing, until that member is taken out and the alarm disarmed (any command that changes the cluster says how)\n", who)
		default:
			fmt.Fprintf(w, "alarm %s %s\n", a.Type, who)
		}
	}
}

// WriteStatusJSON prints the report as JSON.
func WriteStatusJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func humanBytes(n int64) string {
	switch {
	case n == 0:
		return "-"
	case n < 1<<20:
		return fmt.Sprintf("%.0f kB", float64(n)/1e3)
	default:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
}

// ControlPlaneReport is one control-plane host: its certificates' expiry
// read from the host, or why it could not be read.
type ControlPlaneReport struct {
	Name         string             `json:"name"`
	Address      string             `json:"address"`
	HostError    string             `json:"hostError,omitempty"`
	Certificates []certs.Expiration `json:"certificates,omitempty"`
	// APIServer is its kube-apiserver; nil when it has none.
	APIServer *APIServerReport `json:"apiserver,omitempty"`
}

func controlPlaneStatus(c *config.Cluster, f *gather.Facts, unreachable map[string]error, now time.Time) []ControlPlaneReport {
	var out []ControlPlaneReport
	members := memberClientURLs(c, f.Etcd)
	stacked := c.Spec.Topology == config.TopologyStacked
	hosts := c.Spec.ControlPlane.Hosts
	if stacked {
		// A stacked member's host is a control-plane host: its kube-apiserver's row.
		hosts = nil
		for _, h := range c.Spec.Hosts {
			if hf := f.Hosts[h.Name]; hf != nil && apiserverReport(hf, members, true) != nil {
				hosts = append(hosts, config.ControlPlaneHost{Name: h.Name, Address: h.Address})
			}
		}
	}
	for _, h := range hosts {
		r := ControlPlaneReport{Name: h.Name, Address: h.Address}
		if err := unreachable[h.Name]; err != nil {
			r.HostError = err.Error()
		} else if hf := f.Hosts[h.Name]; hf != nil {
			r.Certificates = HostCertificates(c, h.Name, hf, now)
			r.APIServer = apiserverReport(hf, members, stacked)
		} else {
			r.HostError = "not read"
		}
		out = append(out, r)
	}
	return out
}

// writeControlPlaneTable prints a line per control-plane host: when its
// kube-apiserver's client certificate expires, the --etcd-servers it uses,
// whether they are the members', and whether it answers /readyz.
func writeControlPlaneTable(w io.Writer, rows []ControlPlaneReport) error {
	if len(rows) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTROL-PLANE HOST\tADDRESS\tAPISERVER-ETCD-CLIENT EXPIRES\tETCD-SERVERS\tMEMBERS\tREADYZ")
	for _, r := range rows {
		expires := "-"
		switch {
		case r.HostError != "":
			expires = "host unreachable: " + r.HostError
		default:
			for _, e := range r.Certificates {
				if e.Name != certs.APIServerEtcdClient {
					continue
				}
				expires = e.Residual
				if !e.NotAfter.IsZero() {
					expires += " (" + e.NotAfter.Format(time.RFC3339) + ")"
				}
			}
		}
		servers, matches, ready := apiserverColumns(r.APIServer)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Address, expires, servers, matches, ready)
	}
	return tw.Flush()
}
