package fsnode

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tapefs/tapefs/backend/layer"
	"github.com/tapefs/tapefs/cache"
	"github.com/tapefs/tapefs/meta"
	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/blob/memblob"
)

// aheadStores is a sidecar and a disk cache for a test of dirAhead.
func aheadStores(t *testing.T) (*meta.Sidecar, *cache.Disk) {
	t.Helper()
	sc := testSidecar(t)
	dc, err := cache.Open(t.TempDir(), 64<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	return sc, dc
}

// aheadRead opens e as the mount does (a reader, then the open recorded for
// read-ahead) and reads it whole.
func aheadRead(ctx context.Context, f *FS, b *blob.Bucket, e meta.Entry) ([]byte, error) {
	r := NewObjectReader(b, e.Key, version(e), e.Size, f.opts.Read, &f.stats)
	defer func() { r.Close(); r.wait() }()
	f.ahead.opened(e)
	p := make([]byte, e.Size)
	n, err := r.ReadAt(ctx, p, 0)
	return p[:n], err
}

// TestDirAhead: opening the files of a directory in name order fetches the
// heads of the next ones into the disk cache, where their reads find them;
// an open out of order fetches nothing more; and what is fetched is what
// the store holds.
func TestDirAhead(t *testing.T) {
	ctx := t.Context()
	sc, dc := aheadStores(t)
	b := memblob.OpenBucket(nil)
	const n = 40
	data := map[string][]byte{}
	var ents []meta.Entry
	for i := range n {
		key := fmt.Sprintf("d/t%03d.jsonl", i)
		data[key] = bytes.Repeat([]byte{byte('a' + i%26)}, 3000+i)
		if err := b.WriteAll(ctx, key, data[key], nil); err != nil {
			t.Fatal(err)
		}
		o, err := sc.PutObject(ctx, meta.Object{Key: key, Size: int64(len(data[key])), ModTime: time.Unix(1700000000, 0), ETag: fmt.Sprintf("e%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ents = append(ents, meta.Entry{Name: filepath.Base(key), ID: o.ID, Size: o.Size, ModTime: o.ModTime, ETag: o.ETag, Key: key})
		// A companion between each two tapes, which grep *.jsonl never opens.
		comp := fmt.Sprintf("d/t%03d.meta.json", i)
		if err := b.WriteAll(ctx, comp, []byte("{}"), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := sc.PutObject(ctx, meta.Object{Key: comp, Size: 2, ModTime: time.Unix(1700000000, 0), ETag: fmt.Sprintf("c%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	companionCached := func() int {
		k := 0
		for i := range n {
			if dc.Has(cache.Name(fmt.Sprintf("d/t%03d.meta.json", i), fmt.Sprintf("c%d", i), 0)) {
				k++
			}
		}
		return k
	}
	f := New(Options{Bucket: b, Sidecar: sc, Read: ReadOptions{Cache: dc}})
	t.Cleanup(f.ahead.wg.Wait) // fetches write into dc's directory

	read := func(e meta.Entry) {
		t.Helper()
		if p, err := aheadRead(ctx, f, b, e); err != nil || !bytes.Equal(p, data[e.Key]) {
			t.Fatalf("%s: read %d bytes, err %v, equal %v", e.Key, len(p), err, bytes.Equal(p, data[e.Key]))
		}
	}
	cached := func(i int) bool { return dc.Has(cache.Name(ents[i].Key, version(ents[i]), 0)) }

	for i := range 3 {
		read(ents[i])
	}
	f.ahead.wg.Wait()
	for i := 3; i < 3+aheadFiles; i++ {
		if !cached(i) {
			t.Errorf("after 3 opens in order, %s was not fetched ahead", ents[i].Key)
		}
	}
	if cached(3 + aheadFiles) {
		t.Errorf("%s fetched: more than aheadFiles ahead", ents[3+aheadFiles].Key)
	}
	if k := companionCached(); k != 0 {
		t.Errorf("%d .meta.json companions fetched ahead of .jsonl opens", k)
	}

	// The reads of the next files find them: the store is not asked again.
	before := f.stats.StoreReads.Load()
	for i := 3; i < 3+8; i++ {
		read(ents[i])
	}
	f.ahead.wg.Wait()
	if got := f.stats.StoreReads.Load() - before; got != 8 {
		// 8 opens further fetch 8 more heads ahead; the reads themselves fetch nothing.
		t.Errorf("reading 8 files fetched ahead made %d store reads, want 8 (the next heads only)", got)
	}
	if hits := f.stats.CacheHitBytes.Load(); hits == 0 {
		t.Error("no read was served from the disk cache")
	}

	// An open out of order ends the run: nothing further is fetched.
	read(ents[0])
	f.ahead.wg.Wait()
	before = f.stats.StoreReads.Load()
	read(ents[38])
	f.ahead.wg.Wait()
	if got := f.stats.StoreReads.Load() - before; got != 1 {
		t.Errorf("an open after an out-of-order one made %d store reads, want 1 (its own)", got)
	}
}

// smallTapes puts n tapes d/t000.jsonl... of 3 bytes into b and sc.
func smallTapes(t *testing.T, sc *meta.Sidecar, b *blob.Bucket, n int) []meta.Entry {
	t.Helper()
	var ents []meta.Entry
	for i := range n {
		key := fmt.Sprintf("d/t%03d.jsonl", i)
		if err := b.WriteAll(t.Context(), key, []byte("{}\n"), nil); err != nil {
			t.Fatal(err)
		}
		o, err := sc.PutObject(t.Context(), meta.Object{Key: key, Size: 3, ModTime: time.Unix(1700000000, 0), ETag: fmt.Sprintf("e%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ents = append(ents, meta.Entry{Name: filepath.Base(key), ID: o.ID, Size: o.Size, ModTime: o.ModTime, ETag: o.ETag, Key: key})
	}
	return ents
}

// TestDirAheadHungStore: against a store that stops answering, a read of a
// file whose head is being fetched ahead fails with that fetch, within one
// --timeout, instead of waiting for it and then once more on its own.
func TestDirAheadHungStore(t *testing.T) {
	ctx := t.Context()
	sc, dc := aheadStores(t)
	mem := memblob.OpenBucket(nil)
	// Reads of d/t003 and after are held for good: a store that accepts
	// requests and says nothing.
	b := blob.NewBucket(newGatedBucket(mem, func(key string) bool { return key >= "d/t003" }))
	ents := smallTapes(t, sc, mem, 20)
	const timeout = time.Second
	f := New(Options{Bucket: b, Sidecar: sc, Read: ReadOptions{Cache: dc, Timeout: timeout}})
	t.Cleanup(f.ahead.wg.Wait)
	read := func(e meta.Entry) error {
		_, err := aheadRead(ctx, f, b, e)
		return err
	}
	for i := range 3 {
		if err := read(ents[i]); err != nil {
			t.Fatalf("%s: %v", ents[i].Key, err)
		}
	}
	start := time.Now()
	err := read(ents[3])
	took := time.Since(start)
	if err == nil {
		t.Fatal("a read from the hung store succeeded")
	}
	if took > timeout*9/5 {
		t.Errorf("a read from the hung store took %s: more than one --timeout (%s)", took, timeout)
	}
}

// gatedBucket holds range reads of the keys hold says until open is
// closed, or their context ends, and counts the range reads of every key.
type gatedBucket struct {
	layer.Base
	hold func(key string) bool
	open chan struct{}

	mu    sync.Mutex
	reads map[string]int
}

func newGatedBucket(inner *blob.Bucket, hold func(key string) bool) *gatedBucket {
	return &gatedBucket{Base: layer.Base{Inner: inner}, hold: hold, open: make(chan struct{}), reads: map[string]int{}}
}

func (b *gatedBucket) NewRangeReader(ctx context.Context, key string, off, n int64, opts *driver.ReaderOptions) (driver.Reader, error) {
	b.mu.Lock()
	b.reads[key]++
	b.mu.Unlock()
	if b.hold(key) {
		select {
		case <-b.open:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return b.Base.NewRangeReader(ctx, key, off, n, opts)
}

// TestDirAheadReaderTakesQueuedFetch: a reader that reaches a file whose
// head fetch is still queued (every slot busy) reads it itself, and the
// fetch, once it gets a slot, does not read it a second time.
func TestDirAheadReaderTakesQueuedFetch(t *testing.T) {
	ctx := t.Context()
	sc, dc := aheadStores(t)
	mem := memblob.OpenBucket(nil)
	ents := smallTapes(t, sc, mem, 30)
	held := map[string]bool{}
	for _, e := range ents[3 : 3+aheadParallel] {
		held[e.Key] = true // their fetches hold every slot
	}
	gb := newGatedBucket(mem, func(key string) bool { return held[key] })
	b := blob.NewBucket(gb)
	f := New(Options{Bucket: b, Sidecar: sc, Read: ReadOptions{Cache: dc, Timeout: 10 * time.Second}})
	t.Cleanup(f.ahead.wg.Wait)
	read := func(e meta.Entry) {
		t.Helper()
		if _, err := aheadRead(ctx, f, b, e); err != nil {
			t.Fatalf("%s: %v", e.Key, err)
		}
	}
	for i := range 3 {
		read(ents[i])
	}
	// The fetches start in any order: wait until the 8 held ones have
	// every slot, so that the next one is queued for sure.
	holding := func() bool {
		gb.mu.Lock()
		defer gb.mu.Unlock()
		for key := range held {
			if gb.reads[key] == 0 {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(10 * time.Second); !holding(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the fetches ahead never took every slot")
		}
	}
	queued := ents[3+aheadParallel] // its fetch waits for a slot
	read(queued)
	close(gb.open)
	f.ahead.wg.Wait()
	gb.mu.Lock()
	defer gb.mu.Unlock()
	if n := gb.reads[queued.Key]; n != 1 {
		t.Errorf("%s was read from the store %d times, want 1: the queued fetch read it again", queued.Key, n)
	}
	if n := gb.reads[ents[3+aheadParallel+1].Key]; n != 1 {
		t.Errorf("%s, fetched ahead, was read %d times, want 1", ents[3+aheadParallel+1].Key, n)
	}
}

// TestDirAheadKeepsListing: a new run in the same directory uses the listing
// the last run read while nothing changed the tree (a warm grep reads none),
// and reads it again after a change, so a tape added since is fetched ahead.
func TestDirAheadKeepsListing(t *testing.T) {
	ctx := t.Context()
	sc, dc := aheadStores(t)
	b := memblob.OpenBucket(nil)
	ents := smallTapes(t, sc, b, 6)
	f := New(Options{Bucket: b, Sidecar: sc, Read: ReadOptions{Cache: dc}})
	f.MountOptions(time.Hour, time.Hour, false) // listings are kept for at most the entry timeout
	t.Cleanup(f.ahead.wg.Wait)
	run := func() {
		t.Helper()
		for i := range 3 {
			if _, err := aheadRead(ctx, f, b, ents[i]); err != nil {
				t.Fatalf("%s: %v", ents[i].Key, err)
			}
		}
		f.ahead.wg.Wait()
	}
	run()
	// A tape the sidecar gains without a change the mount made or saw (no
	// epoch): the next run goes by the listing it kept.
	const key = "d/t002a.jsonl"
	if err := b.WriteAll(ctx, key, []byte("{}\n"), nil); err != nil {
		t.Fatal(err)
	}
	o, err := sc.PutObject(ctx, meta.Object{Key: key, Size: 3, ModTime: time.Unix(1700000000, 0), ETag: "new"})
	if err != nil {
		t.Fatal(err)
	}
	fetched := func() bool {
		return dc.Has(cache.Name(key, version(meta.Entry{ID: o.ID, ETag: o.ETag, Size: o.Size, ModTime: o.ModTime}), 0))
	}
	run()
	if fetched() {
		t.Fatal("a second run read the directory's listing again though nothing changed")
	}
	f.changed()
	run()
	if !fetched() {
		t.Error("after a change, a run did not read the listing again: the new tape was not fetched ahead")
	}
}
