package importer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/memblob"

	"github.com/tapefs/tapefs/backend/layer"
	"github.com/tapefs/tapefs/internal/tapegen"
)

// ---- fixtures ----

// corpus writes a tapegen corpus with every kind of file (v2 nested with
// and without meta, v1 with index.json, odd files, odd names) into a new
// directory, and returns it with its manifest.
func corpus(t *testing.T) (string, tapegen.Manifest) {
	t.Helper()
	dir := t.TempDir()
	m, err := tapegen.WriteCorpus(dir, tapegen.CorpusOptions{
		Seed: 7, V2: 6, V2NoMeta: 2, V1: 3, Odd: true, OddNames: true, Nested: true, Large: 300 << 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir, m
}

// unservable files, each with a name that keypath refuses.
var unservable = map[string]string{
	"ctl\x01name.jsonl":  "control",
	"bad-utf8-\xff.json": "UTF-8",
	"sub/line\nbreak":    "control",
}

// addAwkward adds files import must skip: unservable names, a symlink and
// a FIFO. It returns their paths (relative, '/'-separated) by reason.
func addAwkward(t *testing.T, dir string) map[Reason][]string {
	t.Helper()
	out := map[Reason][]string{}
	for name := range unservable {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		out[Unservable] = append(out[Unservable], name)
	}
	if err := os.Symlink("notes.txt", filepath.Join(dir, "link.txt")); err != nil {
		t.Fatal(err)
	}
	out[Symlink] = append(out[Symlink], "link.txt")
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	out[Special] = append(out[Special], "fifo")
	return out
}

// bucketKinds are the stores every behaviour is checked on: one that
// reports MD5s (memblob), one that keeps them in .attrs files, and one that
// has none (fileblob with metadata=skip, the embedded default store).
var bucketKinds = []struct {
	name string
	open func(t *testing.T) *blob.Bucket
}{
	{"mem", func(t *testing.T) *blob.Bucket { return memblob.OpenBucket(nil) }},
	{"file-attrs", func(t *testing.T) *blob.Bucket { return openFile(t, t.TempDir(), false) }},
	{"file-skip", func(t *testing.T) *blob.Bucket { return openFile(t, t.TempDir(), true) }},
}

func openFile(t *testing.T, dir string, skipMeta bool) *blob.Bucket {
	t.Helper()
	opts := &fileblob.Options{}
	if skipMeta {
		opts.Metadata = fileblob.MetadataDontWrite
	}
	b, err := fileblob.OpenBucket(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// counting is a layer that counts reads and writes, can hide MD5s, and
// can fail or interrupt writes.
type counting struct {
	layer.Base
	reads, writes atomic.Int64
	hideMD5       bool
	failWrite     func(n int64) error // called with the write's number (from 1)
}

func wrap(inner *blob.Bucket, c *counting) *blob.Bucket {
	c.Base = layer.Base{Inner: inner}
	return blob.NewBucket(c)
}

func (c *counting) Attributes(ctx context.Context, key string) (*driver.Attributes, error) {
	a, err := c.Base.Attributes(ctx, key)
	if err == nil && c.hideMD5 {
		a.MD5 = nil
	}
	return a, err
}

func (c *counting) NewRangeReader(ctx context.Context, key string, off, n int64, opts *driver.ReaderOptions) (driver.Reader, error) {
	c.reads.Add(1)
	return c.Base.NewRangeReader(ctx, key, off, n, opts)
}

func (c *counting) NewTypedWriter(ctx context.Context, key, contentType string, opts *driver.WriterOptions) (driver.Writer, error) {
	n := c.writes.Add(1)
	if c.failWrite != nil {
		if err := c.failWrite(n); err != nil {
			return nil, err
		}
	}
	return c.Base.NewTypedWriter(ctx, key, contentType, opts)
}

// keys lists every key of b.
func keys(t *testing.T, b *blob.Bucket) []string {
	t.Helper()
	var out []string
	it := b.List(nil)
	for {
		o, err := it.Next(context.Background())
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, o.Key)
	}
	sort.Strings(out)
	return out
}

// checkCopied checks that b holds exactly the manifest's files under
// prefix, each byte for byte equal to its file in dir.
func checkCopied(t *testing.T, b *blob.Bucket, dir, prefix string, m tapegen.Manifest) {
	t.Helper()
	var want []string
	for _, f := range m.Files {
		want = append(want, prefix+f.Key)
		local, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Key)))
		if err != nil {
			t.Fatal(err)
		}
		got, err := b.ReadAll(context.Background(), prefix+f.Key)
		if err != nil {
			t.Errorf("key %q: %v", prefix+f.Key, err)
			continue
		}
		if !bytes.Equal(got, local) {
			t.Errorf("key %q: %d bytes in the store differ from the file's %d", prefix+f.Key, len(got), len(local))
		}
	}
	sort.Strings(want)
	if got := keys(t, b); !slices.Equal(got, want) {
		t.Errorf("keys in the store:\n got %q\nwant %q", got, want)
	}
}

