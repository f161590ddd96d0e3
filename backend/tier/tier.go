// Package tier is a storage layer whose one job is to make several stores
// (profiles) look like one: reads are served by the fastest healthy profile
// that has the object, writes go to all of them, and the faster profiles
// are kept as caches of the slowest, authoritative one.
//
// # Profiles and the origin
//
// A Tier is built over an ordered list of profiles, each a named
// *blob.Bucket. By convention the LAST profile is the origin: the source of
// truth that listings come from and that cached copies are checked against.
// The others are caches (a local disk, a nearby bucket, ...). The Tier owns
// the buckets: Close closes them.
//
// # Reads
//
// Attributes and NewRangeReader try the profiles in speed order: healthy
// profiles by ascending latency, then the unhealthy ones. Latency is an
// exponentially weighted moving average of the time each Attributes call
// and reader open takes (seeded by one timed IsAccessible probe per profile
// in New), so the order follows the stores as they are, not as they were.
// A call that fails (anything but NotFound, and not the caller's own
// cancellation) marks its profile unhealthy for a backoff that doubles with
// each consecutive failure (Options.Backoff up to Options.MaxBackoff).
//
// A miss (NotFound) or failure moves on to the next profile. A hit on a
// slower profile is written back (copied) to the faster profiles that said
// NotFound, in the background: jobs go to a queue of Options.QueueSize
// entries served by Options.Workers goroutines; when the queue is full (or
// QueueSize+Workers jobs are queued, running or waiting to retry) the job
// is dropped and counted (Status), so a read never waits for it. The same
// write-back is not queued twice. A failed write-back is logged (log/slog)
// and retried with jittered exponential backoff (Options.RetryWait up to
// Options.MaxRetryWait) at most Options.Retries times, then given up.
//
// A profile with a pending repair for a key (see Writes) is known not to
// hold the current version and is skipped for that key.
//
// # Staleness
//
// A cached copy can go stale when the origin is changed by someone else.
// When a read is served by a profile other than the origin, and the key has
// not been checked for Options.CheckInterval (30 s by default), the origin's
// Attributes are fetched concurrently with the cache's call, so the checked
// read costs the slower of the two calls rather than their sum, and other
// reads of the key in the interval cost nothing extra. Sizes and
// modification times are compared (ETags of different stores are not
// comparable): the copy is stale if its size differs or the origin's ModTime
// is later than the copy's by more than Options.ModTimeSlack (2 s, for clock
// differences between stores; an origin overwrite of the same size within
// that slack goes unnoticed). A stale copy is deleted, the read is served by
// the origin and a fresh copy is written back. A copy the origin no longer
// has is deleted too. If the origin cannot be reached the cached copy is
// served. Writes through the Tier close the origin's upload first, so the
// copies they leave in caches are never older than the origin's, and count
// as a check of the key. A key whose origin copy awaits a repair (the
// origin missed a write the cache has) is not checked.
//
// A cached copy that fails while being read (after it was opened) is
// abandoned for the next profile, which continues at the same offset, and
// is repaired from it.
//
// # Writes, copies and deletes
//
// NewTypedWriter, Copy and Delete go to every profile, and Options.Policy
// decides the result: All (every profile must succeed), Any (one is enough)
// or Primary (the FIRST profile must succeed; the others are best effort —
// with the origin last, Primary is write-back caching: the origin is
// brought up to date by repairs). A profile that missed an operation that
// another profile carried out is recorded for repair and brought up to date
// in the background (a re-copy from a profile that has the object, or a
// re-delete), through the same bounded queue and retries as write-backs;
// the newest operation on a key replaces an older pending repair, and
// Status reports how many repairs are pending and how many were dropped.
// IfNotExist is decided by the origin alone: its upload is committed first
// and, if it fails, no other profile commits. Under All, the others are not
// committed either when the origin's upload fails.
//
// BeforeWrite is called once per profile (each profile's driver calls it).
// BeforeDelete and BeforeCopy are called once, by the origin's driver; the
// other profiles follow its verdict.
//
// A copy (write-back or repair) that overlaps a write or delete of the same
// key through the Tier is abandoned before its upload is committed, so it
// does not put an older version over a newer one (the window between that
// check and the commit remains).
//
// # Close
//
// Close lets queued jobs run for up to Options.CloseTimeout, then abandons
// the rest (and any waiting retries), stops the workers and closes the
// buckets.
//
// # Listing
//
// ListPaged lists the origin, so the tree shows what the origin holds; if
// the origin fails, the next profile (from the last towards the first) is
// listed instead. A page token names the profile it came from.
//
// SignedURL, As and ErrorAs refer to the origin.
package tier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapefs/tapefs/backend/layer"
	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/gcerrors"
)

// Profile is one store of the tier.
type Profile struct {
	Name   string
	Bucket *blob.Bucket
}

// WritePolicy decides when a write, copy or delete that goes to every
// profile succeeds.
type WritePolicy int

const (
	// All: the operation fails if any profile fails.
	All WritePolicy = iota
	// Any: the operation succeeds if at least one profile succeeded.
	Any
	// Primary: the first profile must succeed; the others are best effort.
	Primary
)

func (p WritePolicy) String() string {
	switch p {
	case All:
		return "all"
	case Any:
		return "any"
	case Primary:
		return "primary"
	}
	return fmt.Sprintf("WritePolicy(%d)", int(p))
}

// ParsePolicy reads a policy name: all, any or primary.
func ParsePolicy(s string) (WritePolicy, error) {
	for _, p := range []WritePolicy{All, Any, Primary} {
		if s == p.String() {
			return p, nil
		}
	}
	return 0, fmt.Errorf("write policy %q: want all, any or primary", s)
}

