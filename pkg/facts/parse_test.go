package facts_test

import (
	"encoding/base64"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/etcdadm-io/etcdadm/pkg/facts"
)

// lines is script output: one line each, the last one ended too.
func lines(ls ...string) []byte { return []byte(strings.Join(ls, "\n") + "\n") }

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

var t0 = time.Unix(1_700_000_000, 0)

func TestParseRejects(t *testing.T) {
	for name, out := range map[string][]byte{
		"empty output":           nil,
		"no end line":            lines("clock 1700000000.0", "uid 0", "kubelet /usr/bin/kubelet"),
		"end cut short":          []byte("uid 0\nen"),
		"unknown tag":            lines("uid 0", "motd Welcome!", "end"),
		"tag without space":      lines("uid0", "end"),
		"uid not a number":       lines("uid root", "end"),
		"uid empty":              lines("uid ", "end"),
		"clock not a number":     lines("clock now", "end"),
		"clock fraction bad":     lines("clock 1700000000.12x", "end"),
		"proc without start":     lines("proc 12", "end"),
		"proc pid not a number":  lines("proc x 12 -", "end"),
		"proc start negative":    lines("proc 12 -5 -", "end"),
		"datadir count bad":      lines("datadir many", "end"),
		"wal not base64":         lines("wal !!!", "end"),
		"content outside a file": lines("| stray", "end"),
		"last line outside":      lines("|- stray", "end"),
		"mode too few fields":    lines("other /x", "omode 41ed 0", "end"),
		"mode not hex":           lines("other /x", "omode zz 0 0", "end"),
		"mode uid bad":           lines("other /x", "omode 41ed u 0", "end"),
		"mode gid bad":           lines("other /x", "omode 41ed 0 g", "end"),
		"a file without its sum": lines("regular /x", "rmode 81a4 0 0", "end"),
		"a file without mode":    lines("regular /x", "sum "+strings.Repeat("ab", 32), "end"),
		"an other without mode":  lines("other /x", "end"),
		"a stat that failed":     lines("regular /x", "regular /y", "sum a", "sum b", "rmode 81a4 0 0", "end"),
	} {
		t.Run(name, func(t *testing.T) {
			if h, err := facts.Parse(out, t0, t0); err == nil {
				t.Errorf("Parse(%q) = %+v, want an error", out, h)
			}
		})
	}
}

