package retry

import (
	"context"
	"errors"
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