// Defaults of Options.
const (
	DefaultCheckInterval = 30 * time.Second
	DefaultModTimeSlack  = 2 * time.Second
	DefaultQueueSize     = 1024
	DefaultWorkers       = 4
	DefaultRetries       = 5
	DefaultRetryWait     = time.Second
	DefaultMaxRetryWait  = time.Minute
	DefaultBackoff       = time.Second
	DefaultMaxBackoff    = time.Minute
	DefaultAlpha         = 0.2
	DefaultProbeTimeout  = 10 * time.Second
	DefaultCloseTimeout  = 5 * time.Second
	DefaultMaxRepairs    = 100000
)

// Options configure a Tier. The zero value means the defaults.
type Options struct {
	Policy WritePolicy
	// CheckInterval: a key's cached copy is checked against the origin at
	// most once per interval. Negative: never checked.
	CheckInterval time.Duration
	// ModTimeSlack: how much later the origin's ModTime may be than a
	// copy's before the copy counts as stale. Negative: none.
	ModTimeSlack time.Duration
	// QueueSize bounds the background jobs (write-backs, repairs) waiting
	// for a worker; Workers is how many run at once.
	QueueSize int
	Workers   int
	// Retries bounds the tries of one background job after the first;
	// RetryWait is the first wait, doubled up to MaxRetryWait.
	Retries      int
	RetryWait    time.Duration
	MaxRetryWait time.Duration
	// Backoff is how long a failing profile is tried last, doubled for each
	// consecutive failure up to MaxBackoff.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// Alpha is the weight of a new latency sample in the average (0 < Alpha <= 1).
	Alpha float64
	// ProbeTimeout bounds the probe of each profile in New.
	ProbeTimeout time.Duration
	// CloseTimeout bounds how long Close lets queued jobs finish before it
	// abandons them.
	CloseTimeout time.Duration
	// MaxRepairs bounds the pending repairs; beyond it a repair is dropped
	// and counted.
	MaxRepairs int
	// Logger receives write-back and repair failures (nil: slog.Default()).
	Logger *slog.Logger
}

func (o *Options) fill() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.CheckInterval, DefaultCheckInterval)
	def(&o.ModTimeSlack, DefaultModTimeSlack)
	if o.ModTimeSlack < 0 {
		o.ModTimeSlack = 0
	}
	def(&o.RetryWait, DefaultRetryWait)
	def(&o.MaxRetryWait, DefaultMaxRetryWait)
	def(&o.Backoff, DefaultBackoff)
	def(&o.MaxBackoff, DefaultMaxBackoff)
	def(&o.ProbeTimeout, DefaultProbeTimeout)
	def(&o.CloseTimeout, DefaultCloseTimeout)
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.Retries < 0 {
		o.Retries = 0
	} else if o.Retries == 0 {
		o.Retries = DefaultRetries
	}
	if o.Alpha <= 0 || o.Alpha > 1 {
		o.Alpha = DefaultAlpha
	}
	if o.MaxRepairs <= 0 {
		o.MaxRepairs = DefaultMaxRepairs
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

type profile struct {
	name string
	b    *blob.Bucket
	base layer.Base

	mu        sync.Mutex
	ewma      float64 // nanoseconds
	fails     int     // consecutive
	downUntil time.Time
	lastErr   string

	pendingWB      atomic.Int64
	droppedWB      atomic.Int64
	droppedRepairs atomic.Int64
}

// Tier is the tiered bucket driver; use it with blob.NewBucket.
type Tier struct {
	ps     []*profile
	origin int
	opts   Options
	log    *slog.Logger
	now    func() time.Time

	jobs    chan job
	ctx     context.Context // ends when background work is abandoned
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	pending atomic.Int64 // queued, running or waiting to retry
	closed  atomic.Bool

	mu       sync.Mutex
	checked  map[string]time.Time
	inflight map[jobKey]bool    // write-backs queued or running
	repairs  map[jobKey]*repair // pending repairs by target and key
	byKey    map[string]int     // pending repairs per key

	gen [256]atomic.Uint64 // bumped by writes and deletes, by key hash

	droppedRepairs atomic.Int64
}

var _ driver.Bucket = (*Tier)(nil)

type jobKey struct {
	target int
	key    string
}

type repair struct {
	del bool // re-delete; otherwise re-copy from src
	src int
}

type job struct {
	jobKey
	repair  bool
	src     int // write-backs: the profile that had the object
	attempt int
}

// New builds a tier over profiles (the last one is the origin), probing
// each once to seed its latency. A profile that does not answer starts
// unhealthy; New fails only without profiles or with a nil bucket.
func New(ctx context.Context, profiles []Profile, opts Options) (*Tier, error) {
	if len(profiles) == 0 {
		return nil, errors.New("tier: no profiles")
	}
	opts.fill()
	t := &Tier{origin: len(profiles) - 1, opts: opts, log: opts.Logger, now: time.Now,
		jobs: make(chan job, opts.QueueSize), checked: map[string]time.Time{},
		inflight: map[jobKey]bool{}, repairs: map[jobKey]*repair{}, byKey: map[string]int{}}
	for i, p := range profiles {
		if p.Bucket == nil {
			return nil, fmt.Errorf("tier: profile %d (%q) has no bucket", i, p.Name)
		}
		name := p.Name
		if name == "" {
			name = fmt.Sprintf("profile%d", i)
		}
		t.ps = append(t.ps, &profile{name: name, b: p.Bucket, base: layer.Base{Inner: p.Bucket}})
	}
	var wg sync.WaitGroup
	for i, p := range t.ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, opts.ProbeTimeout)
			defer cancel()
			start := time.Now()
			ok, err := p.b.IsAccessible(pctx)
			d := time.Since(start)
			p.mu.Lock()
			p.ewma = float64(d)
			p.mu.Unlock()
			if err == nil && !ok {
				err = errors.New("bucket does not exist")
			}
			if err != nil {
				t.fail(i, err, d)
			}
		}()
	}
	wg.Wait()
	t.ctx, t.cancel = context.WithCancel(context.Background())
	for range opts.Workers {
		t.wg.Add(1)
		go t.worker()
	}
	return t, nil
}

