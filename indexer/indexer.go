// Package indexer keeps the sidecar in step with the store: it compares a
// listing of the bucket with the objects the sidecar knows, applies the
// difference, and (re)indexes the tapes whose data or companion changed.
package indexer

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/tapefs/tapefs/backend"
	"github.com/tapefs/tapefs/keypath"
	"github.com/tapefs/tapefs/meta"
	"github.com/tapefs/tapefs/tape"
)

// Options tune an Indexer. The zero value is usable.
type Options struct {
	Workers int          // objects read at once; default 8
	Logger  *slog.Logger // default slog.Default()
	Name    string       // how errors name the store, e.g. its URL; default "store"
	// Progress, when set, is told how a Reconcile advances: while the store
	// is listed, Progress(keys listed so far, 0); then, while tapes are
	// (re)indexed, Progress(tapes read so far, tapes to read). Calls come
	// from one goroutine at a time and should be cheap.
	Progress func(done, total int)
	// MixedETags says the ETags of the store's listings and of its
	// Attributes may differ for one object (a tier of stores: the origin
	// lists, the fastest profile answers), so a new ETag in a listing is
	// not a change; with one store it is (see Reconcile).
	MixedETags bool
}

// Indexer keeps one sidecar in step with one bucket. Its methods may be
// called concurrently; Reconcile runs one at a time.
type Indexer struct {
	bucket *blob.Bucket
	sc     *meta.Sidecar
	opts   Options
	log    *slog.Logger

	reconciling sync.Mutex
	pending     atomic.Pointer[func(key string) bool]
}

// SetPending tells Reconcile which keys have data written through the mount
// and not yet in the store (staged, or an upload that failed): their rows
// describe what the store will hold, so a listing that lacks them or has an
// older version must not remove or change them.
func (ix *Indexer) SetPending(isPending func(key string) bool) {
	ix.pending.Store(&isPending)
}

func (ix *Indexer) isPending(key string) bool {
	fn := ix.pending.Load()
	return fn != nil && *fn != nil && (*fn)(key)
}

