// Package metrics is a storage layer that measures every call to the store
// below it: Prometheus counts of operations by result, their latencies and
// the bytes they move, all labeled with the storage profile, and one
// debug-level log/slog record per operation.
//
// The operations are attributes, list, read, write, copy, delete and
// signed_url. A read is measured from NewRangeReader to the reader's Close
// (its bytes are those the caller read), a write from NewWriter to Close.
// The result label is "ok" or the gocloud error code of the failure
// (NotFound, FailedPrecondition, ...); a read that stopped at a read error
// counts as failed, one closed early does not.
package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tapefs/tapefs/backend/layer"
	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/gcerrors"
)

// Metric names.
const (
	OperationsName = "tapefs_store_operations_total"
	DurationName   = "tapefs_store_operation_duration_seconds"
	BytesName      = "tapefs_store_bytes_total"
)

// Options configure the layer.
type Options struct {
	// Profile is the value of the profile label ("" is "default").
	Profile string
	// Registerer is where the collectors are registered (nil:
	// prometheus.DefaultRegisterer). Layers sharing a registerer share the
	// collectors and differ by profile.
	Registerer prometheus.Registerer
	// Logger receives one debug record per operation (nil: slog.Default()).
	Logger *slog.Logger
}

// Collectors are the layer's metrics.
type collectors struct {
	ops      *prometheus.CounterVec
	duration *prometheus.HistogramVec
	bytes    *prometheus.CounterVec
}

// register registers c, or returns the collector already registered under
// its name.
func register[C prometheus.Collector](r prometheus.Registerer, c C) (C, error) {
	if err := r.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

func newCollectors(r prometheus.Registerer) (*collectors, error) {
	var c collectors
	var err error
	if c.ops, err = register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: OperationsName, Help: "Store operations, by profile, operation and result (ok or the error code).",
	}, []string{"profile", "op", "result"})); err != nil {
		return nil, err
	}
	if c.duration, err = register(r, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: DurationName, Help: "Latency of store operations (reads and writes: open to close).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10), // 0.5 ms to ~131 s
	}, []string{"profile", "op"})); err != nil {
		return nil, err
	}
	if c.bytes, err = register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: BytesName, Help: "Bytes read from and written to the store, by profile and operation.",
	}, []string{"profile", "op"})); err != nil {
		return nil, err
	}
	return &c, nil
}

// Wrap returns b with the metrics layer on top. It fails only when the
// registerer holds other collectors under the layer's metric names.
func Wrap(b *blob.Bucket, opts Options) (*blob.Bucket, error) {
	drv, err := newBucket(b, opts)
	if err != nil {
		return nil, err
	}
	return blob.NewBucket(drv), nil
}

func newBucket(inner *blob.Bucket, opts Options) (*bucket, error) {
	if opts.Registerer == nil {
		opts.Registerer = prometheus.DefaultRegisterer
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Profile == "" {
		opts.Profile = "default"
	}
	c, err := newCollectors(opts.Registerer)
	if err != nil {
		return nil, err
	}
	return &bucket{Base: layer.Base{Inner: inner}, c: c, profile: opts.Profile, log: opts.Logger}, nil
}

type bucket struct {
	layer.Base
	c       *collectors
	profile string
	log     *slog.Logger
}

// Result is the result label of err.
func Result(err error) string {
	if err == nil {
		return "ok"
	}
	return gcerrors.Code(err).String()
}

// done records one operation.
func (b *bucket) done(ctx context.Context, op, key string, start time.Time, n int64, err error) {
	d := time.Since(start)
	b.c.ops.WithLabelValues(b.profile, op, Result(err)).Inc()
	b.c.duration.WithLabelValues(b.profile, op).Observe(d.Seconds())
	if n > 0 {
		b.c.bytes.WithLabelValues(b.profile, op).Add(float64(n))
	}
	if b.log.Enabled(ctx, slog.LevelDebug) {
		attrs := []slog.Attr{slog.String("profile", b.profile), slog.String("op", op), slog.Duration("duration", d)}
		if key != "" {
			attrs = append(attrs, slog.String("key", key))
		}
		if op == "read" || op == "write" {
			attrs = append(attrs, slog.Int64("bytes", n))
		}
		if err != nil {
			attrs = append(attrs, slog.String("result", Result(err)), slog.String("error", err.Error()))
		}
		b.log.LogAttrs(ctx, slog.LevelDebug, "store "+op, attrs...)
	}
}

func (b *bucket) Attributes(ctx context.Context, key string) (*driver.Attributes, error) {
	start := time.Now()
	a, err := b.Base.Attributes(ctx, key)
	b.done(ctx, "attributes", key, start, 0, err)
	return a, err
}

func (b *bucket) ListPaged(ctx context.Context, opts *driver.ListOptions) (*driver.ListPage, error) {
	start := time.Now()
	p, err := b.Base.ListPaged(ctx, opts)
	b.done(ctx, "list", opts.Prefix, start, 0, err)
	return p, err
}

func (b *bucket) NewRangeReader(ctx context.Context, key string, offset, length int64, opts *driver.ReaderOptions) (driver.Reader, error) {
	start := time.Now()
	r, err := b.Base.NewRangeReader(ctx, key, offset, length, opts)
	if err != nil {
		b.done(ctx, "read", key, start, 0, err)
		return nil, err
	}
	return &reader{Reader: r, b: b, ctx: ctx, key: key, start: start}, nil
}

type reader struct {
	driver.Reader
	b      *bucket
	ctx    context.Context
	key    string
	start  time.Time
	n      int64
	err    error
	closed bool
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.Reader.Read(p)
	r.n += int64(n)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

func (r *reader) Close() error {
	err := r.Reader.Close()
	if !r.closed {
		r.closed = true
		r.b.done(r.ctx, "read", r.key, r.start, r.n, errors.Join(r.err, err))
	}
	return err
}

func (b *bucket) NewTypedWriter(ctx context.Context, key, contentType string, opts *driver.WriterOptions) (driver.Writer, error) {
	start := time.Now()
	w, err := b.Base.NewTypedWriter(ctx, key, contentType, opts)
	if err != nil {
		b.done(ctx, "write", key, start, 0, err)
		return nil, err
	}
	return &writer{w: w, b: b, ctx: ctx, key: key, start: start}, nil
}

type writer struct {
	w      driver.Writer
	b      *bucket
	ctx    context.Context
	key    string
	start  time.Time
	n      int64
	err    error
	closed bool
}

func (w *writer) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.n += int64(n)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

func (w *writer) Close() error {
	err := w.w.Close()
	if !w.closed {
		w.closed = true
		cerr := err
		if cerr == nil {
			cerr = w.err
		}
		w.b.done(w.ctx, "write", w.key, w.start, w.n, cerr)
	}
	return err
}

func (b *bucket) Copy(ctx context.Context, dstKey, srcKey string, opts *driver.CopyOptions) error {
	start := time.Now()
	err := b.Base.Copy(ctx, dstKey, srcKey, opts)
	b.done(ctx, "copy", dstKey, start, 0, err)
	return err
}

func (b *bucket) Delete(ctx context.Context, key string, opts *driver.DeleteOptions) error {
	start := time.Now()
	err := b.Base.Delete(ctx, key, opts)
	b.done(ctx, "delete", key, start, 0, err)
	return err
}

func (b *bucket) SignedURL(ctx context.Context, key string, opts *driver.SignedURLOptions) (string, error) {
	start := time.Now()
	u, err := b.Base.SignedURL(ctx, key, opts)
	b.done(ctx, "signed_url", key, start, 0, err)
	return u, err
}
