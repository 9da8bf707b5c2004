package apply

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// MaxClockSkew is how far a host's clock may be from the operator's:
// certificates are backdated by minutes, but etcd's leases and a human
// reading logs across hosts suffer from skew long before that.
const MaxClockSkew = time.Second

// Preflight checks every host, concurrently, before anything is changed:
// root works, the kubelet is installed (external topology), etcd's ports are
// free or held by etcd, the data directory is empty or this cluster's, and
// the clock agrees with this machine's. Every failing check of every host
// is reported.
func Preflight(ctx context.Context, c *config.Cluster, hs *Hosts, concurrency int, log *Log) error {
	err := ForEach(ctx, hs.Order, concurrency, func(ctx context.Context, h config.Host) error {
		t := hs.T[h.Name]
		var problems []error
		if _, err := t.Run(ctx, "true", nil); err != nil {
			// Without root nothing else can be checked.
			return err
		}
		if c.Spec.Topology == config.TopologyExternal {
			if _, err := t.Run(ctx, "test -x /usr/bin/kubelet || command -v kubelet >/dev/null", nil); exitedNonZero(err) {
				problems = append(problems, errors.New("kubelet is not installed (no /usr/bin/kubelet): install the kubelet package of your Kubernetes version"))
			} else if err != nil {
				problems = append(problems, fmt.Errorf("look for kubelet: %w", err))
			}
		}
		if err := checkPorts(ctx, t); err != nil {
			problems = append(problems, err)
		}
		if err := checkDataDir(ctx, c, h, t); err != nil {
			problems = append(problems, err)
		}
		if err := checkClock(ctx, t); err != nil {
			problems = append(problems, err)
		}
		if len(problems) > 0 {
			return errors.Join(problems...)
		}
		log.Host(h.Name, "pre-flight checks passed")
		return nil
	})
	return named(err, "pre-flight")
}

// checkPorts fails when something other than etcd listens on 2379-2381.
func checkPorts(ctx context.Context, t remote.Transport) error {
	out, err := t.Run(ctx, "ss -Hltnp '( sport = :2379 or sport = :2380 or sport = :2381 )'", nil)
	if err != nil {
		return fmt.Errorf("list listening ports (ss from iproute2): %w", err)
	}
	var busy []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" || strings.Contains(line, `"etcd"`) {
			continue
		}
		fields := strings.Fields(line)
		who := "an unknown process"
		if i := strings.Index(line, "users:"); i >= 0 {
			who = line[i:]
		}
		addr := ""
		if len(fields) >= 4 {
			addr = fields[3]
		}
		busy = append(busy, fmt.Sprintf("%s is held by %s", addr, who))
	}
	if len(busy) > 0 {
		return fmt.Errorf("etcd's ports are in use: %s; stop that process or move it", strings.Join(busy, "; "))
	}
	return nil
}

// checkDataDir accepts an empty or missing data directory, or one whose
// member runs from a manifest that names this host in this cluster.
func checkDataDir(ctx context.Context, c *config.Cluster, h config.Host, t remote.Transport) error {
	dir := c.Spec.Etcd.DataDir
	out, err := t.Run(ctx, "ls -A "+remote.ShellQuote(dir)+" 2>/dev/null || true", nil)
	if err != nil {
		return fmt.Errorf("look at data directory %s: %w", dir, err)
	}
	if strings.TrimSpace(string(out)) == "" {
		return nil
	}
	manifest, err := t.ReadFile(ctx, manifests.ManifestPath(c))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("data directory %s is not empty and no etcd manifest claims it: it may belong to another cluster; move it away or empty it", dir)
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", manifests.ManifestPath(c), err)
	}
	self := h.Name + "=" + manifests.PeerURL(h)
	if !strings.Contains(string(manifest), "--name="+h.Name+"\n") || !strings.Contains(string(manifest), self) {
		return fmt.Errorf("data directory %s belongs to another etcd member (the manifest in %s does not name %s): move it away or fix the inventory", dir, manifests.ManifestPath(c), self)
	}
	return nil
}

// exitedNonZero tells a command that ran and failed from one that could not run.
func exitedNonZero(err error) bool {
	var ce *remote.CommandError
	return errors.As(err, &ce) && ce.ExitCode > 0
}

func checkClock(ctx context.Context, t remote.Transport) error {
	before := time.Now()
	out, err := t.Run(ctx, "date +%s.%N", nil)
	after := time.Now()
	if err != nil {
		return fmt.Errorf("read the clock: %w", err)
	}
	secs, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		return fmt.Errorf("read the clock: unexpected date output %q", out)
	}
	remote := time.Unix(0, int64(secs*1e9))
	mid := before.Add(after.Sub(before) / 2)
	skew := remote.Sub(mid)
	if math.Abs(float64(skew)) > float64(MaxClockSkew+after.Sub(before)/2) {
		return fmt.Errorf("clock is %s off this machine's (at most %s allowed): synchronise it with NTP", skew.Round(time.Millisecond), MaxClockSkew)
	}
	return nil
}