// ---- speed and health ----

// observe records a call to profile i that took d and ended with err.
func (t *Tier) observe(ctx context.Context, i int, d time.Duration, err error) {
	if storeFault(err) {
		if ctx.Err() != nil {
			return // the caller gave up; says nothing about the store
		}
		t.fail(i, err, d)
		return
	}
	p := t.ps[i]
	p.mu.Lock()
	p.ewma = t.opts.Alpha*float64(d) + (1-t.opts.Alpha)*p.ewma
	p.fails = 0
	p.downUntil = time.Time{}
	p.mu.Unlock()
}

// storeFault reports whether err says something is wrong with the store
// (rather than with the request or the object).
func storeFault(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, errSuperseded) {
		return false
	}
	switch gcerrors.Code(err) {
	case gcerrors.NotFound, gcerrors.AlreadyExists, gcerrors.InvalidArgument,
		gcerrors.FailedPrecondition, gcerrors.Canceled, gcerrors.Unimplemented:
		return false
	}
	return true
}

// recovered clears profile i's failure state after a background success.
func (t *Tier) recovered(i int) {
	p := t.ps[i]
	p.mu.Lock()
	p.fails = 0
	p.downUntil = time.Time{}
	p.mu.Unlock()
}

func (t *Tier) fail(i int, err error, d time.Duration) {
	p := t.ps[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	if d > 0 {
		p.ewma = t.opts.Alpha*float64(d) + (1-t.opts.Alpha)*p.ewma
	}
	p.fails++
	b := t.opts.Backoff
	for n := 1; n < p.fails && b < t.opts.MaxBackoff; n++ {
		b *= 2
	}
	p.downUntil = t.now().Add(min(b, t.opts.MaxBackoff))
	p.lastErr = Redact(err.Error())
}

// order returns the profile indexes, healthy ones by ascending latency
// first, then the unhealthy ones by ascending latency.
func (t *Tier) order() []int {
	type e struct {
		i    int
		up   bool
		ewma float64
	}
	now := t.now()
	es := make([]e, len(t.ps))
	for i, p := range t.ps {
		p.mu.Lock()
		es[i] = e{i, !now.Before(p.downUntil), p.ewma}
		p.mu.Unlock()
	}
	sort.SliceStable(es, func(a, b int) bool {
		if es[a].up != es[b].up {
			return es[a].up
		}
		return es[a].ewma < es[b].ewma
	})
	out := make([]int, len(es))
	for k, x := range es {
		out[k] = x.i
	}
	return out
}

// readOrder is order without the profiles with a pending repair for key
// (they are known not to hold its current version).
func (t *Tier) readOrder(key string) []int {
	o := t.order()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byKey[key] == 0 {
		return o
	}
	out := o[:0:0]
	for _, i := range o {
		if _, bad := t.repairs[jobKey{i, key}]; !bad {
			out = append(out, i)
		}
	}
	if len(out) == 0 {
		return o
	}
	return out
}

// Order returns the profile names in the order reads try them now.
func (t *Tier) Order() []string {
	var names []string
	for _, i := range t.order() {
		names = append(names, t.ps[i].name)
	}
	return names
}

// ---- staleness ----

// checkDue reports whether a read of key served by a cache should be
// checked against the origin now, and if so claims the check.
func (t *Tier) checkDue(key string) bool {
	if t.opts.CheckInterval < 0 {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, behind := t.repairs[jobKey{t.origin, key}]; behind {
		return false // the origin lacks the latest write: the cache is right
	}
	now := t.now()
	if last, ok := t.checked[key]; ok && now.Sub(last) < t.opts.CheckInterval {
		return false
	}
	if len(t.checked) >= 1<<17 {
		clear(t.checked)
	}
	t.checked[key] = now
	return true
}

func (t *Tier) markChecked(key string) {
	t.mu.Lock()
	if len(t.checked) >= 1<<17 {
		clear(t.checked)
	}
	t.checked[key] = t.now()
	t.mu.Unlock()
}

func (t *Tier) unmarkChecked(key string) {
	t.mu.Lock()
	delete(t.checked, key)
	t.mu.Unlock()
}

func (t *Tier) stale(size int64, mod time.Time, o *driver.Attributes) bool {
	return size != o.Size || o.ModTime.After(mod.Add(t.opts.ModTimeSlack))
}

// originCheck is an Attributes call to the origin running alongside a
// cache's call.
type originCheck struct {
	done  chan struct{}
	attrs *driver.Attributes
	err   error
}

func (t *Tier) startCheck(ctx context.Context, key string) *originCheck {
	c := &originCheck{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.attrs, c.err = t.attrs(ctx, t.origin, key)
	}()
	return c
}

func (c *originCheck) wait() (*driver.Attributes, error) {
	<-c.done
	return c.attrs, c.err
}

// drop deletes profile i's copy of key (stale or orphaned).
func (t *Tier) drop(ctx context.Context, i int, key string) {
	err := t.ps[i].base.Delete(ctx, key, &driver.DeleteOptions{})
	if err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		t.log.Warn("tier: cannot drop stale copy", "profile", t.ps[i].name, "key", key, "err", Redact(err.Error()))
	}
}

// ---- reads ----

func (t *Tier) attrs(ctx context.Context, i int, key string) (*driver.Attributes, error) {
	start := time.Now()
	a, err := t.ps[i].base.Attributes(ctx, key)
	t.observe(ctx, i, time.Since(start), err)
	return a, err
}

func (t *Tier) open(ctx context.Context, i int, key string, off, n int64, opts *driver.ReaderOptions) (driver.Reader, error) {
	start := time.Now()
	r, err := t.ps[i].base.NewRangeReader(ctx, key, off, n, opts)
	t.observe(ctx, i, time.Since(start), err)
	return r, err
}

// readErr is the error of a read no profile could serve: the origin's if
// it answered, else the last one.
func (t *Tier) readErr(errs map[int]error, last error) error {
	if err, ok := errs[t.origin]; ok {
		return err
	}
	return last
}

// Attributes asks the profiles in speed order.
func (t *Tier) Attributes(ctx context.Context, key string) (*driver.Attributes, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var missed []int
	errs := map[int]error{}
	var last error
	var check *originCheck
	for _, i := range t.readOrder(key) {
		if i == t.origin && check != nil {
			a, err := check.wait()
			if err == nil {
				t.writeBack(i, missed, key)
				return a, nil
			}
			errs[i], last = err, err
			continue
		}
		if i != t.origin && check == nil && t.checkDue(key) {
			check = t.startCheck(ctx, key)
		}
		a, err := t.attrs(ctx, i, key)
		if err != nil {
			if gcerrors.Code(err) == gcerrors.NotFound {
				missed = append(missed, i)
			}
			errs[i], last = err, err
			continue
		}
		if check != nil && i != t.origin {
			oa, oerr := check.wait()
			switch {
			case oerr == nil && t.stale(a.Size, a.ModTime, oa):
				t.drop(ctx, i, key)
				t.writeBack(t.origin, append(missed, i), key)
				return oa, nil
			case gcerrors.Code(oerr) == gcerrors.NotFound:
				t.drop(ctx, i, key) // orphaned: the origin deleted it
				errs[i], last = oerr, oerr
				continue
			}
		}
		t.writeBack(i, missed, key)
		return a, nil
	}
	return nil, t.readErr(errs, last)
}

// NewRangeReader opens the object on the profiles in speed order.
func (t *Tier) NewRangeReader(ctx context.Context, key string, off, n int64, opts *driver.ReaderOptions) (driver.Reader, error) {
	order := t.readOrder(key)
	var missed []int
	errs := map[int]error{}
	var last error
	var check *originCheck
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for k, i := range order {
		if i != t.origin && check == nil && t.checkDue(key) {
			check = t.startCheck(cctx, key)
		}
		r, err := t.open(ctx, i, key, off, n, opts)
		if err != nil {
			if gcerrors.Code(err) == gcerrors.NotFound {
				missed = append(missed, i)
			}
			errs[i], last = err, err
			continue
		}
		if check != nil && i != t.origin {
			ra := r.Attributes()
			oa, oerr := check.wait()
			switch {
			case oerr == nil && t.stale(ra.Size, ra.ModTime, oa):
				r.Close()
				t.drop(ctx, i, key)
				missed = append(missed, i)
				or, err := t.open(ctx, t.origin, key, off, n, opts)
				if err != nil {
					return nil, err
				}
				t.writeBack(t.origin, missed, key)
				return &reader{t: t, ctx: ctx, key: key, off: off, n: n, opts: opts, cur: or, idx: t.origin, attrs: *or.Attributes()}, nil
			case gcerrors.Code(oerr) == gcerrors.NotFound:
				r.Close()
				t.drop(ctx, i, key)
				errs[i], last = oerr, oerr
				continue
			}
		}
		t.writeBack(i, missed, key)
		return &reader{t: t, ctx: ctx, key: key, off: off, n: n, opts: opts, cur: r, idx: i,
			rest: order[k+1:], attrs: *r.Attributes()}, nil
	}
	return nil, t.readErr(errs, last)
}

// reader continues on the next profile when a read fails mid-stream.
type reader struct {
	t      *Tier
	ctx    context.Context
	key    string
	off, n int64
	opts   *driver.ReaderOptions
	cur    driver.Reader
	idx    int
	rest   []int
	done   int64 // bytes delivered
	attrs  driver.ReaderAttributes
}

func (r *reader) Read(p []byte) (int, error) {
	for {
		n, err := r.cur.Read(p)
		r.done += int64(n)
		if err == nil || err == io.EOF || r.ctx.Err() != nil || len(r.rest) == 0 {
			return n, err
		}
		r.t.fail(r.idx, err, 0)
		bad := r.idx
		r.cur.Close()
		remaining := int64(-1)
		if r.n >= 0 {
			remaining = r.n - r.done
		}
		var next driver.Reader
		for len(r.rest) > 0 && next == nil {
			i := r.rest[0]
			r.rest = r.rest[1:]
			nr, oerr := r.t.open(r.ctx, i, r.key, r.off+r.done, remaining, r.opts)
			if oerr != nil {
				continue
			}
			if nr.Attributes().Size != r.attrs.Size {
				nr.Close() // another version: splicing it in would corrupt the read
				continue
			}
			next, r.idx = nr, i
		}
		if next == nil {
			r.cur = errReader{err}
			return n, err
		}
		r.cur = next
		r.t.addRepair(bad, r.key, repair{src: r.idx})
		if n > 0 {
			return n, nil
		}
	}
}

func (r *reader) Close() error                         { return r.cur.Close() }
func (r *reader) Attributes() *driver.ReaderAttributes { return &r.attrs }
func (r *reader) As(i any) bool                        { return r.cur.As(i) }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error)             { return 0, e.err }
func (e errReader) Close() error                         { return nil }
func (e errReader) Attributes() *driver.ReaderAttributes { return &driver.ReaderAttributes{} }
func (e errReader) As(any) bool                          { return false }

