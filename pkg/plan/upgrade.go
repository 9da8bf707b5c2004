package plan

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/version"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/runtime"
	"github.com/etcdadm-io/etcdadm/pkg/snapshot"
)

// SnapshotDir is where snapshots go, next to the inventory.
func SnapshotDir(c *config.Cluster) string { return snapshot.Dir(c) }

// minimumForMinor is, per etcd minor, the oldest patch of the minor before
// it that etcd's upgrade guide lets upgrade to it.
var minimumForMinor = map[string]string{
	"3.6": "3.5.32",
	"3.7": "3.6.11",
}

// upgrade is a change of the members' etcd version.
type upgrade struct {
	// image is the etcd the inventory asks for: an image, or a release
	// (what names it).
	image, what string
	// to is the version the image tag names; nil when it names none.
	to *version.Version
	// from are the versions the members run, by host.
	from map[string]*version.Version
}

func minor(v *version.Version) string { return fmt.Sprintf("%d.%d", v.Major(), v.Minor()) }

// planUpgrade finds the members whose manifest runs another image than the
// inventory's, and refuses the versions etcd does not upgrade between: a
// skipped minor, a minor from too old a patch, a downgrade across minors,
// flags the target no longer starts with, or an unhealthy cluster.
func planUpgrade(in Input, hosts []*host, refused *refusals) *upgrade {
	c := in.Cluster
	rt := in.Runtime
	target, to := rt.Target(c)
	u := &upgrade{image: target, what: "image", to: to, from: map[string]*version.Version{}}
	if rt.Name() == config.RuntimeSystemd {
		u.what = "release"
	}
	// Only running members upgrade: a member that does not run is being
	// repaired, whatever image its broken manifest names.
	var changing []*host
	for _, h := range hosts {
		m := h.facts.Manifest
		if h.role != roleMember || !h.runs() || m == nil || m.Err != "" {
			continue
		}
		if now := rt.Running(runtimeHost(in, h)); now == "" || now == target {
			continue
		}
		changing = append(changing, h)
	}
	if len(changing) == 0 {
		return nil
	}
	for _, h := range hosts {
		if h.role != roleMember || !h.runs() {
			continue
		}
		var v *version.Version
		if st, ok := in.Etcd.Status[h.member.ID]; ok && st.Version != "" {
			v = runtime.EtcdVersion(st.Version)
		}
		if v == nil && h.facts.Manifest != nil {
			v = runtime.EtcdVersion(h.facts.Manifest.Image)
		}
		if v != nil {
			u.from[h.cfg.Name] = v
		}
	}
	if u.to == nil {
		refused.add("", "the etcd image %s names no version, so the upgrade from %s cannot be checked against etcd's upgrade rules: use a version tag (spec.etcd.imageTag: 3.x.y-0)", target, rt.Running(runtimeHost(in, changing[0])))
		return u
	}
	if len(u.from) == 0 {
		return u
	}
	names := make([]string, 0, len(u.from))
	for n := range u.from {
		names = append(names, n)
	}
	sort.Strings(names)
	lowest, highest := names[0], names[0]
	for _, n := range names {
		if u.from[n].LessThan(u.from[lowest]) {
			lowest = n
		}
		if u.from[highest].LessThan(u.from[n]) {
			highest = n
		}
	}
	lo, hi, to := u.from[lowest], u.from[highest], u.to
	step := func(v *version.Version) int { return int(to.Minor()) - int(v.Minor()) }
	switch {
	case lo.Major() != to.Major() || hi.Major() != to.Major():
		refused.add("", "the members run etcd %s, the inventory asks for %s: etcdadm does not change etcd's major version", lo, to)
	case step(hi) < 0:
		refused.add(highest, "runs etcd %s and the inventory asks for %s: etcdadm does not downgrade etcd across minor versions (its data would first need etcd's own downgrade, `etcdctl downgrade validate|enable %s`); %s, or restore the snapshot taken before the upgrade with `etcdadm snapshot restore`",
			hi, to, minor(to), u.keep(minor(hi)))
	case step(lo) > 1:
		next := fmt.Sprintf("%d.%d", lo.Major(), lo.Minor()+1)
		refused.add(lowest, "runs etcd %s and the inventory asks for %s: etcd upgrades one minor version at a time; %s the newest %s patch (at least %s), apply, then go on to %s",
			lo, to, u.set(), next, orAny(minimumForMinor[minor(to)], next), minor(to))
	case step(lo) == 1:
		if min, ok := minimumForMinor[minor(to)]; ok && lo.LessThan(version.MustParseGeneric(min)) {
			refused.add(lowest, "runs etcd %s: etcd upgrades to %s only from %s or later; %s %s or a later %s patch, apply, then go on to %s",
				lo, minor(to), min, u.set(), u.named(min), minor(lo), minor(to))
		}
	}
	if !to.LessThan(version.MustParseGeneric("3.7.0")) {
		var flags []string
		for k := range c.Spec.Etcd.ExtraArgs {
			if strings.HasPrefix(k, "experimental-") {
				flags = append(flags, "--"+k)
			}
		}
		sort.Strings(flags)
		if len(flags) > 0 {
			refused.add("", "etcd %s does not start with --experimental-* flags, and spec.etcd.extraArgs sets %s: replace each with its plain flag or feature gate (etcd's 3.6 upgrade notes list them), apply on 3.6, then upgrade",
				to, strings.Join(flags, ", "))
		}
	}
	if !in.Etcd.Known() {
		refused.add("", "upgrading etcd needs the cluster's members and health first, but no member answers: %s", in.Etcd.ListError)
	} else if bad := unhealthyList(in); bad != "" {
		refused.add("", "upgrading etcd needs a healthy cluster%s; bring every member back first", bad)
	}
	return u
}

