package remote

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// testServer is an in-process SSH server on loopback whose authentication
// the test chooses. Every command succeeds without running (so that sudo
// checks pass), and direct-tcpip channels to loopback are forwarded, so it
// serves as a jump host too.
type testServer struct {
	port       int
	knownHosts string // a known_hosts file trusting this server
	// cut is how many of the next session opens close their whole
	// connection instead, as an sshd whose session processes are killed
	// does; accepted counts the connections.
	cut      atomic.Int32
	accepted atomic.Int32
}

func startTestServer(t *testing.T, conf *ssh.ServerConfig) *testServer {
	t.Helper()
	hostSigner := newSigner(t)
	conf.AddHostKey(hostSigner)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	s := &testServer{port: addr.Port, knownHosts: filepath.Join(t.TempDir(), "known_hosts")}
	line := knownhosts.Line([]string{knownhosts.Normalize(addr.String())}, hostSigner.PublicKey())
	if err := os.WriteFile(s.knownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			s.accepted.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serveConn(c, conf)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

// config reaches the server as user, with nothing from the local user's
// ssh setup.
func (s *testServer) config(user string) Config {
	return Config{
		Host:              "test-" + user,
		Address:           "127.0.0.1",
		Port:              s.port,
		User:              user,
		KnownHostsFile:    s.knownHosts,
		SSHConfigFile:     "none",
		AgentSocket:       "none",
		ProxyJump:         "none",
		ConnectTimeout:    5 * time.Second,
		KeepAliveInterval: -1,
		Attempts:          1,
	}
}

func (s *testServer) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

func (s *testServer) serveConn(c net.Conn, conf *ssh.ServerConfig) {
	defer c.Close()
	sc, chans, reqs, err := ssh.NewServerConn(c, conf)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			if s.cut.Add(-1) >= 0 {
				c.Close()
				return
			}
			go serveTestSession(nc)
		case "direct-tcpip":
			go forwardTestChannel(nc)
		default:
			_ = nc.Reject(ssh.UnknownChannelType, "not served")
		}
	}
}

// serveTestSession answers every exec request with exit status 0.
func serveTestSession(nc ssh.NewChannel) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			_ = req.Reply(false, nil)
			continue
		}
		_ = req.Reply(true, nil)
		_, _ = ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, 0))
		return
	}
}

// forwardTestChannel connects a direct-tcpip channel to a loopback port.
func forwardTestChannel(nc ssh.NewChannel) {
	var p struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil || p.Host != "127.0.0.1" {
		_ = nc.Reject(ssh.Prohibited, "loopback only")
		return
	}
	conn, err := net.Dial("tcp", net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port))))
	if err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		conn.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	go func() {
		_, _ = io.Copy(ch, conn)
		_ = ch.CloseWrite()
	}()
	_, _ = io.Copy(conn, ch)
	conn.Close()
	ch.Close()
}

// passwords accepts each user's password, "pw-" + user, and counts the
// attempts per user.
type passwords struct {
	mu       sync.Mutex
	attempts map[string]int
}

func (p *passwords) check(c ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.attempts == nil {
		p.attempts = map[string]int{}
	}
	p.attempts[c.User()]++
	if string(pw) != "pw-"+c.User() {
		return nil, fmt.Errorf("wrong password for %s", c.User())
	}
	return nil, nil
}

// A connection that dies as a command's session opens (its sshd session
// processes killed, even right after a reconnect) is replaced, and the
// command, which never started, runs on the new one; Start likewise.
func TestCommandOnAConnectionThatDied(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	var pw passwords
	s := startTestServer(t, &ssh.ServerConfig{PasswordCallback: pw.check})
	cfg := s.config("root")
	cfg.KeyCache, cfg.AllowPassword = &KeyCache{}, true
	cfg.Password = func(string, string) ([]byte, error) { return []byte("pw-root"), nil }
	ctx := context.Background()
	tr, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	s.cut.Store(1)
	if _, err := tr.Run(ctx, "rm -f /var/lib/etcdadm/pending/etcd-restart", nil); err != nil {
		t.Fatalf("a command on a connection that died as its session opened: %v", err)
	}
	if n := s.accepted.Load(); n != 2 {
		t.Errorf("%d connections, want the first and the one that replaced it", n)
	}
	s.cut.Store(1)
	p, err := tr.Start(ctx, "cat")
	if err != nil {
		t.Fatalf("a process on a connection that died as its session opened: %v", err)
	}
	if err := p.Wait(); err != nil {
		t.Errorf("the process: %v", err)
	}
	// Dead twice: the command fails, once, without starting.
	s.cut.Store(2)
	if _, err := tr.Run(ctx, "true", nil); err == nil || !errors.Is(err, errNoSession) {
		t.Errorf("two dead connections in a row: %v, want the session's failure", err)
	}
}
