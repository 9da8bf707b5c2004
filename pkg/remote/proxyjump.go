package remote

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// jumpSpec is one hop of a ProxyJump list as written: [user@]host[:port],
// or ssh://[user@]host[:port]. Port 0 and user "" mean "not given".
type jumpSpec struct {
	User string
	Host string
	Port int
}

func (j jumpSpec) String() string {
	s := j.Host
	if strings.Contains(s, ":") {
		s = "[" + s + "]"
	}
	if j.User != "" {
		s = j.User + "@" + s
	}
	if j.Port != 0 {
		s += ":" + strconv.Itoa(j.Port)
	}
	return s
}

// parseProxyJump parses a comma-separated ProxyJump value, as OpenSSH does.
// "" and "none" mean no jump host.
func parseProxyJump(v string) ([]jumpSpec, error) {
	v = strings.TrimSpace(v)
	if v == "" || strings.EqualFold(v, "none") {
		return nil, nil
	}
	var hops []jumpSpec
	for _, part := range strings.Split(v, ",") {
		hop, err := parseJumpHop(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("proxy jump %q: %w", v, err)
		}
		hops = append(hops, hop)
	}
	return hops, nil
}

func parseJumpHop(s string) (jumpSpec, error) {
	if s == "" {
		return jumpSpec{}, fmt.Errorf("empty hop")
	}
	s = strings.TrimPrefix(s, "ssh://")
	var j jumpSpec
	if at := strings.LastIndex(s, "@"); at >= 0 {
		j.User, s = s[:at], s[at+1:]
		if j.User == "" {
			return jumpSpec{}, fmt.Errorf("empty user in hop %q", s)
		}
	}
	host, port := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return jumpSpec{}, fmt.Errorf("missing ] in hop %q", s)
		}
		host, port = s[1:end], strings.TrimPrefix(s[end+1:], ":")
		if rest := s[end+1:]; rest != "" && !strings.HasPrefix(rest, ":") {
			return jumpSpec{}, fmt.Errorf("unexpected %q after ] in hop %q", rest, s)
		}
	case strings.Count(s, ":") == 1:
		host, port, _ = strings.Cut(s, ":")
	case strings.Count(s, ":") > 1 && net.ParseIP(s) == nil:
		return jumpSpec{}, fmt.Errorf("hop %q: write an IPv6 address with a port as [addr]:port", s)
	}
	if host == "" || strings.ContainsAny(host, " \t/") {
		return jumpSpec{}, fmt.Errorf("invalid host in hop %q", s)
	}
	j.Host = host
	if port != "" {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			return jumpSpec{}, fmt.Errorf("invalid port %q in hop %q", port, s)
		}
		j.Port = p
	}
	return j, nil
}
