package cache

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n += info.Size()
		}
		return nil
	})
	return n
}

func TestBoundAndLRU(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir, 3000, 0)
	if err != nil {
		t.Fatal(err)
	}
	// 1000 bytes in the cache each, with the trailer.
	chunk := func(b byte) []byte { return bytes.Repeat([]byte{b}, 1000-trailerLen) }
	for i := 0; i < 3; i++ {
		if err := d.Put(Name("k", "e1", int64(i)), chunk(byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	// Touch chunk 0 so chunk 1 is the least recently used.
	if b, ok := d.Get(Name("k", "e1", 0)); !ok || !bytes.Equal(b, chunk(0)) {
		t.Fatal("chunk 0 missing")
	}
	d.Put(Name("k", "e1", 3), chunk(3))
	if _, ok := d.Get(Name("k", "e1", 1)); ok {
		t.Error("least recently used chunk 1 was not evicted")
	}
	for _, i := range []int64{0, 2, 3} {
		if _, ok := d.Get(Name("k", "e1", i)); !ok {
			t.Errorf("chunk %d evicted", i)
		}
	}
	if got := dirSize(t, dir); got > 3000 {
		t.Errorf("cache directory holds %d bytes, bound 3000", got)
	}
	st := d.Stats()
	if st.Bytes != 3000 || st.Entries != 3 || st.Evictions != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestChangedETagMisses(t *testing.T) {
	d, err := Open(t.TempDir(), 1<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	d.Put(Name("tape.jsonl", "v1", 0), []byte("old"))
	if _, ok := d.Get(Name("tape.jsonl", "v2", 0)); ok {
		t.Fatal("a new ETag was served from the old entry")
	}
}

func TestReopenKeepsEntriesWithinBound(t *testing.T) {
	dir := t.TempDir()
	d, _ := Open(dir, 10000, 0)
	for i := 0; i < 5; i++ {
		d.Put(Name("k", "e", int64(i)), make([]byte, 1000-trailerLen))
	}
	d2, err := Open(dir, 2500, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st := d2.Stats(); st.Bytes > 2500 || st.Entries != 2 {
		t.Errorf("reopened with a smaller bound: %+v", st)
	}
	if got := dirSize(t, dir); got > 2500 {
		t.Errorf("directory holds %d bytes after reopen, bound 2500", got)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("cache dir mode = %v, want 0700", fi.Mode().Perm())
	}
}

// TestBoundWithConcurrentPuts: Puts at once into a full cache do not each
// add their chunk before one of them evicts; the directory stays within the
// bound (plus one chunk of slack for a sample taken during a rename).
func TestBoundWithConcurrentPuts(t *testing.T) {
	dir := t.TempDir()
	const max, chunk = 3000, 1000
	d, err := Open(dir, max, 0)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	worst := make(chan int64)
	go func() {
		w := int64(0)
		for {
			select {
			case <-stop:
				worst <- w
				return
			default:
			}
			w = max64(w, dirSize(t, dir))
		}
	}()
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				d.Put(Name(fmt.Sprint("k", g), "e", int64(i)), bytes.Repeat([]byte{byte(g)}, chunk-trailerLen))
			}
		}(g)
	}
	wg.Wait()
	close(stop)
	if w := <-worst; w > max+chunk {
		t.Errorf("the cache directory held %d bytes with 32 Puts at once; bound %d", w, max)
	}
	if st := d.Stats(); st.Bytes > max || dirSize(t, dir) > max {
		t.Errorf("after the Puts: stats %+v, directory %d bytes; bound %d", st, dirSize(t, dir), max)
	}
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// The cache leaves minFree bytes free on its disk: a Put that would eat
// into them evicts the oldest chunks first, and is skipped (ErrLowSpace)
// when even an empty cache would not leave them.
func TestMinFree(t *testing.T) {
	d, err := Open(t.TempDir(), 1<<20, 2500)
	if err != nil {
		t.Fatal(err)
	}
	var disk int64 = 5000 // free bytes of the pretend disk, less what the cache holds
	d.free = func(string) (int64, error) { return disk - d.size, nil }
	chunk := bytes.Repeat([]byte{1}, 1000-trailerLen) // 1000 bytes on the disk
	for i := range 4 {
		if err := d.Put(Name("k", "e", int64(i)), chunk); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	// 5000 - 4000 would leave 1000 < 2500: chunks 0 and 1 made room.
	if st := d.Stats(); st.Entries != 2 || st.Evictions != 2 {
		t.Errorf("stats = %+v, want 2 entries after 2 evictions", st)
	}
	for i, want := range []bool{false, false, true, true} {
		if d.Has(Name("k", "e", int64(i))) != want {
			t.Errorf("chunk %d cached = %v, want %v", i, !want, want)
		}
	}
	disk = 3000 // the disk filled up from elsewhere: no chunk fits any more
	if err := d.Put(Name("k", "e", 9), chunk); !errors.Is(err, ErrLowSpace) {
		t.Errorf("put on a full disk = %v, want ErrLowSpace", err)
	}
	if st := d.Stats(); st.Entries != 0 || st.LowSpace != 1 {
		t.Errorf("stats = %+v, want an emptied cache and 1 put skipped", st)
	}
}

// A chunk file damaged on the disk (a flipped byte, a truncation, a file
// without the trailer) is a miss, counted, and dropped: never served.
func TestDamagedChunkIsAMiss(t *testing.T) {
	d, err := Open(t.TempDir(), 1<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("tape bytes "), 100)
	damage := map[string]func(b []byte) []byte{
		"flipped byte":  func(b []byte) []byte { b[17] ^= 1; return b },
		"truncated":     func(b []byte) []byte { return b[:len(b)/2] },
		"no trailer":    func(b []byte) []byte { return b[:len(b)-trailerLen] },
		"empty":         func(b []byte) []byte { return nil },
		"trailer moved": func(b []byte) []byte { return append([]byte("x"), b...) },
	}
	i := int64(0)
	for what, f := range damage {
		name := Name("k", "e", i)
		i++
		if err := d.Put(name, data); err != nil {
			t.Fatal(err)
		}
		if got, ok := d.Get(name); !ok || !bytes.Equal(got, data) {
			t.Fatalf("%s: the intact chunk is not served", what)
		}
		b, err := os.ReadFile(d.path(name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(d.path(name), f(b), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, ok := d.Get(name); ok {
			t.Errorf("%s: served %d bytes of a damaged chunk file", what, len(got))
		}
		if d.Has(name) {
			t.Errorf("%s: the damaged chunk is still indexed", what)
		}
	}
	if st := d.Stats(); st.Damaged != int64(len(damage)) {
		t.Errorf("stats = %+v, want %d damaged", st, len(damage))
	}
}
