package remote

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// groupTag starts the line groupPrelude prints.
const groupTag = "etcdadm-command-group"

// groupPrelude goes before every command run over SSH: it prints, as the
// first line on stderr, the command's process group and its leader's start
// time, so that a command whose deadline passed can be killed on the host
// (sshd does not pass a signal on for root logins, and a user's signal
// cannot reach what runs through sudo). Shell builtins only.
const groupPrelude = `read -r s </proc/$$/stat; s=${s##*) }; set -- $s; g=$3; if read -r s </proc/$g/stat 2>/dev/null; then s=${s##*) }; set -- $s; printf '` + groupTag + ` %s %s\n' "$g" "${20}" >&2; fi; set --
`

// killGroupScript kills process group %[1]d, unless its leader is another
// process than the one that started at %[2]d: a number the kernel gave
// again. A group whose leader is gone keeps its number while any member
// lives.
const killGroupScript = `g=%[1]d; if [ -r /proc/$g/stat ]; then read -r s </proc/$g/stat; s=${s##*) }; set -- $s; [ "${20}" = %[2]d ] || exit 0; fi; kill -s KILL -- -$g 2>/dev/null; true`

// groupWriter passes a command's stderr on to w, but for the line of
// groupPrelude, which it keeps.
type groupWriter struct {
	w io.Writer

	mu         sync.Mutex
	head       []byte
	done       bool
	pgid, born int
}

func (g *groupWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := len(p)
	if !g.done {
		i := bytes.IndexByte(p, '\n')
		if i < 0 && len(g.head)+len(p) < 256 {
			g.head = append(g.head, p...)
			return n, nil
		}
		g.done = true
		var line []byte
		if i >= 0 {
			line, p = append(g.head, p[:i]...), p[i+1:]
		} else {
			line, p = append(g.head, p...), nil
		}
		g.head = nil
		f := strings.Fields(string(line))
		if len(f) == 3 && f[0] == groupTag {
			g.pgid, _ = strconv.Atoi(f[1])
			g.born, _ = strconv.Atoi(f[2])
		} else {
			if i >= 0 {
				line = append(line, '\n')
			}
			if _, err := g.w.Write(line); err != nil {
				return n, err
			}
		}
	}
	if len(p) > 0 {
		if _, err := g.w.Write(p); err != nil {
			return n, err
		}
	}
	return n, nil
}

// group is the process group the command reported, 0 for none.
func (g *groupWriter) group() (pgid, born int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pgid, g.born
}

// killGroup kills, on the host, the process group of a command whose
// deadline passed, through another session of the same connection.
func (t *sshTransport) killGroup(c *sshConn, group *groupWriter) {
	pgid, born := group.group()
	if pgid <= 1 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	script := fmt.Sprintf(killGroupScript, pgid, born)
	if _, err := runSSH(ctx, c.client, t.cfg.Host, script, wrapCommand(script, t.sudo), nil, nil); err != nil {
		t.log.Warn("could not kill a command whose deadline passed", "pgid", pgid, "err", err)
		return
	}
	t.log.Debug("killed a command whose deadline passed", "pgid", pgid)
}
