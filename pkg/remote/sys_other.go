//go:build !unix

package remote

import (
	"io/fs"
	"os"
	"os/exec"
)

// lockFile is a no-op where flock does not exist; appends stay O_APPEND.
func lockFile(*os.File) (unlock func(), err error) { return func() {}, nil }

// ownerOf is unknown where files have no numeric owner.
func ownerOf(fs.FileInfo) (uid, gid int) { return -1, -1 }

// killGroupOnCancel keeps exec's default where process groups do not exist.
func killGroupOnCancel(*exec.Cmd) {}

// setProcessGroup keeps exec's default where process groups do not exist.
func setProcessGroup(*exec.Cmd) {}

// killGroup kills the command alone where process groups do not exist.
func killGroup(c *exec.Cmd) error { return c.Process.Kill() }