// byReason returns the paths of rep's items, by action and reason.
func byReason(rep *Report) map[string][]string {
	out := map[string][]string{}
	for _, it := range rep.Items {
		k := fmt.Sprintf("%s/%s", it.Action, it.Reason)
		out[k] = append(out[k], it.Path)
	}
	return out
}

func manifestKeys(m tapegen.Manifest) []string {
	var out []string
	for _, f := range m.Files {
		out = append(out, f.Key)
	}
	return out
}

func run(t *testing.T, b *blob.Bucket, dir string, opts Options) *Report {
	t.Helper()
	rep, err := Import(context.Background(), b, dir, opts)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	return rep
}

// ---- tests ----

func TestImportCopiesEverythingThenSkipsIdentical(t *testing.T) {
	for _, kind := range bucketKinds {
		t.Run(kind.name, func(t *testing.T) {
			dir, m := corpus(t)
			awkward := addAwkward(t, dir)
			c := &counting{}
			b := wrap(kind.open(t), c)

			// The corpus has what the brief asks for: nested keys, odd
			// names, v1 tapes with their index.json.
			for _, k := range []string{"v1/index.json", "odd names/100% #1?.jsonl", "odd names/ünïcødé テープ.jsonl", `odd names/back\slash.jsonl`} {
				if _, ok := m.File(k); !ok {
					t.Fatalf("corpus lacks %q", k)
				}
			}
			nested := 0
			for _, f := range m.Files {
				if strings.HasPrefix(f.Key, "team-") && strings.Count(f.Key, "/") == 3 {
					nested++
				}
			}
			if nested == 0 {
				t.Fatal("corpus has no nested tapes")
			}

			rep := run(t, b, dir, Options{Workers: 4})
			checkCopied(t, b, dir, "", m)
			got := byReason(rep)
			if want := manifestKeys(m); !slices.Equal(got["copied/new"], want) {
				t.Errorf("copied/new:\n got %q\nwant %q", got["copied/new"], want)
			}
			for reason, paths := range awkward {
				k := "skipped/" + string(reason)
				sort.Strings(paths)
				if !slices.Equal(got[k], paths) {
					t.Errorf("%s: got %q, want %q", k, got[k], paths)
				}
			}
			if rep.Copied != len(m.Files) || rep.Failed != 0 || rep.Skipped != 5 {
				t.Errorf("report: copied %d (want %d), skipped %d (want 5), failed %d", rep.Copied, len(m.Files), rep.Skipped, rep.Failed)
			}
			for _, it := range rep.Items {
				if it.Reason == Unservable && !strings.Contains(it.Detail, unservable[it.Path]) {
					t.Errorf("%q skipped with detail %q, want it to say %q", it.Path, it.Detail, unservable[it.Path])
				}
			}

			// Second run: nothing is written; everything is identical.
			writes := c.writes.Load()
			rep = run(t, b, dir, Options{Workers: 4})
			if n := c.writes.Load() - writes; n != 0 {
				t.Errorf("second run wrote %d objects", n)
			}
			got = byReason(rep)
			if want := manifestKeys(m); !slices.Equal(got["skipped/identical"], want) {
				t.Errorf("second run, skipped/identical:\n got %q\nwant %q", got["skipped/identical"], want)
			}
			if rep.Copied != 0 {
				t.Errorf("second run copied %d: %q", rep.Copied, got)
			}
			checkCopied(t, b, dir, "", m)
		})
	}
}

// A changed file is copied again, even when its size is the same: on the
// store without MD5s that needs the byte comparison.
func TestImportCopiesChangedFiles(t *testing.T) {
	for _, kind := range bucketKinds {
		t.Run(kind.name, func(t *testing.T) {
			dir, m := corpus(t)
			b := kind.open(t)
			run(t, b, dir, Options{})

			// Same size, one byte changed near the end (past a first
			// comparison chunk of the large tape); and a different size.
			sameSize := "large/large.jsonl"
			p := filepath.Join(dir, sameSize)
			data, _ := os.ReadFile(p)
			i := len(data) - 10
			data[i] ^= 0x20
			os.WriteFile(p, data, 0o644)
			grown := "notes.txt"
			f, _ := os.OpenFile(filepath.Join(dir, grown), os.O_APPEND|os.O_WRONLY, 0)
			f.WriteString("one more line\n")
			f.Close()

			rep := run(t, b, dir, Options{})
			got := byReason(rep)
			if want := []string{sameSize, grown}; !slices.Equal(got["copied/changed"], want) {
				t.Errorf("copied/changed: got %q, want %q (all: %q)", got["copied/changed"], want, got)
			}
			if n := len(got["skipped/identical"]); n != len(m.Files)-2 {
				t.Errorf("%d identical, want %d", n, len(m.Files)-2)
			}
			checkCopied(t, b, dir, "", m)
		})
	}
}

