// Package shell writes what etcdadm sends to a host's sh. It owns quoting
// and imports nothing of etcdadm.
package shell

import "strings"

// Quote quotes s as one word for sh.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
