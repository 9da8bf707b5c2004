package remote

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strings"
)

// Sha256 returns the hex SHA-256 of each of paths on the host, computed
// there in one command. Paths that do not exist are absent from the map;
// any other failure (a directory, an unreadable file) is an error.
func Sha256(ctx context.Context, t Transport, paths []string) (map[string]string, error) {
	sums := make(map[string]string, len(paths))
	if len(paths) == 0 {
		return sums, nil
	}
	cmd, err := sha256Command(paths)
	if err != nil {
		return nil, fmt.Errorf("hash files on %s: %w", t.Host(), err)
	}
	out, err := t.Run(ctx, cmd, nil)
	if err != nil {
		return nil, fmt.Errorf("hash files on %s: %w", t.Host(), err)
	}
	if err := parseSha256Output(out, sums); err != nil {
		return nil, fmt.Errorf("hash files on %s: %w", t.Host(), err)
	}
	return sums, nil
}

// sha256Command builds a script that skips missing files but fails on any
// other error, so a permission problem is not mistaken for an absent file.
func sha256Command(paths []string) (string, error) {
	var b strings.Builder
	b.WriteString("for f in")
	for _, p := range paths {
		// sha256sum escapes such names in its output, which would not parse back.
		if strings.ContainsAny(p, "\n\\") {
			return "", fmt.Errorf("path %q contains a newline or a backslash", p)
		}
		if !strings.HasPrefix(p, "/") {
			return "", fmt.Errorf("path %q is not absolute", p)
		}
		b.WriteString(" ")
		b.WriteString(shellQuote(p))
	}
	b.WriteString(`; do if [ -e "$f" ] || [ -L "$f" ]; then sha256sum -- "$f" || exit 1; fi; done`)
	return b.String(), nil
}

func parseSha256Output(out []byte, sums map[string]string) error {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		// "<64 hex>  <path>", or "<64 hex> *<path>" for binary mode.
		if len(line) < 67 || (line[64:66] != "  " && line[64:66] != " *") {
			return fmt.Errorf("unexpected sha256sum output %q", line)
		}
		sums[line[66:]] = line[:64]
	}
	return sc.Err()
}
