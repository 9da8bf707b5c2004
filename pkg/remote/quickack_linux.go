package remote

import (
	"net"
	"syscall"
)

// quickAck acknowledges at once every segment the host sends on conn.
//
// sshd sets TCP_NODELAY only for sessions with a terminal: a command's
// reply, output and exit status leave in small segments, each held by
// Nagle's algorithm until the one before is acknowledged. Linux delays that
// acknowledgement by up to 40 ms while a connection trades requests and
// answers, as an SSH connection just authenticated does, so every command
// started right after connecting waited 40 ms or more for nothing.
// TCP_QUICKACK does not stick (the kernel goes back to delaying), so it is
// set again after every read; a read that leaves an acknowledgement pending
// sends it then.
func quickAck(conn net.Conn) net.Conn {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return conn
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return conn
	}
	c := &quickAckConn{TCPConn: tc, raw: raw}
	c.set()
	return c
}

type quickAckConn struct {
	*net.TCPConn
	raw syscall.RawConn
}

func (c *quickAckConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	if n > 0 {
		c.set()
	}
	return n, err
}

func (c *quickAckConn) set() {
	_ = c.raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
