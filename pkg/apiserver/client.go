package apiserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"
	"sigs.k8s.io/yaml"
)

// Client reaches the Kubernetes API as a kubeconfig's user, for the one
// object etcdadm reads and writes there (kubeadm's ConfigMap): plain HTTPS
// and JSON, which keeps client-go's generated clients out of the binary.
type Client struct {
	server string
	token  string
	tls    *tls.Config
	http   *http.Client
}

// ErrConflict is an update of an object that changed since it was read.
var ErrConflict = errors.New("the object changed since it was read")

// NewClient reads a kubeconfig as kubeadm writes admin.conf (its current
// context's cluster and user, with their certificates inline) into a
// client whose connections go through dial: the control-plane host's SSH
// connection, so that the API is reached from where the file is.
func NewClient(kubeconfig []byte, dial Dialer) (*Client, error) {
	var kc clientcmdv1.Config
	if err := yaml.Unmarshal(kubeconfig, &kc); err != nil {
		return nil, fmt.Errorf("read the kubeconfig: %w", err)
	}
	var ctx *clientcmdv1.Context
	for i := range kc.Contexts {
		if kc.Contexts[i].Name == kc.CurrentContext {
			ctx = &kc.Contexts[i].Context
		}
	}
	if ctx == nil {
		return nil, fmt.Errorf("the kubeconfig has no current context %q", kc.CurrentContext)
	}
	var cluster *clientcmdv1.Cluster
	for i := range kc.Clusters {
		if kc.Clusters[i].Name == ctx.Cluster {
			cluster = &kc.Clusters[i].Cluster
		}
	}
	var user *clientcmdv1.AuthInfo
	for i := range kc.AuthInfos {
		if kc.AuthInfos[i].Name == ctx.AuthInfo {
			user = &kc.AuthInfos[i].AuthInfo
		}
	}
	switch {
	case cluster == nil:
		return nil, fmt.Errorf("the kubeconfig has no cluster %q", ctx.Cluster)
	case user == nil:
		return nil, fmt.Errorf("the kubeconfig has no user %q", ctx.AuthInfo)
	case len(cluster.CertificateAuthorityData) == 0:
		return nil, fmt.Errorf("the kubeconfig's cluster %q has no certificate-authority-data", ctx.Cluster)
	case user.Token == "" && (len(user.ClientCertificateData) == 0 || len(user.ClientKeyData) == 0):
		return nil, fmt.Errorf("the kubeconfig's user %q has neither a token nor client-certificate-data and client-key-data", ctx.AuthInfo)
	}
	u, err := url.Parse(cluster.Server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("the kubeconfig's server %q is not an https URL", cluster.Server)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cluster.CertificateAuthorityData) {
		return nil, fmt.Errorf("the kubeconfig's certificate-authority-data holds no certificate")
	}
	tc := &tls.Config{RootCAs: pool, ServerName: cluster.TLSServerName, MinVersion: tls.VersionTLS12}
	if user.Token == "" {
		cert, err := tls.X509KeyPair(user.ClientCertificateData, user.ClientKeyData)
		if err != nil {
			return nil, fmt.Errorf("the kubeconfig's client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	tr := &http.Transport{
		DialContext:     func(ctx context.Context, network, addr string) (net.Conn, error) { return dial(ctx, network, addr) },
		TLSClientConfig: tc,
	}
	return &Client{server: strings.TrimSuffix(cluster.Server, "/"), token: user.Token, tls: tc, http: &http.Client{Transport: tr, Timeout: 10 * time.Second}}, nil
}

// At is c reaching the kube-apiserver at e alone, whatever the kubeconfig's
// server names (a load balancer, say), its serving certificate checked for
// e's address.
func (c *Client) At(e Endpoint, dial Dialer) *Client {
	tc := c.tls.Clone()
	tc.ServerName = e.Address
	addr := e.Addr()
	tr := &http.Transport{
		DialContext:       func(ctx context.Context, network, _ string) (net.Conn, error) { return dial(ctx, network, addr) },
		TLSClientConfig:   tc,
		DisableKeepAlives: true,
	}
	return &Client{server: "https://" + addr, token: c.token, tls: tc, http: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
}

// ReadsStorage asks for the kube-system Namespace as etcd holds it: a read
// without a resourceVersion is not served from the kube-apiserver's cache
// but through its own connection to etcd, the one its writes take. /readyz
// asks etcd through connections of its own, which can be back while that
// one still waits out gRPC's reconnection backoff.
func (c *Client) ReadsStorage(ctx context.Context) error {
	if err := c.do(ctx, http.MethodGet, "/api/v1/namespaces/kube-system", nil, nil); err != nil {
		return fmt.Errorf("read the kube-system Namespace from etcd: %w", err)
	}
	return nil
}

// ConfigMap reads namespace/name.
func (c *Client) ConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error) {
	var cm corev1.ConfigMap
	if err := c.do(ctx, http.MethodGet, configMapPath(namespace, name), nil, &cm); err != nil {
		return nil, fmt.Errorf("read %s/%s: %w", namespace, name, err)
	}
	return &cm, nil
}

// UpdateConfigMap writes cm back over the object it was read as (its
// resourceVersion): ErrConflict when that changed meanwhile.
func (c *Client) UpdateConfigMap(ctx context.Context, cm *corev1.ConfigMap) error {
	b, err := json.Marshal(cm)
	if err != nil {
		return err
	}
	if err := c.do(ctx, http.MethodPut, configMapPath(cm.Namespace, cm.Name), b, nil); err != nil {
		return fmt.Errorf("write %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	return nil
}

func configMapPath(namespace, name string) string {
	return "/api/v1/namespaces/" + url.PathEscape(namespace) + "/configmaps/" + url.PathEscape(name)
}

func (c *Client) do(ctx context.Context, method, p string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.server+p, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "etcdadm")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	switch {
	case resp.StatusCode == http.StatusConflict:
		return ErrConflict
	case resp.StatusCode/100 != 2:
		var st struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &st) == nil && st.Message != "" {
			return fmt.Errorf("%s: %s", resp.Status, st.Message)
		}
		return fmt.Errorf("%s", resp.Status)
	case out != nil:
		return json.Unmarshal(data, out)
	}
	return nil
}
