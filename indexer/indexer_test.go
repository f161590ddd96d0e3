package indexer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/memblob"

	"github.com/tapefs/tapefs/keypath"
	"github.com/tapefs/tapefs/meta"
	"github.com/tapefs/tapefs/tape"
)

// ---- fixtures ----

func v2JSONL(id string, tools ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"type":"init","version":"2.0","tape_id":%q,"session_id":"sess-%s","created_at":"2025-08-02T10:58:02.233Z","protocol_version":"2025-06-18"}`+"\n", id, id)
	b.WriteString(`{"type":"frame","seq":0,"ts":0,"dir":"client_to_server","env":{"message":{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","clientInfo":{"name":"claude-code","version":"1.0.86"}}}},"flags":{"is_error":false,"is_notification":false,"requires_response":true}}` + "\n")
	b.WriteString(`{"type":"frame","seq":1,"ts":15,"dir":"server_to_client","env":{"message":{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","serverInfo":{"name":"fs","version":"0.3.0"}}}},"flags":{"is_error":false,"is_notification":false,"requires_response":false}}` + "\n")
	for i, tool := range tools {
		fmt.Fprintf(&b, `{"type":"frame","seq":%d,"ts":%d,"dir":"client_to_server","env":{"message":{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q}}},"flags":{"is_error":false,"is_notification":false,"requires_response":true}}`+"\n", i+2, 20+i, i+2, tool)
	}
	return b.String()
}

func v2Meta(id, name string, tags ...string) string {
	t, _ := jsonList(tags)
	return fmt.Sprintf(`{"tape_id":%q,"name":%q,"description":"d","tags":%s,"created_at":"2025-08-02T10:58:02.233Z","updated_at":"2025-08-02T10:58:21.818Z","finalized_at":null,"status":"finalized","transport":{"type":"stdio"},"stats":{"frame_count":3}}`, id, name, t)
}

// v1Doc is a v1 tape without a session name, so the name comes from index.json.
func v1Doc(id string) string {
	return fmt.Sprintf(`{"format":{"version":"1.0"},"session":{"id":"sess-%s","transport_type":"stdio"},"timeline":{"started_at":1754067960275,"ended_at":1754067961275,"duration_ms":1000,"frame_count":1},"frames":[{"id":"f1","sequence":0,"timestamp":1754067960275,"direction":"ClientToServer","message":{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}},"metadata":{}}]}`, id)
}

func v1IndexJSON(names map[string]string) string {
	var parts []string
	for file, name := range names {
		parts = append(parts, fmt.Sprintf(`{"id":%q,"name":%q,"tags":["idx"],"file_path":%q}`, strings.TrimSuffix(file, ".json"), name, file))
	}
	sort.Strings(parts)
	return `{"version":1,"tapes":[` + strings.Join(parts, ",") + `]}`
}

func jsonList(ss []string) (string, error) {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ",") + "]", nil
}

// ---- helpers ----

// logCapture is a slog.Handler that keeps every record.
type logCapture struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCapture) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *logCapture) WithGroup(string) slog.Handler            { return c }
func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, r.Clone())
	return nil
}

// skipWarnings counts the "not served" warnings per key, and clears them.
func (c *logCapture) skipWarnings() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for _, r := range c.recs {
		if r.Level != slog.LevelWarn || !strings.Contains(r.Message, "is not served") {
			continue
		}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "key" {
				out[a.Value.String()]++
			}
			return true
		})
	}
	c.recs = nil
	return out
}

func newSidecar(t testing.TB, path string) *meta.Sidecar {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "sidecar.db")
	}
	sc, err := meta.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return sc
}

func newIndexer(t testing.TB, b *blob.Bucket, sc *meta.Sidecar) (*Indexer, *logCapture) {
	logs := &logCapture{}
	return New(b, sc, Options{Logger: slog.New(logs), Name: "mem://test"}), logs
}

func write(t testing.TB, b *blob.Bucket, key, content string) {
	t.Helper()
	if err := b.WriteAll(context.Background(), key, []byte(content), nil); err != nil {
		t.Fatalf("write %q: %v", key, err)
	}
}

func remove(t testing.TB, b *blob.Bucket, key string) {
	t.Helper()
	if err := b.Delete(context.Background(), key); err != nil {
		t.Fatalf("delete %q: %v", key, err)
	}
}

