package fsnode

import (
	"context"
	"io"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tapefs/tapefs/cache"
	"github.com/tapefs/tapefs/meta"
)

// Read-ahead across files. grep -l PATTERN *.jsonl, cat * and jq over a
// directory open its files one after the other, in name order, and read
// each whole; against a remote store each open then waits one round trip
// for its first chunk, so a cold grep over 2,000 tapes is 2,000 round trips
// end to end. Once a reader has opened aheadAfter+1 files of a directory in
// ascending name order, the first chunks of the next aheadFiles files with
// the extension of the last one are fetched, aheadParallel at once, into
// the disk cache, where the reads find them (a read whose chunk is still
// being fetched waits for that fetch instead of asking the store again). An
// open out of order ends the run, so at most aheadFiles files are fetched
// that nobody reads.
const (
	aheadAfter    = 2
	aheadFiles    = 16
	aheadParallel = 8
	aheadBytes    = spanBytes // of each file: one range read
)

// dirAhead follows the opens of one directory and fetches ahead of them.
type dirAhead struct {
	f   *FS
	sem chan struct{}
	wg  sync.WaitGroup

	mu       sync.Mutex
	dir      string         // the directory of the current run
	last     string         // the name opened last in it
	run      int            // opens in ascending order so far, after the first
	ents     []meta.Entry   // dir's listing by name, read when read-ahead began
	done     map[string]int // by extension: ents[:done] were handed to start
	inflight map[string]*aheadFetch
}

// aheadFetch is the fetch of one file's head, queued or running.
type aheadFetch struct {
	done  chan struct{}
	state atomic.Int32 // fetchQueued, then fetchRunning or fetchTaken
	err   error        // set before done is closed
}

// The states of an aheadFetch. A queued fetch is either started, when it
// gets a slot of sem (its wait is then bounded by --timeout), or taken by a
// reader that came first and asks the store itself; a taken fetch never
// asks, so no head is read twice.
const (
	fetchQueued int32 = iota
	fetchRunning
	fetchTaken
)

func newDirAhead(f *FS) *dirAhead {
	return &dirAhead{f: f, sem: make(chan struct{}, aheadParallel), inflight: map[string]*aheadFetch{}, done: map[string]int{}}
}

// headBytes is how much of each file is fetched ahead: aheadBytes in whole
// chunks, at least one, so that everything fetched goes into the cache.
func headBytes(chunk int64) int64 { return max(1, aheadBytes/chunk) * chunk }

func aheadID(key, ver string) string { return key + "\x00" + ver }

// opened records a read-only open of e, a file of the store (not staged,
// not synthesized), and schedules what comes after it.
func (a *dirAhead) opened(e meta.Entry) {
	if a.f.opts.Read.Cache == nil || e.Key == "" {
		return
	}
	dir, name := "", e.Key
	if i := strings.LastIndexByte(e.Key, '/'); i >= 0 {
		dir, name = e.Key[:i], e.Key[i+1:]
	}
	a.mu.Lock()
	if dir == a.dir && name > a.last {
		a.run++
	} else {
		a.dir, a.run, a.ents = dir, 0, nil
		clear(a.done)
	}
	a.last = name
	if a.run < aheadAfter {
		a.mu.Unlock()
		return
	}
	if a.ents == nil {
		// The listing is read without the lock, which every open and
		// every read of a head takes. A warm grep starts a run each
		// time; the listing is FS.readDir's, read again only after a
		// change.
		a.mu.Unlock()
		ents, err := a.listing(dir)
		a.mu.Lock()
		if err != nil || a.dir != dir {
			a.mu.Unlock()
			return
		}
		a.ents = ents
	}
	var todo []meta.Entry
	i := sort.Search(len(a.ents), func(i int) bool { return a.ents[i].Name > name })
	ext := path.Ext(name)
	// Files before done[ext] were handed to start by an earlier open of the
	// run: an open costs one start in the steady state, not aheadFiles
	// (which a warm grep, served by the page cache, would pay for nothing).
	j, k := i, 0
	for ; j < len(a.ents) && k < aheadFiles; j++ {
		// Only files like this one: grep *.jsonl opens no .meta.json
		// between them; cat * opens both, and each open fetches its kind.
		if x := a.ents[j]; !x.IsDir && x.Size > 0 && x.Key != "" && path.Ext(x.Name) == ext {
			if j >= a.done[ext] {
				todo = append(todo, a.ents[j])
			}
			k++
		}
	}
	a.done[ext] = max(a.done[ext], j)
	a.mu.Unlock()
	for _, e := range todo {
		a.start(e)
	}
}

