package fsnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/tapefs/tapefs/backend"
	"github.com/tapefs/tapefs/cache"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
)

// ReadOptions tune how an open file reads from the store.
type ReadOptions struct {
	ChunkSize int64         // size of one range read (default 1 MiB)
	MaxAhead  int           // most chunks fetched ahead of a sequential reader (default 8)
	Timeout   time.Duration // bound on one range read (default 30 s)
	Cache     *cache.Disk   // chunks kept on disk across opens; nil: none
	// IfMatch makes every range read ask for the ETag the open began with
	// (backend.IfMatch), so an object replaced in the store while it is
	// read fails with ErrChanged instead of mixing old and new bytes. Only
	// for a store whose reads have the ETags the sidecar holds (not tiers,
	// whose profiles each have their own).
	IfMatch bool

	ahead   *dirAhead        // fetches the heads of files ahead of their opens; nil: none
	changed func(key string) // told of an object found replaced; nil: none
	conn    *Connection      // the mount's connection; nil: taken as standing
}

// ErrChanged is a read of an object that was replaced in the store since
// its open began: the reads of that open fail rather than mix versions, and
// the next open reads the new one.
var ErrChanged = errors.New("changed in the store since it was opened")

// rangeOptions are the options of a range read of etag's version.
func (o *ReadOptions) rangeOptions(etag string) *blob.ReaderOptions {
	if !o.IfMatch {
		return nil
	}
	return backend.IfMatch(etag)
}

// changedErr is err, a range read's, or ErrChanged when the store refused
// the read because the object is no longer etag's version.
func (o *ReadOptions) changedErr(key, etag string, err error) error {
	if err == nil || !o.IfMatch || etag == "" || gcerrors.Code(err) != gcerrors.FailedPrecondition {
		return err
	}
	return fmt.Errorf("%s (ETag %s): %w (%v)", key, etag, ErrChanged, err)
}

// readErr is changedErr for a read of an open file, whose ErrChanged asks
// for a refresh (the sidecar holds a replaced version). Read-ahead across
// files does not ask: its entries may be older than the sidecar's.
func (o *ReadOptions) readErr(key, etag string, err error) error {
	return o.tell(key, o.changedErr(key, etag, err))
}

// tell passes err on, after asking for a refresh when it is ErrChanged.
func (o *ReadOptions) tell(key string, err error) error {
	if errors.Is(err, ErrChanged) && o.changed != nil {
		o.changed(key)
	}
	return err
}

