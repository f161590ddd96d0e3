package retry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/tapefs/tapefs/backend/layer"
	"github.com/tapefs/tapefs/backend/layer/layertest"
	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/blob/memblob"
	"gocloud.dev/gcerrors"
)

func TestConformance(t *testing.T) {
	layertest.Run(t, func(t *testing.T, inner *blob.Bucket) driver.Bucket {
		return &bucket{Base: layer.Base{Inner: inner}, opts: noSleep()}
	})
}

func noSleep() Options {
	o := Options{Sleep: func(ctx context.Context, d time.Duration) error { return ctx.Err() }}
	o.fill()
	return o
}

// flaky fails Attributes with code for its first `fails` calls.
type flaky struct {
	layer.Base
	code  gcerrors.ErrorCode
	fails int
	calls int
}

var errFlaky = errors.New("flaky store")

func (f *flaky) ErrorCode(err error) gcerrors.ErrorCode {
	if errors.Is(err, errFlaky) {
		return f.code
	}
	return f.Base.ErrorCode(err)
}

func (f *flaky) Attributes(ctx context.Context, key string) (*driver.Attributes, error) {
	f.calls++
	if f.calls <= f.fails {
		return nil, errFlaky
	}
	return f.Base.Attributes(ctx, key)
}

func TestRetryPolicy(t *testing.T) {
	tests := []struct {
		name      string
		code      gcerrors.ErrorCode
		fails     int
		wantCalls int
		wantErr   bool
	}{
		{"transient then ok", gcerrors.Internal, 2, 3, false},
		{"throttled then ok", gcerrors.ResourceExhausted, 1, 2, false},
		{"network error then ok", gcerrors.Unknown, 3, 4, false},
		{"transient past the attempts", gcerrors.Internal, 10, 4, true},
		{"access denied is permanent", gcerrors.PermissionDenied, 10, 1, true},
		{"not found is permanent", gcerrors.NotFound, 10, 1, true},
		{"bad request is permanent", gcerrors.InvalidArgument, 10, 1, true},
	}
	ctx := context.Background()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := memblob.OpenBucket(nil)
			if err := mem.WriteAll(ctx, "k", []byte("v"), nil); err != nil {
				t.Fatal(err)
			}
			f := &flaky{Base: layer.Base{Inner: mem}, code: tc.code, fails: tc.fails}
			var slept []time.Duration
			b := Wrap(blob.NewBucket(f), Options{Sleep: func(ctx context.Context, d time.Duration) error {
				slept = append(slept, d)
				return nil
			}})
			_, err := b.Attributes(ctx, "k")
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if f.calls != tc.wantCalls {
				t.Errorf("calls = %d, want %d", f.calls, tc.wantCalls)
			}
			if len(slept) != tc.wantCalls-1 {
				t.Errorf("slept %d times, want %d", len(slept), tc.wantCalls-1)
			}
			if tc.wantErr && gcerrors.Code(err) != tc.code {
				t.Errorf("code = %v, want %v (the cause must survive)", gcerrors.Code(err), tc.code)
			}
		})
	}
}

