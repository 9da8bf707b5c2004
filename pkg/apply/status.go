package apply

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
)

// MemberReport is one member's status with its certificates' expiry, read from its host.
type MemberReport struct {
	etcdclient.MemberStatus
	Certificates []certs.Expiration `json:"certificates"`
}

// Status asks every member for its status and reads its certificates from its host.
func Status(ctx context.Context, c *config.Cluster, hs *Hosts, pki *certs.PKI, now time.Time) ([]MemberReport, error) {
	client, err := newEtcdClient(pki, hs)
	if err != nil {
		return nil, err
	}
	sts := client.Status(ctx, Members(c), 5*time.Second)
	out := make([]MemberReport, len(sts))
	err = ForEach(ctx, hs.Order, 0, func(ctx context.Context, h config.Host) error {
		i := indexOf(c, h.Name)
		out[i].MemberStatus = sts[i]
		for _, spec := range append([]certs.Spec{{Name: certs.EtcdCA, BaseName: certs.CABaseName}}, certs.LeafSpecs()...) {
			p := path.Join(manifests.CertificatesDir, spec.BaseName+".crt")
			e := certs.Expiration{Host: h.Name, Name: spec.Name, Path: p, Residual: "<missing>", Problem: "missing or unreadable"}
			if data, err := hs.T[h.Name].ReadFile(ctx, p); err == nil {
				if s := summarize(data); s != nil {
					e = certs.ExpirationOf(h.Name, spec.Name, p, "", strings.TrimPrefix(s.Subject, "CN="), s.NotAfter, now)
				}
			}
			out[i].Certificates = append(out[i].Certificates, e)
		}
		return nil
	})
	return out, named(err, "status")
}

func indexOf(c *config.Cluster, name string) int {
	for i, h := range c.Spec.Hosts {
		if h.Name == name {
			return i
		}
	}
	return -1
}

// WriteStatusTable prints members, then certificate expiry per member.
func WriteStatusTable(w io.Writer, reports []MemberReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tID\tENDPOINT\tLEADER\tLEARNER\tVERSION\tDB SIZE\tRAFT TERM\tRAFT INDEX\tHEALTH\tCERTS EXPIRE")
	for _, r := range reports {
		health := "healthy"
		if !r.Healthy {
			health = "unhealthy: " + r.Error
		}
		first := "-"
		var soonest time.Time
		for _, e := range r.Certificates {
			if !e.NotAfter.IsZero() && (soonest.IsZero() || e.NotAfter.Before(soonest)) {
				soonest, first = e.NotAfter, e.Residual+" ("+e.Name+")"
			} else if e.NotAfter.IsZero() {
				first = "missing " + e.Name
				break
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%v\t%s\t%s\t%d\t%d\t%s\t%s\n", r.Name, orDash(r.ID), r.Endpoint, r.Leader, r.Learner,
			orDash(r.Version), humanBytes(r.DBSize), r.RaftTerm, r.RaftIndex, health, first)
	}
	return tw.Flush()
}

// WriteStatusJSON prints the reports as JSON.
func WriteStatusJSON(w io.Writer, reports []MemberReport) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(reports)
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
