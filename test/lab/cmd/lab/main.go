// Command lab brings the etcdadm test lab up and down and builds what it
// runs. Status goes to stderr; the summary of a lab goes to stdout.
//
//	lab build [--out DIR] [--ssh-only]
//	lab up --hosts N [--dir DIR] [--ssh-only] [--no-images] [--bastion] [--prefix P] [--first-octet N]
//	lab down [--dir DIR]
//	lab exec [--dir DIR] HOST [COMMAND...]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/etcdadm-io/etcdadm/test/lab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "lab: %v\n", err)
		os.Exit(1)
	}
}

const usage = `usage:
  lab build [--out DIR] [--ssh-only]     build kubelet, etcd, images (cached)
  lab up --hosts N [--dir DIR] [--ssh-only] [--no-images] [--bastion] [--prefix P] [--first-octet N]
  lab down [--dir DIR]                   tear down the lab whose state is in DIR
  lab exec [--dir DIR] HOST [COMMAND...] run a command (default: a shell) inside a host
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("missing command")
	}
	fs := flag.NewFlagSet("lab "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts lab.Options
	var out, inventory string
	switch args[0] {
	case "build":
		fs.StringVar(&out, "out", "", "output directory (default REPO/_output/lab)")
		fs.BoolVar(&opts.SSHOnly, "ssh-only", false, "build only what an SSH-only lab needs")
	case "up":
		fs.IntVar(&opts.Hosts, "hosts", 3, "number of hosts")
		fs.StringVar(&opts.Dir, "dir", lab.DefaultDir, "lab state directory")
		fs.StringVar(&opts.Artifacts, "artifacts", "", "build output directory (default REPO/_output/lab)")
		fs.BoolVar(&opts.SSHOnly, "ssh-only", false, "start only sshd on the hosts")
		fs.BoolVar(&opts.NoImages, "no-images", false, "import no image into the hosts' containerd (etcdadm apply --images does)")
		fs.BoolVar(&opts.Bastion, "bastion", false, "put the hosts behind a bastion host")
		fs.StringVar(&opts.NamePrefix, "prefix", "lab", "prefix of host and interface names")
		fs.IntVar(&opts.FirstOctet, "first-octet", 10, "last octet of the first host's address")
		fs.StringVar(&inventory, "inventory", "", "also write an etcdadm inventory for the hosts to this file")
	case "down", "exec":
		fs.StringVar(&opts.Dir, "dir", lab.DefaultDir, "lab state directory")
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 && args[0] != "exec" {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	switch args[0] {
	case "build":
		a, err := lab.Build(ctx, lab.BuildOptions{Out: out, SSHOnly: opts.SSHOnly}, stderr)
		if err != nil {
			return err
		}
		for _, p := range []string{a.Systemctl, a.Kubelet, a.Etcd, a.Etcdctl, a.Pause, a.EtcdImage, a.PauseImage} {
			if p != "" {
				fmt.Fprintln(stdout, p)
			}
		}
		return nil
	case "up":
		l, err := lab.Up(ctx, opts, stderr)
		if err != nil {
			return err
		}
		printSummary(stdout, l)
		if inventory != "" {
			if err := os.WriteFile(inventory, []byte(l.Inventory(lab.InventoryOptions{Name: "demo"})), 0o644); err != nil {
				return fmt.Errorf("write inventory: %w", err)
			}
			fmt.Fprintf(stdout, "inventory:   %s\n", inventory)
		}
		return nil
	case "exec":
		return execIn(opts.Dir, fs.Args(), stderr)
	default:
		if os.Geteuid() != 0 {
			return lab.ErrNotRoot
		}
		return lab.Cleanup(ctx, opts.Dir, stderr)
	}
}

// execIn replaces this process with argv run inside the host, so that an
// interactive shell gets the terminal.
func execIn(dir string, args []string, stderr io.Writer) error {
	if os.Geteuid() != 0 {
		return lab.ErrNotRoot
	}
	if len(args) == 0 {
		return errors.New("exec: name a host")
	}
	l, err := lab.Open(dir, stderr)
	if err != nil {
		return err
	}
	h := l.Host(args[0])
	if h == nil {
		return fmt.Errorf("exec: no host %q in the lab in %s", args[0], dir)
	}
	cmd := args[1:]
	if len(cmd) > 0 && cmd[0] == "--" {
		cmd = cmd[1:]
	}
	if len(cmd) == 0 {
		cmd = []string{"/bin/bash", "-l"}
	}
	argv := h.ExecArgv(cmd...)
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8", "TERM=" + os.Getenv("TERM")}
	return syscall.Exec(path, argv, env)
}

func printSummary(w io.Writer, l *lab.Lab) {
	fmt.Fprintf(w, "dir:         %s\n", l.Dir)
	fmt.Fprintf(w, "key:         %s\n", l.KeyFile)
	fmt.Fprintf(w, "known_hosts: %s\n", l.KnownHostsFile)
	fmt.Fprintf(w, "users:       root, %s (sudo without password), %s (sudo password %q)\n", lab.SudoUser, lab.PasswordUser, lab.PasswordUserPassword)
	if l.Bastion != nil {
		fmt.Fprintf(w, "bastion:     %s %s:%d (the hosts are reachable only through it)\n", l.Bastion.Name, l.Bastion.Address, l.Bastion.SSHPort)
	}
	fmt.Fprintln(w, "hosts:")
	for _, h := range l.Hosts {
		fmt.Fprintf(w, "  %-8s %s:%d\n", h.Name, h.Address, h.SSHPort)
	}
	h := l.Hosts[0]
	ssh := fmt.Sprintf("ssh -i %s -o UserKnownHostsFile=%s", l.KeyFile, l.KnownHostsFile)
	jump := ""
	if l.Bastion != nil {
		// Not -J: the jump's own ssh would not get the lab's known_hosts.
		jump = fmt.Sprintf(" -o ProxyCommand='%s -W %%h:%%p root@%s'", ssh, l.Bastion.Address)
	}
	fmt.Fprintf(w, "try:         %s%s root@%s\n", ssh, jump, h.Address)
}