// set says where the inventory names the etcd to run.
func (u *upgrade) set() string {
	if u.what == "release" {
		return "set spec.etcd.release to the release of"
	}
	return "set spec.etcd.imageTag to"
}

// named is the etcd of version v as the inventory names it.
func (u *upgrade) named(v string) string {
	if u.what == "release" {
		return "etcd v" + v
	}
	return v + "-0"
}

// keep says how to stay on minor m.
func (u *upgrade) keep(m string) string {
	if u.what == "release" {
		return "keep a " + m + " release in spec.etcd.release"
	}
	return "keep " + m + " in spec.etcd.imageTag"
}

func orAny(s, minorVersion string) string {
	if s == "" {
		return minorVersion + ".0"
	}
	return s
}

// changesVersion reports whether the member's version changes.
func (u *upgrade) changesVersion(name string) bool {
	if u == nil {
		return false
	}
	from, ok := u.from[name]
	return !ok || u.to == nil || !from.EqualTo(u.to)
}

// describe says what the upgrade does, for the stage.
func (u *upgrade) describe() string {
	var from []string
	for _, v := range u.from {
		if s := v.String(); !slices.Contains(from, s) {
			from = append(from, s)
		}
	}
	sort.Strings(from)
	to := u.image
	if u.to != nil {
		to = u.to.String()
	}
	if len(from) == 0 {
		return "etcd " + u.what + " " + u.image
	}
	return fmt.Sprintf("etcd %s -> %s", strings.Join(from, ", "), to)
}

// snapshotStage saves a snapshot on this machine before the first change.
func snapshotStage(in Input, u *upgrade) Stage {
	c := in.Cluster
	name := snapshot.DefaultName(c.Metadata.Name, in.Now)
	if u.to != nil {
		name = strings.TrimSuffix(name, ".db") + "-before-" + u.to.String() + ".db"
	}
	p := filepath.Join(SnapshotDir(c), name)
	return Stage{Name: "snapshot before the upgrade", Rollout: AllAtOnce,
		Why:   "a snapshot of the cluster, on this machine, before any member changes version",
		Hosts: []HostOps{{Host: LocalHost, Ops: []Op{ops.Snapshot{Path: p, Why: u.describe()}}}}}
}
