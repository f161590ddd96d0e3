package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A file written in order past 16 MiB is uploaded while it is written (a
// streamed S3 multipart upload, completed at close). These tests write more
// than that, against the real S3 server.

// streamBytes is n bytes of a tape-like, never-repeating text.
func streamBytes(seed, n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, `{"type":"frame","seq":%d,"seed":%d,"pad":"%032x"}`+"\n", i, seed, i*7919+seed)
	}
	return b.Bytes()[:n]
}

// writeIn writes data through h in pieces of 4 MiB.
func writeIn(t *testing.T, h *heldFile, data []byte) {
	t.Helper()
	for i := 0; i < len(data); i += 4 << 20 {
		h.Write(t, data[i:min(i+4<<20, len(data))])
	}
}

func TestStreamedUpload(t *testing.T) {
	st := newS3Store(t).(*s3Store)
	bucket := st.Bucket()
	m := mountFiles(t, st, map[string][]byte{"keep.txt": []byte("keep\n")})

	t.Run("cp", func(t *testing.T) {
		data := streamBytes(1, 50<<20+333)
		src := writeLocal(t, map[string][]byte{"cp.jsonl": data})
		run(t, "cp", filepath.Join(src, "cp.jsonl"), m.Path("cp.jsonl"))
		if got, ok := storeRead(t, bucket, "cp.jsonl"); !ok || !bytes.Equal(got, data) {
			t.Fatalf("after cp the store holds %d bytes (ok=%v), want %d", len(got), ok, len(data))
		}
		if got, err := os.ReadFile(m.Path("cp.jsonl")); err != nil || !bytes.Equal(got, data) {
			t.Errorf("the mount reads %d bytes (%v), want %d", len(got), err, len(data))
		}
	})

	t.Run("sequential", func(t *testing.T) {
		data := streamBytes(2, 40<<20+17)
		h := holdOpen(t, m.Path("seq.jsonl"), false)
		writeIn(t, h, data[:36<<20])
		if _, ok := storeRead(t, bucket, "seq.jsonl"); ok {
			t.Errorf("seq.jsonl is in the store before close")
		}
		writeIn(t, h, data[36<<20:])
		if err := h.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if got, ok := storeRead(t, bucket, "seq.jsonl"); !ok || !bytes.Equal(got, data) {
			t.Fatalf("after close the store holds %d bytes (ok=%v), want %d", len(got), ok, len(data))
		}
	})

	t.Run("out-of-order", func(t *testing.T) {
		// A second handle overwrites near the start while the first is
		// streaming: the streamed upload is dropped and the file goes up
		// whole, with the overwrite, at each close.
		data := streamBytes(3, 24<<20)
		h := holdOpen(t, m.Path("seek.jsonl"), false)
		writeIn(t, h, data)
		run(t, "dd", "if=/dev/zero", "of="+m.Path("seek.jsonl"), "bs=1024", "count=1", "seek=10", "conv=notrunc", "status=none")
		copy(data[10<<10:11<<10], make([]byte, 1024))
		if got, ok := storeRead(t, bucket, "seek.jsonl"); !ok || !bytes.Equal(got, data) {
			t.Errorf("after dd's close the store holds %d bytes (ok=%v), want the %d written with the overwrite", len(got), ok, len(data))
		}
		more := streamBytes(4, 20<<20)
		writeIn(t, h, more)
		data = append(data, more...)
		if err := h.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if got, ok := storeRead(t, bucket, "seek.jsonl"); !ok || !bytes.Equal(got, data) {
			t.Fatalf("after close the store holds %d bytes (ok=%v), want %d", len(got), ok, len(data))
		}
		if got, err := os.ReadFile(m.Path("seek.jsonl")); err != nil || !bytes.Equal(got, data) {
			t.Errorf("the mount reads %d bytes (%v), want %d", len(got), err, len(data))
		}
	})

	t.Run("fsync", func(t *testing.T) {
		// fsync completes the streamed upload; what follows is streamed anew
		// from the start and completed at close.
		first, second := streamBytes(5, 20<<20), streamBytes(6, 20<<20)
		h := holdOpen(t, m.Path("sync.jsonl"), false)
		writeIn(t, h, first)
		if err := h.Sync(); err != nil {
			t.Fatalf("fsync: %v", err)
		}
		if got, ok := storeRead(t, bucket, "sync.jsonl"); !ok || !bytes.Equal(got, first) {
			t.Fatalf("after fsync the store holds %d bytes (ok=%v), want %d", len(got), ok, len(first))
		}
		writeIn(t, h, second)
		if err := h.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if got, ok := storeRead(t, bucket, "sync.jsonl"); !ok || !bytes.Equal(got, append(first, second...)) {
			t.Fatalf("after close the store holds %d bytes (ok=%v), want %d", len(got), ok, len(first)+len(second))
		}
	})
}

