package backup

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/atomicfile"
)

// The metrics of the textfile, for node_exporter's textfile collector.
// Every member host writes its own; alert on the newest success across
// the cluster's hosts (max by cluster).
var metrics = []struct{ name, typ, help string }{
	{"etcdadm_backup_last_success_timestamp_seconds", "gauge", "When this host last took a backup of the cluster (Unix time)."},
	{"etcdadm_backup_last_duration_seconds", "gauge", "How long the last backup this host took lasted."},
	{"etcdadm_backup_last_size_bytes", "gauge", "The size of the last backup this host took, as stored."},
	{"etcdadm_backup_last_revision", "gauge", "The etcd revision of the last backup this host took."},
	{"etcdadm_backup_last_run_timestamp_seconds", "gauge", "When etcdadm backup run last ended on this host (Unix time)."},
	{"etcdadm_backup_last_run_success", "gauge", "1 when the last run on this host succeeded (took a backup, or found it taken), 0 when it failed."},
	{"etcdadm_backup_failures_total", "counter", "Runs of etcdadm backup run that failed on this host."},
}

// Textfile is what a host's metrics say; read back from the file before a
// run, so that what a run does not change stays.
type Textfile struct {
	Cluster string
	Values  map[string]float64
}

// ReadTextfile reads the metrics a previous run wrote at path; none when
// there is no file.
func ReadTextfile(path, cluster string) *Textfile {
	t := &Textfile{Cluster: cluster, Values: map[string]float64{}}
	data, err := os.ReadFile(path)
	if err != nil {
		return t
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, ok := strings.Cut(line, "{")
		if !ok {
			continue
		}
		_, value, ok := strings.Cut(rest, "} ")
		if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); ok && err == nil {
			t.Values[name] = v
		}
	}
	return t
}

// Success records a backup taken at end.
func (t *Textfile) Success(end time.Time, took time.Duration, size, revision int64) {
	t.Values["etcdadm_backup_last_success_timestamp_seconds"] = float64(end.Unix())
	t.Values["etcdadm_backup_last_duration_seconds"] = took.Seconds()
	t.Values["etcdadm_backup_last_size_bytes"] = float64(size)
	t.Values["etcdadm_backup_last_revision"] = float64(revision)
	t.ran(end, true)
}

// Skipped records a run that found the period's backup taken by another
// member: it did its part.
func (t *Textfile) Skipped(end time.Time) { t.ran(end, true) }

// Failure records a run that failed.
func (t *Textfile) Failure(end time.Time) {
	t.Values["etcdadm_backup_failures_total"]++
	t.ran(end, false)
}

func (t *Textfile) ran(end time.Time, ok bool) {
	t.Values["etcdadm_backup_last_run_timestamp_seconds"] = float64(end.Unix())
	t.Values["etcdadm_backup_last_run_success"] = map[bool]float64{true: 1, false: 0}[ok]
}

// Bytes is the textfile's content.
func (t *Textfile) Bytes() []byte {
	var b bytes.Buffer
	names := make([]int, 0, len(metrics))
	for i := range metrics {
		names = append(names, i)
	}
	sort.SliceStable(names, func(i, j int) bool { return metrics[names[i]].name < metrics[names[j]].name })
	for _, i := range names {
		m := metrics[i]
		v, ok := t.Values[m.name]
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n%s{cluster=%q} %s\n", m.name, m.help, m.name, m.typ, m.name, t.Cluster, strconv.FormatFloat(v, 'f', -1, 64))
	}
	return b.Bytes()
}

// Write replaces the file at path atomically (the collector never reads
// half a file), mode 0644, making its directory when missing.
func (t *Textfile) Write(path string) error {
	if err := atomicfile.Write(path, t.Bytes(), 0o644, 0o755); err != nil {
		return fmt.Errorf("write the metrics to %s: %w", filepath.Clean(path), err)
	}
	return nil
}
