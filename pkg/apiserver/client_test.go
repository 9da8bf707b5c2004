package apiserver

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fakeAPI serves one ConfigMap as the API does, with optimistic
// concurrency on its resourceVersion, and /readyz.
type fakeAPI struct {
	mu    sync.Mutex
	cm    corev1.ConfigMap
	ready bool
	token string
	// storage says whether reads reach etcd.
	storage bool
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.URL.Path == "/readyz" {
		if !f.ready {
			http.Error(w, "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "ok")
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if r.URL.Path == "/api/v1/namespaces/kube-system" && r.Method == http.MethodGet && r.URL.RawQuery == "" {
		if !f.storage {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"kind":"Status","message":"etcdserver: request timed out"}`)
			return
		}
		fmt.Fprint(w, `{"kind":"Namespace","metadata":{"name":"kube-system"}}`)
		return
	}
	if r.URL.Path != "/api/v1/namespaces/kube-system/configmaps/kubeadm-config" {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"kind":"Status","message":"configmaps \"x\" not found"}`)
		return
	}
	switch r.Method {
	case http.MethodGet:
		_ = json.NewEncoder(w).Encode(f.cm)
	case http.MethodPut:
		var cm corev1.ConfigMap
		if err := json.NewDecoder(r.Body).Decode(&cm); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if cm.ResourceVersion != f.cm.ResourceVersion {
			w.WriteHeader(http.StatusConflict)
			return
		}
		var rv int
		fmt.Sscan(cm.ResourceVersion, &rv)
		cm.ResourceVersion = fmt.Sprint(rv + 1)
		f.cm = cm
		_ = json.NewEncoder(w).Encode(cm)
	}
}

func kubeconfig(t *testing.T, srv *httptest.Server, token string) []byte {
	t.Helper()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	b, _ := json.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "Config", "current-context": "admin@kubernetes",
		"clusters": []any{map[string]any{"name": "kubernetes", "cluster": map[string]any{"server": srv.URL, "certificate-authority-data": ca}}},
		"users":    []any{map[string]any{"name": "admin", "user": map[string]any{"token": token}}},
		"contexts": []any{map[string]any{"name": "admin@kubernetes", "context": map[string]any{"cluster": "kubernetes", "user": "admin"}}},
	})
	return b
}

// The client reads and writes kubeadm's ConfigMap with the kubeconfig's
// identity, through the dialer it is given, and tells a conflict apart.
func TestClientConfigMap(t *testing.T) {
	api := &fakeAPI{token: "s3cret", cm: corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kubeadm-config", Namespace: "kube-system", ResourceVersion: "7"}, Data: map[string]string{"ClusterConfiguration": "a"}}}
	srv := httptest.NewTLSServer(api)
	defer srv.Close()
	dialed := 0
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialed++
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	c, err := NewClient(kubeconfig(t, srv, "s3cret"), dial)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cm, err := c.ConfigMap(ctx, "kube-system", "kubeadm-config")
	if err != nil || cm.Data["ClusterConfiguration"] != "a" || dialed == 0 {
		t.Fatalf("read %+v, %v (dialed %d)", cm, err, dialed)
	}
	cm.Data["ClusterConfiguration"] = "b"
	if err := c.UpdateConfigMap(ctx, cm); err != nil {
		t.Fatal(err)
	}
	if api.cm.Data["ClusterConfiguration"] != "b" {
		t.Errorf("the server holds %+v", api.cm)
	}
	if err := c.UpdateConfigMap(ctx, cm); !errors.Is(err, ErrConflict) {
		t.Errorf("a stale update: %v, want a conflict", err)
	}
	if _, err := c.ConfigMap(ctx, "kube-system", "other"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("a missing ConfigMap: %v", err)
	}
	bad, _ := NewClient(kubeconfig(t, srv, "wrong"), dial)
	if _, err := bad.ConfigMap(ctx, "kube-system", "kubeadm-config"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("a refused identity: %v", err)
	}
	for name, kc := range map[string]string{
		"not YAML":      "{",
		"no context":    `{"current-context": "x"}`,
		"plain http":    strings.Replace(string(kubeconfig(t, srv, "t")), "https://", "http://", 1),
		"no credential": strings.Replace(string(kubeconfig(t, srv, "t")), `"token":"t"`, `"token":""`, 1),
	} {
		if _, err := NewClient([]byte(kc), dial); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// /readyz is asked with the serving certificate checked against the CA;
// what a kube-apiserver that is not ready says is kept to its failed
// checks.
func TestReady(t *testing.T) {
	api := &fakeAPI{}
	srv := httptest.NewTLSServer(api)
	defer srv.Close()
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "https://"))
	var p int
	fmt.Sscan(port, &p)
	ep := Endpoint{Address: host, Port: p, CA: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})}
	client, err := ep.Client((&net.Dialer{}).DialContext)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := Ready(ctx, client, ep); err == nil || err.Error() != "/readyz answered 500 Internal Server Error: etcd failed: reason withheld" {
		t.Errorf("not ready: %v", err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		api.mu.Lock()
		api.ready = true
		api.mu.Unlock()
	}()
	if err := WaitReady(ctx, client, ep, 5*time.Second, 50*time.Millisecond); err != nil {
		t.Errorf("wait: %v", err)
	}
	other := ep
	other.CA = nil
	if _, err := other.Client((&net.Dialer{}).DialContext); err == nil {
		t.Error("a client without a CA")
	}
}

// A client pointed at one kube-apiserver reaches it whatever the
// kubeconfig's server names, and says whether that kube-apiserver reads
// from etcd, asked without a resourceVersion.
func TestReadsStorageAt(t *testing.T) {
	api := &fakeAPI{token: "s3cret", ready: true}
	srv := httptest.NewTLSServer(api)
	defer srv.Close()
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "https://"))
	var p int
	fmt.Sscan(port, &p)
	ep := Endpoint{Address: host, Port: p}
	kc := strings.Replace(string(kubeconfig(t, srv, "s3cret")), srv.URL, "https://control-plane.invalid:6443", 1)
	c, err := NewClient([]byte(kc), (&net.Dialer{}).DialContext)
	if err != nil {
		t.Fatal(err)
	}
	c = c.At(ep, (&net.Dialer{}).DialContext)
	ctx := context.Background()
	if err := c.ReadsStorage(ctx); err == nil || !strings.Contains(err.Error(), "request timed out") {
		t.Errorf("a kube-apiserver that cannot reach etcd: %v", err)
	}
	if _, err := WaitReadsStorage(ctx, c, 200*time.Millisecond, 50*time.Millisecond); err == nil || !strings.Contains(err.Error(), "request timed out") {
		t.Errorf("waited for a kube-apiserver that cannot reach etcd: %v", err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		api.mu.Lock()
		api.storage = true
		api.mu.Unlock()
	}()
	if asked, err := WaitReadsStorage(ctx, c, 5*time.Second, 50*time.Millisecond); err != nil || asked < 2 {
		t.Errorf("a kube-apiserver that reads from etcd after a while: asked %d times, %v", asked, err)
	}
	if err := c.ReadsStorage(ctx); err != nil {
		t.Errorf("a kube-apiserver that reads from etcd: %v", err)
	}
}