func TestStreamedUploadServerDown(t *testing.T) {
	t.Parallel() // it mostly waits out its own server's timeouts
	st := newS3Store(t).(*s3Store)
	bucket := st.Bucket()
	m := mountFiles(t, st, map[string][]byte{"keep.txt": []byte("keep\n")})
	data := streamBytes(7, 40<<20+5)

	h := holdOpen(t, m.Path("down.jsonl"), false)
	writeIn(t, h, data[:24<<20])
	st.srv.Stop(t) // the server goes away in the middle of the streamed upload
	writeIn(t, h, data[24<<20:])
	err := h.Close()
	if err == nil || !strings.Contains(err.Error(), "input/output error") {
		t.Fatalf("close with the server stopped mid-upload: %v, want EIO", err)
	}
	if keys := pendingKeys(t, m); len(keys) != 1 || keys[0] != "down.jsonl" {
		t.Errorf("pending uploads after the failed close: %q, want [down.jsonl]", keys)
	}
	st.srv.Start(t)
	if !waitFor(40*time.Second, func() bool { got, ok := storeRead(t, bucket, "down.jsonl"); return ok && bytes.Equal(got, data) }) {
		got, ok := storeRead(t, bucket, "down.jsonl")
		t.Fatalf("the staged data did not reach the store after the server came back: %d bytes (ok=%v), want %d", len(got), ok, len(data))
	}
	if !waitFor(5*time.Second, func() bool { return len(pendingKeys(t, m)) == 0 }) {
		t.Errorf("still pending after the upload: %q", pendingKeys(t, m))
	}
	if got, err := os.ReadFile(m.Path("down.jsonl")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("the mount reads %d bytes (%v), want %d", len(got), err, len(data))
	}
}

func TestStreamedUploadCrash(t *testing.T) {
	st := newS3Store(t).(*s3Store)
	bucket := st.Bucket()
	old := streamBytes(8, 1<<20)
	m := mountFiles(t, st, map[string][]byte{"old.jsonl": old})

	fresh := holdOpen(t, m.Path("fresh.jsonl"), false)
	writeIn(t, fresh, streamBytes(9, 48<<20)) // several parts sent, none completed
	over := holdOpen(t, m.Path("old.jsonl"), false)
	writeIn(t, over, streamBytes(10, 40<<20))
	time.Sleep(time.Second) // let the background parts go out
	pids := daemonPIDs(m.Dir)
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL) // a crash in the middle of both uploads
	}
	fresh.cmd.Process.Kill()
	over.cmd.Process.Kill()
	if !waitFor(10*time.Second, func() bool { return len(daemonPIDs(m.Dir)) == 0 }) {
		t.Fatalf("daemons %v survived SIGKILL", pids)
	}
	if _, ok := storeRead(t, bucket, "fresh.jsonl"); ok {
		t.Errorf("a file killed mid-stream left an object")
	}
	if got, ok := storeRead(t, bucket, "old.jsonl"); !ok || !bytes.Equal(got, old) {
		t.Errorf("old.jsonl, rewritten and killed mid-stream, is %d bytes in the store (ok=%v), want the old %d", len(got), ok, len(old))
	}
	m = m.Remount(t)            // tapefs unmount cleans up the dead mount
	time.Sleep(2 * time.Second) // recovery runs at mount; give a wrong upload the time to show
	if _, ok := storeRead(t, bucket, "fresh.jsonl"); ok {
		t.Errorf("after the remount, fresh.jsonl (never closed) is in the store")
	}
	if got, ok := storeRead(t, bucket, "old.jsonl"); !ok || !bytes.Equal(got, old) {
		t.Errorf("after the remount old.jsonl is %d bytes (ok=%v), want the old %d", len(got), ok, len(old))
	}
	if got, err := os.ReadFile(m.Path("old.jsonl")); err != nil || !bytes.Equal(got, old) {
		t.Errorf("the mount reads %d bytes of old.jsonl (%v), want %d", len(got), err, len(old))
	}
}