func reconcile(t testing.TB, ix *Indexer) Result {
	t.Helper()
	res, err := ix.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// upload puts content at key in the store and the object's row in the
// sidecar, as the mount does after an upload and before it indexes.
func upload(t testing.TB, b *blob.Bucket, sc *meta.Sidecar, key, content string) meta.Object {
	t.Helper()
	write(t, b, key, content)
	a, err := b.Attributes(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	row, err := sc.PutObject(context.Background(), meta.Object{Key: key, Size: a.Size, ModTime: a.ModTime, ETag: a.ETag, MD5: a.MD5})
	if err != nil {
		t.Fatal(err)
	}
	return row
}

func getTape(t testing.TB, sc *meta.Sidecar, key string) meta.TapeRow {
	t.Helper()
	r, ok, err := sc.GetTape(context.Background(), key)
	if err != nil || !ok {
		t.Fatalf("GetTape(%q) = %v, %v", key, ok, err)
	}
	return r
}

func changes(res Result) string {
	var s []string
	for _, c := range res.Changes {
		s = append(s, c.Op.String()+":"+c.Key)
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

// buckets are the stores the reconcile tests run against.
func buckets(t *testing.T) map[string]func(t *testing.T) *blob.Bucket {
	return map[string]func(t *testing.T) *blob.Bucket{
		"mem": func(t *testing.T) *blob.Bucket { return memblob.OpenBucket(nil) },
		"file": func(t *testing.T) *blob.Bucket {
			b, err := fileblob.OpenBucket(t.TempDir(), nil)
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
	}
}

// ---- tests ----

func TestReconcile(t *testing.T) {
	type step struct {
		name    string
		do      func(t *testing.T, b *blob.Bucket)
		changes string
		tapes   int
		check   func(t *testing.T, sc *meta.Sidecar)
	}
	steps := []step{
		{
			name: "initial",
			do: func(t *testing.T, b *blob.Bucket) {
				write(t, b, "a.txt", "hello")
				write(t, b, "d/e/b.txt", "world")
				write(t, b, "t/x.jsonl", v2JSONL("x", "read_file"))
				write(t, b, "t/x.meta.json", v2Meta("x", "first", "prod"))
				write(t, b, "v1/one.json", v1Doc("one"))
				write(t, b, "v1/two.json", v1Doc("two"))
				write(t, b, "v1/index.json", v1IndexJSON(map[string]string{"one.json": "One", "two.json": "Two"}))
				write(t, b, "v1/config.json", `{"not":"a tape"}`)
			},
			changes: "added:a.txt added:d/e/b.txt added:t/x.jsonl added:t/x.meta.json added:v1/config.json added:v1/index.json added:v1/one.json added:v1/two.json",
			tapes:   3,
			check: func(t *testing.T, sc *meta.Sidecar) {
				r := getTape(t, sc, "t/x.jsonl")
				if r.Name != "first" || !slices.Equal(r.Tags, []string{"prod"}) || r.Tools["read_file"] != 1 || r.ETag == "" {
					t.Errorf("v2 tape: %+v", r)
				}
				if r := getTape(t, sc, "v1/one.json"); r.Name != "One" || r.Format != tape.FormatV1 {
					t.Errorf("v1 tape: %+v", r)
				}
				if _, ok, _ := sc.GetTape(context.Background(), "v1/config.json"); ok {
					t.Error("a plain JSON file is listed as a tape")
				}
			},
		},
		{name: "nothing changed", do: func(*testing.T, *blob.Bucket) {}},
		{
			name:    "size changed",
			do:      func(t *testing.T, b *blob.Bucket) { write(t, b, "a.txt", "hello, longer") },
			changes: "changed:a.txt",
		},
		{
			name:    "companion changed",
			do:      func(t *testing.T, b *blob.Bucket) { write(t, b, "t/x.meta.json", v2Meta("x", "second", "dev")) },
			changes: "changed:t/x.meta.json",
			tapes:   1,
			check: func(t *testing.T, sc *meta.Sidecar) {
				if r := getTape(t, sc, "t/x.jsonl"); r.Name != "second" || !slices.Equal(r.Tags, []string{"dev"}) {
					t.Errorf("after meta change: %+v", r)
				}
			},
		},
		{
			name:    "data changed",
			do:      func(t *testing.T, b *blob.Bucket) { write(t, b, "t/x.jsonl", v2JSONL("x", "read_file", "write_file")) },
			changes: "changed:t/x.jsonl",
			tapes:   1,
			check: func(t *testing.T, sc *meta.Sidecar) {
				if r := getTape(t, sc, "t/x.jsonl"); r.Tools["write_file"] != 1 {
					t.Errorf("after data change: %+v", r)
				}
			},
		},
		{
			name: "v1 index changed: every v1 tape beside it",
			do: func(t *testing.T, b *blob.Bucket) {
				write(t, b, "v1/index.json", v1IndexJSON(map[string]string{"one.json": "Uno", "two.json": "Dos"}))
			},
			changes: "changed:v1/index.json",
			tapes:   2,
			check: func(t *testing.T, sc *meta.Sidecar) {
				if r := getTape(t, sc, "v1/two.json"); r.Name != "Dos" {
					t.Errorf("after index change: %+v", r)
				}
			},
		},
		{
			name:    "deleted",
			do:      func(t *testing.T, b *blob.Bucket) { remove(t, b, "d/e/b.txt") },
			changes: "removed:d/e/b.txt",
			check: func(t *testing.T, sc *meta.Sidecar) {
				if _, ok, _ := sc.StatDir(context.Background(), "d"); ok {
					t.Error("directory d outlived its last file")
				}
			},
		},
		{
			name:    "companion deleted",
			do:      func(t *testing.T, b *blob.Bucket) { remove(t, b, "t/x.meta.json") },
			changes: "removed:t/x.meta.json",
			tapes:   1,
			check: func(t *testing.T, sc *meta.Sidecar) {
				if r := getTape(t, sc, "t/x.jsonl"); r.Name != "" || r.HasMeta {
					t.Errorf("after meta delete: %+v", r)
				}
			},
		},
		{
			name:    "tape deleted",
			do:      func(t *testing.T, b *blob.Bucket) { remove(t, b, "v1/one.json") },
			changes: "removed:v1/one.json",
			check: func(t *testing.T, sc *meta.Sidecar) {
				if st, _ := sc.Stats(context.Background()); st.Tapes != 2 {
					t.Errorf("Stats = %+v", st)
				}
			},
		},
	}
	for name, open := range buckets(t) {
		t.Run(name, func(t *testing.T) {
			b := open(t)
			sc := newSidecar(t, "")
			ix, _ := newIndexer(t, b, sc)
			for _, st := range steps {
				// Stores keep modification times to the second or finer;
				// make sure a rewrite gets a new one.
				time.Sleep(10 * time.Millisecond)
				st.do(t, b)
				res := reconcile(t, ix)
				if got := changes(res); got != st.changes {
					t.Errorf("%s: changes\n got %s\nwant %s", st.name, got, st.changes)
				}
				if res.TapesIndexed != st.tapes {
					t.Errorf("%s: %d tapes indexed, want %d", st.name, res.TapesIndexed, st.tapes)
				}
				if st.check != nil {
					st.check(t, sc)
				}
			}
		})
	}
}

// TestReconcileSameSize covers changes a size check alone misses: a new
// modification time, and new content of the same size at the same time
// (told by the listing's MD5).
func TestReconcileSameSize(t *testing.T) {
	dir := t.TempDir()
	b, err := fileblob.OpenBucket(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := newSidecar(t, "")
	ix, _ := newIndexer(t, b, sc)
	write(t, b, "f.txt", "aaaa")
	write(t, b, "t.jsonl", v2JSONL("t", "aaaa"))
	reconcile(t, ix)
	ctx := context.Background()
	before, _, _ := sc.GetObject(ctx, "t.jsonl")

	old := time.Unix(1700000000, 0)
	if err := os.Chtimes(filepath.Join(dir, "f.txt"), old, old); err != nil {
		t.Fatal(err)
	}
	if got := changes(reconcile(t, ix)); got != "changed:f.txt" {
		t.Errorf("mtime change: %q", got)
	}
	write(t, b, "f.txt", "bbbb")
	write(t, b, "t.jsonl", v2JSONL("t", "bbbb"))
	for _, k := range []string{"f.txt", "t.jsonl"} {
		if err := os.Chtimes(filepath.Join(dir, k), old, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(filepath.Join(dir, "t.jsonl"), before.ModTime, before.ModTime); err != nil {
		t.Fatal(err)
	}
	res := reconcile(t, ix)
	if got := changes(res); got != "changed:f.txt changed:t.jsonl" {
		t.Errorf("content change at the same size and time: %q", got)
	}
	after := getTape(t, sc, "t.jsonl")
	// fileblob's ETag is made of size and time, so only the MD5 tells.
	if res.TapesIndexed != 1 || after.Tools["bbbb"] != 1 {
		t.Errorf("tape not re-indexed: %d, %+v", res.TapesIndexed, after)
	}
}

// dump renders everything a sidecar serves, ids included, for comparison.
func dump(t *testing.T, sc *meta.Sidecar) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	var walk func(dir string)
	walk = func(dir string) {
		ents, err := sc.ReadDir(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			fmt.Fprintf(&b, "%q %q dir=%v id=%d size=%d mtime=%d etag=%q key=%q\n", dir, e.Name, e.IsDir, e.ID, e.Size, e.ModTime.UnixNano(), e.ETag, e.Key)
			if e.IsDir {
				walk(keypath.Join(dir, e.Name))
			}
		}
	}
	walk("")
	sk, _ := sc.Skipped(ctx)
	fmt.Fprintf(&b, "skipped %q\n", sk)
	tapes, err := sc.ListTapes(ctx, meta.TapeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range tapes {
		r.IndexedAt = time.Time{}
		fmt.Fprintf(&b, "%+v\n", r)
	}
	return b.String()
}

func TestRebuildIdentical(t *testing.T) {
	b := memblob.OpenBucket(nil)
	for _, k := range []string{"a/b/c.txt", "a/d.txt", "a", "m/", "odd//key", "z.txt"} {
		write(t, b, k, "x"+k)
	}
	write(t, b, "t/x.jsonl", v2JSONL("x", "read_file"))
	write(t, b, "t/x.meta.json", v2Meta("x", "X", "a", "b"))
	write(t, b, "t/y.jsonl", "not json\n")
	write(t, b, "v1/one.json", v1Doc("one"))
	write(t, b, "v1/index.json", v1IndexJSON(map[string]string{"one.json": "One"}))

	path := filepath.Join(t.TempDir(), "sidecar.db")
	sc, err := meta.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ix, _ := newIndexer(t, b, sc)
	reconcile(t, ix)
	first := dump(t, sc)
	sc.Close()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(path + suffix)
	}
	sc = newSidecar(t, path)
	ix, _ = newIndexer(t, b, sc)
	res := reconcile(t, ix)
	if res.Added != 11 || res.TapesIndexed != 3 || res.InvalidTapes != 1 {
		t.Errorf("rebuild: %+v", res)
	}
	if second := dump(t, sc); second != first {
		t.Errorf("rebuilt sidecar differs:\n--- first\n%s--- second\n%s", first, second)
	}
}

// TestOddKeys checks that every key is either in the tree where keypath
// puts it, or skipped with exactly one warning, the first time only.
func TestOddKeys(t *testing.T) {
	long := strings.Repeat("n", 300)
	memKeys := []string{
		"sp ace.txt", "dir with space/ünï cødé 😀.jsonl", "100%.txt", "a#b", "what?.txt", `back\slash`, "co:lon",
		strings.Repeat("y", 255), long, "p/" + long + "/q",
		"a//b", "//", "/lead", "trail/", "deep/trail/", ".", "..", "./dot", "x/../y", "x/./y", "dots/..",
		"both", "both/child", "ctl\x01", "tab\there", "del\x7f",
	}
	// A directory cannot hold a file and a directory of the same name.
	fileKeys := []string{"sp ace.txt", "dir with space/ünï cødé 😀.jsonl", "100%.txt", "a#b", "what?.txt", `back\slash`, "co:lon"}
	for name, open := range buckets(t) {
		t.Run(name, func(t *testing.T) {
			keys := memKeys
			if name == "file" {
				keys = fileKeys
			}
			b := open(t)
			for _, k := range keys {
				write(t, b, k, "content of "+k)
			}
			sc := newSidecar(t, "")
			ix, logs := newIndexer(t, b, sc)
			res := reconcile(t, ix)
			if res.Listed != len(keys) {
				t.Errorf("listed %d keys, want %d", res.Listed, len(keys))
			}
			warned := logs.skipWarnings()
			ctx := context.Background()
			skipped := map[string]bool{}
			sk, _ := sc.Skipped(ctx)
			for _, s := range sk {
				skipped[s.Key] = true
			}
			for _, k := range keys {
				inTree := false
				if p, err := keypath.Split(k); err == nil {
					if p.IsDirMarker {
						_, inTree, _ = sc.StatDir(ctx, p.Path())
					} else {
						e, ok, _ := sc.Lookup(ctx, p.Dir, p.Name)
						inTree = ok && !e.IsDir && e.Key == k
					}
				}
				switch {
				case inTree && (skipped[k] || warned[k] != 0):
					t.Errorf("%q is in the tree but skipped (%v) or warned about (%d)", k, skipped[k], warned[k])
				case !inTree && (!skipped[k] || warned[k] != 1):
					t.Errorf("%q is not in the tree: skipped %v, %d warnings (want 1)", k, skipped[k], warned[k])
				}
			}
			if res.NewSkipped != len(sk) || res.Skipped != len(sk) {
				t.Errorf("Result skipped %d, new %d; sidecar has %d", res.Skipped, res.NewSkipped, len(sk))
			}
			if name == "mem" && !skipped["both"] {
				t.Error(`"both" should be shadowed by the directory "both/"`)
			}
			reconcile(t, ix)
			if again := logs.skipWarnings(); len(again) != 0 {
				t.Errorf("second reconcile warned again: %v", again)
			}
		})
	}
}

func TestIndexKeyForgetKey(t *testing.T) {
	ctx := context.Background()
	b := memblob.OpenBucket(nil)
	sc := newSidecar(t, "")
	ix, _ := newIndexer(t, b, sc)
	// mountWrite does what the FUSE layer does after an upload.
	mountWrite := func(key, content string) {
		upload(t, b, sc, key, content)
		if err := ix.IndexKey(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	mountDelete := func(key string) {
		remove(t, b, key)
		if err := sc.DeleteObject(ctx, key); err != nil {
			t.Fatal(err)
		}
		if err := ix.ForgetKey(ctx, key); err != nil {
			t.Fatal(err)
		}
	}

	mountWrite("s/t.meta.json", v2Meta("t", "Named")) // before its tape: nothing to index yet
	mountWrite("s/t.jsonl", v2JSONL("t"))
	if r := getTape(t, sc, "s/t.jsonl"); r.Name != "Named" {
		t.Errorf("tape written after its meta: %+v", r)
	}
	mountWrite("s/t.meta.json", v2Meta("t", "Renamed"))
	if r := getTape(t, sc, "s/t.jsonl"); r.Name != "Renamed" {
		t.Errorf("after meta write: %+v", r)
	}
	mountDelete("s/t.meta.json")
	if r := getTape(t, sc, "s/t.jsonl"); r.Name != "" {
		t.Errorf("after meta delete: %+v", r)
	}

	mountWrite("v/a.json", v1Doc("a"))
	mountWrite("v/b.json", v1Doc("b"))
	mountWrite("v/index.json", v1IndexJSON(map[string]string{"a.json": "A", "b.json": "B"}))
	for k, want := range map[string]string{"v/a.json": "A", "v/b.json": "B"} {
		if r := getTape(t, sc, k); r.Name != want {
			t.Errorf("%s after index.json write: %+v", k, r)
		}
	}
	mountDelete("v/index.json")
	if r := getTape(t, sc, "v/a.json"); r.Name != "" {
		t.Errorf("after index.json delete: %+v", r)
	}

	// A tape renamed to a plain name loses its index row.
	if err := sc.RenameObject(ctx, "v/b.json", "v/b.txt"); err != nil {
		t.Fatal(err)
	}
	if err := ix.IndexKey(ctx, "v/b.txt"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := sc.IndexedAt(ctx, "v/b.txt"); ok {
		t.Error("index row kept under a plain name")
	}
	mountWrite("plain.txt", "hi")
	mountDelete("s/t.jsonl")
	if st, _ := sc.Stats(ctx); st.Tapes != 1 {
		t.Errorf("Stats = %+v", st)
	}

	// A row whose object is not in the store: the tape is invalid, not an error.
	if _, err := sc.PutObject(ctx, meta.Object{Key: "ghost.jsonl", Size: 10}); err != nil {
		t.Fatal(err)
	}
	if err := ix.IndexKey(ctx, "ghost.jsonl"); err != nil {
		t.Fatal(err)
	}
	if r := getTape(t, sc, "ghost.jsonl"); r.Valid || len(r.Problems) == 0 || !strings.HasPrefix(r.Problems[0], "read failed: ") {
		t.Errorf("unreadable tape: %+v", r)
	}
}

func TestReadFailures(t *testing.T) {
	inner := memblob.OpenBucket(nil)
	f, b := newFaulty(inner)
	write(t, inner, "good.jsonl", v2JSONL("good"))
	write(t, inner, "noopen.jsonl", v2JSONL("noopen"))
	write(t, inner, "midway.jsonl", v2JSONL("midway"))
	write(t, inner, "meta.jsonl", v2JSONL("meta"))
	write(t, inner, "meta.meta.json", v2Meta("meta", "M"))
	write(t, inner, "v1/a.json", v1Doc("a"))
	write(t, inner, "v1/index.json", v1IndexJSON(map[string]string{"a.json": "A"}))
	f.set(func() {
		f.openErr["noopen.jsonl"] = errInjected
		f.readErr["midway.jsonl"] = errInjected
		f.openErr["meta.meta.json"] = errInjected
		f.openErr["v1/index.json"] = errInjected
	})
	sc := newSidecar(t, "")
	ix, _ := newIndexer(t, b, sc)
	res := reconcile(t, ix)
	if res.TapesIndexed != 5 || res.InvalidTapes != 4 {
		t.Errorf("first run: %+v", res)
	}
	for _, k := range []string{"noopen.jsonl", "midway.jsonl", "meta.jsonl", "v1/a.json"} {
		r := getTape(t, sc, k)
		if r.Valid || len(r.Problems) == 0 || !strings.HasPrefix(r.Problems[0], "read failed: ") {
			t.Errorf("%s: valid %v, problems %q", k, r.Valid, r.Problems)
		}
	}
	if r := getTape(t, sc, "good.jsonl"); !r.Valid {
		t.Errorf("good tape: %+v", r)
	}

	// Failed reads are tried again at the next reconcile.
	f.set(func() { clear(f.openErr); clear(f.readErr) })
	res = reconcile(t, ix)
	if res.TapesIndexed != 4 || res.InvalidTapes != 0 {
		t.Errorf("second run: %+v", res)
	}
	if r := getTape(t, sc, "meta.jsonl"); r.Name != "M" {
		t.Errorf("meta.jsonl after retry: %+v", r)
	}
	if res = reconcile(t, ix); res.TapesIndexed != 0 {
		t.Errorf("third run: %+v", res)
	}

	// A listing failure is an error naming the store, and changes nothing.
	f.set(func() { f.listErr = errInjected })
	_, err := ix.Reconcile(context.Background())
	if !errors.Is(err, errInjected) || !strings.Contains(err.Error(), "mem://test") {
		t.Errorf("listing failure: %v", err)
	}
	if st, _ := sc.Stats(context.Background()); st.Objects != 7 {
		t.Errorf("after failed listing: %+v", st)
	}
}

// TestMountWritesDuringReconcile checks that rows the mount writes while a
// listing is under way are not undone by that (older) listing.
func TestMountWritesDuringReconcile(t *testing.T) {
	ctx := context.Background()
	inner := memblob.OpenBucket(nil)
	f, b := newFaulty(inner)
	write(t, inner, "old.txt", "old")
	write(t, inner, "gone.txt", "gone")
	sc := newSidecar(t, "")
	ix, _ := newIndexer(t, b, sc)
	reconcile(t, ix)

	remove(t, inner, "gone.txt")
	f.set(func() {
		f.beforeLs = func() {
			// The mount creates a key and rewrites another after the
			// listing was taken.
			write(t, inner, "new.txt", "new")
			sc.PutObject(ctx, meta.Object{Key: "new.txt", Size: 3, ModTime: time.Now()})
			sc.PutObject(ctx, meta.Object{Key: "old.txt", Size: 12345, ModTime: time.Now()})
			f.beforeLs = nil
		}
	})
	res := reconcile(t, ix)
	if got := changes(res); got != "removed:gone.txt" {
		t.Errorf("changes %q", got)
	}
	if o, ok, _ := sc.GetObject(ctx, "new.txt"); !ok {
		t.Error("the mount's new key was dropped")
	} else if o2, _, _ := sc.GetObject(ctx, "old.txt"); o2.Size != 12345 {
		t.Errorf("the mount's rewrite was undone: %+v (%+v)", o2, o)
	}
}

// TestPending checks that keys the mount has not uploaded yet survive a
// reconcile that does not see them (or sees an older version).
func TestPending(t *testing.T) {
	ctx := context.Background()
	b := memblob.OpenBucket(nil)
	write(t, b, "old.txt", "old")
	sc := newSidecar(t, "")
	ix, _ := newIndexer(t, b, sc)
	reconcile(t, ix)
	ix.SetPending(func(key string) bool { return key == "staged.txt" || key == "old.txt" })
	sc.PutObject(ctx, meta.Object{Key: "staged.txt", Size: 6})
	sc.PutObject(ctx, meta.Object{Key: "old.txt", Size: 99})
	if res := reconcile(t, ix); len(res.Changes) != 0 {
		t.Errorf("changes %q", changes(res))
	}
	if o, _, _ := sc.GetObject(ctx, "old.txt"); o.Size != 99 {
		t.Errorf("pending rewrite undone: %+v", o)
	}
	if _, ok, _ := sc.GetObject(ctx, "staged.txt"); !ok {
		t.Error("pending key removed")
	}
	ix.SetPending(nil)
	if got := changes(reconcile(t, ix)); got != "changed:old.txt removed:staged.txt" {
		t.Errorf("once uploaded (or given up): %q", got)
	}
}

// TestConcurrentReads runs readers against the sidecar while reconciles
// write to it (run with -race).
func TestConcurrentReads(t *testing.T) {
	ctx := context.Background()
	b := memblob.OpenBucket(nil)
	for i := range 500 {
		write(t, b, fmt.Sprintf("d%d/f%d.txt", i%10, i), "x")
		if i%5 == 0 {
			write(t, b, fmt.Sprintf("d%d/t%d.jsonl", i%10, i), v2JSONL(fmt.Sprint(i), "read_file"))
		}
	}
	path := filepath.Join(t.TempDir(), "sidecar.db")
	sc := newSidecar(t, path)
	cli, err := meta.OpenReadOnly(path) // as `tapefs ls` would
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ix, _ := newIndexer(t, b, sc)

	stop := make(chan struct{})
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for r := range 6 {
		wg.Go(func() {
			s := sc
			if r%2 == 1 {
				s = cli
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				dir := fmt.Sprintf("d%d", r)
				if _, err := s.ReadDir(ctx, dir); err != nil && !errors.Is(err, meta.ErrNotFound) {
					errs <- err
					return
				}
				if _, _, err := s.Lookup(ctx, dir, fmt.Sprintf("f%d.txt", r)); err != nil {
					errs <- err
					return
				}
				if _, err := s.ListTapes(ctx, meta.TapeFilter{Limit: 20}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for round := range 4 {
		for i := range 100 {
			key := fmt.Sprintf("d%d/f%d.txt", i%10, i*5+round)
			if round%2 == 0 {
				write(t, b, key, "changed "+key)
			} else {
				b.Delete(ctx, key)
			}
		}
		if _, err := ix.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestReconcileLarge measures a reconcile of 10,000 objects (1,000 of them
// v2 tapes with meta) into an empty sidecar, a second one with nothing to
// do, and ReadDir of the 10,000-entry directory it makes.
func TestReconcileLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("large")
	}
	ctx := context.Background()
	b := memblob.OpenBucket(nil)
	for i := range 9000 {
		write(t, b, fmt.Sprintf("big/file-%05d.txt", i), "some content")
	}
	for i := range 500 {
		write(t, b, fmt.Sprintf("big/tape-%05d.jsonl", i), v2JSONL(fmt.Sprint(i), "read_file", "write_file"))
		write(t, b, fmt.Sprintf("big/tape-%05d.meta.json", i), v2Meta(fmt.Sprint(i), "tape", "prod"))
	}
	sc := newSidecar(t, "")
	ix, _ := newIndexer(t, b, sc)
	res := reconcile(t, ix)
	if res.Added != 10000 || res.TapesIndexed != 500 {
		t.Fatalf("first reconcile: %+v", res)
	}
	t.Logf("reconcile of 10,000 new objects (500 tapes): %v", res.Duration)
	res = reconcile(t, ix)
	if len(res.Changes) != 0 || res.TapesIndexed != 0 {
		t.Fatalf("second reconcile: %+v", res)
	}
	t.Logf("reconcile of 10,000 unchanged objects: %v", res.Duration)
	start := time.Now()
	ents, err := sc.ReadDir(ctx, "big")
	if err != nil || len(ents) != 10000 {
		t.Fatalf("ReadDir: %d, %v", len(ents), err)
	}
	t.Logf("ReadDir of 10,000 entries: %v", time.Since(start))
}

// failingReaderAt is local bytes that cannot be read.
type failingReaderAt struct{}

func (failingReaderAt) ReadAt([]byte, int64) (int, error) { return 0, errInjected }

// TestIndexUploaded checks that a tape just uploaded is parsed from the
// local bytes it went up from (Prepare), not read back from the store; and
// from the store when those bytes cannot be read, or are no longer what the
// store holds for the key or its companion.
func TestIndexUploaded(t *testing.T) {
	ctx := context.Background()
	inner := memblob.OpenBucket(nil)
	f, b := newFaulty(inner)
	sc := newSidecar(t, "")
	ix, _ := newIndexer(t, b, sc)
	upload := func(key, content string) meta.Object { return upload(t, inner, sc, key, content) }
	local := func(s string) *io.SectionReader { return io.NewSectionReader(strings.NewReader(s), 0, int64(len(s))) }
	index := func(key string, p *Parse, row meta.Object) {
		t.Helper()
		if err := ix.IndexUploaded(ctx, key, p, row); err != nil {
			t.Fatal(err)
		}
	}

	upload("s/t.meta.json", v2Meta("t", "Named", "x"))
	upload("v/index.json", v1IndexJSON(map[string]string{"a.json": "A"}))
	// The store cannot serve the tapes themselves: only the local bytes
	// can give a valid row (companions still come from the store).
	f.set(func() {
		f.openErr["s/t.jsonl"] = errInjected
		f.openErr["v/a.json"] = errInjected
	})
	// The parse starts before the upload ends, as in the mount.
	p := ix.Prepare(ctx, "s/t.jsonl", local(v2JSONL("t", "read_file")))
	index("s/t.jsonl", p, upload("s/t.jsonl", v2JSONL("t", "read_file")))
	if r := getTape(t, sc, "s/t.jsonl"); !r.Valid || r.Name != "Named" || r.Tools["read_file"] != 1 {
		t.Errorf("v2 tape from local bytes: %+v", r)
	}
	row := upload("v/a.json", v1Doc("a"))
	index("v/a.json", ix.Prepare(ctx, "v/a.json", local(v1Doc("a"))), row)
	if r := getTape(t, sc, "v/a.json"); !r.Valid || r.Name != "A" {
		t.Errorf("v1 tape from local bytes: %+v", r)
	}
	f.set(func() { clear(f.openErr) })

	// Local bytes that cannot be read: the tape is read from the store.
	row = upload("s/u.jsonl", v2JSONL("u", "write_file"))
	index("s/u.jsonl", ix.Prepare(ctx, "s/u.jsonl", io.NewSectionReader(failingReaderAt{}, 0, 10)), row)
	if r := getTape(t, sc, "s/u.jsonl"); !r.Valid || r.Tools["write_file"] != 1 {
		t.Errorf("v2 tape after a local read error: %+v", r)
	}
	// ... and when the store fails too, the row says the read failed.
	f.set(func() { f.openErr["s/u.jsonl"] = errInjected })
	row = upload("s/u.jsonl", v2JSONL("u", "write_file", "again"))
	index("s/u.jsonl", ix.Prepare(ctx, "s/u.jsonl", io.NewSectionReader(failingReaderAt{}, 0, 10)), row)
	if r := getTape(t, sc, "s/u.jsonl"); r.Valid || len(r.Problems) == 0 || !strings.HasPrefix(r.Problems[0], "read failed: ") {
		t.Errorf("both reads failed: %+v", r)
	}
	f.set(func() { clear(f.openErr) })

	// A parse whose upload failed stops; a later IndexUploaded (which
	// never follows a failed upload in the mount) reads the store.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if p := ix.Prepare(cctx, "s/u.jsonl", local(v2JSONL("u", "stale"))); p == nil {
		t.Error("Prepare of a tape returned nil")
	} else {
		index("s/u.jsonl", p, row)
	}
	if r := getTape(t, sc, "s/u.jsonl"); !r.Valid || r.Tools["again"] != 1 || r.Tools["stale"] != 0 {
		t.Errorf("after a cancelled parse: %+v", r)
	}

	// Another client wrote the key after this upload (its row is newer):
	// the local bytes are not what the store holds; the store's are indexed.
	p = ix.Prepare(ctx, "s/w.jsonl", local(v2JSONL("w", "mine")))
	row = upload("s/w.jsonl", v2JSONL("w", "mine"))
	upload("s/w.jsonl", v2JSONL("w", "theirs", "longer"))
	index("s/w.jsonl", p, row)
	if r := getTape(t, sc, "s/w.jsonl"); r.Tools["theirs"] != 1 || r.Tools["mine"] != 0 {
		t.Errorf("after another client's write: %+v", r)
	}
	// The companion changed while the tape was parsed: the row is built
	// with the new one.
	p = ix.Prepare(ctx, "s/t.jsonl", local(v2JSONL("t", "read_file")))
	row = upload("s/t.jsonl", v2JSONL("t", "read_file"))
	<-p.done // the parse has read the companion ("Named")
	upload("s/t.meta.json", v2Meta("t", "Newer"))
	index("s/t.jsonl", p, row)
	if r := getTape(t, sc, "s/t.jsonl"); r.Name != "Newer" {
		t.Errorf("after the companion changed during the parse: %+v", r)
	}

	// A companion or a plain file is indexed as IndexKey does it.
	row = upload("s/t.meta.json", v2Meta("t", "Renamed"))
	index("s/t.meta.json", ix.Prepare(ctx, "s/t.meta.json", local(v2Meta("t", "Renamed"))), row)
	if r := getTape(t, sc, "s/t.jsonl"); r.Name != "Renamed" {
		t.Errorf("after the companion's upload: %+v", r)
	}
	row = upload("plain.txt", "hi")
	index("plain.txt", ix.Prepare(ctx, "plain.txt", local("hi")), row)
	if _, ok, _ := sc.IndexedAt(ctx, "plain.txt"); ok {
		t.Error("a plain file got an index row")
	}
}

// TestReconcileSeesETagChange: an object replaced with the same size and
// time (an S3 object rewritten within its second; a multipart one has no
// MD5 either) differs only in the ETag of the store's listing. A reconcile
// takes that as a change and keeps the new ETag, which the mount's reads
// ask for; a row that had no ETag learns it quietly.
func TestReconcileSeesETagChange(t *testing.T) {
	ctx := context.Background()
	mem := memblob.OpenBucket(nil)
	f, b := newFaulty(mem)
	write(t, mem, "t.jsonl", "{}\n")
	write(t, mem, "plain.txt", "x")
	sc := newSidecar(t, "")
	ix, _ := newIndexer(t, b, sc)
	etagOf := func(key string) string {
		t.Helper()
		o, ok, err := sc.GetObject(ctx, key)
		if err != nil || !ok {
			t.Fatalf("%s: %v, %v", key, ok, err)
		}
		return o.ETag
	}
	f.set(func() { f.etags["t.jsonl"] = `"a-2"` })
	reconcile(t, ix)
	if got := etagOf("t.jsonl"); got != `"a-2"` {
		t.Fatalf("first reconcile: ETag %s, want the listing's", got)
	}
	f.set(func() { f.etags["t.jsonl"] = `"b-2"` })
	if res := reconcile(t, ix); res.Changed != 1 {
		t.Errorf("a new ETag alone: %d changed, want 1", res.Changed)
	}
	if got := etagOf("t.jsonl"); got != `"b-2"` {
		t.Errorf("after the change: ETag %s, want \"b-2\"", got)
	}
	if res := reconcile(t, ix); res.Changed != 0 {
		t.Errorf("nothing changed since: %d changed", res.Changed)
	}
	// A row without an ETag (a store whose listings had none) learns it.
	before := etagOf("plain.txt")
	f.set(func() { f.etags["plain.txt"] = `"c"` })
	res := reconcile(t, ix)
	if res.Changed != 0 || etagOf("plain.txt") != `"c"` {
		t.Errorf("learning an ETag (had %q): %d changed, ETag %s", before, res.Changed, etagOf("plain.txt"))
	}
	// A tier's listings and attributes have ETags of different stores:
	// there a new ETag alone is no change, and the row keeps its own.
	mixed := New(b, sc, Options{Name: "tier", MixedETags: true})
	f.set(func() { f.etags["t.jsonl"] = `"d-2"` })
	if res, err := mixed.Reconcile(ctx); err != nil || res.Changed != 0 {
		t.Errorf("MixedETags, a new ETag alone: %d changed (%v), want 0", res.Changed, err)
	}
	if got := etagOf("t.jsonl"); got != `"b-2"` {
		t.Errorf("MixedETags: the row's ETag became %s, want it kept (\"b-2\")", got)
	}
}

// TestReconcileListed: the listed hook of ReconcileListed sees every object
// of the store in the sidecar and no tape indexed yet; when the call
// returns, every tape is.
func TestReconcileListed(t *testing.T) {
	ctx := context.Background()
	b := memblob.OpenBucket(nil)
	for i := range 3 {
		write(t, b, fmt.Sprintf("t/tape-%d.jsonl", i), v2JSONL(fmt.Sprint(i), "read_file"))
		write(t, b, fmt.Sprintf("t/tape-%d.meta.json", i), v2Meta(fmt.Sprint(i), "tape", "prod"))
	}
	write(t, b, "notes.txt", "not a tape")
	sc := newSidecar(t, "")
	ix, _ := newIndexer(t, b, sc)
	var atListed *meta.Stats
	res, err := ix.ReconcileListed(ctx, func(r Result) {
		st, err := sc.Stats(ctx)
		if err != nil {
			t.Errorf("Stats at listed: %v", err)
		}
		if r.Added != 7 || r.TapesIndexed != 0 {
			t.Errorf("result at listed: %+v, want 7 added and no tape indexed yet", r)
		}
		atListed = &st
	})
	if err != nil {
		t.Fatal(err)
	}
	if atListed == nil {
		t.Fatal("listed was not called")
	}
	if atListed.Objects != 7 || atListed.Tapes != 0 {
		t.Errorf("sidecar at listed: %d objects, %d tapes; want 7 objects, 0 tapes", atListed.Objects, atListed.Tapes)
	}
	st, err := sc.Stats(ctx)
	if err != nil || st.Tapes != 3 || res.TapesIndexed != 3 {
		t.Errorf("after ReconcileListed: %d tapes in the sidecar, %d indexed (%v); want 3", st.Tapes, res.TapesIndexed, err)
	}
}