// New returns an Indexer of bucket into sc.
func New(bucket *blob.Bucket, sc *meta.Sidecar, opts Options) *Indexer {
	if opts.Workers <= 0 {
		opts.Workers = 8
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Name == "" {
		opts.Name = "store"
	}
	return &Indexer{bucket: bucket, sc: sc, opts: opts, log: opts.Logger}
}

// Op is what happened to a key.
type Op int

const (
	Added Op = iota + 1
	Changed
	Removed
)

func (op Op) String() string {
	switch op {
	case Added:
		return "added"
	case Changed:
		return "changed"
	case Removed:
		return "removed"
	}
	return fmt.Sprintf("Op(%d)", int(op))
}

// Change is one key whose object a reconcile added, changed or removed, so
// the FUSE layer can invalidate what the kernel cached about it.
type Change struct {
	Key string
	Op  Op
}

// Result says what a Reconcile did.
type Result struct {
	Listed       int // keys in the store
	Added        int
	Changed      int
	Removed      int
	TapesIndexed int // tapes (re)indexed
	InvalidTapes int // of those, the ones that did not parse cleanly
	Skipped      int // keys not in the tree (unservable or shadowed), after the run
	NewSkipped   int // of those, the ones first seen (and warned about) in this run
	Changes      []Change
	Duration     time.Duration
}

// batchSize bounds a write transaction, so a reconcile of a large store
// does not hold the sidecar's write lock for long at a time.
const batchSize = 1000

// Reconcile lists the whole store and brings the sidecar in line with it.
// Only a failure to list (or of the sidecar) is an error; a tape that cannot
// be read is indexed as invalid.
func (ix *Indexer) Reconcile(ctx context.Context) (Result, error) {
	return ix.ReconcileListed(ctx, nil)
}

// ReconcileListed is Reconcile, calling listed (when not nil) once the
// listing is in the sidecar, before the new and changed tapes are read and
// indexed: from then on the sidecar has every object of the store (keys,
// sizes, times), though not yet every tape's index row. A mount starts
// serving there, so that the first mount of a large store does not wait for
// every tape to be read. listed is not called when the listing fails.
func (ix *Indexer) ReconcileListed(ctx context.Context, listed func(Result)) (Result, error) {
	ix.reconciling.Lock()
	defer ix.reconciling.Unlock()
	start := time.Now()
	var res Result

	// The snapshot is taken before listing: a key the mount writes or
	// deletes meanwhile then differs from it, and is left alone below.
	before, err := ix.sc.ObjectsUnder(ctx, "")
	if err != nil {
		return res, err
	}
	known := make(map[string]meta.Object, len(before))
	for _, o := range before {
		known[o.Key] = o
	}
	skippedBefore, err := ix.skippedSet(ctx)
	if err != nil {
		return res, err
	}

	var puts []put
	var tapeish []int // indexes into puts of new or changed tape objects
	err = listAll(ctx, ix.bucket, func(lo *blob.ListObject) {
		if lo.IsDir {
			return
		}
		res.Listed++
		if ix.opts.Progress != nil {
			ix.opts.Progress(res.Listed, 0)
		}
		o := meta.Object{Key: lo.Key, Size: lo.Size, ModTime: lo.ModTime, MD5: lo.MD5, ETag: backend.ListedETag(lo)}
		old, ok := known[lo.Key]
		delete(known, lo.Key)
		if ix.isPending(lo.Key) {
			return
		}
		op := Added
		if ok {
			o.ID = old.ID
			// An S3 listing has every object's ETag: a replacement of the
			// same size within the same second (times have 1 s resolution)
			// shows only there, and a multipart object has no MD5. The
			// reads of the mount ask for the ETag the sidecar holds, so a
			// stale one would fail them until it is corrected.
			etags := !ix.opts.MixedETags && o.ETag != ""
			switch {
			case o.Size != old.Size || !o.ModTime.Equal(old.ModTime) ||
				len(o.MD5) > 0 && len(old.MD5) > 0 && !bytes.Equal(o.MD5, old.MD5) ||
				etags && old.ETag != "" && o.ETag != old.ETag:
				op = Changed
			case len(old.MD5) == 0 && len(o.MD5) > 0, etags && old.ETag == "":
				if !etags {
					o.ETag = old.ETag
				}
				op = 0 // only learning the MD5 or the ETag: not a change
			default:
				return
			}
		}
		if op != 0 && tape.Classify(o.Key) != tape.KindOther && served(o.Key) {
			tapeish = append(tapeish, len(puts))
		}
		puts = append(puts, put{obj: o, op: op, old: old, had: ok})
	})
	if err != nil {
		return res, fmt.Errorf("indexer: list %s: %w", ix.opts.Name, err)
	}
	// What is left in known is gone from the store.
	var removed []meta.Object
	for _, o := range before {
		if _, gone := known[o.Key]; gone && !ix.isPending(o.Key) {
			removed = append(removed, o)
		}
	}

	// gocloud's listings carry no ETag: take it from the store's own listing
	// where it has one (S3's), else ask for it, for tape objects only, as it
	// is part of what a tape was indexed from.
	ix.parallel(ctx, len(tapeish), func(i int) {
		p := &puts[tapeish[i]]
		if p.obj.ETag != "" {
			return
		}
		attrs, err := ix.bucket.Attributes(ctx, p.obj.Key)
		switch {
		case err == nil:
			p.obj.ETag = attrs.ETag
		case gcerrors.Code(err) == gcerrors.NotFound:
			p.vanished = true
		default:
			ix.log.Warn("cannot read attributes", "key", p.obj.Key, "err", err)
		}
	})

	if err := ix.apply(ctx, removed, puts, &res); err != nil {
		return res, err
	}
	if err := ix.warnSkipped(ctx, skippedBefore, &res); err != nil {
		return res, err
	}
	if listed != nil {
		listed(res)
	}
	if err := ix.indexStale(ctx, &res); err != nil {
		return res, err
	}
	res.Duration = time.Since(start)
	return res, nil
}

// listPageSize is the page a full listing asks for. S3 and its peers cap a
// page at 1,000 keys whatever is asked; a file:// store walks its whole
// tree for every page, so a small page makes listing a large store
// quadratic.
const listPageSize = 100_000

// listAll calls fn for every object of b, page by page.
func listAll(ctx context.Context, b *blob.Bucket, fn func(*blob.ListObject)) error {
	token := blob.FirstPageToken
	for {
		objs, next, err := b.ListPage(ctx, token, listPageSize, nil)
		if err != nil {
			return err
		}
		for _, o := range objs {
			fn(o)
		}
		if len(next) == 0 {
			return nil
		}
		token = next
	}
}

// put is one row a reconcile writes.
type put struct {
	obj      meta.Object
	op       Op          // Added, Changed, or 0 for a quiet update
	old      meta.Object // the snapshot row, when had
	had      bool
	vanished bool // gone by the time its attributes were read
}

// apply writes the difference in batches. A row the mount changed since
// the snapshot (or a key it created) is not touched: the mount's view is
// newer than the listing.
func (ix *Indexer) apply(ctx context.Context, removed []meta.Object, puts []put, res *Result) error {
	type op struct {
		del *meta.Object
		put *put
	}
	var ops []op
	for i := range removed {
		ops = append(ops, op{del: &removed[i]})
	}
	for i := range puts {
		if !puts[i].vanished {
			ops = append(ops, op{put: &puts[i]})
		}
	}
	for len(ops) > 0 {
		n := min(len(ops), batchSize)
		var changes []Change
		err := ix.sc.Update(ctx, func(tx *meta.Tx) error {
			changes = changes[:0]
			for _, o := range ops[:n] {
				if o.del != nil {
					cur, ok, err := tx.GetObject(o.del.Key)
					if err != nil {
						return err
					}
					if !ok || !sameRow(cur, *o.del) {
						continue
					}
					if err := tx.DeleteObject(o.del.Key); err != nil {
						return err
					}
					changes = append(changes, Change{o.del.Key, Removed})
					continue
				}
				p := o.put
				cur, ok, err := tx.GetObject(p.obj.Key)
				if err != nil {
					return err
				}
				if ok != p.had || ok && !sameRow(cur, p.old) {
					continue
				}
				if _, err := tx.PutObject(p.obj); err != nil {
					return err
				}
				if p.op != 0 {
					changes = append(changes, Change{p.obj.Key, p.op})
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("indexer: %w", err)
		}
		for _, c := range changes {
			switch c.Op {
			case Added:
				res.Added++
			case Changed:
				res.Changed++
			case Removed:
				res.Removed++
			}
		}
		res.Changes = append(res.Changes, changes...)
		ops = ops[n:]
	}
	return nil
}

func sameRow(a, b meta.Object) bool {
	return a.ID == b.ID && meta.StampOf(a).Same(meta.StampOf(b)) && bytes.Equal(a.MD5, b.MD5)
}

func (ix *Indexer) skippedSet(ctx context.Context) (map[string]bool, error) {
	sk, err := ix.sc.Skipped(ctx)
	if err != nil {
		return nil, err
	}
	set := make(map[string]bool, len(sk))
	for _, k := range sk {
		set[k.Key] = true
	}
	return set, nil
}

// warnSkipped logs one warning for each key that is newly out of the tree.
func (ix *Indexer) warnSkipped(ctx context.Context, before map[string]bool, res *Result) error {
	sk, err := ix.sc.Skipped(ctx)
	if err != nil {
		return err
	}
	res.Skipped = len(sk)
	for _, k := range sk {
		if !before[k.Key] {
			res.NewSkipped++
			ix.log.Warn(fmt.Sprintf("store key %q is not served: %s", k.Key, k.Reason),
				"key", k.Key, "reason", k.Reason)
		}
	}
	return nil
}

// parallel calls fn(0..n-1) on up to Workers goroutines.
func (ix *Indexer) parallel(ctx context.Context, n int, fn func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(ix.opts.Workers, n) {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
}

// served says whether key has a place in the tree (shadowed or not).
func served(key string) bool {
	_, err := keypath.Split(key)
	return err == nil
}
