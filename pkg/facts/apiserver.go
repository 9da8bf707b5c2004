package facts

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/apiserver"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// HeldSuffix marks a control-plane static Pod a run moved aside (a dotted
// name in the manifests directory, which the kubelet does not read), to be
// put back under its own name.
const HeldSuffix = ".etcdadm-stopped"

// HeldPath is where a run moves the static Pod name of dir while the
// control plane must not run.
func HeldPath(dir, name string) string { return path.Join(dir, "."+name+HeldSuffix) }

// PendingControlPlane is on a host whose control plane a run stopped (its
// static Pods held aside), until they are back.
const PendingControlPlane = "control-plane-stopped"

// ticksPerSecond is Linux's USER_HZ, the unit of a process's start time
// in /proc/PID/stat: 100 on every architecture Linux runs on.
const ticksPerSecond = 100

// APIServer is what a control-plane host has of the kube-apiserver kubeadm
// runs there, and of the control plane's static Pods.
type APIServer struct {
	// Manifest is kube-apiserver.yaml; nil when there is none.
	Manifest *apiserver.Manifest `json:"manifest,omitempty"`
	// Process is the kube-apiserver listening on its port, and Started
	// when it started; zero when none listens.
	Process []Process `json:"process,omitempty"`
	Started time.Time `json:"started,omitempty"`
	// Modified are the times the etcd CA and client certificate files its
	// manifest names were last written, by path.
	Modified map[string]time.Time `json:"modified,omitempty"`
	// Held are the control plane's static Pods a run moved aside.
	Held []string `json:"held,omitempty"`
	// Running are those of the control plane's static Pods in the
	// manifests directory.
	Running []string `json:"running,omitempty"`
	// RestartHeld is set when Manifest is the kube-apiserver's Pod a cut
	// restart took away and did not write back.
	RestartHeld bool `json:"restartHeld,omitempty"`
	// HeldManifest is the kube-apiserver's Pod a stop holds aside.
	HeldManifest *apiserver.Manifest `json:"heldManifest,omitempty"`
	// AdminConf is set when kubeadm's admin.conf is there.
	AdminConf bool `json:"adminConf,omitempty"`
	bootTime  int64
}

// Stale lists the etcd files the running kube-apiserver started before
// they were written: what it has not read (its CA bundle is read only when
// it starts).
func (a *APIServer) Stale() []string {
	if a == nil || a.Started.IsZero() {
		return nil
	}
	var out []string
	for p, t := range a.Modified {
		if t.After(a.Started) {
			out = append(out, p)
		}
	}
	return out
}

// apiserverScript reads the control plane's static Pods in dir: the
// kube-apiserver's manifest, its process on the port it names, the times
// its etcd files were written, and the Pods held aside.
func apiserverScript(b *strings.Builder, dir string) {
	q := shell.Quote
	fmt.Fprintf(b, "echo cp-read; [ -f %s ] && echo cp-admin\n", q(apiserver.AdminConf))
	fmt.Fprintf(b, "cpd=%s; m=%s\n", q(dir), q(apiserver.ManifestPath(dir)))
	for _, name := range apiserver.ControlPlaneManifests {
		fmt.Fprintf(b, "[ -f \"$cpd\"/%[1]s ] && echo 'cp-running %[1]s'; [ -f %[2]s ] && echo 'cp-held %[1]s'\n", q(name), q(HeldPath(dir, name)))
	}
	// A restart cut between taking the Pod away and writing it back left
	// it under its dotted name: read as the manifest, it is written back.
	fmt.Fprintf(b, "[ ! -f \"$m\" ] && [ -f %[1]s ] && { m=%[1]s; echo cp-restart-held; }\n", q(path.Join(dir, "."+apiserver.ManifestName+".etcdadm-restart")))
	b.WriteString(`if [ -f "$m" ]; then show apiserver "$m"; port=6443; set --
while IFS= read -r l; do case $l in *--secure-port=*) port=${l##*--secure-port=};; *--etcd-cafile=*|*--etcd-certfile=*) set -- "$@" "${l#*=}";; esac; done < "$m"
[ $# -gt 0 ] && stat -L -c 'cp-mtime %Y %n' -- "$@" 2>/dev/null
while read -r k v; do [ "$k" = btime ] && echo "cp-btime $v"; done < /proc/stat
`)
	b.WriteString(tagged(`$port`, `$port`, false, "cp-proc"))
	b.WriteString("fi\n")
	fmt.Fprintf(b, "show apiserver-held %s\n", q(HeldPath(dir, apiserver.ManifestName)))
}

// parseAPIServer reads one line of apiserverScript's output.
func (h *Host) parseAPIServer(tag, rest string) error {
	if h.APIServer == nil {
		h.APIServer = &APIServer{}
	}
	a := h.APIServer
	switch tag {
	case "cp-read":
	case "cp-admin":
		a.AdminConf = true
	case "cp-restart-held":
		a.RestartHeld = true
	case "cp-running":
		a.Running = append(a.Running, strings.TrimSpace(rest))
	case "cp-held":
		a.Held = append(a.Held, strings.TrimSpace(rest))
	case "cp-mtime":
		secs, p, ok := strings.Cut(rest, " ")
		n, err := strconv.ParseInt(secs, 10, 64)
		if !ok || err != nil {
			return fmt.Errorf("want a time and a path")
		}
		if a.Modified == nil {
			a.Modified = map[string]time.Time{}
		}
		a.Modified[p] = time.Unix(n, 0)
	case "cp-btime":
		n, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
		if err != nil {
			return err
		}
		a.bootTime = n
	case "cp-proc":
		p, ok := parseProcess(rest)
		if !ok {
			return fmt.Errorf("want a process")
		}
		a.Process = append(a.Process, p)
		if a.bootTime > 0 {
			// The start is in ticks since boot; a second's precision is
			// what file times have.
			a.Started = time.Unix(a.bootTime+int64(p.Start/ticksPerSecond), 0)
		}
	}
	return nil
}

// NamedScript prints the processes named comm (as /proc/PID/comm has it)
// in the network namespace of the shell it runs in, as "proc" lines: a
// component's process as soon as it runs, before it listens on its port.
func NamedScript(comm string) string {
	return fmt.Sprintf(`for p in /proc/[0-9]*; do
  [ -r "$p/comm" ] || continue; c=; read -r c < "$p/comm" 2>/dev/null || continue
  [ "$c" = %s ] && [ "$p/ns/net" -ef /proc/$$/ns/net ] || continue
  st=; read -r st < "$p/stat" 2>/dev/null || continue; st=${st##*) }; set -- $st; echo "proc ${p#/proc/} ${20} -"
done; true
`, shell.Quote(comm))
}

// Named returns the processes named comm on the host (NamedScript).
func Named(ctx context.Context, t remote.Transport, comm string) ([]Process, error) {
	out, err := t.Run(ctx, NamedScript(comm), nil)
	if err != nil {
		return nil, fmt.Errorf("look for %s's process: %w", comm, err)
	}
	return ParseProcesses(out), nil
}
