package ops

import (
	"context"
	"fmt"
	"io/fs"
)

// KindMkdir creates a directory with its mode.
const KindMkdir Kind = "mkdir"

// Mkdir creates Path, and its missing parents, with Mode.
type Mkdir struct {
	Path string      `json:"path"`
	Mode fs.FileMode `json:"-"`
}

func (Mkdir) Kind() Kind       { return KindMkdir }
func (Mkdir) Meta() Meta       { return Meta{} }
func (o Mkdir) String() string { return fmt.Sprintf("mkdir %s (%04o)", o.Path, o.Mode.Perm()) }

func mkdir(ctx context.Context, e Env, o Mkdir) error {
	if err := e.Transport().MkdirAll(ctx, o.Path, o.Mode); err != nil {
		return fmt.Errorf("create %s: %w", o.Path, err)
	}
	return nil
}
