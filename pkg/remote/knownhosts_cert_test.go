package remote

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// hostCert certifies host's key with ca for principals, valid for an hour.
func hostCert(t *testing.T, host, ca ssh.Signer, principals ...string) *ssh.Certificate {
	t.Helper()
	now := time.Now()
	cert := &ssh.Certificate{
		Key:             host.PublicKey(),
		Serial:          7,
		CertType:        ssh.HostCert,
		KeyId:           "host",
		ValidPrincipals: principals,
		ValidAfter:      uint64(now.Add(-time.Minute).Unix()),
		ValidBefore:     uint64(now.Add(time.Hour).Unix()),
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return cert
}

// certServer is an in-process SSH server that offers its host key both
// plain and as a certificate, and lets any client in: enough for a
// handshake, which is where host keys are checked.
type certServer struct {
	conf *ssh.ServerConfig
	ln   net.Listener
}

func startCertServer(t *testing.T, host ssh.Signer, cert *ssh.Certificate) *certServer {
	t.Helper()
	conf := &ssh.ServerConfig{NoClientAuth: true}
	conf.AddHostKey(host)
	if cert != nil {
		cs, err := ssh.NewCertSigner(cert, host)
		if err != nil {
			t.Fatal(err)
		}
		conf.AddHostKey(cs)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				conn, chans, reqs, err := ssh.NewServerConn(c, conf)
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				for nc := range chans {
					_ = nc.Reject(ssh.Prohibited, "handshakes only")
				}
				conn.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return &certServer{conf: conf, ln: ln}
}

// config dials the server as etcd-1.test:2222, a name that only this
// test's dialer knows, which connects to the server on loopback.
func (s *certServer) config(t *testing.T, knownHosts string, accept bool) Config {
	t.Helper()
	key := newTestKey(t).write(t, filepath.Join(t.TempDir(), "id_ed25519"), "")
	return Config{
		Host:              "etcd-1",
		Address:           "etcd-1.test",
		Port:              2222,
		User:              "root",
		IdentityFiles:     []string{key.path},
		IdentitiesOnly:    true,
		KnownHostsFile:    knownHosts,
		AcceptNewHostKeys: accept,
		SSHConfigFile:     "none",
		AgentSocket:       "none",
		ProxyJump:         "none",
		ConnectTimeout:    5 * time.Second,
		KeepAliveInterval: -1,
		Attempts:          1,
		Logger:            slog.New(slog.DiscardHandler),
		netDial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, s.ln.Addr().String())
		},
	}
}

func (s *certServer) dial(t *testing.T, knownHosts string, accept bool) error {
	t.Helper()
	tr, err := Dial(context.Background(), s.config(t, knownHosts, accept))
	if err == nil {
		tr.Close()
	}
	return err
}