// TestCopyInIndexedLocally: a tape copied in is indexed from the bytes
// staged for its upload, not read back from the store. Right after cp the
// index has the tape's truth, and the store served none of its bytes (only
// the small .meta.json companions are read from it).
func TestCopyInIndexedLocally(t *testing.T) {
	st := newS3Store(t)
	addr := "127.0.0.1:" + freePort(t)
	m := mountFiles(t, st, map[string][]byte{"keep.txt": []byte("keep\n")}, withArgs("--metrics-addr", addr))
	// big passes 16 MiB and is streamed; small goes up whole at close.
	big, small := bigTape(24<<20), newTape(8, 40)
	tapes := map[string]genTape{"big.jsonl": big, "small.jsonl": small}
	files := map[string][]byte{}
	var args []string
	for key, tp := range tapes {
		meta := strings.TrimSuffix(key, ".jsonl") + ".meta.json"
		files[key], files[meta] = tp.Data, tp.Meta
	}
	src := writeLocal(t, files)
	for _, name := range []string{"big.meta.json", "big.jsonl", "small.meta.json", "small.jsonl"} {
		args = append(args, filepath.Join(src, name))
	}
	before := metric(t, addr, storeBytesRead)
	run(t, "cp", append(args, m.Path("")+"/")...)
	recs := lsJSON(t, st) // no waiting: close returned after the index was written
	for key, tp := range tapes {
		checkRecord(t, recs[key], tp.Want(key))
	}
	if got, most := metric(t, addr, storeBytesRead)-before, int64(len(big.Meta)+len(small.Meta)); got > most {
		t.Errorf("the store served %d bytes while two tapes were copied in and indexed; their companions are %d", got, most)
	}
}

// TestFirstMountETagsFromListing: the first mount of an S3 bucket takes each
// tape's ETag from the listing (S3 lists them) instead of a HEAD per object,
// and the sidecar holds the very ETag a HEAD returns.
func TestFirstMountETagsFromListing(t *testing.T) {
	st := newS3Store(t).(*s3Store)
	c := newCorpus(t)
	addr := "127.0.0.1:" + freePort(t)
	m := mountFiles(t, st, c.Files, withArgs("--metrics-addr", addr))
	waitIndexed(t, st, c.V2Tape, c.Largest)
	if n := metric(t, addr, storeAttributes); n != 0 {
		t.Errorf("the first mount of %d objects made %d attribute requests", len(c.Files), n)
	}
	out := run(t, "sqlite3", "-readonly", st.Dirs().Meta, "SELECT key, etag FROM objects;")
	listed := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		if key, etag, ok := strings.Cut(line, "|"); ok {
			listed[key] = etag
		}
	}
	for key := range c.Tapes {
		a, err := st.Bucket().Attributes(t.Context(), key)
		if err != nil {
			t.Fatalf("HEAD %q: %v", key, err)
		}
		if listed[key] != a.ETag || a.ETag == "" {
			t.Errorf("%q: the sidecar has ETag %q, the store %q", key, listed[key], a.ETag)
		}
	}
	checkMount(t, m, c.Files)
}
