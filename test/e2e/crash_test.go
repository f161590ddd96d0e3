package e2e

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tapefs/tapefs/backend/filestore"
	"github.com/tapefs/tapefs/internal/proc"
	"gocloud.dev/blob"
)

// Crash safety: writers busy through the mount when the daemon is
// SIGKILLed. What close or fsync acknowledged must survive, the store must
// never hold an object that no close or fsync asked for (a partial write),
// and the sidecar rebuilt at the next mount must agree with the store.

// crashContent is version v of writer w's file f, cut to size: JSON lines
// that name their writer, file, version and offset, so that two versions
// (and a version and a prefix of it) never look alike.
func crashContent(w, f, v, size int) []byte {
	var b bytes.Buffer
	for b.Len() < size {
		fmt.Fprintf(&b, `{"type":"frame","w":%d,"f":%d,"v":%d,"off":%08d,"pad":"%s"}`+"\n", w, f, v, b.Len(), strings.Repeat("x", (w+f+v)%23))
	}
	return b.Bytes()[:size]
}

// crashCommit is one close or fsync of a file: the bytes it covered and
// whether it returned success (false: it failed or never returned).
type crashCommit struct {
	data []byte
	ok   bool
}

// crashLedger records, per key, every close and fsync the writers asked for.
type crashLedger struct {
	mu      sync.Mutex
	commits map[string][]*crashCommit
	okCount int
}

func (l *crashLedger) begin(key string, data []byte) *crashCommit {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := &crashCommit{data: data}
	l.commits[key] = append(l.commits[key], c)
	return c
}

func (l *crashLedger) succeeded(c *crashCommit) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c.ok = true
	l.okCount++
}

func (l *crashLedger) oks() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.okCount
}

// allowed is what the store may hold for key after the crash: the last
// acknowledged version, or one asked for after it whose answer the crash
// cut off; absent only if nothing was acknowledged. mustExist says whether
// some close or fsync of key returned success.
func (l *crashLedger) allowed(key string) (versions [][]byte, mustExist bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cs := l.commits[key]
	last := -1
	for i, c := range cs {
		if c.ok {
			last = i
		}
	}
	start := max(last, 0)
	for _, c := range cs[start:] {
		versions = append(versions, c.data)
	}
	return versions, last >= 0
}

// complete says whether data is a version some close or fsync of key
// covered (acknowledged or not).
func (l *crashLedger) complete(key string, data []byte) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.commits[key] {
		if bytes.Equal(c.data, data) {
			return true
		}
	}
	return false
}

// crashSizes are the file sizes the writers cycle through: empty, tiny,
// around a page, around the 1 MiB read chunk, and past S3's 5 MiB
// multipart threshold.
var crashSizes = []int{0, 1, 777, 4096, 65536 + 3, 300_000, 1<<20 + 5, 3 << 20, 6<<20 + 11}

const crashChunk = 128 << 10

// crashWriter writes, syncs and closes files through one helper process
// (which never forks, so nothing flushes behind its back) until stop is
// closed or an operation fails (as they do once the daemon is dead). It
// returns the operations done and the first error.
func crashWriter(t *testing.T, m *Mount, w int, l *crashLedger, stop <-chan struct{}) (ops int, firstErr error) {
	rng := rand.New(rand.NewSource(int64(w)*7919 + time.Now().UnixNano()))
	var h *heldFile
	defer func() {
		if h != nil { // leave nothing open on the dead mount
			h.cmd.Process.Kill()
		}
	}()
	version := map[int]int{}
	for i := 0; ; i++ {
		select {
		case <-stop:
			return ops, nil
		default:
		}
		f := rng.Intn(4) // few names per writer: files are rewritten, with a previous version to lose
		key := fmt.Sprintf("w%d-f%d.jsonl", w, f)
		size := crashSizes[(w+i)%len(crashSizes)]
		version[f]++
		data := crashContent(w, f, version[f], size)
		if h == nil {
			h = holdOpen(t, m.Path(key), false)
		} else if err := h.do("create " + m.Path(key)); err != nil {
			return ops, fmt.Errorf("create %s: %w", key, err)
		}
		ops++
		for off := 0; off < len(data); {
			n := min(crashChunk, len(data)-off)
			if err := h.do("write " + b64(data[off:off+n])); err != nil {
				return ops, fmt.Errorf("write %s at %d: %w", key, off, err)
			}
			off += n
			ops++
			if off < len(data) && rng.Intn(4) == 0 {
				c := l.begin(key, data[:off])
				if err := h.Sync(); err != nil {
					return ops, fmt.Errorf("fsync %s at %d: %w", key, off, err)
				}
				l.succeeded(c)
				ops++
			}
		}
		if rng.Intn(2) == 0 {
			c := l.begin(key, data)
			if err := h.Sync(); err != nil {
				return ops, fmt.Errorf("fsync %s: %w", key, err)
			}
			l.succeeded(c)
			ops++
		}
		c := l.begin(key, data)
		if err := h.Close(); err != nil {
			return ops, fmt.Errorf("close %s: %w", key, err)
		}
		l.succeeded(c)
		ops++
	}
}

