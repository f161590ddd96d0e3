package importer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/blob/memblob"

	"github.com/tapefs/tapefs/backend/layer"
	"github.com/tapefs/tapefs/indexer"
	"github.com/tapefs/tapefs/internal/tapegen"
	"github.com/tapefs/tapefs/meta"
)

var quiet = slog.New(slog.NewTextHandler(discard{}, nil))

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// storeWithCorpus returns a store holding a tapegen corpus of about n
// tapes under prefix (plus odd files, v1 tapes with index.json, odd names).
func fillStore(t *testing.T, b *blob.Bucket, seed int64, n int, prefix string) tapegen.Manifest {
	t.Helper()
	dir := t.TempDir()
	m, err := tapegen.WriteCorpus(dir, tapegen.CorpusOptions{
		Seed: seed, V2: n, V2NoMeta: n / 4, V1: 4, Odd: true, OddNames: true, Nested: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Import(context.Background(), b, dir, Options{Prefix: prefix, Logger: quiet})
	if err != nil || rep.Failed > 0 {
		t.Fatalf("import: %v (%d failed)", err, rep.Failed)
	}
	return m
}

func openSidecar(t *testing.T, path string) *meta.Sidecar {
	t.Helper()
	sc, err := meta.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return sc
}

func reconcile(t *testing.T, b *blob.Bucket, sc *meta.Sidecar) indexer.Result {
	t.Helper()
	res, err := indexer.New(b, sc, indexer.Options{Logger: quiet}).Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// mutate adds, changes and deletes objects of every kind.
func mutate(t *testing.T, b *blob.Bucket, m tapegen.Manifest) {
	t.Helper()
	ctx := context.Background()
	put := func(key, data string) {
		if err := b.WriteAll(ctx, key, []byte(data), nil); err != nil {
			t.Fatal(err)
		}
	}
	del := func(key string) {
		if err := b.Delete(ctx, key); err != nil {
			t.Fatalf("delete %q: %v", key, err)
		}
	}
	var v2, metas []string
	for _, f := range m.Files {
		switch {
		case strings.HasSuffix(f.Key, ".meta.json") && !strings.HasPrefix(f.Key, "odd"):
			metas = append(metas, f.Key)
		case strings.HasSuffix(f.Key, ".jsonl") && f.Tape != nil && f.Tape.Valid && !strings.HasPrefix(f.Key, "odd"):
			v2 = append(v2, f.Key)
		}
	}
	if len(v2) < 4 || len(metas) < 3 {
		t.Fatalf("corpus too small: %d v2, %d meta", len(v2), len(metas))
	}
	// Changed: a tape's data (now another tape's bytes), a meta's tags.
	other, _ := b.ReadAll(ctx, v2[1])
	put(v2[0], string(other))
	mj, _ := b.ReadAll(ctx, metas[0])
	var doc map[string]any
	json.Unmarshal(mj, &doc)
	doc["tags"] = []string{"retagged", "reindex"}
	doc["name"] = "renamed by the test"
	changed, _ := json.Marshal(doc)
	put(metas[0], string(changed))
	// Deleted: a tape, a meta (its tape stays, without it), the v1 index.
	del(v2[2])
	del(metas[1])
	del("v1/index.json")
	// Added: a tape that is a copy, keys that are not served, a shadowed file.
	third, _ := b.ReadAll(ctx, v2[3])
	put("copies/third.jsonl", string(third))
	put("bad//key.jsonl", "{}")
	put("ctl\x01.jsonl", "{}")
	put("shadow", "a file hidden by the directory below")
	put("shadow/inside.txt", "x")
	put("emptydir/", "")
}

// snapshot is what must be equal between two sidecars of one store.
type snapshot struct {
	Tapes   []meta.TapeRow
	Objects []meta.Object
	Skipped []meta.SkippedKey
	Stats   meta.Stats
	Tree    []string
}

func snap(t *testing.T, sc *meta.Sidecar) snapshot {
	t.Helper()
	ctx := context.Background()
	var s snapshot
	var err error
	if s.Tapes, err = sc.ListTapes(ctx, meta.TapeFilter{}); err != nil {
		t.Fatal(err)
	}
	// Row ids are inode numbers handed out in the order keys were first
	// seen, and IndexedAt is a clock reading: neither can match between
	// two builds. Every other field must.
	for i := range s.Tapes {
		s.Tapes[i].ObjectID = 0
		s.Tapes[i].IndexedAt = time.Time{}
	}
	if s.Objects, err = sc.ObjectsUnder(ctx, ""); err != nil {
		t.Fatal(err)
	}
	for i := range s.Objects {
		s.Objects[i].ID = 0
	}
	if s.Skipped, err = sc.Skipped(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Stats, err = sc.Stats(ctx); err != nil {
		t.Fatal(err)
	}
	// The tree: names, kinds, sizes and keys (not directory times, which
	// by design never go back when something below is removed).
	var walk func(dir string)
	walk = func(dir string) {
		ents, err := sc.ReadDir(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			p := strings.TrimPrefix(dir+"/"+e.Name, "/")
			if e.IsDir {
				s.Tree = append(s.Tree, p+"/")
				walk(p)
				continue
			}
			s.Tree = append(s.Tree, fmt.Sprintf("%s %d %q %s", p, e.Size, e.Key, e.ETag))
		}
	}
	walk("")
	return s
}

// sameIndex fails t unless a and b hold the same index.
func sameIndex(t *testing.T, what string, a, b snapshot) {
	t.Helper()
	if len(a.Tapes) == 0 || len(a.Objects) == 0 {
		t.Fatalf("%s: empty index", what)
	}
	if !reflect.DeepEqual(a.Stats, b.Stats) {
		t.Errorf("%s: stats differ:\n%+v\n%+v", what, a.Stats, b.Stats)
	}
	if len(a.Tapes) != len(b.Tapes) {
		t.Errorf("%s: %d tapes, %d rebuilt", what, len(a.Tapes), len(b.Tapes))
	}
	for i := range min(len(a.Tapes), len(b.Tapes)) {
		if !reflect.DeepEqual(a.Tapes[i], b.Tapes[i]) {
			ja, _ := json.Marshal(a.Tapes[i])
			jb, _ := json.Marshal(b.Tapes[i])
			t.Errorf("%s: tape %d differs:\nincremental %s\nrebuilt     %s", what, i, ja, jb)
		}
	}
	if !reflect.DeepEqual(a.Objects, b.Objects) {
		t.Errorf("%s: objects differ:\n%+v\n%+v", what, a.Objects, b.Objects)
	}
	if !reflect.DeepEqual(a.Skipped, b.Skipped) {
		t.Errorf("%s: skipped keys differ:\n%q\n%q", what, a.Skipped, b.Skipped)
	}
	if !reflect.DeepEqual(a.Tree, b.Tree) {
		t.Errorf("%s: trees differ:\n%q\n%q", what, a.Tree, b.Tree)
	}
}

// incremental builds an index of a store the way a long-running mount
// does: indexed, then changed, then reconciled again.
func incremental(t *testing.T, n int) (*blob.Bucket, snapshot, int) {
	b := memblob.OpenBucket(nil)
	m := fillStore(t, b, 11, n, "")
	sc := openSidecar(t, filepath.Join(t.TempDir(), "incremental.db"))
	reconcile(t, b, sc)
	time.Sleep(2 * time.Millisecond) // new modification times for what changes
	mutate(t, b, m)
	fillStore(t, b, 12, n/4, "later/")
	res := reconcile(t, b, sc)
	if res.Changed == 0 || res.Removed == 0 || res.Added == 0 {
		t.Fatalf("the second reconcile saw no change: %+v", res)
	}
	s := snap(t, sc)
	return b, s, int(s.Stats.Tapes)
}

func TestReindexEqualsIncremental(t *testing.T) {
	b, want, tapes := incremental(t, 12)
	dir := t.TempDir()
	path := filepath.Join(dir, "rebuilt.db")
	var calls, lastDone, lastTotal, listed atomic.Int64
	res, err := Reindex(context.Background(), b, path, ReindexOptions{Logger: quiet, Workers: 4,
		Progress: func(done, total int) {
			calls.Add(1)
			if total == 0 {
				listed.Store(int64(done))
				return
			}
			lastDone.Store(int64(done))
			lastTotal.Store(int64(total))
		}})
	if err != nil {
		t.Fatal(err)
	}
	if res.TapesIndexed != tapes {
		t.Errorf("rebuild indexed %d tapes, want %d", res.TapesIndexed, tapes)
	}
	if lastDone.Load() != lastTotal.Load() || lastTotal.Load() < int64(tapes) || listed.Load() != int64(res.Listed) {
		t.Errorf("progress ended at %d/%d after listing %d (listed %d, %d tapes)", lastDone.Load(), lastTotal.Load(), listed.Load(), res.Listed, tapes)
	}
	for _, leftover := range []string{path + BuildSuffix, path + BuildSuffix + "-wal", path + "-wal"} {
		if _, err := os.Stat(leftover); err == nil {
			t.Errorf("%s left behind", leftover)
		}
	}
	sameIndex(t, "fresh rebuild", want, snap(t, openSidecar(t, path)))
}

// A rebuild replaces an existing (stale) sidecar, and a WAL left beside
// it, which belongs to the old database, is not replayed into the new one.
func TestReindexReplacesOldSidecar(t *testing.T) {
	b, want, _ := incremental(t, 8)
	path := filepath.Join(t.TempDir(), "index.db")
	// An old sidecar of another store, with rows that must go.
	other := memblob.OpenBucket(nil)
	fillStore(t, other, 99, 5, "elsewhere/")
	old, err := meta.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	reconcile(t, other, old)
	old.Close()
	os.WriteFile(path+"-wal", []byte("a stale WAL of the old database"), 0o600)
	os.WriteFile(path+"-shm", []byte("stale"), 0o600)

	if _, err := Reindex(context.Background(), b, path, ReindexOptions{Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); err == nil {
		t.Error("the old WAL is still beside the new sidecar")
	}
	sameIndex(t, "rebuild over an old sidecar", want, snap(t, openSidecar(t, path)))
}

// cancelAfter is a layer that cancels a context at the n-th object read,
// once the partial build at path (if set) holds some tapes: the indexer
// commits in batches, and a batch that is being written when the context
// ends is rolled back, so only then is there something to resume.
type cancelAfter struct {
	layer.Base
	n, reads atomic.Int64
	cancel   context.CancelFunc
	path     string
	t        *testing.T
}

func (c *cancelAfter) NewRangeReader(ctx context.Context, key string, off, n int64, opts *driver.ReaderOptions) (driver.Reader, error) {
	if c.reads.Add(1) == c.n.Load() {
		for deadline := time.Now().Add(20 * time.Second); c.path != ""; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				c.t.Error("no batch of tapes was committed")
				break
			}
			sc, err := meta.OpenReadOnly(c.path)
			if err != nil {
				continue
			}
			st, err := sc.Stats(ctx)
			sc.Close()
			if err == nil && st.Tapes > 0 {
				break
			}
		}
		c.cancel()
	}
	return c.Base.NewRangeReader(ctx, key, off, n, opts)
}

// An interrupted rebuild leaves the old sidecar alone; the next one
// resumes (reads fewer tapes than a fresh one) and ends equal to the
// incremental index.
func TestReindexInterruptedResumes(t *testing.T) {
	// More tapes than one write batch of the indexer, so that part of
	// the work is committed before the interruption.
	b, want, tapes := incremental(t, 480)
	path := filepath.Join(t.TempDir(), "index.db")
	os.WriteFile(path, []byte("the old sidecar"), 0o600)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ca := &cancelAfter{cancel: cancel, path: path + BuildSuffix, t: t}
	ca.Base = layer.Base{Inner: b}
	ca.n.Store(int64(tapes) * 3 / 4)
	_, err := Reindex(ctx, blob.NewBucket(ca), path, ReindexOptions{Logger: quiet, Workers: 4})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted reindex: err = %v, want context.Canceled", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "the old sidecar" {
		t.Fatal("an interrupted reindex touched the old sidecar")
	}
	if _, err := os.Stat(path + BuildSuffix); err != nil {
		t.Fatalf("the partial build is gone: %v", err)
	}

	res, err := Reindex(context.Background(), b, path, ReindexOptions{Logger: quiet, Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	if res.TapesIndexed >= tapes || res.TapesIndexed == 0 {
		t.Errorf("resumed reindex indexed %d tapes of %d: it did not resume", res.TapesIndexed, tapes)
	}
	if res.Added != 0 {
		t.Errorf("resumed reindex added %d objects: the listing of the first run was lost", res.Added)
	}
	sameIndex(t, "resumed rebuild", want, snap(t, openSidecar(t, path)))

	// Restart throws a partial build away.
	ctx, cancel = context.WithCancel(context.Background())
	ca.cancel, ca.path = cancel, ""
	ca.reads.Store(0)
	ca.n.Store(10)
	if _, err := Reindex(ctx, blob.NewBucket(ca), path, ReindexOptions{Logger: quiet}); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	res, err = Reindex(context.Background(), b, path, ReindexOptions{Logger: quiet, Restart: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.TapesIndexed != tapes || res.Added != res.Listed {
		t.Errorf("restarted reindex indexed %d of %d tapes, added %d of %d keys", res.TapesIndexed, tapes, res.Added, res.Listed)
	}
	sameIndex(t, "restarted rebuild", want, snap(t, openSidecar(t, path)))
}

// A corrupt partial build is started again, not an error.
func TestReindexCorruptPartialBuild(t *testing.T) {
	b, want, _ := incremental(t, 6)
	path := filepath.Join(t.TempDir(), "index.db")
	os.WriteFile(path+BuildSuffix, []byte(strings.Repeat("not a database ", 300)), 0o600)
	if _, err := Reindex(context.Background(), b, path, ReindexOptions{Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	sameIndex(t, "rebuild after a corrupt partial build", want, snap(t, openSidecar(t, path)))
}