// ListPaged lists the origin, or the next profile if it fails.
func (t *Tier) ListPaged(ctx context.Context, opts *driver.ListOptions) (*driver.ListPage, error) {
	list := func(i int, token []byte) (*driver.ListPage, error) {
		o := *opts
		o.PageToken = token
		page, err := t.ps[i].base.ListPaged(ctx, &o)
		if err != nil {
			return nil, err
		}
		if len(page.NextPageToken) > 0 {
			page.NextPageToken = append([]byte{byte(i)}, page.NextPageToken...)
		}
		return page, nil
	}
	if len(opts.PageToken) > 0 {
		i := int(opts.PageToken[0])
		if i >= len(t.ps) {
			return nil, errors.New("tier: bad page token")
		}
		return list(i, opts.PageToken[1:])
	}
	var last error
	for i := t.origin; i >= 0; i-- {
		page, err := list(i, nil)
		if err == nil {
			return page, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		if storeFault(err) {
			t.fail(i, err, 0)
		}
		last = err
	}
	return nil, last
}

// ---- background jobs ----

func (t *Tier) genOf(key string) *atomic.Uint64 {
	var h uint32 = 2166136261
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return &t.gen[h%uint32(len(t.gen))]
}

// writeBack queues copies of key from profile src to the profiles in dst.
func (t *Tier) writeBack(src int, dst []int, key string) {
	for _, d := range dst {
		if d == src {
			continue
		}
		jk := jobKey{d, key}
		t.mu.Lock()
		if t.inflight[jk] {
			t.mu.Unlock()
			continue
		}
		t.inflight[jk] = true
		t.mu.Unlock()
		t.ps[d].pendingWB.Add(1)
		if !t.enqueue(job{jobKey: jk, src: src}) {
			t.finishWB(jk)
			t.ps[d].droppedWB.Add(1)
		}
	}
}

func (t *Tier) finishWB(jk jobKey) {
	t.mu.Lock()
	delete(t.inflight, jk)
	t.mu.Unlock()
	t.ps[jk.target].pendingWB.Add(-1)
}

// enqueue hands j to the workers without waiting; false if the queue is
// full or the tier is closing. A new job (not a retry) is also refused when
// QueueSize+Workers jobs are queued, running or waiting to retry, so that
// retries waiting on timers are bounded too.
func (t *Tier) enqueue(j job) bool {
	if t.ctx.Err() != nil {
		return false
	}
	if j.attempt == 0 && t.pending.Load() >= int64(t.opts.QueueSize+t.opts.Workers) {
		return false
	}
	t.pending.Add(1)
	select {
	case t.jobs <- j:
		return true
	default:
		t.pending.Add(-1)
		return false
	}
}

// addRepair records that profile target missed an operation on key.
func (t *Tier) addRepair(target int, key string, r repair) {
	jk := jobKey{target, key}
	t.mu.Lock()
	if _, ok := t.repairs[jk]; ok {
		t.repairs[jk] = &r // the newest operation wins; a job is queued already
		t.mu.Unlock()
		return
	}
	if len(t.repairs) >= t.opts.MaxRepairs {
		t.mu.Unlock()
		t.dropRepair(target)
		t.log.Error("tier: too many pending repairs, dropping one", "profile", t.ps[target].name, "key", key)
		return
	}
	t.repairs[jk] = &r
	t.byKey[key]++
	t.mu.Unlock()
	if !t.enqueue(job{jobKey: jk, repair: true}) {
		t.removeRepair(jk, nil)
		t.dropRepair(target)
		t.log.Error("tier: repair queue full, dropping repair", "profile", t.ps[target].name, "key", key)
	}
}

// removeRepair forgets the repair of jk (only if it is still r, when r is
// not nil).
func (t *Tier) removeRepair(jk jobKey, r *repair) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur, ok := t.repairs[jk]
	if !ok || (r != nil && cur != r) {
		return
	}
	delete(t.repairs, jk)
	if t.byKey[jk.key]--; t.byKey[jk.key] <= 0 {
		delete(t.byKey, jk.key)
	}
}