func TestParseWholeOutput(t *testing.T) {
	crt := "-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n"
	out := lines(
		"clock 1700000000.250",
		"uid 1000",
		"kubelet /usr/local/bin/kubelet",
		"kubelet-usr-bin",
		"kubelet-active inactive",
		"listen LISTEN 0      4096      198.18.0.10:2379      0.0.0.0:*    users:((\"etcd\",pid=1234,fd=7))",
		"proc 1234 98765 /sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b.slice",
		"proc 99 100 -",
		"datadir 3",
		"wal "+b64("not a WAL at all"),
		"regular /etc/kubernetes/pki/etcd/some file.crt",
		"sum "+strings.Repeat("ab", 32),
		"rmode 81a4 0 0",
		"data /etc/kubernetes/pki/etcd/some file.crt",
		"| -----BEGIN CERTIFICATE-----",
		"| not really",
		"| -----END CERTIFICATE-----",
		"",
		"pending kubelet-restart",
		"pending etcd-restart ",
		"end",
	)
	h, err := facts.Parse(out, t0, t0.Add(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	want := &facts.Host{
		UID:           1000,
		Kubelet:       "/usr/local/bin/kubelet",
		KubeletBin:    true,
		KubeletActive: "inactive",
		Listeners: []facts.Listener{{
			Port: 2379, Process: "etcd", PID: 1234,
			Line: "LISTEN 0      4096      198.18.0.10:2379      0.0.0.0:*    users:((\"etcd\",pid=1234,fd=7))",
		}},
		Etcd: []facts.Process{
			{PID: 1234, Start: 98765, Cgroup: "/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b.slice"},
			{PID: 99, Start: 100},
		},
		// An unreadable WAL still says a member is there.
		DataDir: facts.DataDir{Exists: true, Entries: 3, HasWAL: true},
		Files: map[string]facts.FileState{
			"/etc/kubernetes/pki/etcd/some file.crt": {Mode: 0o644, SHA256: strings.Repeat("ab", 32), Data: []byte(crt)},
		},
		// Remote clock 250ms after t0, read at t0+5ms: 245ms ahead, within 5ms+1ms.
		ClockSkew:  245 * time.Millisecond,
		ClockError: 6 * time.Millisecond,
		Pending:    []string{facts.PendingKubeletRestart, facts.PendingEtcdRestart},
	}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if !h.RunsEtcd() || h.DataDir.Empty() {
		t.Errorf("RunsEtcd %v, Empty %v", h.RunsEtcd(), h.DataDir.Empty())
	}
}

func TestParseMinimal(t *testing.T) {
	h, err := facts.Parse(lines("end"), t0, t0)
	if err != nil {
		t.Fatal(err)
	}
	if h.Files == nil || len(h.Files) != 0 || h.Manifest != nil || h.DataDir.Exists || !h.DataDir.Empty() || h.RunsEtcd() || h.NoSS {
		t.Errorf("got %+v", h)
	}
	h, err = facts.Parse(lines("no-ss", "end"), t0, t0)
	if err != nil || !h.NoSS {
		t.Errorf("no-ss: %+v, %v", h, err)
	}
}

func TestParseClock(t *testing.T) {
	for _, tc := range []struct {
		line          string
		before, after time.Time
		skew, clkErr  time.Duration
	}{
		{"clock 1700000000.500000000", t0, t0, 500 * time.Millisecond, time.Millisecond},
		{"clock 1700000000.5", t0, t0, 500 * time.Millisecond, time.Millisecond},
		{"clock 1700000000.25", t0, t0, 250 * time.Millisecond, time.Millisecond},
		{"clock 1700000000.000000001", t0, t0, time.Nanosecond, time.Millisecond},
		// More digits than nanoseconds: cut, not rounded.
		{"clock 1700000000.1234567899", t0, t0, 123456789, time.Millisecond},
		// busybox date prints %N as N.
		{"clock 1700000000.N", t0, t0, 0, time.Millisecond},
		{"clock 1700000000", t0, t0, 0, time.Millisecond},
		{"clock 1699999999.0", t0, t0.Add(2 * time.Second), -2 * time.Second, time.Second + time.Millisecond},
		{"clock 1700000060.0", t0, t0.Add(200 * time.Millisecond), 60*time.Second - 100*time.Millisecond, 101 * time.Millisecond},
	} {
		t.Run(tc.line, func(t *testing.T) {
			h, err := facts.Parse(lines(tc.line, "end"), tc.before, tc.after)
			if err != nil {
				t.Fatal(err)
			}
			if h.ClockSkew != tc.skew || h.ClockError != tc.clkErr {
				t.Errorf("skew %v error %v, want %v %v", h.ClockSkew, h.ClockError, tc.skew, tc.clkErr)
			}
		})
	}
}

func TestParseListeners(t *testing.T) {
	for _, tc := range []struct {
		line    string
		port    int
		process string
		pid     int
	}{
		{`LISTEN 0      4096      198.18.0.10:2379      0.0.0.0:*    users:(("etcd",pid=1234,fd=7))`, 2379, "etcd", 1234},
		{`LISTEN 0 4096 [::1]:2381 [::]:* users:(("etcd",pid=99,fd=3))`, 2381, "etcd", 99},
		{`LISTEN 0      128                *:2380             *:*    users:(("kube-apiserver",pid=4321,fd=12),("kube-apiserver",pid=4322,fd=12))`, 2380, "kube-apiserver", 4321},
		{`LISTEN 0      4096   [fe80::1]%eth0:2380          [::]:*    users:(("etcd",pid=7,fd=9))`, 2380, "etcd", 7},
		{`LISTEN 0      4096   127.0.0.1%lo:2379      0.0.0.0:*    users:(("nc",pid=31337,fd=3))`, 2379, "nc", 31337},
		// Without the right to see other users' processes, ss shows none.
		{`LISTEN 0      4096      127.0.0.1:2379      0.0.0.0:*`, 2379, "an unknown process", 0},
		{`garbage`, 0, "an unknown process", 0},
	} {
		t.Run(tc.line, func(t *testing.T) {
			h, err := facts.Parse(lines("listen "+tc.line, "end"), t0, t0)
			if err != nil {
				t.Fatal(err)
			}
			want := []facts.Listener{{Port: tc.port, Process: tc.process, PID: tc.pid, Line: tc.line}}
			if diff := cmp.Diff(want, h.Listeners); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseProcLines(t *testing.T) {
	h, err := facts.Parse(lines(
		"proc 1234 5678 /sys/fs/cgroup/kubepods/burstable/pod6b2c",
		"proc 42 99 -",
		"proc 7 8",
		"end",
	), t0, t0)
	if err != nil {
		t.Fatal(err)
	}
	want := []facts.Process{
		{PID: 1234, Start: 5678, Cgroup: "/sys/fs/cgroup/kubepods/burstable/pod6b2c"},
		{PID: 42, Start: 99},
		{PID: 7, Start: 8},
	}
	if diff := cmp.Diff(want, h.Etcd); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParseFileModes(t *testing.T) {
	for _, tc := range []struct {
		raw  string // stat -c %f
		mode fs.FileMode
		dir  bool
	}{
		{"81a4", 0o644, false},                 // 0100644
		{"8180", 0o600, false},                 // 0100600
		{"81ed", 0o755, false},                 // 0100755
		{"85ed", 0o755 | fs.ModeSetgid, false}, // 0102755
		{"89ed", 0o755 | fs.ModeSetuid, false}, // 0104755
		{"8de4", 0o744 | fs.ModeSetuid | fs.ModeSetgid, false},
		{"41ed", 0o755, true},                 // 040755
		{"41c0", 0o700, true},                 // 040700
		{"45e8", 0o750 | fs.ModeSetgid, true}, // 042750
		{"43ff", 0o777 | fs.ModeSticky, true}, // 041777, /tmp
		{"a1ff", 0o777, false},                // 0120777, a symbolic link
		{"1180", 0o600, false},                // 010600, a FIFO
		{"81A4", 0o644, false},                // upper case hex
	} {
		t.Run(tc.raw, func(t *testing.T) {
			h, err := facts.Parse(lines("other /some/path", "omode "+tc.raw+" 1234 5678", "end"), t0, t0)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]facts.FileState{"/some/path": {Mode: tc.mode, Dir: tc.dir, UID: 1234, GID: 5678}}
			if diff := cmp.Diff(want, h.Files); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseFileData(t *testing.T) {
	sum := strings.Repeat("0f", 32)
	for name, tc := range map[string]struct {
		out  []byte
		data string
	}{
		"lines":                    {lines("regular /p/a b.crt", "sum "+sum, "rmode 81a4 0 0", "data /p/a b.crt", "| PEM", "| ", "| end", "end"), "PEM\n\nend\n"},
		"no newline at the end":    {lines("regular /p/a b.crt", "sum "+sum, "rmode 81a4 0 0", "data /p/a b.crt", "| PEM", "|- tail", "end"), "PEM\ntail"},
		"a name sha256sum escaped": {lines("regular /p/a b.crt", `sum \`+sum, "rmode 81a4 0 0", "data /p/a b.crt", "| PEM", "end"), "PEM\n"},
		"the content before a tag": {lines("regular /p/a b.crt", "sum "+sum, "rmode 81a4 0 0", "data /p/a b.crt", "| PEM", "pending x", "end"), "PEM\n"},
	} {
		t.Run(name, func(t *testing.T) {
			h, err := facts.Parse(tc.out, t0, t0)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]facts.FileState{"/p/a b.crt": {Mode: 0o644, SHA256: sum, Data: []byte(tc.data)}}
			if diff := cmp.Diff(want, h.Files); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	// An empty certificate: a header and no line.
	h, err := facts.Parse(lines("regular /p/e.crt", "sum "+sum, "rmode 81a4 0 0", "data /p/e.crt", "end"), t0, t0)
	if err != nil {
		t.Fatal(err)
	}
	if st := h.Files["/p/e.crt"]; st.Data == nil || len(st.Data) != 0 || len(h.Files) != 1 {
		t.Errorf("empty certificate: %+v", h.Files)
	}
}

func TestParseManifestAndCALines(t *testing.T) {
	pod := `apiVersion: v1
kind: Pod
metadata:
  name: etcd
  annotations:
    etcdadm.io/restart: "r1"
spec:
  containers:
  - name: etcd
    image: registry.k8s.io/etcd:3.7.0-0
    command: [etcd, --name=a, --data-dir=/d]
`
	var out []string
	out = append(out, "manifest")
	for _, l := range strings.Split(strings.TrimSuffix(pod, "\n"), "\n") {
		out = append(out, "| "+l)
	}
	out = append(out, "ca", "|- not PEM", "end")
	h, err := facts.Parse(lines(out...), t0, t0)
	if err != nil {
		t.Fatal(err)
	}
	if h.Manifest == nil || h.Manifest.Name != "a" || h.Manifest.DataDir != "/d" || h.Manifest.Restart != "r1" || h.Manifest.Err != "" {
		t.Errorf("Manifest = %+v", h.Manifest)
	}
	if string(h.CAData) != "not PEM" || len(h.TrustedCAs) != 0 {
		t.Errorf("CAData %q, TrustedCAs %d", h.CAData, len(h.TrustedCAs))
	}
	// An empty manifest file is there but unreadable.
	h, err = facts.Parse(lines("manifest", "end"), t0, t0)
	if err != nil {
		t.Fatal(err)
	}
	if h.Manifest == nil || h.Manifest.Err == "" {
		t.Errorf("empty manifest: %+v", h.Manifest)
	}
}

func TestHostHelpers(t *testing.T) {
	var h facts.Host
	if h.HasPending(facts.PendingEtcdRestart) || h.RunsEtcd() || !h.DataDir.Empty() {
		t.Errorf("zero Host: %+v", h)
	}
	h.Pending = []string{facts.PendingEtcdRestart}
	h.Etcd = []facts.Process{{PID: 1, Start: 2}}
	h.DataDir.Entries = 1
	if !h.HasPending(facts.PendingEtcdRestart) || h.HasPending(facts.PendingKubeletRestart) || !h.RunsEtcd() || h.DataDir.Empty() {
		t.Errorf("Host: %+v", h)
	}
}
