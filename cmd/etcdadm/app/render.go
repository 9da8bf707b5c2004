package app

import (
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/pipeline"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/render"
)

type renderFlags struct {
	inventoryFlags
	out string
}

func newRenderCommand(streams Streams) *cobra.Command {
	f := &renderFlags{}
	cmd := &cobra.Command{
		Use:   "render -f cluster.yaml -o DIR",
		Short: "Write every host's files under DIR/<host>/ and in DIR/<host>.tar.gz, touching no host",
		Long: `render computes the plan of every host and writes its files under DIR/<host>/ at
their paths on the host (DIR/infra0/etc/kubernetes/pki/etcd/server.crt), with an
index.json and a SHA256SUMS file per host to review them by, and DIR/<host>.tar.gz to
carry to the host: the same files and the directories etcd owns, owned by root with
their modes, and no entry for /etc, /var or /etc/kubernetes. Unpack it as root with
  tar -C / --no-overwrite-dir --numeric-owner -xzpf DIR/infra0.tar.gz
and check it with (cd / && sha256sum -c) < DIR/infra0/SHA256SUMS. The files are those
of a cluster brought up from nothing. The certificates come from spec.pki.dir, which
render never changes: run 'etcdadm certs generate' first.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRender(streams, f, plan.AllParts)
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVarP(&f.out, "output-dir", "o", "", "the directory to write the bundles to (required)")
	return cmd
}

func runRender(streams Streams, f *renderFlags, parts []plan.Part) error {
	if f.out == "" {
		return &usageError{fmt.Errorf("--output-dir (-o) is required: the directory to write each host's files to")}
	}
	c, err := f.load(streams)
	if err != nil {
		return err
	}
	p, err := computePlan(streams, c, parts, slices.Equal(parts, []plan.Part{plan.PartCerts}))
	if err != nil {
		return err
	}
	if err := render.Write(p, f.out); err != nil {
		return err
	}
	for _, h := range p.Hosts {
		fmt.Fprintf(streams.Out, "%s: %d files in %s and %s\n", h.Name, len(h.Files), f.out+"/"+h.Name, f.out+"/"+render.ArchiveName(h.Name))
	}
	return nil
}

// computePlan builds the files of every host. With certificates among the
// parts, the PKI must be complete, unless generate is set (the certs phase),
// which completes and saves it first.
func computePlan(streams Streams, c *config.Cluster, parts []plan.Part, generate bool) (*plan.Plan, error) {
	if generate {
		release, err := certs.Lock(c.PKIDir())
		if err != nil {
			return nil, err
		}
		defer release()
	}
	if err := certs.CheckKeyModes(c.PKIDir(), generate, streams.ErrOut); err != nil {
		return nil, err
	}
	p, pki, events, err := plan.Compute(c, pipeline.RuntimeFor(c), plan.Options{Parts: parts})
	if err != nil {
		return nil, err
	}
	if pki != nil && pki.Unsaved() {
		if !generate {
			printCertEvents(streams, events, true)
			return nil, fmt.Errorf("%s lacks certificates the hosts need (listed above); render uses the PKI as it is and changes nothing: run 'etcdadm certs generate' with the same inventory first", c.PKIDir())
		}
		if err := pki.Save(); err != nil {
			return nil, err
		}
		printCertEvents(streams, events, false)
	}
	return p, nil
}

// printCertEvents says what happened to the PKI, or with would what would.
func printCertEvents(streams Streams, events []certs.Event, would bool) {
	log := streams.progress()
	reused := 0
	for _, e := range events {
		if e.Action == certs.Reused {
			reused++
			continue
		}
		who := e.Host
		if who == "" {
			who = "cluster"
		}
		action := string(e.Action)
		if would {
			action = "would be " + action
		}
		log.Info(fmt.Sprintf("[certs] %s %s: %s (%s)", who, e.Name, action, e.Reason))
	}
	if reused > 0 {
		log.Info(fmt.Sprintf("[certs] %d certificates unchanged", reused))
	}
}
