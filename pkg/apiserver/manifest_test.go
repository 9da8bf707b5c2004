package apiserver

import (
	"slices"
	"strings"
	"testing"
)

const pod = `apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
spec:
  containers:
  - command:
    - kube-apiserver
    - --advertise-address=10.0.0.20
    - --secure-port=6444
    name: kube-apiserver
`

// A manifest without --etcd-servers gets it where kubeadm's sorted flags
// put it; one that is not a kube-apiserver Pod is refused, naming why.
func TestSetEtcdServers(t *testing.T) {
	b, err := SetEtcdServers([]byte(pod), []string{"https://10.0.0.6:2379", "https://10.0.0.7:2379"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "    - --advertise-address=10.0.0.20\n    - --etcd-servers=https://10.0.0.6:2379,https://10.0.0.7:2379\n    - --secure-port=6444\n") {
		t.Errorf("flag placed:\n%s", b)
	}
	m := Parse(b)
	if m.Port != 6444 || m.Address != "10.0.0.20" || !m.Servers([]string{"https://10.0.0.7:2379", "https://10.0.0.6:2379"}) || m.Servers([]string{"https://10.0.0.6:2379"}) {
		t.Errorf("read back as %+v", m)
	}
	if _, err := SetEtcdServers([]byte(pod), nil); err == nil {
		t.Error("no server accepted")
	}
	other := strings.Replace(pod, "name: kube-apiserver\n", "name: etcd\n", 2)
	if _, err := SetEtcdServers([]byte(other), []string{"https://x:2379"}); err == nil || !strings.Contains(err.Error(), "no container named kube-apiserver") {
		t.Errorf("another Pod: %v", err)
	}
	if m := Parse([]byte("{")); m.Err == "" {
		t.Error("not YAML read as a Pod")
	}
}

func TestLoopback(t *testing.T) {
	for servers, want := range map[string]bool{
		"https://127.0.0.1:2379":                       true,
		"https://[::1]:2379":                           true,
		"https://127.0.0.1:2379,https://10.0.0.6:2379": false,
		"": false,
	} {
		if got := (&Manifest{EtcdServers: SplitServers(servers)}).Loopback(); got != want {
			t.Errorf("%q: loopback %v", servers, got)
		}
	}
	if got := SplitServers(" a, ,b"); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("split %v", got)
	}
}
