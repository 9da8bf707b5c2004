// Package writer is the end-to-end tests' witness of a running etcd cluster:
// it writes keys at a steady rate while the cluster is changed, then reports
// how long writes stalled and checks that no acknowledged write was lost.
package writer

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

const (
	defaultRate    = 100
	defaultPrefix  = "/etcdadm-writer/"
	defaultTimeout = 2 * time.Second

	// reloadEvery bounds how often a TLS failure may rebuild the client.
	reloadEvery = time.Second
	// maxErrorLen trims error messages so a verbose one cannot flood the report.
	maxErrorLen = 200
	// maxDistinctErrors caps the error map: x509 messages embed the current time.
	maxDistinctErrors = 20
	otherErrors       = "(other errors)"

	verifyFor   = 30 * time.Second
	verifyPause = 500 * time.Millisecond
	pageSize    = 10000
	pageTimeout = 5 * time.Second
)

// Options configure a Writer.
type Options struct {
	// Endpoints are etcd client URLs, e.g. https://198.18.0.10:2379.
	Endpoints []string
	// TLS is nil for plain http endpoints.
	TLS *tls.Config
	// Reload, when set, is called after a write failed with a TLS or x509
	// error (certificate expired, unknown authority, bad certificate...), or
	// after two writes in a row failed (etcd's client often reports a failing
	// handshake only as a deadline); the writer then builds a new client with
	// the returned config. At most once per second.
	Reload func() (*tls.Config, error)
	// Rate is writes per second, default 100.
	Rate int
	// Prefix is the key prefix, default "/etcdadm-writer/".
	Prefix string
	// Timeout bounds each write, default 2s.
	Timeout time.Duration
	// Dialer is optional, passed to grpc.WithContextDialer.
	Dialer func(ctx context.Context, addr string) (net.Conn, error)
}

// Writer puts one key after another into etcd until stopped.
type Writer struct {
	o     Options
	runID string

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	verifyMu sync.Mutex

	// Owned by the writing goroutine until done is closed.
	cli        *clientv3.Client
	watch      *tlsWatch
	tls        *tls.Config
	clientAt   time.Time
	lastReload time.Time
	// failStreak counts the writes that failed since the last ack.
	failStreak int
	acked      []ack
	attempted  int
	failed     int
	failedAt   []time.Time
	reloads    int
	errs       map[string]int
	first      time.Time
	lastAck    time.Time
	longest    time.Duration
	gapStart   time.Time
	report     Report
}

type ack struct {
	key, value string
	at         time.Time
}

// Report is what a Writer saw between Start and Stop.
type Report struct {
	Attempted, Acknowledged, Failed int
	// Duration runs from the first write attempt to the end of the last one.
	Duration time.Duration
	// Rate is acknowledged writes per second over Duration.
	Rate float64
	// LongestGap is the longest time without a successful write: between
	// consecutive acks, from the first attempt to the first ack, and from the
	// last ack to the end.
	LongestGap time.Duration
	// GapStart is when the longest gap began.
	GapStart time.Time
	// Errors counts the distinct messages of failed writes (trimmed); failed
	// TLS reloads are counted under "reload: ...".
	Errors map[string]int
	// Reloads counts clients rebuilt from Options.Reload after TLS failures.
	Reloads int
	// FailedAt are when the failed writes began, in order.
	FailedAt []time.Time
}

// Verification is the result of reading the acknowledged keys back.
type Verification struct {
	Checked int
	// Missing lists acknowledged keys that are absent.
	Missing []string
	// Wrong lists acknowledged keys whose value differs.
	Wrong []string
}

// Start checks o, connects and begins writing at once in a goroutine; ctx
// cancellation aborts writing like Stop, but also the write in flight.
func Start(ctx context.Context, o Options) (*Writer, error) {
	if len(o.Endpoints) == 0 {
		return nil, errors.New("writer: no etcd endpoints")
	}
	if o.Rate == 0 {
		o.Rate = defaultRate
	}
	if o.Rate < 0 || o.Rate > int(time.Second) {
		return nil, fmt.Errorf("writer: rate %d/s out of range", o.Rate)
	}
	if o.Prefix == "" {
		o.Prefix = defaultPrefix
	}
	if o.Timeout == 0 {
		o.Timeout = defaultTimeout
	}
	if o.Timeout < 0 {
		return nil, fmt.Errorf("writer: negative timeout %v", o.Timeout)
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("writer: run id: %w", err)
	}
	cli, watch, err := newClient(o.Endpoints, o.TLS, o.Dialer)
	if err != nil {
		return nil, fmt.Errorf("writer: %w", err)
	}
	w := &Writer{
		o:        o,
		runID:    hex.EncodeToString(id),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		cli:      cli,
		watch:    watch,
		tls:      o.TLS,
		clientAt: time.Now(),
		errs:     map[string]int{},
	}
	go w.run(ctx)
	return w, nil
}

// Stop stops writing and returns the report; the write in flight, if any,
// finishes first (at most Timeout). Stop is idempotent.
func (w *Writer) Stop() Report {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.done
	return w.report
}

