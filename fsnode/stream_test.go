package fsnode

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/tapefs/tapefs/backend/layer"
	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/blob/memblob"
)

// downBucket is a store whose writes fail while down is set; it counts the
// writers opened and those closed without an error.
type downBucket struct {
	layer.Base
	down            atomic.Bool
	opened, written atomic.Int32
}

var errDown = errors.New("connection refused (test store down)")

func (b *downBucket) NewTypedWriter(ctx context.Context, key, contentType string, opts *driver.WriterOptions) (driver.Writer, error) {
	w, err := b.Base.NewTypedWriter(ctx, key, contentType, opts)
	if err != nil {
		return nil, err
	}
	b.opened.Add(1)
	return &downWriter{Writer: w, b: b}, nil
}

type downWriter struct {
	driver.Writer
	b      *downBucket
	failed bool
}

func (w *downWriter) Write(p []byte) (int, error) {
	if w.b.down.Load() {
		w.failed = true
		return 0, errDown
	}
	return w.Writer.Write(p)
}

func (w *downWriter) Close() error {
	err := w.Writer.Close()
	if w.failed || w.b.down.Load() {
		return errDown // the inner writer's context is cancelled by the caller
	}
	if err == nil {
		w.b.written.Add(1)
	}
	return err
}

// streamFixture is a tree over a memory store with one file being written.
type streamFixture struct {
	t     *testing.T
	store *downBucket
	fsys  *FS
	node  *fileNode
	h     *handle
}

