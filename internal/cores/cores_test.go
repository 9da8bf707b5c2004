package cores

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// Every index is called once, never more at once than there are cores.
func TestEach(t *testing.T) {
	var calls [50]atomic.Int32
	var running, most atomic.Int32
	Each(len(calls), func(i int) {
		n := running.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(time.Millisecond)
		calls[i].Add(1)
		running.Add(-1)
	})
	for i := range calls {
		if n := calls[i].Load(); n != 1 {
			t.Errorf("fn(%d) called %d times", i, n)
		}
	}
	if m := most.Load(); m > int32(runtime.GOMAXPROCS(0)) {
		t.Errorf("%d calls at once, more than the %d cores", m, runtime.GOMAXPROCS(0))
	}
}