func (w *Writer) run(ctx context.Context) {
	defer close(w.done)
	tick := time.NewTicker(time.Second / time.Duration(w.o.Rate))
	defer tick.Stop()
	for seq := 1; ; seq++ {
		w.write(ctx, seq)
		// Checked first so a pending tick cannot win over Stop.
		select {
		case <-w.stop:
			w.finish()
			return
		default:
		}
		// A tick that came due during a slow write starts the next write at
		// once; Ticker drops the others, so there is no catch-up burst.
		select {
		case <-w.stop:
			w.finish()
			return
		case <-ctx.Done():
			w.finish()
			return
		case <-tick.C:
		}
	}
}

func (w *Writer) write(ctx context.Context, seq int) {
	key := w.o.Prefix + fmt.Sprintf("%08d", seq)
	value := fmt.Sprintf("%s/%08d", w.runID, seq)
	began := time.Now()
	if w.first.IsZero() {
		w.first, w.lastAck, w.gapStart = began, began, began
	}
	wctx, cancel := context.WithTimeout(ctx, w.o.Timeout)
	_, err := w.cli.Put(wctx, key, value)
	cancel()
	now := time.Now()
	if err != nil && ctx.Err() != nil {
		// Aborted by the caller: neither acknowledged nor a failure of etcd.
		return
	}
	w.attempted++
	if err == nil {
		w.failStreak = 0
		w.acked = append(w.acked, ack{key: key, value: value, at: now})
		w.noteGap(now)
		return
	}
	w.failed++
	w.failedAt = append(w.failedAt, began)
	w.failStreak++
	msg := err.Error()
	since := w.lastAck
	if w.clientAt.After(since) {
		since = w.clientAt
	}
	cause := w.watch.since(since)
	if cause != nil && !isTLSFailure(msg) {
		// etcd's client hides a failing handshake behind the deadline error.
		msg += " (last TLS failure: " + cause.Error() + ")"
	}
	w.countError(msg)
	if w.o.Reload == nil || (cause == nil && !isTLSFailure(err.Error()) && w.failStreak < 2) || now.Sub(w.lastReload) < reloadEvery {
		return
	}
	w.lastReload = now
	if err := w.reload(); err != nil {
		w.countError("reload: " + err.Error())
		return
	}
	w.reloads++
}

// noteGap ends the current stretch without an ack at t.
func (w *Writer) noteGap(t time.Time) {
	if gap := t.Sub(w.lastAck); gap > w.longest {
		w.longest, w.gapStart = gap, w.lastAck
	}
	w.lastAck = t
}

func (w *Writer) countError(msg string) {
	if len(msg) > maxErrorLen {
		msg = msg[:maxErrorLen] + "..."
	}
	if _, seen := w.errs[msg]; !seen && len(w.errs) >= maxDistinctErrors {
		msg = otherErrors
	}
	w.errs[msg]++
}

func (w *Writer) reload() error {
	cfg, err := w.o.Reload()
	if err != nil {
		return fmt.Errorf("reload TLS config: %w", err)
	}
	cli, watch, err := newClient(w.o.Endpoints, cfg, w.o.Dialer)
	if err != nil {
		return err
	}
	_ = w.cli.Close()
	w.cli, w.watch, w.tls, w.clientAt = cli, watch, cfg, time.Now()
	return nil
}

func (w *Writer) finish() {
	end := time.Now()
	_ = w.cli.Close()
	r := Report{
		Attempted:    w.attempted,
		Acknowledged: len(w.acked),
		Failed:       w.failed,
		FailedAt:     w.failedAt,
		Errors:       w.errs,
		Reloads:      w.reloads,
	}
	if !w.first.IsZero() {
		w.noteGap(end)
		r.Duration = end.Sub(w.first)
		r.LongestGap, r.GapStart = w.longest, w.gapStart
		if r.Duration > 0 {
			r.Rate = float64(r.Acknowledged) / r.Duration.Seconds()
		}
	}
	w.report = r
}

// String is one line for test logs.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "acked %d/%d (%.1f/s over %v), longest gap %v", r.Acknowledged, r.Attempted, r.Rate,
		r.Duration.Round(time.Millisecond), r.LongestGap.Round(time.Millisecond))
	if !r.GapStart.IsZero() {
		fmt.Fprintf(&b, " at %s", r.GapStart.Format("15:04:05.000"))
	}
	if r.Reloads > 0 {
		fmt.Fprintf(&b, ", %d TLS reloads", r.Reloads)
	}
	if r.Failed > 0 || len(r.Errors) > 0 {
		fmt.Fprintf(&b, ", %d failed", r.Failed)
		msgs := make([]string, 0, len(r.Errors))
		for m := range r.Errors {
			msgs = append(msgs, m)
		}
		slices.SortFunc(msgs, func(a, c string) int {
			if r.Errors[a] != r.Errors[c] {
				return r.Errors[c] - r.Errors[a]
			}
			return strings.Compare(a, c)
		})
		for i, m := range msgs {
			if i == 3 {
				fmt.Fprintf(&b, "; %d more distinct", len(msgs)-i)
				break
			}
			sep := "; "
			if i == 0 {
				sep = ": "
			}
			fmt.Fprintf(&b, "%s%s ×%d", sep, m, r.Errors[m])
		}
	}
	return b.String()
}

