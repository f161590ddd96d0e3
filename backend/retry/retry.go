// Package retry is a storage layer that retries transient store errors
// (timeouts, 5xx, throttling, dropped connections) with exponential backoff.
// Permanent errors (not found, access denied, bad request, precondition
// failed) and a cancelled context end at once. Writes are not retried here:
// a writer's input cannot be replayed by this layer; tapefs retries whole
// uploads from the staged file instead.
package retry

import (
	"context"
	"errors"
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
		// Full jitter keeps many clients from retrying in step.
		d := time.Duration(rand.Int64N(int64(wait))) + wait/2
		if serr := b.opts.Sleep(ctx, d); serr != nil {
			return err
		}
		wait = min(wait*2, b.opts.Max)
	}
}

func (b *bucket) Attributes(ctx context.Context, key string) (a *driver.Attributes, err error) {
	err = b.do(ctx, func() error { a, err = b.Base.Attributes(ctx, key); return err })
	return a, err
}

func (b *bucket) ListPaged(ctx context.Context, opts *driver.ListOptions) (p *driver.ListPage, err error) {
	err = b.do(ctx, func() error { p, err = b.Base.ListPaged(ctx, opts); return err })
	return p, err
}

func (b *bucket) NewRangeReader(ctx context.Context, key string, off, n int64, opts *driver.ReaderOptions) (r driver.Reader, err error) {
	err = b.do(ctx, func() error { r, err = b.Base.NewRangeReader(ctx, key, off, n, opts); return err })
	return r, err
}

func (b *bucket) Copy(ctx context.Context, dst, src string, opts *driver.CopyOptions) error {
	return b.do(ctx, func() error { return b.Base.Copy(ctx, dst, src, opts) })
}

func (b *bucket) Delete(ctx context.Context, key string, opts *driver.DeleteOptions) error {
	return b.do(ctx, func() error { return b.Base.Delete(ctx, key, opts) })
}