// PendingRepairs is the number of repairs not yet done.
func (t *Tier) PendingRepairs() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.repairs)
}

func (t *Tier) worker() {
	defer t.wg.Done()
	for {
		select {
		case <-t.ctx.Done():
			return
		case j := <-t.jobs:
			t.run(j)
			t.pending.Add(-1)
		}
	}
}

var errSuperseded = errors.New("tier: superseded by a newer write")

func (t *Tier) run(j job) {
	ctx := t.ctx
	var err error
	var rep *repair
	if j.repair {
		t.mu.Lock()
		rep = t.repairs[j.jobKey]
		t.mu.Unlock()
		if rep == nil {
			return // done by a later write
		}
		if rep.del {
			err = t.ps[j.target].base.Delete(ctx, j.key, &driver.DeleteOptions{})
			if gcerrors.Code(err) == gcerrors.NotFound {
				err = nil
			}
		} else {
			err = t.copyObject(ctx, rep.src, j.target, j.key)
		}
	} else {
		err = t.copyObject(ctx, j.src, j.target, j.key)
	}
	switch {
	case err == nil, gcerrors.Code(err) == gcerrors.NotFound && !errors.Is(err, errSuperseded):
		// NotFound: the source no longer has it; nothing to copy.
		if j.repair {
			t.removeRepair(j.jobKey, rep)
		} else {
			t.finishWB(j.jobKey)
		}
		if err == nil {
			t.recovered(j.target)
		}
		return
	case errors.Is(err, errSuperseded) && !j.repair:
		t.finishWB(j.jobKey) // the write put the new version everywhere
		return
	}
	what := "write-back"
	if j.repair {
		what = "repair"
	}
	if ctx.Err() != nil || j.attempt >= t.opts.Retries {
		t.log.Error("tier: "+what+" failed, giving up", "profile", t.ps[j.target].name, "key", j.key,
			"attempts", j.attempt+1, "err", Redact(err.Error()))
		if j.repair {
			t.removeRepair(j.jobKey, rep)
		} else {
			t.finishWB(j.jobKey)
		}
		return
	}
	if storeFault(err) {
		t.fail(j.target, err, 0)
	}
	wait := t.opts.RetryWait
	for n := 0; n < j.attempt && wait < t.opts.MaxRetryWait; n++ {
		wait *= 2
	}
	wait = min(wait, t.opts.MaxRetryWait)
	wait = wait/2 + time.Duration(rand.Int64N(int64(wait/2)+1))
	t.log.Warn("tier: "+what+" failed, will retry", "profile", t.ps[j.target].name, "key", j.key,
		"attempt", j.attempt+1, "retry_in", wait, "err", Redact(err.Error()))
	j.attempt++
	t.pending.Add(1) // the retry is pending while it waits
	time.AfterFunc(wait, func() {
		defer t.pending.Add(-1)
		if !t.enqueue(j) {
			if j.repair {
				t.removeRepair(j.jobKey, rep)
				t.dropRepair(j.target)
			} else {
				t.finishWB(j.jobKey)
				t.ps[j.target].droppedWB.Add(1)
			}
		}
	})
}