// Where the store has no MD5 but the object carries the md5chksum
// metadata Import writes (an S3 multipart upload), that decides, and the
// object is not downloaded.
func TestImportUsesMetadataMD5(t *testing.T) {
	dir, m := corpus(t)
	c := &counting{hideMD5: true}
	b := wrap(memblob.OpenBucket(nil), c)
	run(t, b, dir, Options{})
	reads := c.reads.Load()
	rep := run(t, b, dir, Options{})
	if n := c.reads.Load() - reads; n != 0 {
		t.Errorf("second run read %d objects; the metadata MD5 should have sufficed", n)
	}
	if rep.Copied != 0 || rep.Skipped != len(m.Files) {
		t.Errorf("second run: copied %d, skipped %d of %d", rep.Copied, rep.Skipped, len(m.Files))
	}
	for _, it := range rep.Items {
		if !strings.Contains(it.Detail, "MD5 in metadata") {
			t.Errorf("%s: %s (%s), want a decision by the metadata MD5", it.Path, it.Reason, it.Detail)
		}
	}

	// Same size, different bytes: the metadata MD5 tells.
	p := filepath.Join(dir, "notes.txt")
	data, _ := os.ReadFile(p)
	data[0] ^= 0x20
	os.WriteFile(p, data, 0o644)
	rep = run(t, b, dir, Options{})
	if got := byReason(rep)["copied/changed"]; !slices.Equal(got, []string{"notes.txt"}) {
		t.Errorf("copied/changed: %q", got)
	}
	checkCopied(t, b, dir, "", m)
}

func TestImportPrefix(t *testing.T) {
	dir, m := corpus(t)
	b := memblob.OpenBucket(nil)
	rep := run(t, b, dir, Options{Prefix: "archive/2025"})
	checkCopied(t, b, dir, "archive/2025/", m)
	if rep.Copied != len(m.Files) {
		t.Errorf("copied %d, want %d", rep.Copied, len(m.Files))
	}
	rep = run(t, b, dir, Options{Prefix: "archive/2025/"})
	if rep.Copied != 0 {
		t.Errorf("same prefix with a slash: copied %d again", rep.Copied)
	}
	for _, bad := range []string{"/abs", "a//b", "../up", "x/\x01"} {
		if _, err := Import(context.Background(), b, dir, Options{Prefix: bad}); err == nil || !strings.Contains(err.Error(), "prefix") {
			t.Errorf("prefix %q: err %v, want a prefix error", bad, err)
		}
	}
}

func TestImportDryRunWritesNothing(t *testing.T) {
	for _, kind := range bucketKinds {
		t.Run(kind.name, func(t *testing.T) {
			dir, m := corpus(t)
			c := &counting{}
			b := wrap(kind.open(t), c)
			rep := run(t, b, dir, Options{DryRun: true})
			if c.writes.Load() != 0 || len(keys(t, b)) != 0 {
				t.Fatalf("dry run wrote %d objects: %q", c.writes.Load(), keys(t, b))
			}
			if !rep.DryRun || rep.Copied != len(m.Files) {
				t.Errorf("dry run reports %d to copy, want %d", rep.Copied, len(m.Files))
			}

			run(t, b, dir, Options{})
			os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("changed"), 0o644)
			writes := c.writes.Load()
			rep = run(t, b, dir, Options{DryRun: true})
			if got := byReason(rep)["copied/changed"]; !slices.Equal(got, []string{"notes.txt"}) {
				t.Errorf("dry run after a change: would copy %q", got)
			}
			if c.writes.Load() != writes {
				t.Error("dry run wrote")
			}
			if got, _ := b.ReadAll(context.Background(), "notes.txt"); string(got) == "changed" {
				t.Error("dry run changed the object")
			}
		})
	}
}

