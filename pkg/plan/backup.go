package plan

import (
	"fmt"
	"slices"
	"strings"

	"github.com/etcdadm-io/etcdadm/pkg/backup"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/hostfile"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

// PartBackup is what a member host runs its backups with.
const PartBackup = hostfile.PartBackup

// Commands the backups' units are run with.
const (
	// CmdEnableBackup has systemd read the units again and (re)starts the
	// timer, so that a changed schedule takes effect.
	CmdEnableBackup  = "systemctl daemon-reload && systemctl enable " + backup.Timer + " && systemctl restart " + backup.Timer
	CmdDisableBackup = "systemctl disable --now " + backup.Timer
)

// pendingBackupTimer records, before the units are written, that the
// timer is to be (re)started: a run cut in between finishes it.
const pendingBackupTimer = "backup-timer"

// backupFiles are what member host h runs its backups with, when the
// inventory has spec.backup: this etcdadm binary (streamed from itself
// when pushed), its configuration, the S3 credentials (a secret) and CA,
// the service and its timer.
func backupFiles(c *config.Cluster, h config.Host) ([]File, error) {
	b := c.Spec.Backup
	if b == nil {
		return nil, nil
	}
	if b.Credentials == nil {
		return nil, fmt.Errorf("the S3 credentials of spec.backup were not read")
	}
	exe, err := c.Etcdadm()
	if err != nil {
		return nil, err
	}
	cfg, err := backup.HostConfigFor(c, h).Marshal()
	if err != nil {
		return nil, err
	}
	files := []File{
		{Path: backup.BinaryPath, Mode: 0o755, Part: PartBackup, Source: &Source{Archive: exe.Path, Size: exe.Size, SHA256: exe.SHA256}},
		{Path: backup.ConfigPath, Mode: 0o600, Part: PartBackup, Data: cfg},
		{Path: backup.CredentialsPath, Mode: 0o600, Part: PartBackup, Secret: true, Data: b.Credentials.EnvFile()},
	}
	if len(b.CA) > 0 {
		files = append(files, File{Path: backup.CAPath, Mode: 0o644, Part: PartBackup, Data: b.CA})
	}
	return append(files,
		File{Path: backup.ServicePath, Mode: 0o644, Part: PartBackup, Data: backup.ServiceUnit(c)},
		File{Path: backup.TimerPath, Mode: 0o644, Part: PartBackup, Data: backup.TimerUnit(c)}), nil
}

// backupPaths are the paths of backupFiles.
func backupPaths(c *config.Cluster) []string {
	b := c.Spec.Backup
	if b == nil {
		return nil
	}
	return slices.DeleteFunc(backup.Paths(), func(p string) bool { return p == backup.CAPath && len(b.CA) == 0 })
}

// backupOps bring host h's backups to the inventory: the files that
// differ written, then the timer (re)started when its units changed; or,
// without spec.backup (or without the CA file), what a previous apply
// installed moved under the backup directory, the timer stopped first.
func backupOps(c *config.Cluster, h *host) []Op {
	hp, hf := h.plan, h.facts
	var writes []Op
	units := false
	for i, ch := range hp.Changes {
		if ch.File.Part != PartBackup || ch.Kind == Unchanged {
			continue
		}
		units = units || (ch.Writes() && (ch.Path == backup.ServicePath || ch.Path == backup.TimerPath))
		writes = append(writes, ops.Write{Path: ch.Path, Change: &hp.Changes[i]})
	}
	pending := hf.HasPending(pendingBackupTimer)
	var steps []Op
	if units && !pending {
		steps = append(steps, ops.Mark{Marker: pendingBackupTimer, Why: "the backup timer starts once its units are written"})
	}
	steps = append(steps, writes...)
	var gone []string
	for _, p := range backup.Paths() {
		if _, planned := hp.File(p); !planned {
			if _, there := hf.Files[p]; there {
				gone = append(gone, p)
			}
		}
	}
	if slices.Contains(gone, backup.TimerPath) {
		steps = append(steps, ops.Run{Command: CmdDisableBackup, Why: "spec.backup is gone from the inventory"})
	}
	for _, p := range gone {
		steps = append(steps, ops.Backup{Path: p, Why: "no longer in the inventory's spec.backup"})
	}
	switch {
	case c.Spec.Backup != nil && (units || pending):
		steps = append(steps, ops.Run{Command: CmdEnableBackup, Why: "the backups run on " + backup.Timer}, ops.Unmark{Marker: pendingBackupTimer})
	case slices.Contains(gone, backup.ServicePath) || slices.Contains(gone, backup.TimerPath):
		steps = append(steps, ops.Run{Command: ops.CmdDaemonReload, Why: "the backup units are gone"})
	}
	if c.Spec.Backup == nil && pending {
		steps = append(steps, ops.Unmark{Marker: pendingBackupTimer})
	}
	return steps
}

// goArch is uname -m's machine in Go's words.
var goArch = map[string]string{"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "i686": "386"}

// checkBackup refuses to install this etcdadm binary where it cannot run:
// on a host of another architecture, or from a build that is not Linux's.
func checkBackup(in Input, hosts []*host, refused *refusals) {
	c := in.Cluster
	if c.Spec.Backup == nil {
		return
	}
	exe, err := c.Etcdadm()
	if err != nil {
		refused.add("", "spec.backup installs this etcdadm binary on every member host, but it cannot be read: %v", err)
		return
	}
	if !strings.HasPrefix(exe.Platform, "linux/") {
		refused.add("", "spec.backup installs this etcdadm binary on every member host, but it is built for %s: run etcdadm apply from a Linux build (linux/amd64 or linux/arm64, as the hosts are)", exe.Platform)
		return
	}
	for _, h := range hosts {
		arch := h.facts.Arch
		if arch == "" {
			continue
		}
		if want, ok := goArch[arch]; !ok || "linux/"+want != exe.Platform {
			refused.add(h.cfg.Name, "is %s (%s), but this etcdadm binary is for %s: spec.backup installs the running binary on every member host; run etcdadm apply from a build for the hosts' architecture (GOARCH=%s)", arch, "linux/"+orUnknown(want), exe.Platform, orUnknown(want))
		}
	}
}
