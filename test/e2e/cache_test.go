package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStaleCacheNeverServed: a tape read through an S3 mount (so in the
// disk cache and the kernel's page cache) and then replaced behind the
// mount's back by other bytes of the same size is read anew after a
// refresh: never the cached old bytes.
func TestStaleCacheNeverServed(t *testing.T) {
	st := backendNamed(t, "s3")
	b := needBucket(t, st)
	old := bigTape(3 << 20).Data
	files := map[string][]byte{"team/t.jsonl": old}
	m := mountFiles(t, st, files, withArgs("--cache-dir", st.Dirs().Cache, "--refresh-interval", "0"))
	for i := 0; i < 2; i++ { // the second read is served from the caches
		if got, err := os.ReadFile(m.Path("team/t.jsonl")); err != nil || !bytes.Equal(got, old) {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	if dirBytes(st.Dirs().Cache) == 0 {
		t.Fatal("nothing in the disk cache: the test would prove nothing")
	}
	// Same size, other bytes: only the ETag tells them apart.
	changed := bytes.ToUpper(old)
	if bytes.Equal(changed, old) || len(changed) != len(old) {
		t.Fatal("the replacement must differ and have the same size")
	}
	time.Sleep(1100 * time.Millisecond) // S3 times have 1 s resolution
	if err := storeWrite(t, b, "team/t.jsonl", changed); err != nil {
		t.Fatal(err)
	}
	run(t, tapefsBin, "refresh", m.Dir)
	var got []byte
	if !waitFor(15*time.Second, func() bool {
		var err error
		got, err = os.ReadFile(m.Path("team/t.jsonl"))
		return err == nil && bytes.Equal(got, changed)
	}) {
		t.Fatalf("after the refresh the mount still serves %s", sameBytes(got, changed))
	}
	// And a remount with the same cache directory does not bring it back.
	m = m.Remount(t, withArgs("--cache-dir", st.Dirs().Cache))
	if got, err := os.ReadFile(m.Path("team/t.jsonl")); err != nil || !bytes.Equal(got, changed) {
		t.Fatalf("after a remount: %v, %s", err, sameBytes(got, changed))
	}
}

// TestDamagedCacheNeverServed: chunk files of the disk cache damaged on the
// disk (a byte flipped in each) are never served: the next read, after the
// page cache is dropped, returns the tape's real bytes from the store, and
// tapefs status counts the damaged files.
func TestDamagedCacheNeverServed(t *testing.T) {
	st := backendNamed(t, "s3")
	data := bigTape(3 << 20).Data
	m := mountFiles(t, st, map[string][]byte{"t.jsonl": data}, withArgs("--cache-dir", st.Dirs().Cache))
	if got, err := os.ReadFile(m.Path("t.jsonl")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("first read: %v", err)
	}
	damaged := 0
	filepath.WalkDir(st.Dirs().Cache, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil || len(b) < 100 {
			return nil
		}
		b[50] ^= 0x20
		if os.WriteFile(p, b, 0o600) == nil {
			damaged++
		}
		return nil
	})
	if damaged == 0 {
		t.Fatal("nothing in the disk cache: the test would prove nothing")
	}
	run(t, "sh", "-c", "echo 3 > /proc/sys/vm/drop_caches")
	if got, err := os.ReadFile(m.Path("t.jsonl")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after %d cache files were damaged: %v, %s", damaged, err, sameBytes(got, data))
	}
	if out := run(t, tapefsBin, "status"); !strings.Contains(out, "damaged chunk files dropped") {
		t.Errorf("tapefs status does not count the damaged cache files:\n%s", out)
	}
}

// TestReplacedWhileOpen: a tape replaced in the store by other bytes of the
// same size while a program reads it through an S3 mount is never served as
// a mix of the two versions: the reads of that open that need the store
// fail with EIO, and a new open reads the new bytes whole, with no refresh
// run (the read that failed asked for one).
func TestReplacedWhileOpen(t *testing.T) {
	st := backendNamed(t, "s3")
	b := needBucket(t, st)
	old := bigTape(16 << 20).Data // well past what is read ahead of 256 KiB
	changed := bytes.ToUpper(old)
	if bytes.Equal(changed, old) || len(changed) != len(old) {
		t.Fatal("the replacement must differ and have the same size")
	}
	files := map[string][]byte{"team/t.jsonl": old}
	m := mountFiles(t, st, files, withArgs("--cache-dir", st.Dirs().Cache, "--refresh-interval", "0",
		"--chunk-size", "262144", "--read-ahead", "2"))
	run(t, "sh", "-c", "echo 3 > /proc/sys/vm/drop_caches")
	f, err := os.Open(m.Path("team/t.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := make([]byte, 256<<10)
	if _, err := io.ReadFull(f, head); err != nil || !bytes.Equal(head, old[:len(head)]) {
		t.Fatalf("first read: %v, %s", err, sameBytes(head, old[:len(head)]))
	}
	time.Sleep(1100 * time.Millisecond) // S3 times have 1 s resolution
	if err := storeWrite(t, b, "team/t.jsonl", changed); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(f)
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("reading on after the object was replaced: %v, want EIO (read %d more bytes)", err, len(rest))
	}
	if want := old[len(head) : len(head)+len(rest)]; !bytes.Equal(rest, want) {
		t.Errorf("the open served bytes other than the version it began with: %s", sameBytes(rest, want))
	}
	var got []byte
	if !waitFor(15*time.Second, func() bool {
		got, err = os.ReadFile(m.Path("team/t.jsonl"))
		return err == nil && bytes.Equal(got, changed)
	}) {
		t.Fatalf("a new open, with no refresh run, still reads: %v, %s", err, sameBytes(got, changed))
	}
}

// TestReadAheadAcrossFiles: a cold grep -l over the tapes of a directory
// on S3 finds what grep finds on local disk, asks the store once per tape
// and never for the companions it does not open, and most of its reads are
// served from the disk cache, filled ahead of the opens.
func TestReadAheadAcrossFiles(t *testing.T) {
	st := backendNamed(t, "s3")
	files := map[string][]byte{}
	tapeBytes := 0
	for i := 0; i < 40; i++ {
		tp := newTape(int64(700+i), 6+i%5)
		files[fmt.Sprintf("many/t%03d.jsonl", i)] = tp.Data
		files[fmt.Sprintf("many/t%03d.meta.json", i)] = []byte(`{"tags":["x"]}`)
		tapeBytes += len(tp.Data)
	}
	local := writeLocal(t, files)
	m := mountFiles(t, st, files, withArgs("--cache-dir", st.Dirs().Cache))
	grep := func(dir string) string {
		return run(t, "sh", "-c", `cd "$1" && grep -l -- '"tools/call"' *.jsonl; true`, "sh", dir)
	}
	want := grep(filepath.Join(local, "many"))
	if want == "" {
		t.Fatal("no tape has a tools/call: the test would show nothing")
	}
	run(t, "sh", "-c", "echo 3 > /proc/sys/vm/drop_caches")
	before := statusOf(t, m).Counters
	if got := grep(m.Path("many")); got != want {
		t.Errorf("grep -l through the mount:\n%s\nwant (local disk):\n%s", got, want)
	}
	after := statusOf(t, m).Counters
	reads, cached := after.StoreReads-before.StoreReads, after.CacheBytes-before.CacheBytes
	t.Logf("cold grep -l over 40 tapes: %d store reads, %d of %d bytes from the disk cache", reads, cached, tapeBytes)
	if reads > 40 {
		t.Errorf("%d store reads for 40 tapes: a tape fetched twice, or a companion fetched", reads)
	}
	if cached < int64(tapeBytes)/2 {
		t.Errorf("only %d of %d tape bytes came from the disk cache: nothing was fetched ahead", cached, tapeBytes)
	}
}
