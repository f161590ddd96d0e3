package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// The sidecar under load, and a damaged sidecar at mount.

// busyError matches what SQLite says when a lock could not be had in time.
var busyError = regexp.MustCompile(`(?i)database is locked|database table is locked|SQLITE_BUSY|SQLITE_LOCKED`)

// opStats keeps the worst latency and the count of each kind of operation.
type opStats struct {
	mu    sync.Mutex
	worst map[string]time.Duration
	what  map[string]string
	count map[string]int
	errs  []string
}

func newOpStats() *opStats {
	return &opStats{worst: map[string]time.Duration{}, what: map[string]string{}, count: map[string]int{}}
}

// timed runs fn as one operation of kind op on path and records it.
func (s *opStats) timed(op, path string, fn func() error) error {
	start := time.Now()
	err := fn()
	took := time.Since(start)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count[op]++
	if took > s.worst[op] {
		s.worst[op], s.what[op] = took, path
	}
	if err != nil {
		s.errs = append(s.errs, fmt.Sprintf("%s %s: %v", op, path, err))
	}
	return err
}

func (s *opStats) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, fmt.Sprintf(format, args...))
}

// stressDuration is 30 s, or 5 min with TAPEFS_E2E_LONG=1 (a nightly run).
func stressDuration() time.Duration {
	if os.Getenv("TAPEFS_E2E_LONG") == "1" {
		return 5 * time.Minute
	}
	return 30 * time.Second
}

// stressContent is writer w's n-th file: size bytes of JSON lines.
func stressContent(w, n, size int) []byte {
	var b bytes.Buffer
	for b.Len() < size {
		fmt.Fprintf(&b, `{"type":"frame","writer":%d,"n":%d,"off":%d}`+"\n", w, n, b.Len())
	}
	return b.Bytes()[:size]
}

