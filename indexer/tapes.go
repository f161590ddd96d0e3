package indexer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"gocloud.dev/gcerrors"

	"github.com/tapefs/tapefs/keypath"
	"github.com/tapefs/tapefs/meta"
	"github.com/tapefs/tapefs/tape"
)

// job is one tape to (re)index: its data object and, if there is one, its
// companion (.meta.json for v2, the directory's index.json for v1).
type job struct {
	data meta.Object
	kind tape.Kind
	comp meta.Object // zero when there is no companion
	// local, when not nil, holds the bytes being uploaded as the data
	// object (the staged file; see Prepare): they are parsed from it, never
	// from the store, and data holds only the key.
	local *io.SectionReader
}

// companionKey is the key of the object a tape's index also depends on.
func companionKey(kind tape.Kind, key string) string {
	if kind == tape.KindV2Data {
		return tape.V2MetaKey(key)
	}
	return tape.V1IndexKey(key)
}

func (j job) source() meta.TapeSource {
	src := meta.TapeSource{Data: meta.StampOf(j.data)}
	if j.comp.Key != "" {
		src.Companion = meta.StampOf(j.comp)
	}
	return src
}

// indexStale indexes every tape whose data object or companion is not the
// one its index row was built from (or that has no row yet). Working from
// the sidecar rather than from this run's changes means an interrupted
// run is finished by the next one.
func (ix *Indexer) indexStale(ctx context.Context, res *Result) error {
	objs, err := ix.sc.ObjectsUnder(ctx, "")
	if err != nil {
		return err
	}
	srcs, err := ix.sc.IndexedSources(ctx)
	if err != nil {
		return err
	}
	byKey := make(map[string]meta.Object, len(objs))
	for _, o := range objs {
		byKey[o.Key] = o
	}
	var jobs []job
	for _, o := range objs {
		kind := tape.Classify(o.Key)
		if kind != tape.KindV2Data && kind != tape.KindV1Data || !served(o.Key) {
			continue
		}
		j := job{data: o, kind: kind, comp: byKey[companionKey(kind, o.Key)]}
		if src, ok := srcs[o.Key]; ok && src.Data.Same(j.source().Data) && src.Companion.Same(j.source().Companion) {
			continue
		}
		jobs = append(jobs, j)
	}
	n, invalid, err := ix.index(ctx, jobs, ix.opts.Progress)
	res.TapesIndexed += n
	res.InvalidTapes += invalid
	return err
}

// IndexKey re-indexes the tape(s) key belongs to, after a write through the
// mount (the caller has already put the object's new row): a .jsonl or v1
// .json itself, the .jsonl of a .meta.json, the v1 tapes beside an
// index.json. Other keys have no tape, except one renamed away from a tape
// name, whose row is dropped.
func (ix *Indexer) IndexKey(ctx context.Context, key string) error {
	switch tape.Classify(key) {
	case tape.KindV2Data, tape.KindV1Data:
		return ix.indexKeys(ctx, []string{key})
	case tape.KindOther:
		return ix.dropTape(ctx, key)
	}
	return ix.indexDependents(ctx, key)
}

// Parse is a tape being parsed from the bytes of its upload, which are at
// hand locally (the staged file), while the upload ends: the parse of a
// 200 MiB tape then overlaps the end of its upload instead of following
// it, and the tape is not read back from the store.
type Parse struct {
	key  string
	size int64       // of the local bytes
	comp meta.Object // the companion's row when the parse began
	done chan struct{}
	rec  *tape.Record // nil when local could not be read
	src  meta.TapeSource
}

// Prepare starts parsing the tape at key from local, which holds the
// bytes now being uploaded to key. It returns nil for a key that is not a
// tape. The parse stops early when ctx is cancelled (the upload failed).
func (ix *Indexer) Prepare(ctx context.Context, key string, local *io.SectionReader) *Parse {
	kind := tape.Classify(key)
	if kind != tape.KindV2Data && kind != tape.KindV1Data || !served(key) {
		return nil
	}
	p := &Parse{key: key, size: local.Size(), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		var err error
		if p.comp, _, err = ix.sc.GetObject(ctx, companionKey(kind, key)); err != nil {
			return
		}
		j := job{data: meta.Object{Key: key}, kind: kind, comp: p.comp, local: local}
		p.rec, p.src = ix.read(ctx, j, &v1Indexes{ix: ix, m: map[string]*v1Index{}})
	}()
	return p
}