// A directory given through a symbolic link is imported (links below it
// are not followed).
func TestImportSymlinkedDirectory(t *testing.T) {
	dir, m := corpus(t)
	link := filepath.Join(t.TempDir(), "tapes")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	b := memblob.OpenBucket(nil)
	rep := run(t, b, link, Options{})
	if rep.Copied != len(m.Files) {
		t.Errorf("copied %d of %d through the link", rep.Copied, len(m.Files))
	}
	checkCopied(t, b, dir, "", m)
}

func TestImportBadDirectory(t *testing.T) {
	b := memblob.OpenBucket(nil)
	dir := t.TempDir()
	file := filepath.Join(dir, "a.jsonl")
	os.WriteFile(file, nil, 0o644)
	for _, c := range []struct{ dir, want string }{
		{filepath.Join(dir, "missing"), "does not exist"},
		{file, "is not a directory"},
		{"", "no directory"},
	} {
		_, err := Import(context.Background(), b, c.dir, Options{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Import(%q): %v, want %q", c.dir, err, c.want)
		}
	}
	if os.Geteuid() != 0 {
		locked := filepath.Join(dir, "locked")
		os.Mkdir(locked, 0)
		defer os.Chmod(locked, 0o755)
		if _, err := Import(context.Background(), b, locked, Options{}); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("unreadable dir: %v", err)
		}
	}
}

func TestImportUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads every file")
	}
	dir, m := corpus(t)
	os.Chmod(filepath.Join(dir, "notes.txt"), 0)
	os.Chmod(filepath.Join(dir, "v1"), 0)
	defer os.Chmod(filepath.Join(dir, "v1"), 0o755)
	b := memblob.OpenBucket(nil)
	rep := run(t, b, dir, Options{})
	got := byReason(rep)
	if want := []string{"notes.txt", "v1/"}; !slices.Equal(got["skipped/unreadable"], want) {
		t.Errorf("unreadable: %q, want %q", got["skipped/unreadable"], want)
	}
	if rep.Failed != 0 || rep.Copied != len(m.Files)-1-4 {
		t.Errorf("copied %d, failed %d", rep.Copied, rep.Failed)
	}
}

// A directory that is itself a file:// store with .attrs files imports as
// its objects only; the store inside the imported directory is excluded.
func TestImportFileStoreDirectory(t *testing.T) {
	dir, m := corpus(t)
	storeDir := t.TempDir()
	run(t, openFile(t, storeDir, false), dir, Options{})
	matches, _ := filepath.Glob(filepath.Join(storeDir, "*.attrs"))
	if len(matches) == 0 {
		t.Fatal("the file:// store kept no .attrs files")
	}
	b := memblob.OpenBucket(nil)
	rep := run(t, b, storeDir, Options{})
	checkCopied(t, b, dir, "", m)
	if n := rep.ByReason[StoreAttrs]; n != len(m.Files) {
		t.Errorf("%d attribute files skipped, want %d", n, len(m.Files))
	}

	// The destination inside the source: excluded.
	inner := filepath.Join(dir, "store")
	os.Mkdir(inner, 0o755)
	b = openFile(t, inner, true)
	rep = run(t, b, dir, Options{Exclude: []string{inner}})
	checkCopied(t, b, dir, "", m)
	if got := byReason(rep)["skipped/excluded"]; !slices.Equal(got, []string{"store/"}) {
		t.Errorf("excluded: %q", got)
	}
}

// A full store stops the import at once with an AbortError; what was
// copied is whole, and running again finishes the job.
func TestImportAbortsWhenStoreIsFull(t *testing.T) {
	dir, m := corpus(t)
	mem := memblob.OpenBucket(nil)
	c := &counting{failWrite: func(n int64) error {
		if n > 5 {
			return &os.PathError{Op: "write", Path: "/store/x", Err: syscall.ENOSPC}
		}
		return nil
	}}
	b := wrap(mem, c)
	rep, err := Import(context.Background(), b, dir, Options{Workers: 2})
	var ae *AbortError
	if !errors.As(err, &ae) || !NoSpace(err) {
		t.Fatalf("err = %v, want an AbortError for a full disk", err)
	}
	// Write 6 fails; a worker's upload in flight then is cancelled, not
	// committed, and at most one other write fails too.
	have := keys(t, mem)
	if rep.Copied != len(have) || rep.Copied > 5 || rep.Copied < 4 || rep.Failed < 1 || rep.Failed > 2 {
		t.Errorf("copied %d (%d objects; want 4 or 5), failed %d (want 1 or 2)", rep.Copied, len(have), rep.Failed)
	}
	if c.writes.Load() > 7 {
		t.Errorf("%d writes tried after the disk was full", c.writes.Load()-5)
	}
	for _, k := range have {
		local, _ := os.ReadFile(filepath.Join(dir, filepath.FromSlash(k)))
		if got, _ := mem.ReadAll(context.Background(), k); !bytes.Equal(got, local) {
			t.Errorf("%q is not whole", k)
		}
	}
	c.failWrite = nil
	rep = run(t, b, dir, Options{})
	if rep.Copied != len(m.Files)-len(have) || rep.ByReason[Identical] != len(have) {
		t.Errorf("re-run: copied %d, identical %d; %d were there", rep.Copied, rep.ByReason[Identical], len(have))
	}
	checkCopied(t, b, dir, "", m)
}

