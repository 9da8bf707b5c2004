package apply

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/kubeadmconfig"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
)

// controlPlaneRequest is what to read on a control-plane host: the files
// the plan could write there and who trusts which CA, nothing of a member.
func controlPlaneRequest(c *config.Cluster, pki *certs.PKI, h config.ControlPlaneHost) (facts.Request, error) {
	hp, err := plan.ControlPlaneFiles(c, pki, h, plan.AllParts)
	if err != nil {
		return facts.Request{}, err
	}
	req := facts.Request{CAPath: kubeadmconfig.ExternalCAFile, NoMember: true}
	for _, f := range hp.Files {
		req.Files = append(req.Files, f.Path)
	}
	for _, d := range hp.Dirs {
		req.Dirs = append(req.Dirs, d.Path)
	}
	return req, nil
}

// ControlPlaneReport is one control-plane host: its certificates' expiry
// read from the host, or why it could not be read.
type ControlPlaneReport struct {
	Name         string             `json:"name"`
	Address      string             `json:"address"`
	HostError    string             `json:"hostError,omitempty"`
	Certificates []certs.Expiration `json:"certificates,omitempty"`
}

func controlPlaneStatus(c *config.Cluster, f *Facts, unreachable map[string]error, now time.Time) []ControlPlaneReport {
	var out []ControlPlaneReport
	for _, h := range c.Spec.ControlPlane.Hosts {
		r := ControlPlaneReport{Name: h.Name, Address: h.Address}
		if err := unreachable[h.Name]; err != nil {
			r.HostError = err.Error()
		} else if hf := f.Hosts[h.Name]; hf != nil {
			r.Certificates = HostCertificates(c, h.Name, hf, now)
		} else {
			r.HostError = "not read"
		}
		out = append(out, r)
	}
	return out
}

// writeControlPlaneTable prints a line per control-plane host: when its
// kube-apiserver's client certificate expires.
func writeControlPlaneTable(w io.Writer, rows []ControlPlaneReport) error {
	if len(rows) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTROL-PLANE HOST\tADDRESS\tAPISERVER-ETCD-CLIENT EXPIRES")
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
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, r.Address, expires)
	}
	return tw.Flush()
}