// IndexUploaded is IndexKey after key was uploaded with the bytes p parsed
// (nil: none), and uploaded is the object row the caller put for it: p's
// record is written for that row. The tape is read from the store instead
// when p could not read its bytes, or when the row or the companion's row
// is no longer the one p's bytes and companion belong to (another client
// wrote the key or the companion meanwhile, or a refresh saw it do so).
func (ix *Indexer) IndexUploaded(ctx context.Context, key string, p *Parse, uploaded meta.Object) error {
	if p == nil || p.key != key {
		return ix.IndexKey(ctx, key)
	}
	<-p.done
	if p.rec == nil {
		return ix.IndexKey(ctx, key)
	}
	o, ok, err := ix.sc.GetObject(ctx, key)
	if err != nil || !ok {
		return err
	}
	comp, _, err := ix.sc.GetObject(ctx, companionKey(tape.Classify(key), key))
	if err != nil {
		return err
	}
	from := meta.StampOf(uploaded)
	if !meta.StampOf(o).Same(from) || o.Size != p.size || !meta.StampOf(comp).Same(meta.StampOf(p.comp)) {
		return ix.IndexKey(ctx, key)
	}
	p.src.Data = from
	return ix.putIndexed(ctx, []indexed{{rec: p.rec, src: p.src, from: from}})
}

// dropTape deletes the index row of key, if it has one. Reading first
// spares most calls a write transaction.
func (ix *Indexer) dropTape(ctx context.Context, key string) error {
	if _, ok, err := ix.sc.IndexedAt(ctx, key); !ok || err != nil {
		return err
	}
	return ix.sc.DeleteTape(ctx, key)
}

// ForgetKey updates the index after key was deleted through the mount (the
// caller has already deleted its row): the tape row goes with the object;
// a tape whose companion it was is indexed again without it.
func (ix *Indexer) ForgetKey(ctx context.Context, key string) error {
	if err := ix.dropTape(ctx, key); err != nil {
		return err
	}
	return ix.indexDependents(ctx, key)
}

