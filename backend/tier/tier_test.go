package tier

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapefs/tapefs/backend/layer"
	"github.com/tapefs/tapefs/backend/layer/layertest"
	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/blob/memblob"
	"gocloud.dev/gcerrors"
)

// ---- conformance ----

// keepOpen lets the harness build many tiers over the same memblobs: a
// tier closes its buckets.
type keepOpen struct{ layer.Base }

func (keepOpen) Close() error { return nil }

func shared(b *blob.Bucket) *blob.Bucket { return blob.NewBucket(&keepOpen{layer.Base{Inner: b}}) }

// TestConformance runs gocloud's suite over a tier of two memblobs, for
// every write policy.
func TestConformance(t *testing.T) {
	for _, policy := range []WritePolicy{All, Any, Primary} {
		t.Run(policy.String(), func(t *testing.T) {
			layertest.RunDrivers(t, func(t *testing.T) layertest.Maker {
				mems := []*blob.Bucket{memblob.OpenBucket(nil), memblob.OpenBucket(nil)}
				return func(ctx context.Context) (driver.Bucket, error) {
					return New(ctx, []Profile{{"fast", shared(mems[0])}, {"origin", shared(mems[1])}},
						Options{Policy: policy, CloseTimeout: time.Second})
				}
			})
		})
	}
}

// ---- a store that can fail, be slow, block or break reads ----

var errFault = errors.New("injected store fault")

type faulty struct {
	layer.Base
	down     atomic.Bool  // every call fails
	badRead  atomic.Bool  // readers fail after a few bytes
	delay    atomic.Int64 // ns added to Attributes and NewRangeReader
	block    chan struct{}
	attrs    atomic.Int64 // Attributes calls
	reads    atomic.Int64 // NewRangeReader calls
	writes   atomic.Int64 // NewTypedWriter calls
	blocking atomic.Bool
}

func newFaulty() *faulty { return &faulty{Base: layer.Base{Inner: memblob.OpenBucket(nil)}} }

func (f *faulty) ErrorCode(err error) gcerrors.ErrorCode {
	if errors.Is(err, errFault) {
		return gcerrors.Internal
	}
	return f.Base.ErrorCode(err)
}

func (f *faulty) wait(ctx context.Context) error {
	if d := time.Duration(f.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.down.Load() {
		return errFault
	}
	return nil
}

func (f *faulty) Attributes(ctx context.Context, key string) (*driver.Attributes, error) {
	f.attrs.Add(1)
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	return f.Base.Attributes(ctx, key)
}

func (f *faulty) NewRangeReader(ctx context.Context, key string, off, n int64, opts *driver.ReaderOptions) (driver.Reader, error) {
	f.reads.Add(1)
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	r, err := f.Base.NewRangeReader(ctx, key, off, n, opts)
	if err != nil || !f.badRead.Load() {
		return r, err
	}
	return &badReader{Reader: r, left: 3}, nil
}

type badReader struct {
	driver.Reader
	left int
}

func (b *badReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errFault
	}
	if len(p) > b.left {
		p = p[:b.left]
	}
	n, err := b.Reader.Read(p)
	b.left -= n
	return n, err
}