func newStreamFixture(t *testing.T, key string) *streamFixture {
	t.Helper()
	mem := memblob.OpenBucket(nil)
	store := &downBucket{Base: layer.Base{Inner: mem}}
	bucket := blob.NewBucket(store)
	t.Cleanup(func() { bucket.Close() })
	sc := testSidecar(t)
	staging, err := NewStaging(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fsys := New(Options{Bucket: bucket, Sidecar: sc, Staging: staging})
	sw, err := staging.New(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.MarkDirty(); err != nil {
		t.Fatal(err)
	}
	n := &fileNode{fsys: fsys, key: key}
	n.adoptStaged(sw)
	return &streamFixture{t: t, store: store, fsys: fsys, node: n, h: &handle{node: n, write: true}}
}

// write writes data at off in writes of 1 MiB (as the kernel sends them).
func (f *streamFixture) write(data []byte, off int64) {
	f.t.Helper()
	for i := 0; i < len(data); i += 1 << 20 {
		p := data[i:min(i+1<<20, len(data))]
		if n, errno := f.h.Write(context.Background(), p, off+int64(i)); errno != 0 || int(n) != len(p) {
			f.t.Fatalf("write at %d: %d bytes, errno %v", off+int64(i), n, errno)
		}
	}
}

func (f *streamFixture) streaming() bool {
	sw := f.node.stagedWrite()
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.stream != nil
}

func (f *streamFixture) stored(key string) ([]byte, bool) {
	b, err := f.store.Inner.ReadAll(context.Background(), key)
	return b, err == nil
}

// closeExpect closes the handle and checks that key holds want.
func (f *streamFixture) closeExpect(key string, want []byte) {
	f.t.Helper()
	if _, ok := f.stored(key); ok {
		f.t.Fatal("the object is visible before close")
	}
	if errno := f.h.Flush(context.Background()); errno != 0 {
		f.t.Fatalf("close: %v", errno)
	}
	f.h.Release(context.Background())
	if got, ok := f.stored(key); !ok || !bytes.Equal(got, want) {
		f.t.Fatalf("store holds %d bytes of %s (ok=%v), want the %d written", len(got), key, ok, len(want))
	}
}

func TestStreamedUploadSequential(t *testing.T) {
	f := newStreamFixture(t, "big.jsonl")
	data := randomBytes(streamMin*2 + 12345)
	f.write(data[:streamMin-1], 0)
	if f.streaming() {
		t.Fatal("a streamed upload started below streamMin")
	}
	f.write(data[streamMin-1:], streamMin-1)
	if !f.streaming() {
		t.Fatal("a file written in order past streamMin is not streamed")
	}
	f.closeExpect("big.jsonl", data)
	if o, w := f.store.opened.Load(), f.store.written.Load(); o != 1 || w != 1 {
		t.Errorf("%d writers opened, %d completed; want one streamed writer, no second upload", o, w)
	}
	if f.fsys.stats.Uploads.Load() != 1 || f.fsys.stats.UploadBytes.Load() != int64(len(data)) {
		t.Errorf("stats: %d uploads, %d bytes", f.fsys.stats.Uploads.Load(), f.fsys.stats.UploadBytes.Load())
	}
	if e, ok, err := f.fsys.sc.Lookup(context.Background(), "", "big.jsonl"); err != nil || !ok || e.Size != int64(len(data)) {
		t.Errorf("sidecar row after the upload: %+v ok=%v err=%v", e, ok, err)
	}
}

func TestStreamedUploadOutOfOrderFallsBack(t *testing.T) {
	f := newStreamFixture(t, "seek.jsonl")
	data := randomBytes(streamMin + 3<<20)
	f.write(data, 0)
	if !f.streaming() {
		t.Fatal("not streamed")
	}
	patch := []byte("overwritten in the middle")
	f.write(patch, 1000) // seek back and overwrite: the streamed writer is abandoned
	copy(data[1000:], patch)
	if f.streaming() {
		t.Fatal("the streamed upload survived a write behind the end")
	}
	more := randomBytes(streamMin)
	f.write(more, int64(len(data))) // in order again, but the file stays out of order
	data = append(data, more...)
	if f.streaming() {
		t.Fatal("a file written out of order was streamed again")
	}
	f.closeExpect("seek.jsonl", data) // the aborted writer left no object
	if w := f.store.written.Load(); w != 1 {
		t.Errorf("%d writers completed, want 1 (the whole-file upload)", w)
	}
}

func TestStreamedUploadTruncateAndRename(t *testing.T) {
	f := newStreamFixture(t, "a.jsonl")
	f.write(randomBytes(streamMin+1), 0)
	if !f.streaming() {
		t.Fatal("not streamed")
	}
	sw := f.node.stagedWrite()
	if err := sw.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if f.streaming() {
		t.Fatal("the streamed upload survived a truncate")
	}
	data := randomBytes(streamMin + 7)
	f.write(data, 0) // in order from the start again: streamed anew
	if !f.streaming() {
		t.Fatal("a file rewritten in order after truncate(0) is not streamed")
	}
	f.node.setKey("b.jsonl") // renamed while open: the new key gets the upload
	if errno := f.h.Flush(context.Background()); errno != 0 {
		t.Fatalf("close: %v", errno)
	}
	f.h.Release(context.Background())
	if got, ok := f.stored("b.jsonl"); !ok || !bytes.Equal(got, data) {
		t.Fatalf("b.jsonl holds %d bytes (ok=%v), want %d", len(got), ok, len(data))
	}
	if _, ok := f.stored("a.jsonl"); ok {
		t.Error("the old key got an object")
	}
}

func TestStreamedUploadServerDown(t *testing.T) {
	f := newStreamFixture(t, "down.jsonl")
	data := randomBytes(streamMin*2 + 99)
	f.write(data[:streamMin+5], 0)
	if !f.streaming() {
		t.Fatal("not streamed")
	}
	f.store.down.Store(true) // the server goes away mid-stream
	f.write(data[streamMin+5:], streamMin+5)
	if errno := f.h.Flush(context.Background()); errno == 0 {
		t.Fatal("close succeeded with the store down")
	}
	f.h.Release(context.Background()) // the last handle: queued for retry
	if _, ok := f.stored("down.jsonl"); ok {
		t.Fatal("a partial object is visible")
	}
	if p := f.fsys.Pending(); len(p) != 1 || p[0].Key != "down.jsonl" {
		t.Fatalf("pending after the failed close: %+v", p)
	}
	if err := f.fsys.RetryFailed(); err == nil {
		t.Fatal("retry succeeded with the store down")
	}
	f.store.down.Store(false)
	if err := f.fsys.RetryFailed(); err != nil {
		t.Fatalf("retry with the store back: %v", err)
	}
	if got, ok := f.stored("down.jsonl"); !ok || !bytes.Equal(got, data) {
		t.Fatalf("after the retry the store holds %d bytes (ok=%v), want %d", len(got), ok, len(data))
	}
	if p := f.fsys.Pending(); len(p) != 0 {
		t.Errorf("still pending: %+v", p)
	}
}

func TestStreamedUploadAbandonedLeavesNoObject(t *testing.T) {
	// A crash mid-stream is a writer never closed; an unlink while open
	// aborts it. Neither may leave an object.
	f := newStreamFixture(t, "gone.jsonl")
	f.write(randomBytes(streamMin*3), 0)
	if !f.streaming() {
		t.Fatal("not streamed")
	}
	if _, ok := f.stored("gone.jsonl"); ok {
		t.Fatal("the object is visible while it is written")
	}
	f.node.markDeleted()
	f.h.Release(context.Background())
	if _, ok := f.stored("gone.jsonl"); ok {
		t.Fatal("an unlinked file's streamed upload left an object")
	}
	if w := f.store.written.Load(); w != 0 {
		t.Errorf("%d writers completed", w)
	}
}