// indexDependents indexes the tapes whose companion is key.
func (ix *Indexer) indexDependents(ctx context.Context, key string) error {
	switch tape.Classify(key) {
	case tape.KindV2Meta:
		return ix.indexKeys(ctx, []string{tape.V2DataKey(key)})
	case tape.KindV1Index:
		dir := keypath.Parent(key)
		ents, err := ix.sc.ReadDir(ctx, dir)
		if errors.Is(err, meta.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var keys []string
		for _, e := range ents {
			if !e.IsDir && tape.Classify(e.Key) == tape.KindV1Data {
				keys = append(keys, e.Key)
			}
		}
		return ix.indexKeys(ctx, keys)
	}
	return nil
}

// indexKeys indexes the tapes at keys that have an object row.
func (ix *Indexer) indexKeys(ctx context.Context, keys []string) error {
	var jobs []job
	for _, k := range keys {
		o, ok, err := ix.sc.GetObject(ctx, k)
		if err != nil {
			return err
		}
		if !ok || !served(k) {
			continue
		}
		kind := tape.Classify(k)
		j := job{data: o, kind: kind}
		if j.comp, _, err = ix.sc.GetObject(ctx, companionKey(kind, k)); err != nil {
			return err
		}
		jobs = append(jobs, j)
	}
	_, _, err := ix.index(ctx, jobs, nil)
	return err
}

// indexed is one parsed tape on its way to the sidecar, with the version
// of its object that was chosen for reading.
type indexed struct {
	rec  *tape.Record
	src  meta.TapeSource
	from meta.Stamp
}

// tapeBatch is how many index rows go into one write transaction.
const tapeBatch = 200

// index reads and parses jobs on Workers goroutines, and writes the
// records from one goroutine in batches, telling progress (when not nil)
// how many jobs are read. It returns how many tapes it indexed and how
// many of those are invalid.
func (ix *Indexer) index(ctx context.Context, jobs []job, progress func(done, total int)) (n, invalid int, err error) {
	if len(jobs) == 0 {
		return 0, 0, nil
	}
	v1 := &v1Indexes{ix: ix, m: map[string]*v1Index{}}
	out := make(chan indexed, tapeBatch)
	done := make(chan error, 1)
	go func() {
		var batch []indexed
		var werr error
		read := 0
		if progress != nil {
			progress(0, len(jobs))
		}
		flush := func() {
			if len(batch) == 0 || werr != nil {
				batch = batch[:0]
				return
			}
			// What was read is committed even when ctx is cancelled
			// (e.g. a reindex interrupted with ^C): the next run resumes
			// after it instead of reading it again.
			werr = ix.putIndexed(context.WithoutCancel(ctx), batch)
			batch = batch[:0]
		}
		for it := range out {
			if read++; progress != nil {
				progress(read, len(jobs))
			}
			if it.rec.IsTape() {
				n++
				if !it.rec.Valid {
					invalid++
				}
			}
			batch = append(batch, it)
			if len(batch) == tapeBatch {
				flush()
			}
		}
		flush()
		done <- werr
	}()
	ix.parallel(ctx, len(jobs), func(i int) {
		rec, src := ix.read(ctx, jobs[i], v1)
		if ctx.Err() != nil {
			return // the read may have failed only because of the cancel
		}
		out <- indexed{rec, src, meta.StampOf(jobs[i].data)}
	})
	close(out)
	if err := <-done; err != nil {
		return n, invalid, fmt.Errorf("indexer: %w", err)
	}
	return n, invalid, ctx.Err()
}

// putIndexed writes records in one transaction. A record whose object went
// or changed meanwhile (a write through the mount) is not the newest: its
// row is left to whoever indexes the new version.
func (ix *Indexer) putIndexed(ctx context.Context, batch []indexed) error {
	return ix.sc.Update(ctx, func(tx *meta.Tx) error {
		for _, it := range batch {
			cur, ok, err := tx.GetObject(it.rec.Key)
			if err != nil {
				return err
			}
			if !ok || !meta.StampOf(cur).Same(it.from) {
				continue
			}
			if err := tx.PutTape(it.rec, it.src); err != nil {
				return err
			}
		}
		return nil
	})
}

// read parses one tape. It always returns a record: a tape that cannot be
// read is invalid, with a "read failed" problem, and its source is marked
// so that the next reconcile tries again.
func (ix *Indexer) read(ctx context.Context, j job, v1 *v1Indexes) (*tape.Record, meta.TapeSource) {
	src := j.source()
	var problems []string
	fail := func(what string, err error) {
		problems = append(problems, fmt.Sprintf("read failed: %s: %v", what, err))
	}

	var metaJSON []byte
	var index *tape.V1Index
	if j.comp.Key != "" {
		switch j.kind {
		case tape.KindV2Data:
			b, err := ix.bucket.ReadAll(ctx, j.comp.Key)
			switch {
			case err == nil:
				metaJSON = b
			case gcerrors.Code(err) == gcerrors.NotFound:
				src.Companion = meta.Stamp{}
			default:
				fail(j.comp.Key, err)
				src.Companion.Size = -1 // never matches: try again next time
			}
		case tape.KindV1Data:
			var err error
			index, err = v1.get(ctx, j.comp)
			switch {
			case err == nil:
			case gcerrors.Code(err) == gcerrors.NotFound:
				src.Companion = meta.Stamp{}
			default:
				fail(j.comp.Key, err)
				src.Companion.Size = -1
			}
		}
	}

	var rec *tape.Record
	parse := func(r io.Reader) error {
		er := &errReader{ctx: ctx, r: r}
		if j.kind == tape.KindV2Data {
			rec = tape.ParseV2(er, metaJSON, j.data.Key)
		} else {
			rec = tape.ParseV1(er, j.data.Key, index)
		}
		return er.err
	}
	if j.local != nil {
		if err := parse(io.NewSectionReader(j.local, 0, j.local.Size())); err != nil {
			return nil, src // the caller reads the store instead
		}
	} else if err := ix.readStore(ctx, j.data.Key, parse); err != nil {
		fail(j.data.Key, err)
		src.Data.Size = -1
		if rec == nil || !rec.IsTape() {
			return failed(j, problems), src
		}
	}
	if len(problems) > 0 {
		rec.Valid = false
		rec.Problems = append(problems, rec.Problems...)
	}
	return rec, src
}

// readStore hands the data object at key to parse, returning the error of
// opening or of reading it.
func (ix *Indexer) readStore(ctx context.Context, key string, parse func(io.Reader) error) error {
	r, err := ix.bucket.NewReader(ctx, key, nil)
	if err != nil {
		return err
	}
	defer r.Close()
	return parse(r)
}

// failed is the record of a tape that could not be read at all.
func failed(j job, problems []string) *tape.Record {
	format := tape.FormatV2
	if j.kind == tape.KindV1Data {
		format = tape.FormatV1
	}
	return &tape.Record{Key: j.data.Key, Format: format, Problems: problems}
}

// errReader remembers the first error other than io.EOF, as the parsers
// do not return one.
type errReader struct {
	ctx context.Context // its end fails the reads (a parse of local bytes has no other)
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	if err := e.ctx.Err(); err != nil {
		if e.err == nil {
			e.err = err
		}
		return 0, err
	}
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// v1Indexes reads each directory's index.json once per run, however many
// tapes beside it are indexed in parallel.
type v1Indexes struct {
	ix *Indexer
	mu sync.Mutex
	m  map[string]*v1Index
}

type v1Index struct {
	once  sync.Once
	index *tape.V1Index
	err   error
}

func (v *v1Indexes) get(ctx context.Context, o meta.Object) (*tape.V1Index, error) {
	v.mu.Lock()
	e, ok := v.m[o.Key]
	if !ok {
		e = &v1Index{}
		v.m[o.Key] = e
	}
	v.mu.Unlock()
	e.once.Do(func() {
		b, err := v.ix.bucket.ReadAll(ctx, o.Key)
		if err != nil {
			e.err = err
			return
		}
		// An index.json that does not parse is no catalogue: the tapes are
		// indexed from their own files.
		e.index, err = tape.ParseV1Index(b)
		if err != nil {
			v.ix.log.Warn("v1 index.json does not parse", "key", o.Key, "err", err)
		}
	})
	return e.index, e.err
}