// copyObject copies key from profile src to profile dst, abandoning the
// upload if a write or delete of the key through the tier overlapped it.
func (t *Tier) copyObject(ctx context.Context, src, dst int, key string) error {
	g := t.genOf(key)
	start := g.Load()
	sb, db := t.ps[src].b, t.ps[dst].b
	a, err := sb.Attributes(ctx, key)
	if err != nil {
		return err
	}
	r, err := sb.NewReader(ctx, key, nil)
	if err != nil {
		return err
	}
	defer r.Close()
	if r.Size() != a.Size || (!r.ModTime().IsZero() && !a.ModTime.IsZero() && !r.ModTime().Equal(a.ModTime)) {
		return errors.New("tier: source changed while copying")
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := db.NewWriter(wctx, key, &blob.WriterOptions{
		CacheControl: a.CacheControl, ContentDisposition: a.ContentDisposition,
		ContentEncoding: a.ContentEncoding, ContentLanguage: a.ContentLanguage,
		ContentType: a.ContentType, Metadata: a.Metadata, DisableContentTypeDetection: true,
	})
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		cancel()
		w.Close()
		return err
	}
	if g.Load() != start {
		cancel()
		w.Close()
		return errSuperseded
	}
	if err := w.Close(); err != nil {
		return err
	}
	if dst != t.origin && src == t.origin {
		t.markChecked(key)
	}
	return nil
}

// ---- writes ----

// decide applies the policy to the per-profile results (nil: succeeded).
func (t *Tier) decide(errs []error) error {
	switch t.opts.Policy {
	case Any:
		for _, e := range errs {
			if e == nil {
				return nil
			}
		}
		if errs[t.origin] != nil {
			return errs[t.origin]
		}
		return errs[0]
	case Primary:
		return errs[0]
	default:
		if errs[t.origin] != nil {
			return errs[t.origin]
		}
		for _, e := range errs {
			if e != nil {
				return e
			}
		}
		return nil
	}
}

// settle records the outcome of an operation on key that went to every
// profile: profiles that missed it are repaired from one that did it (the
// origin if it did), profiles that did it need no repair.
func (t *Tier) settle(ctx context.Context, key string, errs []error, del bool) {
	src := -1
	for i := len(errs) - 1; i >= 0; i-- {
		if errs[i] == nil {
			src = i
			break
		}
	}
	for i, e := range errs {
		if e == nil {
			t.removeRepair(jobKey{i, key}, nil)
			continue
		}
		if ctx.Err() == nil && storeFault(e) {
			t.fail(i, e, 0)
		}
		if src >= 0 {
			t.addRepair(i, key, repair{del: del, src: src})
		}
	}
}

// gate lets a caller's hook run once, for the origin, and the other
// profiles follow its verdict.
type gate struct {
	once sync.Once
	done chan struct{}
	err  error
}

func newGate() *gate { return &gate{done: make(chan struct{})} }

func (g *gate) open(err error) {
	g.once.Do(func() { g.err = err; close(g.done) })
}

func (g *gate) wrap(origin bool, hook func(func(any) bool) error) func(func(any) bool) error {
	if hook == nil {
		return nil
	}
	if origin {
		return func(as func(any) bool) error {
			err := hook(as)
			g.open(err)
			return err
		}
	}
	return func(func(any) bool) error {
		<-g.done
		return g.err
	}
}

