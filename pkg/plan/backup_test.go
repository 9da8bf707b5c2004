package plan

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/etcdadm-io/etcdadm/pkg/backup"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

const testRecipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"

// withBackup is w's inventory with spec.backup (and its credentials and CA
// files next to it); etcd is what spec.etcd holds.
func (w *world) withBackup(t *testing.T, etcd string) *world {
	t.Helper()
	for name, data := range map[string]string{"s3.env": "AWS_ACCESS_KEY_ID=backup\nAWS_SECRET_ACCESS_KEY=s3cr3t\n", "s3-ca.crt": string(w.pki.CA.CertPEM)} {
		if err := os.WriteFile(filepath.Join(w.dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	y := inventoryYAML(len(w.c.Spec.Hosts), etcd) + `  backup:
    schedule: "*-*-* 00/6:00:00"
    keep: 7
    encryption: {recipients: [` + testRecipient + `]}
    s3: {endpoint: "https://10.0.0.9:7070", bucket: etcd-backups, prefix: prod/, credentialsFile: s3.env, caFile: s3-ca.crt}
`
	c := parseInventory(t, y, w.dir)
	return &world{dir: w.dir, c: c, pki: computePKI(t, c)}
}

// Every member host gets etcdadm itself, the backup configuration and the
// credentials (0600, the credentials secret), the CA, the service and its
// timer, under either runtime; the facts read those paths.
func TestBackupFiles(t *testing.T) {
	for _, w := range []*world{newWorld(t, 3), newSystemdWorld(t, 3)} {
		etcd := ""
		if w.c.Systemd() {
			etcd = systemdEtcd(t, w.dir, "3.7.0", "")
		}
		b := w.withBackup(t, etcd)
		hp := b.planned(t, "n1", Bootstrap(b.c))
		type file struct {
			Path   string
			Mode   string
			Secret bool
			Source bool
		}
		var got []file
		for _, f := range hp.Files {
			if f.Part == PartBackup {
				got = append(got, file{f.Path, fmt.Sprintf("%04o", f.Mode), f.Secret, f.Source != nil})
			}
		}
		want := []file{
			{backup.BinaryPath, "0755", false, true},
			{backup.ConfigPath, "0600", false, false},
			{backup.CredentialsPath, "0600", true, false},
			{backup.CAPath, "0644", false, false},
			{backup.ServicePath, "0644", false, false},
			{backup.TimerPath, "0644", false, false},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: backup files (-want +got):\n%s", b.c.Spec.Etcd.Runtime, diff)
		}
		svc, _ := hp.File(backup.ServicePath)
		timer, _ := hp.File(backup.TimerPath)
		cfg, _ := hp.File(backup.ConfigPath)
		for what, f := range map[string]struct {
			data []byte
			want []string
		}{
			"service": {svc.Data, []string{"Type=oneshot\n", "ExecStart=/usr/local/bin/etcdadm backup run --config /etc/etcdadm/backup.yaml\n"}},
			"timer":   {timer.Data, []string{"OnCalendar=*-*-* 00/6:00:00\n", "WantedBy=timers.target\n"}},
			"config":  {cfg.Data, []string{"member: n1\n", "endpoint: " + clientOf("n1") + "\n", "credentialsFile: " + backup.CredentialsPath, "caFile: " + backup.CAPath, testRecipient, "keep: 7\n"}},
		} {
			for _, s := range f.want {
				if !strings.Contains(string(f.data), s) {
					t.Errorf("%s: the %s lacks %q:\n%s", b.c.Spec.Etcd.Runtime, what, s, f.data)
				}
			}
		}
		if strings.Contains(string(cfg.Data), "s3cr3t") {
			t.Errorf("the configuration holds the secret")
		}
		if d := slices.IndexFunc(hp.Dirs, func(d Dir) bool { return d.Path == backup.Dir }); d < 0 || hp.Dirs[d].Mode != 0o700 || !hp.Dirs[d].Owned {
			t.Errorf("%s is not planned 0700 and owned: %v", backup.Dir, hp.Dirs)
		}
		files, _ := Paths(b.c, rtOf(b.c), b.host(t, "n1"))
		var planned []string
		for _, f := range hp.Files {
			planned = append(planned, f.Path)
		}
		if diff := cmp.Diff(planned, files); diff != "" {
			t.Errorf("paths (-planned +read):\n%s", diff)
		}
	}
}

// spec.backup added to a running cluster writes the backup files and
// starts the timer, behind a marker, restarting no member (under the
// systemd runtime either: etcdadm's binary is not etcd's); a re-apply has
// nothing to do; a cut run that left the marker starts the timer.
func TestBackupAddedToARunningCluster(t *testing.T) {
	for _, w := range []*world{newWorld(t, 3), newSystemdWorld(t, 3)} {
		hosts := map[string]*facts.Host{}
		for _, h := range w.c.Spec.Hosts {
			if w.c.Systemd() {
				hosts[h.Name] = w.systemdAsPlanned(t, h.Name, Bootstrap(w.c))
			} else {
				hosts[h.Name] = w.bootstrapped(t, h.Name)
			}
			// What every Linux host has.
			for _, d := range []string{"/usr/local/bin", "/etc/systemd/system"} {
				hosts[h.Name].Files[d] = facts.FileState{Dir: true, Mode: 0o755}
			}
		}
		etcd := ""
		if w.c.Systemd() {
			etcd = systemdEtcd(t, w.dir, "3.7.0", "")
		}
		b := w.withBackup(t, etcd)
		in := Input{Cluster: b.c, Runtime: rtOf(b.c), PKI: b.pki, Hosts: hosts, Etcd: viewVersion(etcdView(t, "n1", names3...), "3.7.0"), Now: fixedNow, Platform: testPlatform}
		p := mustBuild(t, in)
		want := []string{"mkdir /etc/etcdadm", "mark backup-timer", "write " + backup.BinaryPath, "write " + backup.ConfigPath, "write " + backup.CredentialsPath,
			"write " + backup.CAPath, "write " + backup.ServicePath, "write " + backup.TimerPath, "run " + CmdEnableBackup, "unmark backup-timer", "wait-cluster"}
		for _, name := range names3 {
			got := kinds(opsOf(p, name))
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s %s (-want +got):\n%s", b.c.Spec.Etcd.Runtime, name, diff)
			}
		}
		for _, op := range opsOf(p, "n0") {
			if op.Meta().Disruptive || op.Kind() == ops.KindRestartEtcd {
				t.Errorf("%s: a member restarts: %s", b.c.Spec.Etcd.Runtime, op)
			}
		}

		done := map[string]*facts.Host{}
		for name, hf := range hosts {
			done[name] = withPlanned(hf, b.planned(t, name, Bootstrap(b.c)))
		}
		in.Hosts = done
		if p := mustBuild(t, in); !p.Empty() {
			t.Errorf("%s: a re-apply has work:\n%s", b.c.Spec.Etcd.Runtime, planText(p))
		}
		done["n2"].Pending = []string{pendingBackupTimer}
		p = mustBuild(t, in)
		if got := kinds(opsOf(p, "n2")); !slices.Contains(got, "run "+CmdEnableBackup) || slices.Contains(got, "mark backup-timer") {
			t.Errorf("a cut run's marker: %v", got)
		}
	}
}

// withPlanned is hf with every file of hp as planned.
func withPlanned(hf *facts.Host, hp Host) *facts.Host {
	c := *hf
	c.Files = map[string]facts.FileState{}
	for k, v := range hf.Files {
		c.Files[k] = v
	}
	for _, d := range hp.Dirs {
		c.Files[d.Path] = facts.FileState{Dir: true, Mode: d.Mode}
	}
	for _, f := range hp.Files {
		if _, ok := c.Files[f.Path]; !ok || f.Part == PartBackup {
			st := facts.FileState{Mode: f.Mode, SHA256: f.SHA256()}
			if strings.HasSuffix(f.Path, ".crt") {
				st.Data = f.Data
			}
			c.Files[f.Path] = st
		}
	}
	return &c
}

// spec.backup removed: the timer stops, every file it installed goes under
// the backup directory, systemd forgets the units; nothing else changes.
func TestBackupRemoved(t *testing.T) {
	w := newWorld(t, 3)
	b := w.withBackup(t, "")
	hosts := map[string]*facts.Host{}
	for _, name := range names3 {
		hosts[name] = withPlanned(w.bootstrapped(t, name), b.planned(t, name, Bootstrap(b.c)))
	}
	p := mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow})
	want := []string{"run " + CmdDisableBackup}
	for _, path := range backup.Paths() {
		want = append(want, "backup "+path)
	}
	want = append(want, "run "+ops.CmdDaemonReload, "wait-cluster")
	for _, name := range names3 {
		if diff := cmp.Diff(want, kinds(opsOf(p, name))); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
}

// A host of another architecture than this etcdadm binary's is refused,
// naming the host, the architectures and what to do.
func TestBackupOtherArchitecture(t *testing.T) {
	w := newWorld(t, 3)
	b := w.withBackup(t, "")
	hosts := w.allBootstrapped(t)
	exe, err := b.c.Etcdadm()
	if err != nil {
		t.Fatal(err)
	}
	other := "aarch64"
	if exe.Platform == "linux/arm64" {
		other = "x86_64"
	}
	hosts["n2"].Arch = other
	p, err := build(t, Input{Cluster: b.c, Runtime: rtOf(b.c), PKI: b.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow})
	re := mustRefuse(t, p, err)
	if msg := re.Error(); !strings.Contains(msg, "n2") || !strings.Contains(msg, "is "+other) || !strings.Contains(msg, "this etcdadm binary is for "+exe.Platform) {
		t.Errorf("refusal: %s", msg)
	}
	_ = config.DefaultBackupKeep
}