func TestStopsOnCancel(t *testing.T) {
	mem := memblob.OpenBucket(nil)
	f := &flaky{Base: layer.Base{Inner: mem}, code: gcerrors.Internal, fails: 100}
	ctx, cancel := context.WithCancel(context.Background())
	b := Wrap(blob.NewBucket(f), Options{Attempts: 100, Sleep: func(c context.Context, d time.Duration) error {
		cancel()
		return c.Err()
	}})
	if _, err := b.Attributes(ctx, "k"); err == nil {
		t.Fatal("want an error")
	}
	if f.calls != 1 {
		t.Errorf("calls = %d after cancel, want 1", f.calls)
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	mem := memblob.OpenBucket(nil)
	f := &flaky{Base: layer.Base{Inner: mem}, code: gcerrors.Internal, fails: 100}
	var slept []time.Duration
	b := Wrap(blob.NewBucket(f), Options{Attempts: 8, Initial: 100 * time.Millisecond, Max: 400 * time.Millisecond,
		Sleep: func(ctx context.Context, d time.Duration) error { slept = append(slept, d); return nil }})
	b.Attributes(context.Background(), "k")
	for i, d := range slept {
		if d > 600*time.Millisecond { // Max plus half of it for jitter
			t.Errorf("wait %d = %v, above the cap", i, d)
		}
	}
	if len(slept) != 7 {
		t.Errorf("slept %d times, want 7", len(slept))
	}
}

// cutting serves range reads whose bodies fail after cutAfter bytes, for
// the first `cuts` reads; replaced, when set, is written over the object
// after the first cut (another writer replacing it mid-read).
type cutting struct {
	layer.Base
	cutAfter int64
	cuts     int
	err      error
	replaced []byte
	opens    []int64 // offsets of the range reads asked for
}

func (c *cutting) NewRangeReader(ctx context.Context, key string, off, n int64, opts *driver.ReaderOptions) (driver.Reader, error) {
	c.opens = append(c.opens, off)
	r, err := c.Base.NewRangeReader(ctx, key, off, n, opts)
	if err != nil || c.cuts == 0 {
		return r, err
	}
	c.cuts--
	return &cutReader{Reader: r, left: c.cutAfter, err: c.err, after: func() {
		if c.replaced != nil {
			c.Inner.WriteAll(ctx, key, c.replaced, nil)
			c.replaced = nil
		}
	}}, nil
}

type cutReader struct {
	driver.Reader
	left  int64
	err   error
	after func()
}

func (r *cutReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		r.after()
		return 0, r.err
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.Reader.Read(p)
	r.left -= int64(n)
	return n, err
}

// TestResumesCutBodies: a range read whose body fails part way goes on
// from the byte it reached, once the failure is transient and the object
// is the same; otherwise the read fails with the cause.
func TestResumesCutBodies(t *testing.T) {
	data := make([]byte, 10_000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	errDropped := errors.New("connection reset by peer")
	longer := append(append([]byte(nil), data...), 'x')
	tests := []struct {
		name      string
		off, n    int64
		cuts      int
		cutAfter  int64
		err       error
		code      gcerrors.ErrorCode
		replaced  []byte
		wantOpens []int64 // nil: the read must fail
	}{
		{"cut once, whole object", 0, -1, 1, 3000, errDropped, gcerrors.Unknown, nil, []int64{0, 3000}},
		{"cut twice, a range", 1000, 5000, 2, 1500, errDropped, gcerrors.Unknown, nil, []int64{1000, 2500, 4000}},
		{"cut more often than the attempts", 0, -1, 10, 100, errDropped, gcerrors.Unknown, nil, nil},
		{"permanent failure mid-body", 0, -1, 1, 3000, errDropped, gcerrors.PermissionDenied, nil, nil},
		{"object replaced before the resume", 0, -1, 1, 3000, errDropped, gcerrors.Unknown, longer, nil},
	}
	ctx := context.Background()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := memblob.OpenBucket(nil)
			if err := mem.WriteAll(ctx, "k", data, nil); err != nil {
				t.Fatal(err)
			}
			c := &cutting{cutAfter: tc.cutAfter, cuts: tc.cuts, err: tc.err, replaced: tc.replaced}
			f := &codeOf{cutting: c, code: tc.code, cause: tc.err}
			c.Base = layer.Base{Inner: mem}
			b := Wrap(blob.NewBucket(f), Options{Attempts: 4, Sleep: func(ctx context.Context, d time.Duration) error { return nil }})
			r, err := b.NewRangeReader(ctx, "k", tc.off, tc.n, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			end := int64(len(data))
			if tc.n >= 0 {
				end = tc.off + tc.n
			}
			if tc.wantOpens == nil {
				if err == nil {
					t.Fatalf("read succeeded (%d bytes), want the failure", len(got))
				}
				if !bytes.Equal(got, data[tc.off:tc.off+int64(len(got))]) {
					t.Errorf("the bytes before the failure are not the object's")
				}
				return
			}
			if err != nil {
				t.Fatalf("read failed: %v (opens at %v)", err, c.opens)
			}
			if !bytes.Equal(got, data[tc.off:end]) {
				t.Errorf("read %d bytes that are not the range's %d", len(got), end-tc.off)
			}
			if fmt.Sprint(c.opens) != fmt.Sprint(tc.wantOpens) {
				t.Errorf("range reads opened at %v, want %v", c.opens, tc.wantOpens)
			}
		})
	}
}

// codeOf gives cause the error code code, as a store's driver would.
type codeOf struct {
	*cutting
	code  gcerrors.ErrorCode
	cause error
}

func (c *codeOf) ErrorCode(err error) gcerrors.ErrorCode {
	if errors.Is(err, c.cause) {
		return c.code
	}
	return c.cutting.ErrorCode(err)
}
