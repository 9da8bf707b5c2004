package backup

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
)

// What apply installs on every member host for its backups.
const (
	BinaryPath      = "/usr/local/bin/etcdadm"
	Dir             = "/etc/etcdadm"
	ConfigPath      = Dir + "/backup.yaml"
	CredentialsPath = Dir + "/backup-credentials.env"
	CAPath          = Dir + "/backup-ca.crt"
	Service         = "etcdadm-backup.service"
	Timer           = "etcdadm-backup.timer"
	ServicePath     = "/etc/systemd/system/" + Service
	TimerPath       = "/etc/systemd/system/" + Timer
	// DefaultTextfile is where node_exporter's textfile collector reads
	// the backups' metrics (its --collector.textfile.directory).
	DefaultTextfile = "/var/lib/node_exporter/textfile_collector/etcdadm_backup.prom"
)

// Paths are every file apply may install for the backups, in the order it
// installs them.
func Paths() []string {
	return []string{BinaryPath, ConfigPath, CredentialsPath, CAPath, ServicePath, TimerPath}
}

// HostConfig is /etc/etcdadm/backup.yaml: what `etcdadm backup run` reads
// on a member host.
type HostConfig struct {
	Cluster string `json:"cluster"`
	Member  string `json:"member"`
	// Endpoint is the host's own member's client URL: the election and
	// the snapshot go there.
	Endpoint   string                  `json:"endpoint"`
	TLS        TLSFiles                `json:"tls"`
	Schedule   string                  `json:"schedule"`
	Keep       int                     `json:"keep"`
	Encryption config.BackupEncryption `json:"encryption"`
	// S3's CredentialsFile and CAFile are the host's paths.
	S3       config.S3 `json:"s3"`
	Textfile string    `json:"textfile"`
}

// TLSFiles are the certificate etcdadm's backup reaches etcd with: the
// host's healthcheck client, as kubeadm lays it out.
type TLSFiles struct {
	CA   string `json:"ca"`
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// Marshal is the configuration file's content.
func (h *HostConfig) Marshal() ([]byte, error) {
	b, err := yaml.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", ConfigPath, err)
	}
	return append([]byte("# Written by etcdadm apply from the inventory's spec.backup; read by etcdadm backup run.\n"), b...), nil
}

// LoadHostConfig reads a host's configuration file, strictly.
func LoadHostConfig(path string) (*HostConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the backup configuration: %w", err)
	}
	var h HostConfig
	if err := yaml.UnmarshalStrict(data, &h); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var missing []string
	for name, v := range map[string]string{"cluster": h.Cluster, "member": h.Member, "endpoint": h.Endpoint, "schedule": h.Schedule,
		"tls.ca": h.TLS.CA, "tls.cert": h.TLS.Cert, "tls.key": h.TLS.Key, "s3.endpoint": h.S3.Endpoint, "s3.bucket": h.S3.Bucket, "s3.credentialsFile": h.S3.CredentialsFile} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 || h.Keep < 1 {
		return nil, fmt.Errorf("%s is incomplete (%s): run etcdadm apply again from the inventory", path, strings.Join(append(missing, fmt.Sprintf("keep %d", h.Keep)), ", "))
	}
	if h.Textfile == "" {
		h.Textfile = DefaultTextfile
	}
	return &h, nil
}

// ServiceUnit is etcdadm-backup.service: one run, to its end.
func ServiceUnit(c *config.Cluster) []byte {
	b := c.Spec.Backup
	var u bytes.Buffer
	fmt.Fprintf(&u, `# Written by etcdadm apply from the inventory's spec.backup.
[Unit]
Description=Back up etcd cluster %s to s3://%s/%s%s/ (etcdadm)
Documentation=https://github.com/etcdadm-io/etcdadm
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
ExecStart=%s backup run --config %s
Nice=10
IOSchedulingClass=best-effort
IOSchedulingPriority=7
`, c.Metadata.Name, b.S3.Bucket, b.S3.Prefix, c.Metadata.Name, BinaryPath, ConfigPath)
	return u.Bytes()
}

// TimerUnit is etcdadm-backup.timer: every member fires at the same
// times, and one takes the backup. Persistent: a host that was down when
// its time came runs once it is up, and finds the backup taken already
// when another member took it.
func TimerUnit(c *config.Cluster) []byte {
	return []byte(fmt.Sprintf(`# Written by etcdadm apply from the inventory's spec.backup.
[Unit]
Description=Back up etcd cluster %s on schedule (etcdadm)

[Timer]
OnCalendar=%s
Persistent=true

[Install]
WantedBy=timers.target
`, c.Metadata.Name, c.Spec.Backup.Schedule))
}

// HostConfigFor is host h's configuration: its own member, the cluster's
// spec.backup, and the paths apply installs the credentials and CA at.
func HostConfigFor(c *config.Cluster, h config.Host) *HostConfig {
	b := c.Spec.Backup
	s3 := b.S3
	s3.CredentialsFile, s3.CAFile = CredentialsPath, ""
	if len(b.CA) > 0 {
		s3.CAFile = CAPath
	}
	return &HostConfig{
		Cluster:  c.Metadata.Name,
		Member:   h.Name,
		Endpoint: manifests.ClientURL(h),
		TLS: TLSFiles{
			CA:   manifests.EtcdPKIDir + "/ca.crt",
			Cert: manifests.EtcdPKIDir + "/healthcheck-client.crt",
			Key:  manifests.EtcdPKIDir + "/healthcheck-client.key",
		},
		Schedule:   b.Schedule,
		Keep:       b.Keep,
		Encryption: b.Encryption,
		S3:         s3,
		Textfile:   DefaultTextfile,
	}
}