func (t *Tier) fanout(fn func(i int) error) []error {
	errs := make([]error, len(t.ps))
	var wg sync.WaitGroup
	for i := range t.ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	return errs
}

// Delete deletes key from every profile. It is NotFound only if no profile
// had the key. BeforeDelete is called once, by the origin's driver; the
// other profiles' deletes wait for its verdict and are refused if it
// failed (if the origin fails before calling it, they go ahead).
func (t *Tier) Delete(ctx context.Context, key string, opts *driver.DeleteOptions) error {
	g := t.genOf(key)
	g.Add(1)
	defer g.Add(1)
	t.unmarkChecked(key)
	hook := newGate()
	raw := t.fanout(func(i int) error {
		o := *opts
		o.BeforeDelete = hook.wrap(i == t.origin, opts.BeforeDelete)
		err := t.ps[i].base.Delete(ctx, key, &o)
		if i == t.origin {
			hook.open(nil)
		}
		return err
	})
	notFound, originErr := 0, raw[t.origin]
	for i, e := range raw {
		if gcerrors.Code(e) == gcerrors.NotFound {
			notFound++
			raw[i] = nil // absent is what a delete wants
		}
	}
	if notFound == len(t.ps) {
		return originErr // NotFound, naming the key
	}
	t.settle(ctx, key, raw, true)
	return t.decide(raw)
}

// Copy copies srcKey to dstKey in every profile. A profile that lacks
// srcKey gets dstKey by repair from one that copied it. It fails if no
// profile copied it.
func (t *Tier) Copy(ctx context.Context, dstKey, srcKey string, opts *driver.CopyOptions) error {
	g := t.genOf(dstKey)
	g.Add(1)
	defer g.Add(1)
	t.unmarkChecked(dstKey)
	hook := newGate()
	raw := t.fanout(func(i int) error {
		o := *opts
		o.BeforeCopy = hook.wrap(i == t.origin, opts.BeforeCopy)
		err := t.ps[i].base.Copy(ctx, dstKey, srcKey, &o)
		if i == t.origin {
			hook.open(nil)
		}
		return err
	})
	done := false
	for _, e := range raw {
		done = done || e == nil
	}
	if !done {
		if raw[t.origin] != nil {
			return raw[t.origin]
		}
		return raw[0]
	}
	t.settle(ctx, dstKey, raw, false)
	// A profile without the source did not fail; it is repaired.
	for i, e := range raw {
		if gcerrors.Code(e) == gcerrors.NotFound {
			raw[i] = nil
		}
	}
	return t.decide(raw)
}

// NewTypedWriter writes to every profile at once. BeforeWrite is called
// once per profile.
func (t *Tier) NewTypedWriter(ctx context.Context, key, contentType string, opts *driver.WriterOptions) (driver.Writer, error) {
	w := &writer{t: t, ctx: ctx, key: key, ifNotExist: opts.IfNotExist, subs: make([]*sub, len(t.ps)), errs: make([]error, len(t.ps))}
	g := t.genOf(key)
	g.Add(1)
	for i, p := range t.ps {
		wo := layer.ToWriterOptions(contentType, opts)
		if i != t.origin {
			wo.IfNotExist = false // the origin decides
		}
		sctx, cancel := context.WithCancel(ctx)
		bw, err := p.b.NewWriter(sctx, key, wo)
		if err != nil {
			cancel()
			w.errs[i] = err
			continue
		}
		w.subs[i] = &sub{w: bw, cancel: cancel}
	}
	if err := w.fatal(); err != nil {
		w.abort()
		g.Add(1)
		return nil, err
	}
	return w, nil
}

type sub struct {
	w      *blob.Writer
	cancel context.CancelFunc
}

type writer struct {
	t          *Tier
	ctx        context.Context
	key        string
	ifNotExist bool
	subs       []*sub  // nil once failed or closed
	errs       []error // per profile
	closed     bool
}

// fatal is the error that already decides the write, if any.
func (w *writer) fatal() error {
	switch w.t.opts.Policy {
	case Any:
		for _, e := range w.errs {
			if e == nil {
				return nil
			}
		}
		return w.t.decide(w.errs)
	case Primary:
		return w.errs[0]
	default:
		for _, e := range w.errs {
			if e != nil {
				return e
			}
		}
		return nil
	}
}

func (w *writer) abort() {
	for i, s := range w.subs {
		if s != nil {
			s.cancel()
			s.w.Close()
			w.subs[i] = nil
			if w.errs[i] == nil {
				w.errs[i] = context.Canceled
			}
		}
	}
}

func (w *writer) Write(p []byte) (int, error) {
	if err := w.fatal(); err != nil {
		return 0, err
	}
	live := 0
	for _, s := range w.subs {
		if s != nil {
			live++
		}
	}
	write := func(i int) {
		s := w.subs[i]
		if _, err := s.w.Write(p); err != nil {
			w.errs[i] = err
		}
	}
	if live == 1 {
		for i, s := range w.subs {
			if s != nil {
				write(i)
			}
		}
	} else {
		var wg sync.WaitGroup
		for i, s := range w.subs {
			if s != nil {
				wg.Add(1)
				go func() { defer wg.Done(); write(i) }()
			}
		}
		wg.Wait()
	}
	for i, s := range w.subs {
		if s != nil && w.errs[i] != nil {
			s.cancel()
			s.w.Close()
			w.subs[i] = nil
		}
	}
	if err := w.fatal(); err != nil {
		w.abort()
		return 0, err
	}
	return len(p), nil
}

