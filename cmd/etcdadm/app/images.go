package app

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/images"
)

func newImagesCommand(streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "images",
		Short: "The container images the hosts need, for registries and air-gapped hosts",
		Args:  noArgs,
	}
	cmd.AddCommand(newImagesListCommand(streams))
	return cmd
}

func newImagesListCommand(streams Streams) *cobra.Command {
	f := &inventoryFlags{}
	var output string
	cmd := &cobra.Command{
		Use:   "list -f cluster.yaml [-o json]",
		Short: "Print the images the inventory's hosts need: etcd and the Pod sandbox (pause)",
		Long: `list prints the images every host needs, from spec.etcd.imageRepository, imageTag and
kubernetesVersion, as kubeadm names them: etcd, and pause (the Pod sandbox, which
containerd's sandbox image should be). For hosts without a registry, save them where
a registry is reachable, with 'ctr images export' or 'docker save', into the directory
'etcdadm apply --images DIR' (or spec.images.dir) reads. Under the systemd runtime the
hosts need no image: the list is empty, and the release tarball that they do need is
named on standard error.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return &usageError{fmt.Errorf("invalid value %q for --output: use text or json", output)}
			}
			c, err := f.load(streams)
			if err != nil {
				return err
			}
			needed := images.Needed(c)
			if c.Systemd() {
				// No kubelet, no container: the hosts need no image.
				needed = []images.Need{}
				rel := c.Spec.Etcd.Release
				streams.progress().Info(fmt.Sprintf("spec.etcd.runtime is systemd: the hosts run etcd as etcd.service from the release tarball %s (sha256 %s), and need no image; carry that file, not images", c.ResolvePath(rel.File), rel.SHA256))
			}
			if output == "json" {
				enc := json.NewEncoder(streams.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(needed)
			}
			for _, n := range needed {
				fmt.Fprintln(streams.Out, n.Ref)
			}
			return nil
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text (one image a line) or json")
	return cmd
}

// bindImages adds --images to a command that plans.
func bindImages(cmd *cobra.Command, dir *string) {
	cmd.Flags().StringVar(dir, "images", "", "a directory of image archives (ctr images export, docker save; *.tar, *.tar.gz, *.tgz) to import what a host lacks from (default spec.images.dir)")
}

// imageArchives reads the archives of the directory --images names, or
// else spec.images.dir; nil when neither is set.
func imageArchives(c *config.Cluster, flagDir string, log *slog.Logger) (*images.Set, error) {
	dir := c.ImagesDir()
	if flagDir != "" {
		if st, err := os.Stat(flagDir); err != nil || !st.IsDir() {
			return nil, &usageError{fmt.Errorf("invalid value %q for --images: not a directory of image archives", flagDir)}
		}
		dir = flagDir
	}
	if dir == "" {
		return nil, nil
	}
	set, err := images.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, p := range set.Skipped {
		log.Warn(fmt.Sprintf("%s is not read: image archives are named *.tar, *.tar.gz or *.tgz", p))
	}
	for _, a := range set.Archives {
		for _, u := range a.Unnamed {
			log.Warn(fmt.Sprintf("%s holds an image without a whole name (%s): containerd would import it under no name a kubelet looks for; export it with its full name", a.Path, u))
		}
	}
	return set, nil
}
