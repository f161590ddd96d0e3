package meta

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func openTest(t testing.TB) *Sidecar {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "sidecar.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func put(t testing.TB, s *Sidecar, keys ...string) []Object {
	t.Helper()
	var out []Object
	for _, k := range keys {
		o, err := s.PutObject(context.Background(), Object{Key: k, Size: int64(len(k)), ModTime: time.Unix(1700000000, 0)})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, o)
	}
	return out
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "tapefs")
	path := filepath.Join(dir, "sidecar.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, "a/b")
	for p, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600, path + "-wal": 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopening keeps the data and does not migrate again.
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok, err := s.GetObject(context.Background(), "a/b"); !ok || err != nil {
		t.Fatalf("after reopen: %v %v", ok, err)
	}
}

func TestOpenOddPath(t *testing.T) {
	// '?', '#', '%' and spaces in the path must not be taken as URI syntax.
	path := filepath.Join(t.TempDir(), "we?ird #dir %41", "side car.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, "x")
	s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}

func TestCorrupt(t *testing.T) {
	good := func(t *testing.T) []byte {
		path := filepath.Join(t.TempDir(), "good.db")
		s, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2000 {
			put(t, s, fmt.Sprintf("dir%d/file%d", i%50, i))
		}
		s.Close()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name   string
		mangle func([]byte) []byte
	}{
		{"garbage", func([]byte) []byte {
			return []byte("this is not a database, not at all, no.............................................................................")
		}},
		{"truncated header", func(b []byte) []byte { return b[:60] }},
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }},
		{"scribbled pages", func(b []byte) []byte {
			for i := 4096 + 100; i < len(b); i += 4096 {
				copy(b[i:], "scribble scribble scribble scribble")
			}
			return b
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sidecar.db")
			if err := os.WriteFile(path, tt.mangle(good(t)), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(path)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded on a damaged file")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			moved, err := MoveAside(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(moved); err != nil {
				t.Fatal(err)
			}
			s, err = Open(path)
			if err != nil {
				t.Fatalf("fresh open after MoveAside: %v", err)
			}
			s.Close()
		})
	}
}

// TestCorruptIndex: a few bytes scribbled over the cells of an index page
// leave the b-tree well formed (PRAGMA quick_check passes) but the index
// out of step with its table; Open must still call the file corrupt.
func TestCorruptIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sidecar.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		put(t, s, fmt.Sprintf("dir%d/file%d", i%10, i))
	}
	var root, size int
	if err := s.write.QueryRow(`SELECT rootpage FROM sqlite_master WHERE type='index' AND name='objects_place'`).Scan(&root); err != nil {
		t.Fatal(err)
	}
	if err := s.write.QueryRow(`PRAGMA page_size`).Scan(&size); err != nil {
		t.Fatal(err)
	}
	s.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if root < 2 || root*size > len(b) {
		t.Fatalf("index root page %d (page size %d) not in a file of %d bytes", root, size, len(b))
	}
	copy(b[root*size-8:], "XXXXXXXX") // the end of the page: its first cells
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path)
	if err == nil {
		s.Close()
		t.Fatal("Open succeeded on a sidecar whose index does not match its table")
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error %v does not wrap ErrCorrupt", err)
	}
}

func TestReadOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sidecar.db")
	if _, err := OpenReadOnly(path); err == nil {
		t.Fatal("OpenReadOnly of a missing file succeeded")
	}
	w, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	put(t, w, "a/one")
	r, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The reader sees what the writer commits, while both are open.
	put(t, w, "a/two")
	ents, err := r.ReadDir(ctx, "a")
	if err != nil || len(ents) != 2 {
		t.Fatalf("ReadDir = %v, %v", ents, err)
	}
	if _, err := r.PutObject(ctx, Object{Key: "b"}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("PutObject on read-only sidecar: %v", err)
	}
	// With no daemon running (no -wal or -shm file left) it still reads.
	r.Close()
	w.Close()
	r, err = OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if ents, err := r.ReadDir(ctx, "a"); err != nil || len(ents) != 2 {
		t.Fatalf("ReadDir after the writer closed = %v, %v", ents, err)
	}
}

// TestConcurrent has writers, readers in the same process and readers in a
// second (read-only) connection set work at once; run it with -race. No
// error, in particular no "database is locked", may come out.
func TestConcurrent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sidecar.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w2, err := Open(path) // a second writer on the same file, as another process would be
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()

	const writers, readers, n = 4, 8, 150
	var wg sync.WaitGroup
	errs := make(chan error, writers+readers+1)
	stop := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			sc := s
			if w%2 == 1 {
				sc = w2
			}
			for i := range n {
				key := fmt.Sprintf("w%d/d%d/f%d", w, i%7, i)
				if _, err := sc.PutObject(ctx, Object{Key: key, Size: int64(i)}); err != nil {
					errs <- err
					return
				}
				if i%3 == 0 {
					if err := sc.DeleteObject(ctx, key); err != nil {
						errs <- err
						return
					}
				}
				if i%50 == 49 {
					if err := sc.RenamePrefix(ctx, fmt.Sprintf("w%d/d%d", w, i%7), fmt.Sprintf("w%d/moved%d", w, i)); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	var rg sync.WaitGroup
	for r := range readers {
		rg.Go(func() {
			sc := s
			if r%2 == 1 {
				sc = ro
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				ents, err := sc.ReadDir(ctx, "")
				if err != nil {
					errs <- err
					return
				}
				for _, e := range ents {
					if _, err := sc.ReadDir(ctx, e.Name); err != nil && !errors.Is(err, ErrNotFound) {
						errs <- err
						return
					}
					if _, _, err := sc.Lookup(ctx, e.Name, "d1"); err != nil {
						errs <- err
						return
					}
				}
				if _, err := sc.Stats(ctx); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	rg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st, err := ro.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(writers * (n - n/3)); st.Objects != want {
		t.Errorf("objects = %d, want %d", st.Objects, want)
	}
}

// A write that finds no room for the sidecar fails with ErrFull and names
// the sidecar's file (SQLite's max_page_count stands in for a full disk).
func TestWriteOnFullDisk(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	var pages int64
	if err := s.write.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := s.write.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages)); err != nil {
		t.Fatal(err)
	}
	var err error
	for i := 0; i < 10000 && err == nil; i++ {
		_, err = s.PutObject(ctx, Object{Key: fmt.Sprintf("tapes/%06d.jsonl", i), Size: 1, ModTime: time.Unix(1700000000, 0)})
	}
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), s.Path()) {
		t.Fatalf("write to a full sidecar: %v; want ErrFull naming %s", err, s.Path())
	}
}
