// Package cores spreads pure work over the machine's cores. It imports
// nothing of etcdadm.
package cores

import (
	"runtime"
	"sync"
)

// Each calls fn(0) to fn(n-1), as many at once as the machine has cores,
// and returns once every call has.
func Each(n int, fn func(i int)) {
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}
