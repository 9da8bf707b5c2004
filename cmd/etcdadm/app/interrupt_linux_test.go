package app

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/sys/unix"

	"github.com/etcdadm-io/etcdadm/internal/ptytest"
)

func openPTY(t *testing.T) (control, tty *os.File) { return ptytest.Open(t) }

func echoOn(t *testing.T, tty *os.File) bool { return ptytest.EchoOn(t, tty) }

func setEcho(t *testing.T, tty *os.File, on bool) {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if on {
		tio.Lflag |= unix.ECHO
	} else {
		tio.Lflag &^= unix.ECHO
	}
	if err := unix.IoctlSetTermios(int(tty.Fd()), unix.TCSETS, tio); err != nil {
		t.Fatal(err)
	}
}

// screen collects what a program writes to its terminal.
type screen struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *screen) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor waits until the screen shows want.
func (s *screen) waitFor(t *testing.T, want string, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); !strings.Contains(s.String(), want); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q on the terminal after %v; it shows:\n%s", want, within, s.String())
		}
	}
}

// passwordServer is an SSH server on loopback that only takes passwords,
// and none of them; it returns a known_hosts file that trusts it.
func passwordServer(t *testing.T, dir string) (port int, knownHosts string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	conf := &ssh.ServerConfig{PasswordCallback: func(ssh.ConnMetadata, []byte) (*ssh.Permissions, error) {
		return nil, errors.New("wrong password")
	}}
	conf.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				defer c.Close()
				_, _, _, _ = ssh.NewServerConn(c, conf)
			}()
		}
	}()
	addr := ln.Addr().String()
	knownHosts = filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(addr)}, signer.PublicKey())
	if err := os.WriteFile(knownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return ln.Addr().(*net.TCPAddr).Port, knownHosts
}

// Ctrl-C at a password prompt cancels the run: etcdadm exits with 130 and
// says so, asks nothing more (the other host waiting for its turn is not
// asked), and leaves the terminal's echo on.
func TestCtrlCAtPasswordPrompt(t *testing.T) {
	dir := t.TempDir()
	port, knownHosts := passwordServer(t, dir)
	inventory := fmt.Sprintf(`apiVersion: etcdadm/v1alpha1
kind: Cluster
metadata: {name: demo}
spec:
  ssh: {user: root, port: %d, knownHostsFile: %s}
  hosts:
  - {name: infra0, address: 127.0.0.1}
  - {name: infra1, address: 127.0.0.2, ssh: {host: 127.0.0.1}}
`, port, knownHosts)
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(inventory), 0o600); err != nil {
		t.Fatal(err)
	}

	control, tty := openPTY(t)
	var out screen
	go func() { _, _ = io.Copy(&out, control) }()
	cmd := exec.Command("etcdadm", "diff", "-f", "cluster.yaml", "--ask-password", "--ssh-config", "none")
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	out.waitFor(t, "'s password: ", 30*time.Second)
	if echoOn(t, tty) {
		t.Fatal("echo on while a password is asked")
	}
	if _, err := control.WriteString("\x03"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("etcdadm still running 10s after Ctrl-C at the prompt; the terminal shows:\n%s", out.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("exit code %d, want 130", code)
	}
	out.waitFor(t, "error: cancelled (interrupt)", 5*time.Second)
	if n := strings.Count(out.String(), "password: "); n != 1 {
		t.Errorf("%d password prompts, want 1, nothing asked after Ctrl-C; the terminal shows:\n%s", n, out.String())
	}
	if !echoOn(t, tty) {
		t.Error("echo left off after Ctrl-C at the prompt")
	}
}

// The first signal cancels the run's context; a second one puts the
// terminal back and exits at once with 130, whatever the run is doing.
func TestSecondInterruptExitsAtOnce(t *testing.T) {
	_, tty := openPTY(t)
	var errOut screen
	exits := make(chan int, 1)
	ctx, stop := interruptContext(context.Background(), Streams{In: tty, Out: &errOut, ErrOut: &errOut}, func(code int) { exits <- code })
	defer stop()

	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("context not cancelled by SIGINT")
	}
	sig := interruption(ctx)
	if sig == nil || sig.Error() != "cancelled (interrupt)" || sig.exitCode() != 130 {
		t.Fatalf("cause = %v, want cancelled (interrupt) with exit code 130", context.Cause(ctx))
	}
	select {
	case code := <-exits:
		t.Fatalf("exited with %d on the first signal", code)
	default:
	}

	// The run is stuck with echo off, as in a prompt that never returns.
	setEcho(t, tty, false)
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exits:
		if code != 130 {
			t.Errorf("exit code %d, want 130", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no exit on the second SIGINT")
	}
	if !echoOn(t, tty) {
		t.Error("echo left off by the exit on a second signal")
	}
	if s := errOut.String(); !strings.Contains(s, "again to exit at once") || !strings.Contains(s, "interrupt again: exiting") {
		t.Errorf("messages = %q", s)
	}
}