// Transient upload errors are retried from the local file.
func TestImportRetriesTransientErrors(t *testing.T) {
	defer func(w time.Duration) { retryWait = w }(retryWait)
	retryWait = time.Millisecond
	dir, m := corpus(t)
	var failed atomic.Int64
	c := &counting{failWrite: func(n int64) error {
		if n%3 == 1 { // every third attempt fails, never twice in a row
			failed.Add(1)
			return errors.New("connection reset by peer")
		}
		return nil
	}}
	b := wrap(memblob.OpenBucket(nil), c)
	rep := run(t, b, dir, Options{Workers: 1})
	if rep.Failed != 0 || rep.Copied != len(m.Files) || failed.Load() == 0 {
		t.Errorf("copied %d, failed %d, transient errors %d", rep.Copied, rep.Failed, failed.Load())
	}
	checkCopied(t, b, dir, "", m)
}

// Cancelling midway leaves only whole objects; the next run finishes.
func TestImportInterrupted(t *testing.T) {
	dir, m := corpus(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &counting{failWrite: func(n int64) error {
		if n == 8 {
			cancel()
		}
		return nil
	}}
	mem := memblob.OpenBucket(nil)
	b := wrap(mem, c)
	rep, err := Import(ctx, b, dir, Options{Workers: 3})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	have := keys(t, mem)
	if len(have) >= len(m.Files) || rep.Copied >= len(m.Files) {
		t.Fatalf("interrupt came too late: %d objects", len(have))
	}
	for _, k := range have {
		local, _ := os.ReadFile(filepath.Join(dir, filepath.FromSlash(k)))
		if got, _ := mem.ReadAll(context.Background(), k); !bytes.Equal(got, local) {
			t.Errorf("%q is not whole after the interrupt", k)
		}
	}
	c.failWrite = nil
	rep = run(t, b, dir, Options{})
	if rep.Copied+rep.ByReason[Identical] != len(m.Files) || rep.ByReason[Identical] != len(have) {
		t.Errorf("re-run: copied %d, identical %d; %d were there", rep.Copied, rep.ByReason[Identical], len(have))
	}
	checkCopied(t, b, dir, "", m)
}

func TestImportProgressAndOnItem(t *testing.T) {
	dir, m := corpus(t)
	addAwkward(t, dir)
	var items atomic.Int64
	im := New(memblob.OpenBucket(nil), Options{OnItem: func(Item) { items.Add(1) }})
	rep, err := im.Run(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	p := im.Progress()
	var size int64
	for _, f := range m.Files {
		size += f.Size
	}
	want := Progress{Files: int64(len(m.Files)), Bytes: size, Done: int64(len(m.Files)), DoneBytes: size,
		Copied: int64(len(m.Files)), Skipped: 5}
	if p != want {
		t.Errorf("progress %+v, want %+v", p, want)
	}
	if int(items.Load()) != len(rep.Items) || len(rep.Items) != len(m.Files)+5 {
		t.Errorf("OnItem called %d times for %d items", items.Load(), len(rep.Items))
	}
}

func TestIsStoreAttrs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(data), 0o644)
		return p
	}
	write("a.jsonl", "{}")
	attrs := `{"user.cache_control":"","user.content_type":"application/x-ndjson","md5":"AAAA"}`
	for _, c := range []struct {
		name, data string
		want       bool
	}{
		{"a.jsonl.attrs", attrs, true},
		{"b.jsonl.attrs", attrs, false},                  // no data file beside it
		{"a.jsonl.attrs2", attrs, false},                 // not .attrs
		{"x.attrs", "not json", false},                   // no data file, not JSON
		{"a.jsonl.attrs", `{"user": "settings"}`, false}, // JSON, but not fileblob's
	} {
		if got := isStoreAttrs(write(c.name, c.data)); got != c.want {
			t.Errorf("%s %s: %v, want %v", c.name, c.data, got, c.want)
		}
	}
}