func TestHostCertificateTrustedThroughCA(t *testing.T) {
	ca, otherCA, host := newSigner(t), newSigner(t), newSigner(t)
	caLine := "@cert-authority [*.test]:2222 " + authorizedKey(ca.PublicKey())
	// A key recorded before the host was reinstalled with a certificate: the
	// CA vouches for the new key, so the certificate must be asked for.
	stale := "[etcd-1.test]:2222 " + authorizedKey(newEd25519PublicKey(t))

	for _, c := range []struct {
		name    string
		cert    *ssh.Certificate
		lines   []string
		wantErr []string // empty: accepted
		changed bool
	}{
		{name: "signed by the CA", cert: hostCert(t, host, ca, "etcd-1.test"), lines: []string{caLine}},
		{name: "signed by the CA, stale key known", cert: hostCert(t, host, ca, "etcd-1.test"), lines: []string{stale, caLine}},
		{name: "CA among other lines", cert: hostCert(t, host, ca, "other.test", "etcd-1.test"),
			lines: []string{"@cert-authority *.example " + authorizedKey(otherCA.PublicKey()), "[etcd-1.test]:22 " + authorizedKey(newEd25519PublicKey(t)), caLine}},
		{name: "no principals: any host, as in ssh", cert: hostCert(t, host, ca), lines: []string{caLine}},
		{name: "wrong CA", cert: hostCert(t, host, otherCA, "etcd-1.test"), lines: []string{caLine}, changed: true,
			wantErr: []string{"not certified by its CA", ssh.FingerprintSHA256(otherCA.PublicKey()), ssh.FingerprintSHA256(ca.PublicKey()), "known_hosts:1"}},
		{name: "wrong principal", cert: hostCert(t, host, ca, "etcd-2.test"), lines: []string{caLine}, changed: true,
			wantErr: []string{"host certificate of etcd-1.test ([etcd-1.test]:2222) is not valid", `principal "etcd-1.test"`, "etcd-2.test", "-h -n etcd-1.test"}},
		{name: "CA for other hosts only", cert: hostCert(t, host, ca, "etcd-1.test"),
			lines:   []string{"@cert-authority [*.test]:22 " + authorizedKey(ca.PublicKey())},
			wantErr: []string{"unknown host key for etcd-1"}},
		{name: "CA revoked", cert: hostCert(t, host, ca, "etcd-1.test"),
			lines: []string{caLine, "@revoked * " + authorizedKey(ca.PublicKey())}, changed: true, wantErr: []string{"REVOKED"}},
		{name: "host key revoked", cert: hostCert(t, host, ca, "etcd-1.test"),
			lines: []string{caLine, "@revoked etcd-9.test " + authorizedKey(host.PublicKey())}, changed: true, wantErr: []string{"REVOKED"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "known_hosts")
			writeKnownHosts(t, file, c.lines...)
			s := startCertServer(t, host, c.cert)
			// With accept-new too: a host with a CA never has a key recorded.
			for _, accept := range []bool{false, true} {
				if accept && len(c.wantErr) > 0 && !c.changed {
					continue // a new host
				}
				err := s.dial(t, file, accept)
				if len(c.wantErr) == 0 {
					if err != nil {
						t.Fatalf("accept-new=%v: refused: %v", accept, err)
					}
					continue
				}
				var he *HostKeyError
				if !errors.As(err, &he) || errors.Is(err, ErrHostKeyChanged) != c.changed {
					t.Fatalf("accept-new=%v: err = %v, want a HostKeyError (changed: %v)", accept, err, c.changed)
				}
				for _, want := range c.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("accept-new=%v: message %q lacks %q", accept, err, want)
					}
				}
			}
			if n := countLines(t, file); n != len(c.lines) {
				t.Errorf("known_hosts has %d lines, want the %d written", n, len(c.lines))
			}
		})
	}
}

func TestHostKeyAlgorithmsAskForCertificatesWhenACAMatches(t *testing.T) {
	file := filepath.Join(t.TempDir(), "known_hosts")
	writeKnownHosts(t, file,
		"@cert-authority *.test "+authorizedKey(newEd25519PublicKey(t)),
		"etcd-1.test "+authorizedKey(newEd25519PublicKey(t)))
	log := slog.New(slog.DiscardHandler)
	hk, err := newHostKeyCheck(endpoint{Alias: "e", HostName: "etcd-1.test", Port: 22, KnownHosts: []string{file}}, false, log)
	if err != nil {
		t.Fatal(err)
	}
	if len(hk.algorithms) == 0 || hk.algorithms[0] != ssh.CertAlgoED25519v01 || !slices.Contains(hk.algorithms, ssh.CertAlgoRSASHA512v01) ||
		hk.algorithms[len(hk.algorithms)-1] != ssh.KeyAlgoED25519 {
		t.Errorf("algorithms = %v, want certificates first, then the known ed25519 key", hk.algorithms)
	}
	hk, err = newHostKeyCheck(endpoint{Alias: "e", HostName: "etcd-2.test", Port: 22, KnownHosts: []string{file}}, false, log)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(hk.algorithms, ssh.CertAlgoED25519v01) || !slices.Contains(hk.algorithms, ssh.KeyAlgoED25519) || !slices.Contains(hk.algorithms, ssh.KeyAlgoRSASHA256) {
		t.Errorf("algorithms = %v, want certificates and every plain key type", hk.algorithms)
	}
}

// A server that presents a certificate no CA line vouches for is a new host
// like another: accept-new records the key under the certificate.
func TestAcceptNewRecordsTheKeyUnderACertificate(t *testing.T) {
	ca, host := newSigner(t), newSigner(t)
	s := startCertServer(t, host, hostCert(t, host, ca, "etcd-1.test"))
	file := filepath.Join(t.TempDir(), "known_hosts")
	if err := s.dial(t, file, false); !errors.Is(err, ErrHostKeyUnknown) {
		t.Fatalf("unknown host: err = %v, want ErrHostKeyUnknown", err)
	}
	if err := s.dial(t, file, true); err != nil {
		t.Fatalf("accept-new: %v", err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	want := knownhosts.Line([]string{"[etcd-1.test]:2222"}, host.PublicKey()) + "\n"
	if string(data) != want {
		t.Errorf("known_hosts = %q, want the plain key %q", data, want)
	}
	if err := s.dial(t, file, false); err != nil {
		t.Errorf("recorded key refused afterwards: %v", err)
	}
}
