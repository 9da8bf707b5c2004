package certs

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// Lock takes the operator's PKI directory for one run, so that two runs on
// one workstation never write it, or the hosts, at the same time. The lock
// is the kernel's (flock): it ends with the process, however it ends. The
// directory is created (0700) if missing.
func Lock(dir string) (release func(), err error) {
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another etcdadm run is using the PKI in %s (and its hosts): wait for it to finish", dir)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