// listing is dir's listing by name, files and directories: a run fetches
// files that are not empty.
func (a *dirAhead) listing(dir string) ([]meta.Entry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), a.f.opts.Read.Timeout)
	defer cancel()
	l, err := a.f.readDir(ctx, dir)
	if err != nil {
		return nil, err
	}
	return l.ents, nil
}

// start fetches the head of e into the disk cache, unless it is there or
// on its way.
func (a *dirAhead) start(e meta.Entry) {
	ver := version(e)
	id := aheadID(e.Key, ver)
	c := a.f.opts.Read.Cache
	if c.Has(cache.Name(e.Key, ver, 0)) || a.f.IsPending(e.Key) {
		return
	}
	a.mu.Lock()
	if a.inflight[id] != nil {
		a.mu.Unlock()
		return
	}
	af := &aheadFetch{done: make(chan struct{})}
	a.inflight[id] = af
	a.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.sem <- struct{}{}
		if af.state.CompareAndSwap(fetchQueued, fetchRunning) {
			af.err = a.fetch(e, ver)
		}
		<-a.sem
		a.mu.Lock()
		delete(a.inflight, id)
		a.mu.Unlock()
		close(af.done)
	}()
}

// fetch reads the first aheadBytes of e in one range read and keeps its
// whole chunks in the disk cache, as an ObjectReader would have.
func (a *dirAhead) fetch(e meta.Entry, ver string) error {
	ro := a.f.opts.Read
	ctx, cancel := context.WithTimeout(context.Background(), ro.Timeout)
	defer cancel()
	cs := ro.ChunkSize
	length := min(e.Size, headBytes(cs))
	a.f.stats.StoreReads.Add(1)
	rd, err := a.f.bucket.NewRangeReader(ctx, e.Key, 0, length, ro.rangeOptions(e.ETag))
	if err != nil {
		return ro.changedErr(e.Key, e.ETag, err)
	}
	defer rd.Close()
	for i := int64(0); i*cs < length; i++ {
		buf := make([]byte, min(cs, length-i*cs))
		n, err := io.ReadFull(rd, buf)
		a.f.stats.StoreReadBytes.Add(int64(n))
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return nil // the object shrank since it was listed: its reader sees to it
		}
		if err != nil {
			return err
		}
		ro.Cache.Put(cache.Name(e.Key, ver, i), buf)
	}
	return nil
}

// wait returns once the head of key at ver, if a fetch of it is running, is
// fetched, with that fetch's error; it does not wait past ctx, nor for a
// fetch still queued, which it takes instead: the reader then asks the
// store itself and the fetch, once it gets its slot, does not. A read that
// waited and failed gets the fetch's error, so a store that does not answer
// costs it one --timeout, not a second one of its own.
func (a *dirAhead) wait(ctx context.Context, key, ver string) error {
	a.mu.Lock()
	af := a.inflight[aheadID(key, ver)]
	a.mu.Unlock()
	if af == nil || af.state.CompareAndSwap(fetchQueued, fetchTaken) || af.state.Load() != fetchRunning {
		return nil
	}
	select {
	case <-af.done:
		return af.err
	case <-ctx.Done():
		return nil
	}
}
