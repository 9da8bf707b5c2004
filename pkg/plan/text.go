package plan

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

// WriteText prints a plan for people: per host how many files differ, then
// every stage with its operations in order, then the warnings.
func WriteText(w io.Writer, p *Plan) {
	for _, h := range p.Hosts {
		if len(h.Changes) == 0 {
			continue
		}
		switch n := len(h.Changed()); {
		case n > 0:
			fmt.Fprintf(w, "%s: %d of %d files would change\n", h.Name, n, len(h.Changes))
		case len(h.DirChanges) > 0:
			fmt.Fprintf(w, "%s: files up to date (%d files)\n", h.Name, len(h.Changes))
		default:
			fmt.Fprintf(w, "%s: up to date (%d files)\n", h.Name, len(h.Changes))
		}
		for _, dc := range h.DirChanges {
			fmt.Fprintf(w, "%s: %s\n", h.Name, dc)
		}
	}
	switch {
	case p.Refused:
		fmt.Fprintln(w, "refused: apply would change nothing (the reasons follow)")
	case p.Empty():
		fmt.Fprintln(w, "nothing to do: every host is as planned")
	}
	for i, st := range p.Stages {
		how := "all hosts at once"
		if st.Rollout == OneAtATime {
			how = "one host at a time"
		}
		fmt.Fprintf(w, "stage %d/%d: %s (%s)\n", i+1, len(p.Stages), st.Name, how)
		if st.Why != "" {
			fmt.Fprintf(w, "  why: %s\n", st.Why)
		}
		if st.QuorumLost != "" {
			fmt.Fprintf(w, "  only while no member names a leader, asked again right before: %s\n", st.QuorumLost)
		}
		for _, ho := range st.Hosts {
			fmt.Fprintf(w, "  %s:\n", ho.Host)
			for _, op := range ho.Ops {
				line := op.String()
				wr, write := op.(ops.Write)
				if why := op.Meta().Why; why != "" && !write {
					line += " (" + why + ")"
				}
				fmt.Fprintf(w, "    %s\n", line)
				if write && wr.Change.Cert != nil {
					if wr.Change.Cert.Old != nil {
						fmt.Fprintf(w, "        was: %s\n", wr.Change.Cert.Old)
					}
					if wr.Change.Cert.New != nil {
						fmt.Fprintf(w, "        now: %s\n", wr.Change.Cert.New)
					}
				}
			}
		}
		if len(st.Wait) > 0 {
			fmt.Fprintf(w, "  then wait for %s healthy\n", strings.Join(st.Wait, ", "))
		}
	}
	for _, warn := range p.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
}

// WriteJSON prints a plan for tools.
func WriteJSON(w io.Writer, p *Plan) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}