// Close commits the origin's upload first (so that cached copies are never
// older than the origin's), then the others'.
func (w *writer) Close() error {
	if w.closed {
		return errors.New("tier: writer closed twice")
	}
	w.closed = true
	t := w.t
	defer t.genOf(w.key).Add(1)
	if err := w.fatal(); err != nil {
		w.abort()
		t.settleWrite(w)
		return err
	}
	closeSub := func(i int) {
		s := w.subs[i]
		if s == nil {
			return
		}
		if err := s.w.Close(); err != nil {
			w.errs[i] = err
		}
		s.cancel()
		w.subs[i] = nil
	}
	closeSub(t.origin)
	if w.errs[t.origin] != nil && (w.ifNotExist || w.fatal() != nil) {
		// The write has failed: commit nowhere else.
		w.abort()
		t.settleWrite(w)
		return w.errs[t.origin]
	}
	var wg sync.WaitGroup
	for i := range w.subs {
		if w.subs[i] != nil {
			wg.Add(1)
			go func() { defer wg.Done(); closeSub(i) }()
		}
	}
	wg.Wait()
	t.settleWrite(w)
	return t.decide(w.errs)
}

func (t *Tier) settleWrite(w *writer) {
	t.settle(w.ctx, w.key, w.errs, false)
	if w.errs[t.origin] == nil {
		t.markChecked(w.key)
	} else {
		t.unmarkChecked(w.key)
	}
}

// ---- the rest of the driver ----

// ErrorCode classifies errors (those of the profiles are portable already).
func (t *Tier) ErrorCode(err error) gcerrors.ErrorCode { return gcerrors.Code(err) }

// As exposes the origin's driver types.
func (t *Tier) As(i any) bool { return t.ps[t.origin].b.As(i) }

// ErrorAs exposes the origin's error types.
func (t *Tier) ErrorAs(err error, i any) bool { return t.ps[t.origin].b.ErrorAs(err, i) }

// SignedURL signs a URL for the origin.
func (t *Tier) SignedURL(ctx context.Context, key string, opts *driver.SignedURLOptions) (string, error) {
	return t.ps[t.origin].base.SignedURL(ctx, key, opts)
}

// Close lets queued background jobs run for up to Options.CloseTimeout,
// abandons the rest (logging how many), stops the workers and closes the
// profiles' buckets.
func (t *Tier) Close() error {
	if t.closed.Swap(true) {
		return errors.New("tier: closed twice")
	}
	deadline := time.Now().Add(t.opts.CloseTimeout)
	for t.pending.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := t.pending.Load(); n > 0 {
		t.log.Warn("tier: closing with background jobs abandoned", "jobs", n)
	}
	t.cancel()
	t.wg.Wait()
	var errs []error
	for _, p := range t.ps {
		if err := p.b.Close(); err != nil {
			errs = append(errs, fmt.Errorf("profile %s: %w", p.name, err))
		}
	}
	return errors.Join(errs...)
}

// ---- status ----

// ProfileStatus is the state of one profile, for `tapefs status`.
type ProfileStatus struct {
	Name              string
	Origin            bool
	Reachable         bool          // not in a failure backoff
	Latency           time.Duration // moving average
	PendingWriteBacks int64
	DroppedWriteBacks int64
	PendingRepairs    int
	DroppedRepairs    int64
	LastError         string // credentials redacted; "" if none
}

// Status reports every profile, in configuration order.
func (t *Tier) Status() []ProfileStatus {
	t.mu.Lock()
	repairs := make([]int, len(t.ps))
	for jk := range t.repairs {
		repairs[jk.target]++
	}
	t.mu.Unlock()
	now := t.now()
	out := make([]ProfileStatus, len(t.ps))
	for i, p := range t.ps {
		p.mu.Lock()
		out[i] = ProfileStatus{Name: p.name, Origin: i == t.origin, Reachable: !now.Before(p.downUntil),
			Latency: time.Duration(p.ewma), PendingWriteBacks: p.pendingWB.Load(),
			DroppedWriteBacks: p.droppedWB.Load(), PendingRepairs: repairs[i], DroppedRepairs: p.droppedRepairs.Load(), LastError: p.lastErr}
		p.mu.Unlock()
	}
	return out
}

func (t *Tier) dropRepair(target int) {
	t.droppedRepairs.Add(1)
	t.ps[target].droppedRepairs.Add(1)
}

// DroppedRepairs counts repairs given up because the queue was full or the
// repair bound (Options.MaxRepairs) reached; such a profile may keep an
// outdated copy until it is next written, or found stale.
func (t *Tier) DroppedRepairs() int64 { return t.droppedRepairs.Load() }

var (
	userinfoRE = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@`)
	secretRE   = regexp.MustCompile(`(?i)((?:key|secret|token|password|passwd|sig|signature|credential|authorization)[a-z0-9_-]*["']?\s*[=:]\s*["']?)[^&\s"',;]+`)
	awsKeyRE   = regexp.MustCompile(`\b(AKIA|ASIA)[0-9A-Z]{16}\b`)
)

// Redact removes what looks like a credential from an error text: URL user
// info, secret-looking parameters (key=, token=, X-Amz-Signature=, ...) and
// AWS access key ids.
func Redact(s string) string {
	s = userinfoRE.ReplaceAllString(s, "${1}REDACTED@")
	s = secretRE.ReplaceAllString(s, "${1}REDACTED")
	return awsKeyRE.ReplaceAllString(s, "REDACTED")
}