// TestSidecarStress: 8 writers and 8 readers through the mount, and
// `tapefs ls --json` on the same sidecar in a loop, for 10 s (30 s with
// TAPEFS_E2E_LONG=1: 5 min). No operation fails, in particular none with
// "database is locked" (SQLITE_BUSY), nor does the daemon log one; the
// readers read the seeded tapes' exact bytes; and afterwards the store
// holds each file's last closed version and the index (ls --json, ls -l of
// the mount) matches the store. The worst latency of each kind of FUSE
// operation and of one `tapefs ls` are logged, not judged.
func TestSidecarStress(t *testing.T) {
	start := time.Now()
	st := backendNamed(t, "file")
	bucket := st.Bucket()
	seeds := map[string][]byte{}
	var seedKeys []string
	for i := range 40 {
		key := fmt.Sprintf("seed/t%02d.jsonl", i)
		seeds[key] = newTape(int64(500+i), 5+i%20).Data
		seedKeys = append(seedKeys, key)
	}
	m := mountFiles(t, st, seeds)
	run(t, "mkdir", m.Path("w"))
	waitIndexed(t, st, seedKeys...)

	const writers, readers, namesPerWriter = 8, 8, 6
	dur := stressDuration()
	stats := newOpStats()
	deadline := time.Now().Add(dur)
	var wg sync.WaitGroup

	var lastMu sync.Mutex
	last := map[string][]byte{} // key -> bytes of its last successful close
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w) + 1))
			buf := make([]byte, 0)
			for n := 0; time.Now().Before(deadline); n++ {
				key := fmt.Sprintf("w/w%d-%d.jsonl", w, n%namesPerWriter)
				p := m.Path(key)
				data := stressContent(w, n, 1+rng.Intn(200<<10))
				var f *os.File
				if stats.timed("open", p, func() (err error) {
					f, err = os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
					return err
				}) != nil {
					return
				}
				ok := true
				for off := 0; off < len(data) && ok; {
					n := min(32<<10, len(data)-off)
					buf = data[off : off+n]
					ok = stats.timed("write", p, func() error { _, err := f.Write(buf); return err }) == nil
					off += n
				}
				if stats.timed("close", p, f.Close) != nil || !ok {
					return
				}
				lastMu.Lock()
				last[key] = data
				lastMu.Unlock()
				if stats.timed("stat", p, func() error {
					fi, err := os.Stat(p)
					if err == nil && fi.Size() != int64(len(data)) {
						err = fmt.Errorf("size %d right after a close of %d bytes", fi.Size(), len(data))
					}
					return err
				}) != nil {
					return
				}
			}
		}()
	}
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(r) + 100))
			buf := make([]byte, 64<<10)
			for time.Now().Before(deadline) {
				var key string
				var want []byte
				if rng.Intn(2) == 0 {
					key = seedKeys[rng.Intn(len(seedKeys))]
					want = seeds[key]
				} else {
					lastMu.Lock()
					for k := range last { // any file a writer has closed
						key = k
						break
					}
					lastMu.Unlock()
					if key == "" {
						continue
					}
				}
				p := m.Path(key)
				if stats.timed("stat", p, func() error { _, err := os.Stat(p); return err }) != nil {
					return
				}
				var f *os.File
				if stats.timed("open", p, func() (err error) { f, err = os.Open(p); return err }) != nil {
					return
				}
				var got bytes.Buffer
				for {
					var n int
					err := stats.timed("read", p, func() error {
						var err error
						n, err = f.Read(buf)
						if errors.Is(err, io.EOF) {
							return nil
						}
						return err
					})
					got.Write(buf[:n])
					if err != nil || n == 0 {
						break
					}
				}
				stats.timed("close", p, f.Close)
				if want != nil && !bytes.Equal(got.Bytes(), want) {
					stats.fail("read %s: %s", key, sameBytes(got.Bytes(), want))
				}
			}
		}()
	}
	var lsWorst time.Duration
	lsRuns := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for time.Now().Before(deadline) {
			t0 := time.Now()
			r := tapefs(t, st, lsArgs(st)...)
			took := time.Since(t0)
			lsRuns++
			lsWorst = max(lsWorst, took)
			if r.Code != 0 {
				stats.fail("tapefs ls failed:\n%s", r)
				continue
			}
			if busyError.MatchString(r.Stderr) {
				stats.fail("tapefs ls printed a busy error:\n%s", r)
			}
			recs, err := parseLsJSON(r.Stdout)
			if err != nil {
				stats.fail("tapefs ls --json: %v", err)
				continue
			}
			for _, k := range seedKeys {
				if _, ok := recs[k]; !ok {
					stats.fail("tapefs ls --json under load does not list %q", k)
				}
			}
		}
	}()
	wg.Wait()

	total := 0
	var kinds []string
	for op := range stats.count {
		kinds = append(kinds, op)
	}
	sort.Strings(kinds)
	var worstOp string
	var worst time.Duration
	for _, op := range kinds {
		total += stats.count[op]
		t.Logf("%-5s %6d operations, worst %s (%s)", op, stats.count[op], stats.worst[op].Round(time.Microsecond), stats.what[op])
		if stats.worst[op] > worst {
			worst, worstOp = stats.worst[op], op
		}
	}
	t.Logf("%d FUSE operations by %d writers and %d readers in %s; worst single operation: %s %s", total, writers, readers, dur, worstOp, worst.Round(time.Microsecond))
	t.Logf("tapefs ls --json: %d runs, worst %s", lsRuns, lsWorst.Round(time.Millisecond))
	for i, e := range stats.errs {
		if i == 20 {
			t.Errorf("... and %d more errors", len(stats.errs)-20)
			break
		}
		if busyError.MatchString(e) {
			t.Errorf("a busy sidecar reached a user: %s", e)
		} else {
			t.Errorf("%s", e)
		}
	}
	if total < 100 || lsRuns < 2 {
		t.Errorf("only %d operations and %d ls runs: the load proves nothing", total, lsRuns)
	}

	// Settled: the store has every file's last closed version, and the
	// index and the mount's listing match the store.
	if !waitFor(15*time.Second, func() bool { return len(pendingKeys(t, m)) == 0 }) {
		t.Errorf("uploads still pending after the load: %q", pendingKeys(t, m))
	}
	for key, want := range last {
		if got, ok := storeRead(t, bucket, key); !ok || !bytes.Equal(got, want) {
			t.Errorf("store: %q (ok=%v) is not its last closed version: %s", key, ok, sameBytes(got, want))
		}
	}
	wantTapes := map[string]int64{}
	wantW := map[string]int64{}
	for _, key := range storeKeys(t, bucket) {
		data, _ := storeRead(t, bucket, key)
		if strings.HasSuffix(key, ".jsonl") {
			wantTapes[key] = int64(len(data))
		}
		if name, ok := strings.CutPrefix(key, "w/"); ok && name != "" {
			wantW[name] = int64(len(data))
		}
	}
	waitLs(t, st, "the index equal to the store", func(recs map[string]TapeRecord) bool {
		return sameSizes(lsSizes(recs), wantTapes) == ""
	})
	if diff := sameSizes(lsSizes(lsJSON(t, st)), wantTapes); diff != "" {
		t.Errorf("tapefs ls --json differs from the store: %s", diff)
	}
	gotW := map[string]int64{}
	for name, e := range lsDir(t, m.Path("w")) {
		gotW[name] = e.Size
	}
	if diff := sameSizes(gotW, wantW); diff != "" {
		t.Errorf("ls -l of the mount's w/ differs from the store: %s", diff)
	}
	if l := m.logs(); busyError.MatchString(l) {
		t.Errorf("the daemon log has a busy sidecar error: %q", busyError.FindAllString(l, 5))
	}
	t.Logf("wall time %s", time.Since(start).Round(time.Millisecond))
}