// listObjects returns every object in the bucket with its bytes.
func listObjects(t *testing.T, b *blob.Bucket) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, key := range storeKeys(t, b) {
		data, ok := storeRead(t, b, key)
		if ok {
			out[key] = data
		}
	}
	return out
}

// TestCrash: four writers write, fsync and close files of 0 B to 6 MiB
// through the mount; the daemon is SIGKILLed while they are at it, the dead
// mount is cleaned with `tapefs unmount`, and the store is mounted again.
// Then every file whose close or fsync returned success holds the last
// acknowledged bytes (or those of a later close or fsync the crash cut
// short), in the store and through the mount; every object in the store is
// a version some close or fsync asked for (no partial object); and `tapefs
// ls --json` and a listing of the mount show exactly the store's keys and
// sizes.
func TestCrash(t *testing.T) {
	for _, name := range []string{"file", "s3"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testCrash(t, backendNamed(t, name))
		})
	}
}

func testCrash(t *testing.T, st Store) {
	start := time.Now()
	bucket := st.Bucket()
	seeds := map[string][]byte{}
	for i := range 3 {
		tp := newTape(int64(900+i), 8)
		seeds[fmt.Sprintf("seed-%d.jsonl", i)] = tp.Data
	}
	m := mountFiles(t, st, seeds)

	const writers = 4
	l := &crashLedger{commits: map[string][]*crashCommit{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	ops := make([]int, writers)
	errs := make([]error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ops[w], errs[w] = crashWriter(t, m, w, l, stop)
		}()
	}
	// Kill once some writes have been acknowledged, at a moment that is
	// not lined up with any writer's rhythm.
	// (At least 2.5 s of writing: every writer reaches the multi-MiB sizes.)
	began := time.Now()
	if !waitFor(90*time.Second, func() bool { return l.oks() >= 20 && time.Since(began) > 2500*time.Millisecond }) {
		close(stop)
		wg.Wait()
		t.Fatalf("the writers got only %d acknowledged closes/fsyncs in 90 s (errors %v)", l.oks(), errs)
	}
	time.Sleep(time.Duration(rand.Intn(1500)) * time.Millisecond)
	pids := daemonPIDs(m.Dir)
	if len(pids) == 0 {
		t.Fatalf("no tapefs daemon for %s", m.Dir)
	}
	acked := l.oks()
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	killedAt := time.Now()
	for _, pid := range pids {
		if !waitFor(10*time.Second, func() bool { return proc.Exited(pid) }) {
			t.Fatalf("daemon %d survived SIGKILL", pid)
		}
	}
	close(stop)
	wg.Wait()
	total := 0
	for w := range writers {
		total += ops[w]
		if errs[w] == nil {
			t.Errorf("writer %d saw no error although the daemon was killed under it", w)
		} else {
			t.Logf("writer %d: %d operations, stopped by: %v", w, ops[w], errs[w])
		}
	}
	t.Logf("daemon killed after %s with %d closes/fsyncs acknowledged; %d writer operations", killedAt.Sub(start).Round(time.Millisecond), acked, total)

	m = m.Remount(t) // tapefs unmount cleans up the dead mount

	// The store: acknowledged data is there, nothing partial is.
	objects := listObjects(t, bucket)
	var temps []string
	for key, data := range objects {
		if filestore.IsTemp(key) {
			temps = append(temps, key)
			delete(objects, key)
			continue
		}
		if want, ok := seeds[key]; ok {
			if !bytes.Equal(data, want) {
				t.Errorf("store: seed %q changed: %s", key, sameBytes(data, want))
			}
			continue
		}
		if !l.complete(key, data) {
			t.Errorf("store: %q holds %d bytes that no close or fsync covered (a partial object)", key, len(data))
		}
	}
	if len(temps) > 0 {
		t.Logf("temporary files of uploads cut short, left in the store directory (hidden from tapefs): %q", temps)
	}
	l.mu.Lock()
	keys := make([]string, 0, len(l.commits))
	for k := range l.commits {
		keys = append(keys, k)
	}
	l.mu.Unlock()
	sort.Strings(keys)
	checked := 0
	for _, key := range keys {
		versions, mustExist := l.allowed(key)
		data, inStore := objects[key]
		switch {
		case !inStore && mustExist:
			t.Errorf("store: %q is missing although a close or fsync of it returned success", key)
			continue
		case !inStore:
			continue
		}
		ok := false
		for _, v := range versions {
			ok = ok || bytes.Equal(v, data)
		}
		if !ok {
			t.Errorf("store: %q holds %d bytes, not the last acknowledged version (%d bytes) nor a later one asked for", key, len(data), len(versions[0]))
		}
		got, err := os.ReadFile(m.Path(key))
		if err != nil {
			t.Errorf("mount: %v", err)
		} else if !bytes.Equal(got, data) {
			t.Errorf("mount: %q differs from the store: %s", key, sameBytes(got, data))
		}
		checked++
	}
	t.Logf("%d keys written, %d in the store checked against their acknowledged versions", len(keys), checked)

	// The sidecar agrees with the store, once the remount has settled.
	wantTapes := map[string]int64{}
	for key, data := range objects {
		if strings.HasSuffix(key, ".jsonl") {
			wantTapes[key] = int64(len(data))
		}
	}
	waitLs(t, st, "the index equal to the store", func(recs map[string]TapeRecord) bool {
		return sameSizes(lsSizes(recs), wantTapes) == ""
	})
	if diff := sameSizes(lsSizes(lsJSON(t, st)), wantTapes); diff != "" {
		t.Errorf("tapefs ls --json differs from the store: %s", diff)
	}
	wantFiles := map[string]int64{}
	for key, data := range objects {
		wantFiles[key] = int64(len(data))
	}
	gotFiles := map[string]int64{}
	for name, e := range lsDir(t, m.Dir) {
		if e.IsDir() {
			t.Errorf("ls -l of the mount: unexpected directory %q", name)
		}
		gotFiles[name] = e.Size
	}
	if diff := sameSizes(gotFiles, wantFiles); diff != "" {
		t.Errorf("ls -l of the mount differs from the store: %s", diff)
	}
	if keys := pendingKeys(t, m); len(keys) != 0 {
		t.Errorf("pending uploads after the remount: %q", keys)
	}
	t.Logf("wall time %s", time.Since(start).Round(time.Millisecond))
}

// lsSizes is key -> size of `tapefs ls --json` records.
func lsSizes(recs map[string]TapeRecord) map[string]int64 {
	out := map[string]int64{}
	for k, r := range recs {
		out[k] = r.Size
	}
	return out
}

// sameSizes describes how two key -> size maps differ ("" if they do not).
func sameSizes(got, want map[string]int64) string {
	var d []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			d = append(d, fmt.Sprintf("%q missing", k))
		} else if g != w {
			d = append(d, fmt.Sprintf("%q is %d bytes, want %d", k, g, w))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			d = append(d, fmt.Sprintf("%q unexpected", k))
		}
	}
	sort.Strings(d)
	return strings.Join(d, "; ")
}

