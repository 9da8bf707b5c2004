package lab

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// S3 is a real S3 server for the lab: versitygw with its posix backend,
// on the lab's bridge address (198.18.Subnet.1), which the hosts and this
// machine reach, with TLS by a CA of its own. Tests start and stop it.
type S3 struct {
	// URL is https://198.18.Subnet.1:PORT.
	URL       string
	AccessKey string
	SecretKey string
	// CAFile is the PEM of the CA that signed the server's certificate.
	CAFile string
	// Dir holds the buckets (one directory each) and the server's log.
	Dir string

	bin, addr, cert, key string
	cmd                  *exec.Cmd
	done                 chan struct{}
}

// StartS3 starts an S3 server with the buckets named, empty, on port of the
// lab's bridge address, storing under the lab's directory.
func (l *Lab) StartS3(ctx context.Context, port int, buckets ...string) (*S3, error) {
	if l.Artifacts == nil || l.Artifacts.S3Server == "" {
		return nil, fmt.Errorf("the lab was built without its S3 server")
	}
	ip := fmt.Sprintf("198.18.%d.1", l.opts.Subnet)
	s := &S3{URL: fmt.Sprintf("https://%s:%d", ip, port), AccessKey: "etcdadm-lab", SecretKey: "lab-secret-" + randomHex(12),
		Dir: filepath.Join(l.Dir, "s3"), bin: l.Artifacts.S3Server, addr: fmt.Sprintf("%s:%d", ip, port)}
	// A new lab's store starts empty: an earlier lab in the same directory
	// left its buckets and objects there.
	if err := os.RemoveAll(s.Dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(s.Dir, "data"), 0o700); err != nil {
		return nil, err
	}
	for _, b := range buckets {
		if err := os.MkdirAll(filepath.Join(s.Dir, "data", b), 0o755); err != nil {
			return nil, err
		}
	}
	var err error
	if s.CAFile, s.cert, s.key, err = serverCert(s.Dir, ip); err != nil {
		return nil, err
	}
	return s, s.Start(ctx)
}

// Start (re)starts the server and waits until it takes connections.
func (s *S3) Start(ctx context.Context) error {
	logf, err := os.OpenFile(filepath.Join(s.Dir, "versitygw.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, "--port", s.addr, "--cert", s.cert, "--key", s.key, "--quiet", "posix", "--sidecar", filepath.Join(s.Dir, "meta"), filepath.Join(s.Dir, "data"))
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s.AccessKey, "ROOT_SECRET_ACCESS_KEY="+s.SecretKey)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := os.MkdirAll(filepath.Join(s.Dir, "meta"), 0o700); err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start versitygw: %w", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(s.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("versitygw exited at start: %s", tailFile(filepath.Join(s.Dir, "versitygw.log"), 20))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("versitygw does not listen on %s: %s", s.addr, tailFile(filepath.Join(s.Dir, "versitygw.log"), 20))
}

// Stop stops the server; its data stays.
func (s *S3) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Credentials are the server's access key as an environment file.
func (s *S3) Credentials() []byte {
	return []byte("AWS_ACCESS_KEY_ID=" + s.AccessKey + "\nAWS_SECRET_ACCESS_KEY=" + s.SecretKey + "\n")
}

// serverCert makes a CA and a server certificate for ip under dir.
func serverCert(dir, ip string) (caFile, certFile, keyFile string, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "etcdadm lab S3 CA"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", "", "", err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return "", "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ip}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP(ip)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return "", "", "", err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", "", err
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	for p, b := range map[string][]byte{
		caFile:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		certFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyFile:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return "", "", "", err
		}
	}
	return caFile, certFile, keyFile, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}
