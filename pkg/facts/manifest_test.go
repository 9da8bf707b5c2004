package facts_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/etcdadm-io/etcdadm/pkg/facts"
)

func TestParseManifestUnreadable(t *testing.T) {
	for name, doc := range map[string]string{
		"empty":              "",
		"not YAML":           "{{{ not: yaml",
		"a YAML list":        "- a\n- b\n",
		"a scalar":           "just words\n",
		"a ConfigMap":        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: etcd}\ndata: {a: b}\n",
		"spec of wrong type": "apiVersion: v1\nkind: Pod\nspec: [1, 2]\n",
		"a Pod without etcd": `apiVersion: v1
kind: Pod
metadata: {name: kube-apiserver}
spec:
  containers:
  - name: kube-apiserver
    image: registry.k8s.io/kube-apiserver:v1.37.2
    command: [kube-apiserver, --etcd-servers=https://127.0.0.1:2379]
`,
		"etcd only as an init container": `apiVersion: v1
kind: Pod
spec:
  initContainers:
  - name: etcd
    command: [etcd, --name=a]
  containers:
  - name: sidecar
`,
	} {
		t.Run(name, func(t *testing.T) {
			m := facts.ParseManifest([]byte(doc))
			if m == nil || m.Err == "" {
				t.Fatalf("ParseManifest(%q) = %+v, want Err set", doc, m)
			}
			if string(m.Data) != doc {
				t.Errorf("Data = %q", m.Data)
			}
			if m.Name != "" || m.InitialCluster != "" || m.DataDir != "" {
				t.Errorf("fields set on an unreadable manifest: %+v", m)
			}
		})
	}
}

func TestParseManifestFlags(t *testing.T) {
	doc := `apiVersion: v1
kind: Pod
metadata:
  name: etcd
  annotations:
    etcdadm.io/restart: "2026-01-01T00:00:00Z"
spec:
  containers:
  - name: sidecar
    image: busybox
    command: [sh, --name=not-etcd]
  - name: etcd
    image: registry.k8s.io/etcd:3.7.0-0
    command:
    - etcd
    - --name=infra0
    - --initial-cluster=infra0=https://10.0.0.6:2380,infra1=https://10.0.0.7:2380
    - --initial-cluster-state=new
    - --data-dir=/var/lib/etcd
    - --client-cert-auth
    - -snapshot-count=5
    - --listen-metrics-urls=
    args:
    - --quota-backend-bytes=8589934592
    - positional
`
	m := facts.ParseManifest([]byte(doc))
	if m.Err != "" {
		t.Fatal(m.Err)
	}
	got := map[string]string{"Name": m.Name, "InitialCluster": m.InitialCluster, "State": m.InitialClusterState,
		"Image": m.Image, "DataDir": m.DataDir, "Restart": m.Restart}
	want := map[string]string{"Name": "infra0", "InitialCluster": "infra0=https://10.0.0.6:2380,infra1=https://10.0.0.7:2380",
		"State": "new", "Image": "registry.k8s.io/etcd:3.7.0-0", "DataDir": "/var/lib/etcd", "Restart": "2026-01-01T00:00:00Z"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	wantFlags := map[string]string{
		"name":                  "infra0",
		"initial-cluster":       "infra0=https://10.0.0.6:2380,infra1=https://10.0.0.7:2380",
		"initial-cluster-state": "new",
		"data-dir":              "/var/lib/etcd",
		"listen-metrics-urls":   "",
		"quota-backend-bytes":   "8589934592",
	}
	if diff := cmp.Diff(wantFlags, m.Flags); diff != "" {
		t.Errorf("Flags (-want +got):\n%s", diff)
	}
	if names := facts.ParseInitialCluster(m.InitialCluster); len(names) != 2 || names["infra1"][0] != "https://10.0.0.7:2380" {
		t.Errorf("ParseInitialCluster(--initial-cluster) = %v", names)
	}
}

func TestParseInitialCluster(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string][]string
	}{
		{"a=https://1:2380,b=https://2:2380,a=https://3:2380", map[string][]string{"a": {"https://1:2380", "https://3:2380"}, "b": {"https://2:2380"}}},
		{"", map[string][]string{}},
		{" a=https://1:2380 , b=https://2:2380", map[string][]string{"a": {"https://1:2380"}, "b": {"https://2:2380"}}},
		{"junk,=https://x:2380,c=", map[string][]string{"c": {""}}},
		{"a=https://[fd00::1]:2380", map[string][]string{"a": {"https://[fd00::1]:2380"}}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, facts.ParseInitialCluster(tc.in)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestKubeadmOrderIsWhereInitialClusterSits(t *testing.T) {
	pod := func(args ...string) []byte {
		return []byte("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: etcd\n    command: [etcd, " + strings.Join(args, ", ") + "]\n")
	}
	for _, tc := range []struct {
		data []byte
		want bool
	}{
		{pod("--advertise-client-urls=a", "--initial-cluster=x=a", "--key-file=k"), true},
		{pod("--advertise-client-urls=a", "--initial-cluster=x=a", "--initial-cluster-state=existing", "--key-file=k"), true},
		{pod("--key-file=k", "--watch-progress-notify-interval=5s", "--initial-cluster=x=a", "--initial-cluster-state=new"), false},
		{pod("--key-file=k"), false},
	} {
		if got := facts.ParseManifest(tc.data).KubeadmOrder; got != tc.want {
			t.Errorf("%s: %v, want %v", tc.data, got, tc.want)
		}
	}
}