func (f *faulty) NewTypedWriter(ctx context.Context, key, ct string, opts *driver.WriterOptions) (driver.Writer, error) {
	f.writes.Add(1)
	if f.blocking.Load() {
		select {
		case <-f.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.down.Load() {
		return nil, errFault
	}
	return f.Base.NewTypedWriter(ctx, key, ct, opts)
}

func (f *faulty) Copy(ctx context.Context, dst, src string, opts *driver.CopyOptions) error {
	if f.down.Load() {
		return errFault
	}
	return f.Base.Copy(ctx, dst, src, opts)
}

func (f *faulty) Delete(ctx context.Context, key string, opts *driver.DeleteOptions) error {
	if f.down.Load() {
		return errFault
	}
	return f.Base.Delete(ctx, key, opts)
}

func (f *faulty) ListPaged(ctx context.Context, opts *driver.ListOptions) (*driver.ListPage, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	return f.Base.ListPaged(ctx, opts)
}

// mem is the faulty store's data, reached directly.
func (f *faulty) mem() *blob.Bucket { return f.Inner }

// setup builds a tier over a fast profile and an origin. The origin is made
// a little slower at the probe so that the order starts fast first.
func setup(t *testing.T, opts Options) (*Tier, *blob.Bucket, *faulty, *faulty) {
	t.Helper()
	fast, origin := newFaulty(), newFaulty()
	origin.delay.Store(int64(5 * time.Millisecond))
	if opts.RetryWait == 0 {
		opts.RetryWait = 5 * time.Millisecond
	}
	if opts.MaxRetryWait == 0 {
		opts.MaxRetryWait = 20 * time.Millisecond
	}
	if opts.Backoff == 0 {
		opts.Backoff = 50 * time.Millisecond
	}
	if opts.CloseTimeout == 0 {
		opts.CloseTimeout = time.Second
	}
	tr, err := New(context.Background(), []Profile{
		{"fast", blob.NewBucket(fast)}, {"origin", blob.NewBucket(origin)},
	}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := tr.Order(); got[0] != "fast" {
		t.Fatalf("initial order %v, want fast first", got)
	}
	b := blob.NewBucket(tr)
	t.Cleanup(func() { b.Close() })
	return tr, b, fast, origin
}

var ctx = context.Background()

func put(t *testing.T, b *blob.Bucket, key, data string) {
	t.Helper()
	if err := b.WriteAll(ctx, key, []byte(data), &blob.WriterOptions{ContentType: "text/plain"}); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, b *blob.Bucket, key string) string {
	t.Helper()
	got, err := b.ReadAll(ctx, key)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return string(got)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func has(b *blob.Bucket, key, want string) bool {
	got, err := b.ReadAll(ctx, key)
	return err == nil && string(got) == want
}

// ---- reads ----

func TestFallbackOnNotFound(t *testing.T) {
	_, b, fast, origin := setup(t, Options{})
	put(t, origin.mem(), "k", "from origin")
	if got := get(t, b, "k"); got != "from origin" {
		t.Fatalf("got %q", got)
	}
	if fast.reads.Load() == 0 {
		t.Error("the fast profile was not tried first")
	}
	a, err := b.Attributes(ctx, "k")
	if err != nil || a.Size != int64(len("from origin")) {
		t.Fatalf("Attributes = %v, %v", a, err)
	}
	_, err = b.Attributes(ctx, "missing")
	if gcerrors.Code(err) != gcerrors.NotFound || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing key: %v, want NotFound naming the key", err)
	}
	if _, err := b.NewReader(ctx, "missing", nil); gcerrors.Code(err) != gcerrors.NotFound {
		t.Fatalf("missing key reader: %v, want NotFound", err)
	}
}

func TestFallbackOnError(t *testing.T) {
	tr, b, fast, origin := setup(t, Options{Backoff: time.Minute})
	put(t, b, "k", "both")
	fast.down.Store(true)
	if got := get(t, b, "k"); got != "both" {
		t.Fatalf("got %q", got)
	}
	if _, err := b.Attributes(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	st := tr.Status()
	if st[0].Reachable || !strings.Contains(st[0].LastError, "injected store fault") {
		t.Errorf("fast status %+v, want unreachable with the error", st[0])
	}
	if !st[1].Reachable || !st[1].Origin {
		t.Errorf("origin status %+v", st[1])
	}
	if got := tr.Order(); got[0] != "origin" {
		t.Errorf("order %v: an unhealthy profile must be tried last", got)
	}
	// While in backoff the fast profile is not asked first.
	before := origin.reads.Load()
	get(t, b, "k")
	if origin.reads.Load() != before+1 {
		t.Error("origin not asked first while the fast profile is unhealthy")
	}
}

func TestWriteBackAfterSlowHit(t *testing.T) {
	tr, b, fast, origin := setup(t, Options{})
	put(t, origin.mem(), "k", "slow data")
	if got := get(t, b, "k"); got != "slow data" {
		t.Fatalf("got %q", got)
	}
	eventually(t, "write-back to the fast profile", func() bool { return has(fast.mem(), "k", "slow data") })
	a, err := fast.mem().Attributes(ctx, "k")
	if err != nil || a.ContentType != "text/plain" {
		t.Errorf("written-back attributes %+v, %v", a, err)
	}
	eventually(t, "no pending write-backs", func() bool { return tr.Status()[0].PendingWriteBacks == 0 })
	// Now served by the fast profile.
	before := origin.reads.Load()
	get(t, b, "k")
	if origin.reads.Load() != before {
		t.Error("origin read again after the write-back")
	}
}

func TestUnreadableCachedCopy(t *testing.T) {
	tr, b, fast, _ := setup(t, Options{})
	put(t, b, "k", "0123456789abcdef")
	fast.badRead.Store(true)
	writes := fast.writes.Load()
	if got := get(t, b, "k"); got != "0123456789abcdef" {
		t.Fatalf("got %q, want the whole object from the next profile", got)
	}
	fast.badRead.Store(false)
	eventually(t, "repair of the unreadable copy", func() bool {
		return fast.writes.Load() > writes && tr.PendingRepairs() == 0
	})
	if !has(fast.mem(), "k", "0123456789abcdef") {
		t.Error("fast copy wrong after repair")
	}
}

// ---- staleness ----

func TestStaleCopyDroppedAndRefetched(t *testing.T) {
	_, b, fast, origin := setup(t, Options{CheckInterval: time.Nanosecond, ModTimeSlack: -1})
	put(t, b, "k", "version one")
	time.Sleep(2 * time.Millisecond)
	put(t, origin.mem(), "k", "version two, longer") // changed behind the tier's back
	if got := get(t, b, "k"); got != "version two, longer" {
		t.Fatalf("size changed: got %q, want the origin's new version", got)
	}
	eventually(t, "fresh copy in the fast profile", func() bool { return has(fast.mem(), "k", "version two, longer") })

	// Same size, newer modification time.
	time.Sleep(2 * time.Millisecond)
	put(t, origin.mem(), "k", "VERSION TWO, LONGER")
	if got := get(t, b, "k"); got != "VERSION TWO, LONGER" {
		t.Fatalf("same size, newer origin: got %q", got)
	}
	eventually(t, "fast copy refreshed", func() bool { return has(fast.mem(), "k", "VERSION TWO, LONGER") })

	// Attributes notice it too.
	time.Sleep(2 * time.Millisecond)
	put(t, origin.mem(), "k", "v4")
	a, err := b.Attributes(ctx, "k")
	if err != nil || a.Size != 2 {
		t.Fatalf("Attributes = %+v, %v; want the origin's size 2", a, err)
	}
	eventually(t, "fast copy v4", func() bool { return has(fast.mem(), "k", "v4") })

	// Deleted at the origin: the orphaned copy goes too.
	if err := origin.mem().Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ReadAll(ctx, "k"); gcerrors.Code(err) != gcerrors.NotFound {
		t.Fatalf("after origin delete: %v, want NotFound", err)
	}
	if ok, _ := fast.mem().Exists(ctx, "k"); ok {
		t.Error("orphaned fast copy not dropped")
	}
}

func TestNoCheckWithinIntervalAfterWrite(t *testing.T) {
	_, b, _, origin := setup(t, Options{CheckInterval: time.Hour})
	put(t, b, "k", "cached") // a write through the tier counts as a check
	attrs, reads := origin.attrs.Load(), origin.reads.Load()
	for range 10 {
		get(t, b, "k")
		if _, err := b.Attributes(ctx, "k"); err != nil {
			t.Fatal(err)
		}
	}
	if origin.attrs.Load() != attrs || origin.reads.Load() != reads {
		t.Errorf("origin asked %d/%d times within the interval after a write, want 0",
			origin.attrs.Load()-attrs, origin.reads.Load()-reads)
	}
}

func TestStaleCheckOncePerKey(t *testing.T) {
	tr, b, fast, origin := setup(t, Options{CheckInterval: time.Hour})
	put(t, fast.mem(), "k", "cache only")
	put(t, origin.mem(), "k", "cache only")
	attrs := origin.attrs.Load()
	for range 10 {
		get(t, b, "k")
	}
	if n := origin.attrs.Load() - attrs; n != 1 {
		t.Errorf("origin checked %d times for 10 reads, want 1", n)
	}
	if n := origin.reads.Load(); n != 0 {
		t.Errorf("origin read %d times, want 0 (served by the fast copy)", n)
	}
	_ = tr
}

// ---- speed ----

func TestSpeedOrderFollowsLatency(t *testing.T) {
	tr, b, fast, origin := setup(t, Options{CheckInterval: -1})
	origin.delay.Store(int64(2 * time.Millisecond))
	put(t, b, "k", "data")
	fast.delay.Store(int64(20 * time.Millisecond))
	for n := 0; tr.Order()[0] != "origin"; n++ {
		if n > 50 {
			t.Fatalf("order still %v after %d slow reads; status %+v", tr.Order(), n, tr.Status())
		}
		get(t, b, "k")
	}
	before := fast.reads.Load()
	get(t, b, "k")
	if fast.reads.Load() != before {
		t.Error("the slow profile was still asked first")
	}
	if st := tr.Status(); st[0].Latency <= st[1].Latency {
		t.Errorf("latencies %v, %v: fast should now be slower", st[0].Latency, st[1].Latency)
	}
}

// ---- writes ----

func TestWritePolicies(t *testing.T) {
	tests := []struct {
		policy           WritePolicy
		fastDown, orDown bool
		wantErr          bool
	}{
		{All, false, false, false},
		{All, true, false, true},
		{All, false, true, true},
		{Any, true, false, false},
		{Any, false, true, false},
		{Any, true, true, true},
		{Primary, true, false, true},
		{Primary, false, true, false},
	}
	for _, tc := range tests {
		name := tc.policy.String()
		if tc.fastDown {
			name += "/fast-down"
		}
		if tc.orDown {
			name += "/origin-down"
		}
		t.Run(name, func(t *testing.T) {
			tr, b, fast, origin := setup(t, Options{Policy: tc.policy, Retries: 1000,
				RetryWait: time.Hour, MaxRetryWait: time.Hour, CloseTimeout: 10 * time.Millisecond})
			put(t, b, "src", "source")
			put(t, b, "del", "doomed")
			fast.down.Store(tc.fastDown)
			origin.down.Store(tc.orDown)
			check := func(op string, err error) {
				t.Helper()
				if (err != nil) != tc.wantErr {
					t.Errorf("%s: err = %v, want error %v", op, err, tc.wantErr)
				}
				if err != nil && gcerrors.Code(err) != gcerrors.Internal {
					t.Errorf("%s: code %v, want the store's Internal", op, gcerrors.Code(err))
				}
			}
			check("write", b.WriteAll(ctx, "k", []byte("new"), &blob.WriterOptions{ContentType: "text/plain"}))
			check("write (detected type)", b.WriteAll(ctx, "k2", []byte("new"), nil))
			check("copy", b.Copy(ctx, "dst", "src", nil))
			check("delete", b.Delete(ctx, "del"))
			for _, x := range []struct {
				f    *faulty
				down bool
			}{{fast, tc.fastDown}, {origin, tc.orDown}} {
				if x.down {
					continue
				}
				// A profile that is up has every operation that was not
				// abandoned before its commit.
				if !tc.wantErr {
					if !has(x.f.mem(), "k", "new") || !has(x.f.mem(), "dst", "source") {
						t.Errorf("a working profile misses a write")
					}
					if ok, _ := x.f.mem().Exists(ctx, "del"); ok {
						t.Errorf("a working profile misses a delete")
					}
				}
			}
			if (tc.fastDown || tc.orDown) && !(tc.fastDown && tc.orDown) && tc.policy != All {
				if n := tr.PendingRepairs(); n == 0 {
					t.Error("no repair recorded for the profile that missed the writes")
				}
			}
		})
	}
}

func TestAllPolicyOriginFailureCommitsNowhere(t *testing.T) {
	_, b, fast, origin := setup(t, Options{Policy: All})
	origin.down.Store(true)
	if err := b.WriteAll(ctx, "k", []byte("x"), &blob.WriterOptions{ContentType: "text/plain"}); err == nil {
		t.Fatal("want an error")
	}
	if ok, _ := fast.mem().Exists(ctx, "k"); ok {
		t.Error("fast profile committed a write that failed")
	}
}

func TestRepairAfterProfileReturns(t *testing.T) {
	tr, b, fast, _ := setup(t, Options{Policy: Any, Retries: 100})
	put(t, b, "gone", "old")
	fast.down.Store(true)
	put(t, b, "k", "written while fast was down")
	if err := b.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := b.Copy(ctx, "k-copy", "k", nil); err != nil {
		t.Fatal(err)
	}
	if n := tr.PendingRepairs(); n != 3 {
		t.Fatalf("pending repairs %d, want 3", n)
	}
	if st := tr.Status(); st[0].PendingRepairs != 3 || st[1].PendingRepairs != 0 {
		t.Errorf("status %+v", st)
	}
	// A read skips the profile that is known to miss the key.
	if got := get(t, b, "k"); got != "written while fast was down" {
		t.Fatalf("got %q", got)
	}
	time.Sleep(20 * time.Millisecond) // a few failed repair attempts
	if ok, _ := fast.mem().Exists(ctx, "k"); ok {
		t.Fatal("repaired while down?")
	}
	fast.down.Store(false)
	eventually(t, "repairs done", func() bool { return tr.PendingRepairs() == 0 })
	if !has(fast.mem(), "k", "written while fast was down") || !has(fast.mem(), "k-copy", "written while fast was down") {
		t.Error("write not repaired")
	}
	if ok, _ := fast.mem().Exists(ctx, "gone"); ok {
		t.Error("delete not repaired")
	}
}

func TestRepairGivesUp(t *testing.T) {
	tr, b, fast, _ := setup(t, Options{Policy: Any, Retries: 2})
	fast.down.Store(true)
	put(t, b, "k", "x")
	eventually(t, "the repair to be given up", func() bool { return tr.PendingRepairs() == 0 })
	if ok, _ := fast.mem().Exists(ctx, "k"); ok {
		t.Error("repaired while down?")
	}
}

func TestPrimaryOriginRepairedFromCache(t *testing.T) {
	tr, b, _, origin := setup(t, Options{Policy: Primary, CheckInterval: time.Nanosecond,
		RetryWait: 300 * time.Millisecond, MaxRetryWait: 300 * time.Millisecond})
	origin.down.Store(true)
	put(t, b, "k", "only in the cache")
	time.Sleep(30 * time.Millisecond) // the first repair attempt fails
	origin.down.Store(false)
	// The origin lacks it, yet the cached copy is not dropped as orphaned.
	if got := get(t, b, "k"); got != "only in the cache" {
		t.Fatalf("got %q", got)
	}
	eventually(t, "origin repaired", func() bool { return has(origin.mem(), "k", "only in the cache") })
	eventually(t, "no pending repairs", func() bool { return tr.PendingRepairs() == 0 })
}

// ---- queue bounds and close ----

func TestWriteBackQueueDropsWhenFull(t *testing.T) {
	tr, b, fast, origin := setup(t, Options{QueueSize: 1, Workers: 1, CloseTimeout: 50 * time.Millisecond})
	fast.block = make(chan struct{})
	fast.blocking.Store(true)
	const n = 6
	for i := range n {
		put(t, origin.mem(), string(rune('a'+i)), "x")
	}
	start := time.Now()
	for i := range n {
		get(t, b, string(rune('a'+i)))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("reads took %v: a read waited for a write-back", d)
	}
	st := tr.Status()[0]
	if st.DroppedWriteBacks < n-2 || st.DroppedWriteBacks+st.PendingWriteBacks != n {
		t.Errorf("dropped %d, pending %d of %d write-backs with one worker and one queue slot",
			st.DroppedWriteBacks, st.PendingWriteBacks, n)
	}
	// Close abandons the blocked job within its bound.
	start = time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
}

func TestCloseDrains(t *testing.T) {
	fast, origin := newFaulty(), newFaulty()
	put(t, origin.mem(), "k", "x")
	tr, err := New(ctx, []Profile{{"fast", shared(blob.NewBucket(fast))}, {"origin", shared(blob.NewBucket(origin))}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tr.writeBack(1, []int{0}, "k")
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if !has(fast.mem(), "k", "x") {
		t.Error("queued write-back not drained by Close")
	}
}

// ---- listing ----

func TestListFromOrigin(t *testing.T) {
	_, b, fast, origin := setup(t, Options{})
	put(t, fast.mem(), "cache-only", "x")
	put(t, origin.mem(), "origin-only", "y")
	list := func() []string {
		var keys []string
		it := b.List(nil)
		for {
			o, err := it.Next(ctx)
			if err == io.EOF {
				return keys
			}
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, o.Key)
		}
	}
	if got := strings.Join(list(), ","); got != "origin-only" {
		t.Errorf("listing %q, want the origin's", got)
	}
	origin.down.Store(true)
	if got := strings.Join(list(), ","); got != "cache-only" {
		t.Errorf("listing with the origin down: %q, want the next profile's", got)
	}
}

func TestListPaging(t *testing.T) {
	_, b, _, origin := setup(t, Options{})
	for i := range 5 {
		put(t, origin.mem(), string(rune('a'+i)), "x")
	}
	var keys []string
	token := blob.FirstPageToken
	for {
		objs, next, err := b.ListPage(ctx, token, 2, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			keys = append(keys, o.Key)
		}
		if len(next) == 0 {
			break
		}
		token = next
	}
	if got := strings.Join(keys, ""); got != "abcde" {
		t.Errorf("paged listing %q", got)
	}
}

// ---- status ----

func TestRedact(t *testing.T) {
	in := `Get "https://user:hunter2@s3.example.com/b/k?X-Amz-Signature=abc123&x=1": AKIAABCDEFGHIJKLMNOP secret_key=shh token: tok9`
	out := Redact(in)
	for _, secret := range []string{"hunter2", "abc123", "AKIAABCDEFGHIJKLMNOP", "shh", "tok9"} {
		if strings.Contains(out, secret) {
			t.Errorf("%q survives in %q", secret, out)
		}
	}
	if !strings.Contains(out, "s3.example.com/b/k") || !strings.Contains(out, "x=1") {
		t.Errorf("redacted too much: %q", out)
	}
}

func TestNewProbesProfiles(t *testing.T) {
	fast, origin := newFaulty(), newFaulty()
	fast.down.Store(true)
	origin.delay.Store(int64(3 * time.Millisecond))
	tr, err := New(ctx, []Profile{{"fast", blob.NewBucket(fast)}, {"", blob.NewBucket(origin)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	st := tr.Status()
	if st[0].Reachable || st[0].LastError == "" {
		t.Errorf("a profile failing its probe: %+v", st[0])
	}
	if st[1].Name != "profile1" || !st[1].Reachable || st[1].Latency < 3*time.Millisecond {
		t.Errorf("origin after probe: %+v", st[1])
	}
	if _, err := New(ctx, nil, Options{}); err == nil {
		t.Error("New without profiles succeeded")
	}
}

func TestReadSkipsProfileAwaitingRepair(t *testing.T) {
	tr, b, fast, _ := setup(t, Options{Policy: Any, CheckInterval: time.Hour, Backoff: time.Millisecond,
		RetryWait: time.Hour, MaxRetryWait: time.Hour, CloseTimeout: 10 * time.Millisecond})
	put(t, b, "k", "v1")
	fast.down.Store(true)
	put(t, b, "k", "v2, while the fast profile was down")
	time.Sleep(30 * time.Millisecond) // the first repair attempt fails; the next is an hour away
	fast.down.Store(false)
	if tr.PendingRepairs() != 1 || tr.Order()[0] != "fast" {
		t.Fatalf("pending %d, order %v", tr.PendingRepairs(), tr.Order())
	}
	reads := fast.reads.Load()
	if got := get(t, b, "k"); got != "v2, while the fast profile was down" {
		t.Fatalf("got %q: served the copy known to be outdated", got)
	}
	if fast.reads.Load() != reads {
		t.Error("the profile awaiting repair was read")
	}
}

func TestThreeProfilesWriteBackToFasterOnly(t *testing.T) {
	fast, mid, origin := newFaulty(), newFaulty(), newFaulty()
	// Gaps far above the scheduling jitter of a loaded machine (-race, tests
	// in parallel): the order comes from one timed probe of each.
	mid.delay.Store(int64(20 * time.Millisecond))
	origin.delay.Store(int64(60 * time.Millisecond))
	tr, err := New(ctx, []Profile{{"fast", blob.NewBucket(fast)}, {"mid", blob.NewBucket(mid)},
		{"origin", blob.NewBucket(origin)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := blob.NewBucket(tr)
	defer b.Close()
	if got := strings.Join(tr.Order(), ","); got != "fast,mid,origin" {
		t.Fatalf("order %s", got)
	}
	put(t, mid.mem(), "k", "in the middle")
	put(t, origin.mem(), "k", "in the middle")
	if got := get(t, b, "k"); got != "in the middle" {
		t.Fatalf("got %q", got)
	}
	if origin.reads.Load() != 0 {
		t.Error("the origin was read although the middle profile had the object")
	}
	eventually(t, "write-back to the fastest profile", func() bool { return has(fast.mem(), "k", "in the middle") })
	if st := tr.Status(); !st[2].Origin || st[0].Origin || st[2].Name != "origin" {
		t.Errorf("status %+v", st)
	}
}

func TestCopyWhenCacheLacksSource(t *testing.T) {
	tr, b, fast, origin := setup(t, Options{Policy: All})
	put(t, origin.mem(), "src", "origin only")
	put(t, fast.mem(), "dst", "old dst in the cache")
	put(t, origin.mem(), "dst", "old dst in the cache")
	if err := b.Copy(ctx, "dst", "src", nil); err != nil {
		t.Fatalf("copy with the source only in the origin: %v", err)
	}
	if got := get(t, b, "dst"); got != "origin only" {
		t.Fatalf("read after copy: %q (the cache's old dst must not be served)", got)
	}
	eventually(t, "cache repaired", func() bool { return has(fast.mem(), "dst", "origin only") && tr.PendingRepairs() == 0 })
	if err := b.Copy(ctx, "x", "nowhere", nil); gcerrors.Code(err) != gcerrors.NotFound {
		t.Errorf("copy of a missing source: %v, want NotFound", err)
	}
}

func TestMidReadFallbackRefusesAnotherVersion(t *testing.T) {
	_, b, fast, origin := setup(t, Options{CheckInterval: -1})
	put(t, fast.mem(), "k", "AAAAAAAA")
	put(t, origin.mem(), "k", "BBBBBBBBBBBB")
	fast.badRead.Store(true)
	got, err := b.ReadAll(ctx, "k")
	if err == nil {
		t.Fatalf("read spliced two versions: %q", got)
	}
}