func b64(data []byte) string { return base64.StdEncoding.EncodeToString(data) }

// TestCrashMidOverwrite: a file that is open again with O_TRUNC and half
// rewritten keeps its last closed version in the store while it is being
// written (the truncation is the staged copy's only), and still after the
// daemon is SIGKILLed and the store mounted again: the half-written bytes,
// which no close or fsync asked for, are dropped, not uploaded. A second
// file whose fsync returned success before the kill has the synced bytes.
func TestCrashMidOverwrite(t *testing.T) {
	for _, name := range []string{"file", "s3"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := backendNamed(t, name)
			bucket := st.Bucket()
			old, half := crashContent(0, 0, 1, 300_000), crashContent(0, 0, 2, 600_000)[:250_000]
			synced := crashContent(0, 1, 1, 200_000)
			m := mountFiles(t, st, map[string][]byte{"old.jsonl": old})

			over := holdOpen(t, m.Path("old.jsonl"), false) // O_CREAT|O_TRUNC of the existing file
			over.Write(t, half)
			if got, ok := storeRead(t, bucket, "old.jsonl"); !ok || !bytes.Equal(got, old) {
				t.Errorf("while old.jsonl is rewritten (O_TRUNC, not closed), the store holds %d bytes (ok=%v), want the old %d", len(got), ok, len(old))
			}
			sy := holdOpen(t, m.Path("synced.jsonl"), false)
			sy.Write(t, synced)
			if err := sy.Sync(); err != nil {
				t.Fatalf("fsync of synced.jsonl: %v", err)
			}
			sy.Write(t, []byte("written after the fsync, never synced\n"))

			for _, pid := range daemonPIDs(m.Dir) {
				syscall.Kill(pid, syscall.SIGKILL)
				if !waitFor(10*time.Second, func() bool { return proc.Exited(pid) }) {
					t.Fatalf("daemon %d survived SIGKILL", pid)
				}
			}
			over.cmd.Process.Kill()
			sy.cmd.Process.Kill()
			m = m.Remount(t) // tapefs unmount cleans up the dead mount

			for key, want := range map[string][]byte{"old.jsonl": old, "synced.jsonl": synced} {
				if got, ok := storeRead(t, bucket, key); !ok || !bytes.Equal(got, want) {
					t.Errorf("store after the crash: %q is %d bytes (ok=%v), want the last closed or synced %d", key, len(got), ok, len(want))
				}
				if got, err := os.ReadFile(m.Path(key)); err != nil || !bytes.Equal(got, want) {
					t.Errorf("mount after the crash: %q is %d bytes (%v), want %d", key, len(got), err, len(want))
				}
			}
			recs := waitIndexed(t, st, "old.jsonl", "synced.jsonl")
			if recs["old.jsonl"].Size != int64(len(old)) || recs["synced.jsonl"].Size != int64(len(synced)) {
				t.Errorf("tapefs ls --json sizes after the crash: old %d, synced %d; want %d, %d", recs["old.jsonl"].Size, recs["synced.jsonl"].Size, len(old), len(synced))
			}
			if !strings.Contains(m.logs(), "no close or fsync asked for is dropped") {
				t.Errorf("the remount does not log the dropped half-written data")
			}
		})
	}
}