func (o *ReadOptions) fill() {
	if o.ChunkSize <= 0 {
		o.ChunkSize = 1 << 20
	}
	if o.MaxAhead <= 0 {
		o.MaxAhead = 8
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
}

// chunkFetch is one range read, in flight or done.
type chunkFetch struct {
	done   chan struct{}
	data   []byte
	err    error
	failed time.Time // when err was set
}

// finish records the outcome of the read and wakes its waiters.
func (cf *chunkFetch) finish(data []byte, err error) {
	cf.data, cf.err = data, err
	if err != nil {
		cf.failed = time.Now()
	}
	close(cf.done)
}

// failMemo is how long a failed range read stays the answer for its chunk.
// The kernel asks again at once for a page whose read failed (first as
// read-ahead, then the page alone): against a store that does not answer,
// that second request would wait a whole --timeout more.
const failMemo = 2 * time.Second

// retry says whether cf failed long enough ago to be read again.
func (cf *chunkFetch) retry() bool {
	select {
	case <-cf.done:
		return cf.err != nil && time.Since(cf.failed) > failMemo
	default:
		return false
	}
}

// ObjectReader serves reads of one store object through chunk-aligned range
// reads. A reader that keeps reading where it stopped is sequential: the
// next chunks are then fetched in parallel ahead of it, more of them the
// longer the run lasts. Random reads fetch only the chunks they touch, so
// reading 4 KiB of a large tape costs one chunk, not the object.
type ObjectReader struct {
	bucket *blob.Bucket
	key    string
	etag   string              // identifies the version in the disk cache
	match  string              // the store's ETag of that version, for IfMatch ("": none)
	ropts  *blob.ReaderOptions // the range reads' options: the condition on match
	size   int64
	opts   ReadOptions
	stats  *Stats
	ctx    context.Context // lives until Close; read-ahead outlives requests
	cancel context.CancelFunc
	fetchs sync.WaitGroup // range reads and cache writes running

	mu      sync.Mutex
	chunks  map[int64]*chunkFetch
	nextOff int64 // where a sequential reader would read next
	run     int   // length of the current sequential run, in reads
}

// NewObjectReader reads key (of the given size) from bucket.
func NewObjectReader(bucket *blob.Bucket, key, etag string, size int64, opts ReadOptions, stats *Stats) *ObjectReader {
	opts.fill()
	ctx, cancel := context.WithCancel(context.Background())
	return &ObjectReader{bucket: bucket, key: key, etag: etag, size: size, opts: opts, stats: stats,
		ctx: ctx, cancel: cancel, chunks: map[int64]*chunkFetch{}, nextOff: -1}
}

// matchETag makes r's range reads, with opts.IfMatch, ask for etag (the
// store's ETag of the version r reads).
func (r *ObjectReader) matchETag(etag string) {
	r.match, r.ropts = etag, r.opts.rangeOptions(etag)
}

// ReadAt fills p from off; it returns fewer bytes only at the end of the
// object.
func (r *ObjectReader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off >= r.size || len(p) == 0 {
		return 0, io.EOF
	}
	end := off + int64(len(p))
	if end > r.size {
		end = r.size
	}
	cs := r.opts.ChunkSize
	first, last := off/cs, (end-1)/cs

	r.mu.Lock()
	if off == r.nextOff {
		r.run++
	} else {
		r.run = 0
	}
	r.nextOff = end
	want := make([]*chunkFetch, 0, last-first+1)
	for i := first; i <= last; i++ {
		want = append(want, r.startLocked(i))
	}
	if r.run > 0 {
		ahead := 1 << min(r.run, 6)
		if ahead > r.opts.MaxAhead {
			ahead = r.opts.MaxAhead
		}
		r.startAheadLocked(last+1, min(last+int64(ahead), (r.size-1)/cs))
	}
	r.evictLocked(first, last+int64(r.opts.MaxAhead)+r.spanChunks())
	r.mu.Unlock()

	n := 0
	for k, cf := range want {
		select {
		case <-cf.done:
		case <-ctx.Done():
			// Any signal but a kill: the read goes on (see interrupt.go).
			if err := untilKilled(ctx, cf.done, r.opts.conn); err != nil {
				return n, err
			}
		}
		if cf.err != nil {
			return n, cf.err // kept for failMemo, then read again
		}
		cstart := (first + int64(k)) * cs
		lo := max(off, cstart) - cstart
		hi := min(end, cstart+int64(len(cf.data))) - cstart
		if lo < hi {
			n += copy(p[n:], cf.data[lo:hi])
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// startLocked returns chunk i, starting its range read if needed.
func (r *ObjectReader) startLocked(i int64) *chunkFetch {
	if cf, ok := r.chunks[i]; ok && !cf.retry() {
		return cf
	}
	cf := &chunkFetch{done: make(chan struct{})}
	r.chunks[i] = cf
	start := i * r.opts.ChunkSize
	length := min(r.opts.ChunkSize, r.size-start)
	r.fetchs.Go(func() { r.fetchCached(cf, i, start, length) })
	return cf
}

// spanBytes bounds one range read of read-ahead: the chunks a sequential
// reader will want next are asked for together, several in one range read
// (a store answers one 4 MiB read much faster than four of 1 MiB), and
// each is served as soon as its bytes have arrived.
const spanBytes = 4 << 20

// spanChunks is the number of chunks in one span.
func (r *ObjectReader) spanChunks() int64 { return max(1, spanBytes/r.opts.ChunkSize) }

// startAheadLocked starts the chunks lo..hi that are neither fetched nor
// cached, in spans: the chunks of one aligned group of spanChunks, the last
// group widened to its end, so that a reader moving ahead one chunk at a
// time still asks for whole spans.
func (r *ObjectReader) startAheadLocked(lo, hi int64) {
	per := r.spanChunks()
	hi = min((hi/per+1)*per-1, (r.size-1)/r.opts.ChunkSize)
	var span []*chunkFetch
	first := int64(0)
	flush := func() {
		if len(span) > 0 {
			f, cfs := first, span
			r.fetchs.Go(func() { r.fetchSpan(f, cfs) })
			span = nil
		}
	}
	for i := lo; i <= hi; i++ {
		if cf, ok := r.chunks[i]; (ok && !cf.retry()) || r.cached(i) {
			flush()
			r.startLocked(i)
			continue
		}
		if len(span) == 0 {
			first = i
		}
		cf := &chunkFetch{done: make(chan struct{})}
		r.chunks[i] = cf
		if span = append(span, cf); i%per == per-1 {
			flush()
		}
	}
	flush()
}

// cached says whether chunk i is in the disk cache.
func (r *ObjectReader) cached(i int64) bool {
	c := r.opts.Cache
	return c != nil && r.etag != "" && c.Has(cache.Name(r.key, r.etag, i))
}

// fetchSpan reads the chunks first, first+1, … in one range read, serving
// each as soon as its bytes are in, and keeps them in the disk cache after.
func (r *ObjectReader) fetchSpan(first int64, cfs []*chunkFetch) {
	cs := r.opts.ChunkSize
	start := first * cs
	end := min(start+int64(len(cfs))*cs, r.size)
	ctx, cancel := context.WithTimeout(r.ctx, r.opts.Timeout)
	defer cancel()
	r.stats.StoreReads.Add(1)
	rd, err := r.bucket.NewRangeReader(ctx, r.key, start, end-start, r.ropts)
	if err == nil {
		defer rd.Close()
	}
	err = r.opts.readErr(r.key, r.match, err)
	short := false // the object shrank since it was listed
	for k, cf := range cfs {
		cstart := start + int64(k)*cs
		length := min(cs, r.size-cstart)
		switch {
		case err != nil:
			cf.finish(nil, err)
		case short:
			cf.finish(nil, nil)
		default:
			buf := make([]byte, length)
			n, rerr := io.ReadFull(rd, buf)
			r.stats.StoreReadBytes.Add(int64(n))
			if rerr == io.ErrUnexpectedEOF || rerr == io.EOF {
				rerr, short = nil, true // serve what is there
			}
			err = rerr
			cf.finish(buf[:n], rerr)
		}
	}
	for k, cf := range cfs {
		if cf.err == nil && int64(len(cf.data)) == min(cs, r.size-start-int64(k)*cs) {
			r.keep(first+int64(k), cf.data)
		}
	}
}

// keep puts chunk i in the disk cache, if there is one; a full disk only
// means no caching.
func (r *ObjectReader) keep(i int64, b []byte) {
	if c := r.opts.Cache; c != nil && r.etag != "" {
		c.Put(cache.Name(r.key, r.etag, i), b)
	}
}

// fetchCached serves chunk i from the disk cache, or fetches it (and keeps
// it once the reader has it).
func (r *ObjectReader) fetchCached(cf *chunkFetch, i, start, length int64) {
	c := r.opts.Cache
	if c == nil || r.etag == "" {
		cf.finish(r.fetch(start, length))
		return
	}
	fromCache := func() bool {
		b, ok := c.Get(cache.Name(r.key, r.etag, i))
		if ok = ok && int64(len(b)) == length; ok {
			r.stats.CacheHitBytes.Add(int64(len(b)))
			cf.finish(b, nil)
		}
		return ok
	}
	if fromCache() {
		return
	}
	if a := r.opts.ahead; a != nil && start < headBytes(r.opts.ChunkSize) {
		// The fetch ahead may have put the chunk since the Get above, or be
		// about to: look again after it, whatever wait says.
		if err := a.wait(r.ctx, r.key, r.etag); err != nil {
			cf.finish(nil, r.opts.tell(r.key, err))
			return
		}
		if fromCache() {
			return
		}
	}
	b, err := r.fetch(start, length)
	cf.finish(b, err)
	if err == nil && int64(len(b)) == length {
		r.keep(i, b)
	}
}

func (r *ObjectReader) fetch(start, length int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(r.ctx, r.opts.Timeout)
	defer cancel()
	r.stats.StoreReads.Add(1)
	rd, err := r.bucket.NewRangeReader(ctx, r.key, start, length, r.ropts)
	if err != nil {
		return nil, r.opts.readErr(r.key, r.match, err)
	}
	defer rd.Close()
	buf := make([]byte, length)
	n, err := io.ReadFull(rd, buf)
	r.stats.StoreReadBytes.Add(int64(n))
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil // the object shrank since it was listed: serve what is there
	}
	return buf[:n], err
}

// evictLocked drops chunks outside [lo-1, hi] so memory stays bounded.
func (r *ObjectReader) evictLocked(lo, hi int64) {
	for i := range r.chunks {
		if i < lo-1 || i > hi {
			delete(r.chunks, i)
		}
	}
}

// Close stops read-ahead.
func (r *ObjectReader) Close() {
	r.cancel()
}

// wait returns when no range read or cache write of r is running.
func (r *ObjectReader) wait() { r.fetchs.Wait() }
