package ops

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/etcdadm-io/etcdadm/internal/shell"
)

// PutBack copies back, over the files this run replaced on the host, the
// copies it kept of those whose path keep accepts, each atomically (a copy
// next to it, renamed): what a rollback puts back besides the start file.
// It returns the paths put back.
func PutBack(ctx context.Context, e Env, keep func(path string) bool) ([]string, error) {
	var b strings.Builder
	var done []string
	q := shell.Quote
	b.WriteString("set -e\n")
	for _, f := range e.Replaced() {
		if !keep(f.Path) || slices.Contains(done, f.Path) {
			continue
		}
		tmp := path.Join(path.Dir(f.Path), "."+path.Base(f.Path)+".etcdadm-rollback.tmp")
		fmt.Fprintf(&b, "cp -p %s %s && mv -f %s %s\n", q(f.Backup), q(tmp), q(tmp), q(f.Path))
		done = append(done, f.Path)
	}
	if len(done) == 0 {
		return nil, nil
	}
	if _, err := e.Transport().Run(ctx, b.String(), nil); err != nil {
		return nil, fmt.Errorf("put back %s: %w", strings.Join(done, ", "), err)
	}
	return done, nil
}
