package apiserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Dialer opens a connection to addr, through whatever reaches it (the host's
// SSH connection).
type Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

// Endpoint is where a kube-apiserver serves, and the CA that issued its
// serving certificate.
type Endpoint struct {
	// Address and Port are --advertise-address and --secure-port.
	Address string
	Port    int
	// CA is kubeadm's cluster CA (ca.crt); the serving certificate's
	// names include the advertise address.
	CA []byte
}

// Addr is host:port.
func (e Endpoint) Addr() string { return net.JoinHostPort(e.Address, strconv.Itoa(e.Port)) }

// Client returns an HTTP client that reaches the kube-apiserver through
// dial and checks its serving certificate against the CA.
func (e Endpoint) Client(dial Dialer) (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(e.CA) {
		return nil, fmt.Errorf("the kube-apiserver's CA holds no certificate")
	}
	addr := e.Addr()
	tr := &http.Transport{
		// Every request goes to this apiserver, whatever its URL names.
		DialContext:       func(ctx context.Context, network, _ string) (net.Conn, error) { return dial(ctx, network, addr) },
		TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: e.Address, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}, nil
}

// Ready asks the kube-apiserver's /readyz once: nil when it answers 200,
// else what it said.
func Ready(ctx context.Context, client *http.Client, e Endpoint) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+e.Addr()+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz answered %s: %s", resp.Status, failedChecks(string(body)))
	}
	return nil
}

// failedChecks keeps the failed lines of a /readyz answer.
func failedChecks(body string) string {
	var bad []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "[-]") {
			bad = append(bad, strings.TrimPrefix(l, "[-]"))
		}
	}
	if len(bad) == 0 {
		return strings.TrimSpace(body)
	}
	return strings.Join(bad, "; ")
}

// WaitReady asks /readyz every interval until it answers 200, or timeout
// passes.
func WaitReady(ctx context.Context, client *http.Client, e Endpoint, timeout, interval time.Duration) error {
	_, err := poll(ctx, timeout, interval, 3*time.Second, func(ctx context.Context) error { return Ready(ctx, client, e) })
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("the kube-apiserver at %s is not ready after %s: %w", e.Addr(), timeout, err)
	}
	return err
}

// WaitReadsStorage asks c's kube-apiserver to read from etcd (ReadsStorage)
// every interval until it does, or timeout passes; it says how many times
// it asked.
func WaitReadsStorage(ctx context.Context, c *Client, timeout, interval time.Duration) (int, error) {
	return poll(ctx, timeout, interval, 2*time.Second, c.ReadsStorage)
}

// poll calls try, each call bounded by perTry, every interval until it
// returns nil: the number of calls, and try's last error once timeout has
// passed, or ctx's when it ends first.
func poll(ctx context.Context, timeout, interval, perTry time.Duration, try func(context.Context) error) (int, error) {
	deadline := time.Now().Add(timeout)
	for n := 1; ; n++ {
		tctx, cancel := context.WithTimeout(ctx, perTry)
		err := try(tctx)
		cancel()
		if err == nil {
			return n, nil
		}
		if time.Now().After(deadline) {
			return n, err
		}
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// EndpointOf is where the kube-apiserver of manifest m serves, with its
// cluster CA read through read (from its host).
func EndpointOf(ctx context.Context, m *Manifest, read func(context.Context, string) ([]byte, error)) (Endpoint, error) {
	if m.Address == "" || m.ClientCA == "" {
		return Endpoint{}, fmt.Errorf("the kube-apiserver's manifest names no --advertise-address or --client-ca-file: it cannot be asked whether it is ready")
	}
	ca, err := read(ctx, m.ClientCA)
	if err != nil {
		return Endpoint{}, fmt.Errorf("read the kube-apiserver's CA: %w", err)
	}
	return Endpoint{Address: m.Address, Port: m.Port, CA: ca}, nil
}
