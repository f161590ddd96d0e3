package fsnode

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/tapefs/tapefs/meta"
)

// testSidecar is an empty sidecar in a temporary directory.
func testSidecar(t *testing.T) *meta.Sidecar {
	t.Helper()
	sc, err := meta.Open(filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return sc
}

// TestOpenEntry: a read-only open reuses the entry its last open read
// only while nothing has changed the sidecar's tree through the mount,
// the node is unchanged, and for at most the entry timeout.
func TestOpenEntry(t *testing.T) {
	sc := testSidecar(t)
	ctx := t.Context()
	put := func(size int64) {
		t.Helper()
		if _, err := sc.PutObject(ctx, meta.Object{Key: "d/a.jsonl", Size: size, ModTime: time.Unix(1700000000, 0), ETag: "e"}); err != nil {
			t.Fatal(err)
		}
	}
	f := New(Options{Sidecar: sc})
	f.MountOptions(time.Hour, time.Hour, false)
	n := &fileNode{fsys: f, key: "d/a.jsonl"}
	size := func(what string, want int64) {
		t.Helper()
		e, errno := n.openEntry(ctx)
		if errno != 0 || e.Size != want {
			t.Fatalf("%s: openEntry = size %d, errno %v; want size %d", what, e.Size, errno, want)
		}
	}
	put(1)
	size("first open", 1)
	put(2) // behind the mount's back: not seen until something says so
	size("nothing changed through the mount", 1)
	f.changed()
	size("after a change", 2)

	put(3)
	n.setKey("d/b.jsonl")
	if _, errno := n.openEntry(ctx); errno == 0 {
		t.Fatalf("renamed node found its old entry")
	}
	n.setKey("d/a.jsonl")
	f.changed()
	size("back at its key, after a change", 3)

	put(4)
	n.mu.Lock()
	n.opened.at = n.opened.at.Add(-2 * time.Hour)
	n.mu.Unlock()
	size("older than the entry timeout", 4)

	put(5)
	n.markDeleted()
	if _, errno := n.openEntry(ctx); errno == 0 {
		t.Fatalf("unlinked node opened")
	}

	g := New(Options{Sidecar: sc})
	g.MountOptions(0, 0, false)
	m := &fileNode{fsys: g, key: "d/a.jsonl"}
	m.openEntry(ctx)
	put(6)
	if e, _ := m.openEntry(ctx); e.Size != 6 {
		t.Errorf("with no entry timeout an open reused an entry (size %d, want 6)", e.Size)
	}
}

// TestDirListingReused: opening a directory reuses the listing its last
// open read, under the bounds of openEntry: only while nothing has
// changed the sidecar's tree through the mount, and for at most the entry
// timeout.
func TestDirListingReused(t *testing.T) {
	sc := testSidecar(t)
	ctx := t.Context()
	put := func(key string) {
		t.Helper()
		if _, err := sc.PutObject(ctx, meta.Object{Key: key, Size: 1, ModTime: time.Unix(1700000000, 0), ETag: "e"}); err != nil {
			t.Fatal(err)
		}
	}
	f := New(Options{Sidecar: sc})
	f.MountOptions(time.Hour, time.Hour, false)
	names := func(what string, want ...string) {
		t.Helper()
		h := &dirHandle{node: f.root}
		if errno := h.load(ctx); errno != 0 {
			t.Fatalf("%s: load: %v", what, errno)
		}
		var got []string
		for _, e := range h.ents {
			got = append(got, e.Name)
		}
		if len(got) != len(want) || len(h.byName) != len(want) || h.fp != listingFP(h.ents) {
			t.Fatalf("%s: listed %q (index %d, fingerprint ok %v); want %q", what, got, len(h.byName), h.fp == listingFP(h.ents), want)
		}
		for i := range want {
			if got[i] != want[i] || h.byName[want[i]] != i {
				t.Fatalf("%s: listed %q; want %q", what, got, want)
			}
		}
	}
	names("empty root")
	put("a.jsonl")
	names("an empty listing is not kept", "a.jsonl")
	put("b.jsonl") // behind the mount's back: not seen until something says so
	names("nothing changed through the mount", "a.jsonl")
	f.changed()
	names("after a change", "a.jsonl", "b.jsonl")

	put("c.jsonl")
	l := &f.listing
	l.mu.Lock()
	l.at = l.at.Add(-2 * time.Hour)
	l.mu.Unlock()
	names("older than the entry timeout", "a.jsonl", "b.jsonl", "c.jsonl")

	put("d.jsonl")
	f.MountOptions(0, 0, false)
	names("no entry timeout", "a.jsonl", "b.jsonl", "c.jsonl", "d.jsonl")
}
