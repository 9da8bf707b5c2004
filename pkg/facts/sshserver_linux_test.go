//go:build linux

package facts_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// sshServer is a minimal in-process SSH server that runs every "exec"
// request with sh -c on this machine, as the test's user: enough for the SSH
// transport's Run and Start, which is how etcdadm reaches real hosts.
type sshServer struct {
	cfg remote.Config

	mu    sync.Mutex
	conns []net.Conn
}

func startSSHServer(t *testing.T) *sshServer {
	t.Helper()
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	clientPub, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshClientPub, err := ssh.NewPublicKey(clientPub)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}

	conf := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) == string(sshClientPub.Marshal()) {
				return &ssh.Permissions{}, nil
			}
			return nil, errors.New("unknown key")
		},
	}
	conf.AddHostKey(hostSigner)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().(*net.TCPAddr)
	knownHosts := filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(addr.String())}, hostSigner.PublicKey())
	if err := os.WriteFile(knownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	s := &sshServer{cfg: remote.Config{
		Host:              "ssh-local",
		Address:           "127.0.0.1",
		Port:              addr.Port,
		User:              "root", // no sudo: commands run as the test's user
		IdentityFiles:     []string{keyPath},
		IdentitiesOnly:    true,
		AgentSocket:       "none",
		KnownHostsFile:    knownHosts,
		SSHConfigFile:     "none",
		ProxyJump:         "none",
		ConnectTimeout:    5 * time.Second,
		KeepAliveInterval: -1,
		Attempts:          1,
	}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serveConn(c, conf)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		s.dropConnections()
		wg.Wait()
	})
	return s
}

// dropConnections cuts every connection from the server's side.
func (s *sshServer) dropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.conns = nil
}

func (s *sshServer) dial(t *testing.T) remote.Transport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr, err := remote.Dial(ctx, s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func (s *sshServer) serveConn(c net.Conn, conf *ssh.ServerConfig) {
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, conf)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "sessions only")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveSession(ch, chReqs)
		}()
	}
}

func serveSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			_ = req.Reply(false, nil)
			continue
		}
		var p struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &p); err != nil {
			_ = req.Reply(false, nil)
			continue
		}
		_ = req.Reply(true, nil)
		go ssh.DiscardRequests(reqs) // signals: the test's commands end with their input
		cmd := exec.Command("sh", "-c", p.Command)
		cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
		stdin, err := cmd.StdinPipe()
		code := 0
		if err == nil {
			err = cmd.Start()
		}
		if err == nil {
			go func() {
				_, _ = io.Copy(stdin, ch)
				_ = stdin.Close()
			}()
			err = cmd.Wait()
		}
		if err != nil {
			code = 255
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() >= 0 {
				code = ee.ExitCode()
			}
		}
		_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
		return
	}
}

func TestSSHServerRuns(t *testing.T) {
	s := startSSHServer(t)
	tr := s.dial(t)
	out, err := tr.Run(context.Background(), `read x; printf '%s|%s' "$x" "it's"; echo oops >&2`, nil)
	if err == nil && string(out) != "|it's" {
		t.Errorf("stdout %q", out)
	}
	if err != nil {
		t.Fatal(err)
	}
	_, err = tr.Run(context.Background(), "exit 3", nil)
	var ce *remote.CommandError
	if !errors.As(err, &ce) || ce.ExitCode != 3 {
		t.Errorf("exit 3: %v", err)
	}
}
