// Package retry is a storage layer that retries transient store errors
// (timeouts, 5xx, throttling, dropped connections) with exponential backoff,
// and resumes a range read whose body breaks off part way.
// Permanent errors (not found, access denied, bad request, precondition
// failed) and a cancelled context end at once. Writes are not retried here:
// a writer's input cannot be replayed by this layer; tapefs retries whole
// uploads from the staged file instead.
package retry

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"time"

	"github.com/tapefs/tapefs/backend/layer"
	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/gcerrors"
)

// Options tune the backoff.
type Options struct {
	Attempts int           // total tries of one call (default 4)
	Initial  time.Duration // first wait (default 100 ms)
	Max      time.Duration // longest wait (default 2 s)
	// Sleep waits; tests replace it. It must return early with ctx's error.
	Sleep func(ctx context.Context, d time.Duration) error
}

func (o *Options) fill() {
	if o.Attempts <= 0 {
		o.Attempts = 4
	}
	if o.Initial <= 0 {
		o.Initial = 100 * time.Millisecond
	}
	if o.Max <= 0 {
		o.Max = 2 * time.Second
	}
	if o.Sleep == nil {
		o.Sleep = func(ctx context.Context, d time.Duration) error {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// bucket is the retry driver.
type bucket struct {
	layer.Base
	opts Options
}

// Wrap returns inner behind a retry layer.
func Wrap(inner *blob.Bucket, opts Options) *blob.Bucket {
	opts.fill()
	return blob.NewBucket(&bucket{Base: layer.Base{Inner: inner}, opts: opts})
}

// Transient reports whether err is worth another try.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	switch gcerrors.Code(err) {
	case gcerrors.NotFound, gcerrors.AlreadyExists, gcerrors.InvalidArgument,
		gcerrors.FailedPrecondition, gcerrors.PermissionDenied, gcerrors.Unimplemented,
		gcerrors.Canceled:
		return false
	}
	return true // Unknown (network), Internal (5xx), ResourceExhausted (throttled), DeadlineExceeded
}

// do runs fn until it succeeds, fails permanently, runs out of attempts or
// ctx ends.
func (b *bucket) do(ctx context.Context, fn func() error) error {
	wait := b.opts.Initial
	var err error
	for attempt := 1; ; attempt++ {
		if err = fn(); err == nil || !Transient(err) || attempt >= b.opts.Attempts || ctx.Err() != nil {
			return err
		}
		if b.pause(ctx, &wait) != nil {
			return err
		}
	}
}

// pause waits before the next try, a random time around *wait (jitter
// keeps many clients from retrying in step), and doubles *wait up to Max.
// It returns ctx's error if ctx ends first.
func (b *bucket) pause(ctx context.Context, wait *time.Duration) error {
	d := time.Duration(rand.Int64N(int64(*wait))) + *wait/2
	*wait = min(*wait*2, b.opts.Max)
	return b.opts.Sleep(ctx, d)
}

func (b *bucket) Attributes(ctx context.Context, key string) (a *driver.Attributes, err error) {
	err = b.do(ctx, func() error { a, err = b.Base.Attributes(ctx, key); return err })
	return a, err
}

func (b *bucket) ListPaged(ctx context.Context, opts *driver.ListOptions) (p *driver.ListPage, err error) {
	err = b.do(ctx, func() error { p, err = b.Base.ListPaged(ctx, opts); return err })
	return p, err
}

func (b *bucket) NewRangeReader(ctx context.Context, key string, off, n int64, opts *driver.ReaderOptions) (driver.Reader, error) {
	var r driver.Reader
	err := b.do(ctx, func() (err error) { r, err = b.Base.NewRangeReader(ctx, key, off, n, opts); return err })
	if err != nil {
		return nil, err
	}
	return &resumingReader{b: b, ctx: ctx, key: key, off: off, n: n, opts: opts, r: r, attrs: *r.Attributes()}, nil
}

// resumingReader is a range read that survives a transient failure in the
// middle of its body (a connection dropped or reset, a stalled transfer):
// it opens the rest of the range again, with the same options (so the
// same If-Match condition), and goes on from the byte it had reached. The
// answer that resumes must be of the same object (size and modification
// time), or the read fails with the first error rather than mix two
// versions. It resumes at most Attempts-1 times, with the same backoff as
// the other calls, and never after ctx ends.
type resumingReader struct {
	b     *bucket
	ctx   context.Context
	key   string
	off   int64 // the range asked for: off, n (n < 0: to the end)
	n     int64
	opts  *driver.ReaderOptions
	r     driver.Reader
	attrs driver.ReaderAttributes // of the first answer
	read  int64                   // bytes returned so far
	tries int                     // resumes so far
	wait  time.Duration
}

func (r *resumingReader) Read(p []byte) (int, error) {
	for {
		m, err := r.r.Read(p)
		r.read += int64(m)
		if err == nil || err == io.EOF || m > 0 {
			// A failure with bytes is seen again by the next Read.
			return m, err
		}
		if err = r.resume(err); err != nil {
			return 0, err
		}
	}
}

// resume replaces the failed reader with one for the rest of the range.
// It returns nil if it did, else the error to report: cause, or the
// permanent error of the reopening (a failed If-Match says the object
// changed, which its caller acts on).
func (r *resumingReader) resume(cause error) error {
	if !Transient(cause) || r.ctx.Err() != nil || r.tries+1 >= r.b.opts.Attempts {
		return cause
	}
	rest := int64(-1)
	if r.n >= 0 {
		if rest = r.n - r.read; rest <= 0 {
			return cause
		}
	}
	if r.wait == 0 {
		r.wait = r.b.opts.Initial
	}
	for r.tries+1 < r.b.opts.Attempts {
		r.tries++
		if r.b.pause(r.ctx, &r.wait) != nil {
			return cause
		}
		nr, err := r.b.Base.NewRangeReader(r.ctx, r.key, r.off+r.read, rest, r.opts)
		if err != nil {
			if !Transient(err) {
				return err
			}
			if r.ctx.Err() != nil {
				return cause
			}
			continue
		}
		a := nr.Attributes()
		if a.Size != r.attrs.Size || !a.ModTime.Equal(r.attrs.ModTime) {
			nr.Close() // another version of the object: not to be mixed in
			return cause
		}
		r.r.Close()
		r.r = nr
		return nil
	}
	return cause
}

func (r *resumingReader) Close() error                         { return r.r.Close() }
func (r *resumingReader) Attributes() *driver.ReaderAttributes { return &r.attrs }
func (r *resumingReader) As(i any) bool                        { return r.r.As(i) }

func (b *bucket) Copy(ctx context.Context, dst, src string, opts *driver.CopyOptions) error {
	return b.do(ctx, func() error { return b.Base.Copy(ctx, dst, src, opts) })
}

func (b *bucket) Delete(ctx context.Context, key string, opts *driver.DeleteOptions) error {
	return b.do(ctx, func() error { return b.Base.Delete(ctx, key, opts) })
}
