package certs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Lock takes the operator's PKI directory for one run, so that two runs on
// one workstation never write it, or the hosts, at the same time. The lock
// is the kernel's (flock) on the directory that holds the PKI directory, so
// that taking it creates nothing, even when the PKI does not exist yet; it
// ends with the process, however that ends.
func Lock(dir string) (release func(), err error) {
	holder := filepath.Dir(filepath.Clean(dir))
	for {
		if st, err := os.Stat(holder); err == nil && st.IsDir() {
			break
		}
		parent := filepath.Dir(holder)
		if parent == holder {
			break
		}
		holder = parent
	}
	f, err := os.Open(holder)
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