// TestSidecarDamaged: a sidecar damaged while no mount runs (bytes
// overwritten in the middle; truncated to half its size) is detected at the
// next mount, kept beside as SIDECAR.corrupt-TIMESTAMP with the damaged
// bytes, and rebuilt from the store: the mount succeeds, lists every file
// and `tapefs ls --json` lists every tape again.
func TestSidecarDamaged(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(b []byte) []byte
	}{
		{"overwritten", func(b []byte) []byte {
			// 16 KiB of garbage in the middle: whole pages of the b-trees.
			rng := rand.New(rand.NewSource(7))
			mid := len(b) / 2
			for i := mid; i < min(mid+16<<10, len(b)); i++ {
				b[i] = byte(rng.Intn(256))
			}
			return b
		}},
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }},
		// A few bytes at the end of the page of an index (where its last
		// cells are): the b-tree stays well formed, but the index no longer
		// matches its table, so lookups miss rows.
		{"index", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			st := backendNamed(t, "file")
			c := newCorpus(t)
			m := mountFiles(t, st, c.Files)
			wantKeys := make([]string, 0, len(c.Tapes))
			for k := range c.Tapes {
				wantKeys = append(wantKeys, k)
			}
			before := waitIndexed(t, st, wantKeys...)
			m.Unmount(t)
			// The daemon closes the sidecar (checkpointing its WAL into it)
			// after the mount is gone: damage the file only once it exited.
			if !waitFor(10*time.Second, func() bool { return len(daemonPIDs(m.Dir)) == 0 }) {
				t.Fatalf("the daemon did not exit within 10 s of the unmount")
			}

			path := st.Dirs().Meta
			good, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if wal, err := os.ReadFile(path + "-wal"); err == nil && len(wal) > 0 {
				t.Fatalf("%d bytes of WAL left after a clean unmount: the damage below would not be what SQLite reads", len(wal))
			}
			var damaged []byte
			if tc.damage != nil {
				damaged = tc.damage(append([]byte(nil), good...))
			} else {
				damaged = scribbleIndex(t, path, good, "objects_place")
			}
			if err := os.WriteFile(path, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			t.Logf("sidecar of %d bytes damaged (%s) to %d bytes", len(good), tc.name, len(damaged))

			m = mount(t, st, at(m.Dir))
			checkListing(t, m, c.Files)
			checkMount(t, m, map[string][]byte{c.V2Tape: c.Files[c.V2Tape], c.Malformed: c.Files[c.Malformed]})
			after := waitIndexed(t, st, wantKeys...)
			if diff := sameSizes(lsSizes(after), lsSizes(before)); diff != "" {
				t.Errorf("tapefs ls --json after the rebuild differs from before the damage: %s", diff)
			}
			for k, want := range c.Tapes {
				checkRecord(t, after[k], want)
			}

			aside, _ := filepath.Glob(path + ".corrupt-*")
			var dbs []string
			for _, p := range aside {
				if !strings.HasSuffix(p, "-wal") && !strings.HasSuffix(p, "-shm") {
					dbs = append(dbs, p)
				}
			}
			if len(dbs) != 1 {
				t.Fatalf("damaged sidecar kept beside as %q, want one %s.corrupt-TIMESTAMP (all: %q)", dbs, filepath.Base(path), aside)
			}
			kept, err := os.ReadFile(dbs[0])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(kept, damaged) {
				t.Errorf("%s is not the damaged file: %s", dbs[0], sameBytes(kept, damaged))
			}
			if l := m.logs(); !strings.Contains(l, dbs[0]) {
				t.Errorf("the daemon log does not say where the damaged sidecar went (%s)", dbs[0])
			}
			t.Logf("damaged sidecar kept as %s; wall time %s", filepath.Base(dbs[0]), time.Since(start).Round(time.Millisecond))
		})
	}
}

// scribbleIndex returns db (the bytes of the sidecar at path) with the last
// 8 bytes of the root page of the named index overwritten.
func scribbleIndex(t *testing.T, path string, db []byte, index string) []byte {
	t.Helper()
	out := strings.Fields(run(t, "sqlite3", "-readonly", path,
		"SELECT rootpage FROM sqlite_master WHERE type='index' AND name='"+index+"'; PRAGMA page_size;"))
	if len(out) != 2 {
		t.Fatalf("no index %q in the sidecar (sqlite3 says %q)", index, out)
	}
	var root, size int
	if _, err := fmt.Sscan(out[0]+" "+out[1], &root, &size); err != nil || root < 2 || root*size > len(db) {
		t.Fatalf("index %q: root page %q, page size %q: %v", index, out[0], out[1], err)
	}
	end := root * size
	b := append([]byte(nil), db...)
	copy(b[end-8:], "XXXXXXXX")
	return b
}
