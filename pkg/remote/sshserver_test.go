package remote

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
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
			wg.Add(1)
			go func() {
				defer wg.Done()
				serveTestConn(c, conf)
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

func serveTestConn(c net.Conn, conf *ssh.ServerConfig) {
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