// OK reports whether every acknowledged write was read back intact.
func (v Verification) OK() bool { return len(v.Missing) == 0 && len(v.Wrong) == 0 }

// String is one line for test logs.
func (v Verification) String() string {
	s := fmt.Sprintf("checked %d acknowledged keys: %d missing, %d wrong", v.Checked, len(v.Missing), len(v.Wrong))
	if len(v.Missing) > 0 {
		s += fmt.Sprintf("; first missing %s", v.Missing[0])
	}
	if len(v.Wrong) > 0 {
		s += fmt.Sprintf("; first wrong %s", v.Wrong[0])
	}
	return s
}

// Verify stops the writer if it still runs, then reads every acknowledged key
// back with a fresh client and the current TLS config. Keys present but never
// acknowledged are fine: a write that timed out may still have been applied.
func (w *Writer) Verify(ctx context.Context) (Verification, error) {
	w.Stop()
	// readBack may swap in a reloaded TLS config.
	w.verifyMu.Lock()
	defer w.verifyMu.Unlock()
	got, err := w.readBack(ctx)
	if err != nil {
		return Verification{}, err
	}
	v := Verification{Checked: len(w.acked)}
	for _, a := range w.acked {
		value, ok := got[a.key]
		switch {
		case !ok:
			v.Missing = append(v.Missing, a.key)
		case value != a.value:
			v.Wrong = append(v.Wrong, a.key)
		}
	}
	return v, nil
}

// readBack retries for verifyFor because the cluster may still be settling.
func (w *Writer) readBack(ctx context.Context) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, verifyFor)
	defer cancel()
	var lastReload time.Time
	for attempt := 1; ; attempt++ {
		cli, watch, err := newClient(w.o.Endpoints, w.tls, w.o.Dialer)
		if err != nil {
			return nil, err
		}
		began := time.Now()
		got, err := readPrefix(ctx, cli, w.o.Prefix)
		_ = cli.Close()
		if err == nil {
			return got, nil
		}
		cause := watch.since(began)
		if cause != nil && !isTLSFailure(err.Error()) {
			err = fmt.Errorf("%w (last TLS failure: %v)", err, cause)
		}
		if w.o.Reload != nil && isTLSFailure(err.Error()) && time.Since(lastReload) >= reloadEvery {
			lastReload = time.Now()
			if cfg, rerr := w.o.Reload(); rerr == nil {
				w.tls = cfg
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("read back %s from %v (%d attempts): %w", w.o.Prefix, w.o.Endpoints, attempt, err)
		case <-time.After(verifyPause):
		}
	}
}

// readPrefix pages through prefix at the revision of the first page, so the
// pages form one linearizable snapshot.
func readPrefix(ctx context.Context, cli *clientv3.Client, prefix string) (map[string]string, error) {
	end := clientv3.GetPrefixRangeEnd(prefix)
	got := map[string]string{}
	key := prefix
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(pageSize)}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		pctx, cancel := context.WithTimeout(ctx, pageTimeout)
		resp, err := cli.Get(pctx, key, opts...)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("range [%q, %q) at revision %d: %w", key, end, rev, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			got[string(kv.Key)] = string(kv.Value)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return got, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

func newClient(endpoints []string, cfg *tls.Config, dialer func(context.Context, string) (net.Conn, error)) (*clientv3.Client, *tlsWatch, error) {
	watch := &tlsWatch{}
	var opts []grpc.DialOption
	if dialer != nil {
		opts = append(opts, grpc.WithContextDialer(dialer))
	}
	if secure(endpoints[0], cfg) {
		// Appended after the client's own credentials, so it replaces them.
		opts = append(opts, grpc.WithTransportCredentials(watch.credentials(cfg)))
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: endpoints,
		TLS:       cfg,
		Logger:    zap.NewNop(),
		// A member that vanishes without a reset must not hold writes for minutes.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		DialOptions:          opts,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("etcd client for %v: %w", endpoints, err)
	}
	return cli, watch, nil
}

// secure mirrors clientv3's choice: the first endpoint's scheme decides for
// the whole balancer, and a bare host:port is secure when TLS is configured.
func secure(endpoint string, cfg *tls.Config) bool {
	ep := strings.ToLower(endpoint)
	switch {
	case strings.HasPrefix(ep, "http://"), strings.HasPrefix(ep, "unix://"):
		return false
	case strings.HasPrefix(ep, "https://"), strings.HasPrefix(ep, "unixs://"):
		return true
	default:
		return cfg != nil
	}
}

// isTLSFailure tells certificate and handshake problems, which a new TLS
// config may fix, from the rest.
func isTLSFailure(msg string) bool {
	msg = strings.ToLower(msg)
	for _, s := range []string{"tls:", "x509:", "certificate", "authentication handshake failed"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
