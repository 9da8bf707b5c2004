// Package app holds etcdadm's commands: they parse flags, call the library
// packages and print; the behaviour lives in those packages.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
)

// Streams are the command's standard streams: Out carries data, ErrOut status.
type Streams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
	// log prints progress and warnings on ErrOut; NewRootCommand makes it,
	// at debug level with --verbose.
	log *slog.Logger
}

// progress is the logger every command reports its progress and warnings to.
func (s Streams) progress() *slog.Logger {
	if s.log == nil {
		return progress.New(s.ErrOut, nil)
	}
	return s.log
}

// Main runs etcdadm with the process's arguments and streams and returns the exit code.
func Main() int {
	streams := Streams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	ctx, stop := interruptContext(context.Background(), streams, os.Exit)
	defer stop()
	cmd := NewRootCommand(streams)
	cmd.SetArgs(os.Args[1:])
	err := cmd.ExecuteContext(ctx)
	if sig := interruption(ctx); sig != nil {
		// Whatever the command returned, it did not do all its work.
		if err != nil {
			fmt.Fprintf(streams.ErrOut, "error: %v: %v\n", sig, err)
		} else {
			fmt.Fprintf(streams.ErrOut, "error: %v\n", sig)
		}
		return sig.exitCode()
	}
	if err != nil {
		fmt.Fprintf(streams.ErrOut, "error: %v\n", err)
		var usage *usageError
		if errors.As(err, &usage) {
			return 2
		}
		return 1
	}
	return 0
}

// NewRootCommand builds the etcdadm command tree.
func NewRootCommand(streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "etcdadm",
		Short: "Bring up and run the etcd clusters behind Kubernetes control planes",
		Long: `etcdadm makes the etcd PKI, kubeadmcfg.yaml, kubelet drop-ins and etcd static Pods
of a whole cluster from one inventory file, exactly as kubeadm would, and puts them on the hosts.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	cmd.SetIn(streams.In)
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{fmt.Errorf("%w\nsee '%s --help'", err, c.CommandPath())}
	})
	level := new(slog.LevelVar)
	streams.log = progress.New(streams.ErrOut, level)
	var verbose bool
	cmd.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "also show, per host, each command run and file read or written, with how long it took")
	cmd.PersistentPreRun = func(*cobra.Command, []string) {
		if verbose {
			level.Set(slog.LevelDebug)
		}
	}
	cmd.AddCommand(
		newApplyCommand(streams),
		newDiffCommand(streams),
		newStatusCommand(streams),
		newMemberCommand(streams),
		newResetCommand(streams),
		newRecoverCommand(streams),
		newSnapshotCommand(streams),
		newRenderCommand(streams),
		newImagesCommand(streams),
		newPhaseCommand(streams),
		newCertsCommand(streams),
		newVersionCommand(streams),
		newAdoptCommand(streams),
		newAlarmCommand(streams),
		newDefragCommand(streams),
		newBackupCommand(streams),
	)
	return cmd
}

// usageError is a mistake in the command line itself.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// inventoryFlags are the flags every command that reads the inventory has.
type inventoryFlags struct {
	file string
}

func (f *inventoryFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&f.file, "file", "f", "cluster.yaml", "the inventory file")
}

// load reads the inventory and prints its warnings as status.
func (f *inventoryFlags) load(streams Streams) (*config.Cluster, error) {
	c, warnings, err := config.Load(f.file)
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		streams.progress().Warn(w.String())
	}
	return c, nil
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return &usageError{fmt.Errorf("%s takes no arguments, got %q\nsee '%s --help'", cmd.CommandPath(), args, cmd.CommandPath())}
	}
	return nil
}
