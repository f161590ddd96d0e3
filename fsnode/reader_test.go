package fsnode

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/tapefs/tapefs/cache"
	"gocloud.dev/blob/memblob"
)

func randomBytes(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return b
}

func TestObjectReaderRangesAndReadAhead(t *testing.T) {
	ctx := context.Background()
	b := memblob.OpenBucket(nil)
	const size = 10<<20 + 12345
	data := randomBytes(size)
	if err := b.WriteAll(ctx, "big.jsonl", data, nil); err != nil {
		t.Fatal(err)
	}

	t.Run("a small read fetches one chunk", func(t *testing.T) {
		var st Stats
		r := NewObjectReader(b, "big.jsonl", "v1", size, ReadOptions{ChunkSize: 1 << 20}, &st)
		defer r.Close()
		p := make([]byte, 4096)
		if n, err := r.ReadAt(ctx, p, 5<<20+7); err != nil || n != 4096 || !bytes.Equal(p, data[5<<20+7:5<<20+7+4096]) {
			t.Fatalf("n=%d err=%v, bytes equal=%v", n, err, bytes.Equal(p, data[5<<20+7:5<<20+7+4096]))
		}
		if got := st.StoreReadBytes.Load(); got != 1<<20 {
			t.Errorf("read %d bytes from the store for 4 KiB, want one chunk (%d)", got, 1<<20)
		}
	})

	t.Run("sequential read is whole and reads ahead", func(t *testing.T) {
		var st Stats
		r := NewObjectReader(b, "big.jsonl", "v1", size, ReadOptions{ChunkSize: 1 << 20, MaxAhead: 4}, &st)
		defer r.Close()
		var out bytes.Buffer
		p := make([]byte, 128<<10)
		for off := int64(0); ; {
			n, err := r.ReadAt(ctx, p, off)
			out.Write(p[:n])
			off += int64(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatal("sequential read differs from the object")
		}
		r.wait()
		if got := st.StoreReadBytes.Load(); got != size {
			t.Errorf("%d bytes read from the store for %d: chunks fetched twice or skipped", got, size)
		}
		if reqs := st.StoreReads.Load(); reqs > 5 {
			t.Errorf("%d range reads for 11 chunks; read-ahead should ask for several chunks at once", reqs)
		}
	})

	t.Run("concurrent random reads are correct", func(t *testing.T) {
		var st Stats
		r := NewObjectReader(b, "big.jsonl", "v1", size, ReadOptions{ChunkSize: 256 << 10}, &st)
		defer r.Close()
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				rnd := rand.New(rand.NewPCG(uint64(g), 9))
				p := make([]byte, 70000)
				for i := 0; i < 50; i++ {
					off := rnd.Int64N(size)
					n, err := r.ReadAt(ctx, p, off)
					if err != nil && err != io.EOF {
						t.Error(err)
						return
					}
					if !bytes.Equal(p[:n], data[off:off+int64(n)]) {
						t.Errorf("bytes at %d differ", off)
						return
					}
				}
			}(g)
		}
		wg.Wait()
	})

	t.Run("disk cache serves a second reader; a new etag misses", func(t *testing.T) {
		dc, err := cache.Open(t.TempDir(), 64<<20)
		if err != nil {
			t.Fatal(err)
		}
		var st Stats
		p := make([]byte, 1<<20)
		r1 := NewObjectReader(b, "big.jsonl", "v1", size, ReadOptions{Cache: dc}, &st)
		r1.ReadAt(ctx, p, 0)
		r1.Close()
		r1.wait() // the chunk goes to the disk cache after the read has it
		before := st.StoreReadBytes.Load()
		r2 := NewObjectReader(b, "big.jsonl", "v1", size, ReadOptions{Cache: dc}, &st)
		if _, err := r2.ReadAt(ctx, p, 0); err != nil || !bytes.Equal(p, data[:1<<20]) {
			t.Fatal("cached read wrong", err)
		}
		r2.Close()
		r2.wait()
		if st.StoreReadBytes.Load() != before || st.CacheHitBytes.Load() != 1<<20 {
			t.Errorf("second read went to the store: store bytes %d -> %d, cache hits %d", before, st.StoreReadBytes.Load(), st.CacheHitBytes.Load())
		}
		r3 := NewObjectReader(b, "big.jsonl", "v2", size, ReadOptions{Cache: dc}, &st)
		r3.ReadAt(ctx, p, 0)
		r3.Close()
		r3.wait() // its cache write must end before the test's directory goes
		if st.StoreReadBytes.Load() == before {
			t.Error("a changed ETag was served from the cache")
		}
	})
}

func TestObjectReaderMissingObjectFails(t *testing.T) {
	var st Stats
	r := NewObjectReader(memblob.OpenBucket(nil), "gone", "v", 100, ReadOptions{}, &st)
	defer r.Close()
	if _, err := r.ReadAt(context.Background(), make([]byte, 10), 0); err == nil {
		t.Fatal("reading a missing object succeeded")
	}
}

// TestObjectReaderFailedReadAnswersAgain: the kernel asks again at once for
// a page whose read failed; that request gets the same error without going
// to the store (which, not answering, would hold it a whole --timeout
// more), and a read after failMemo goes to the store again.
func TestObjectReaderFailedReadAnswersAgain(t *testing.T) {
	ctx := context.Background()
	b := memblob.OpenBucket(nil)
	var st Stats
	r := NewObjectReader(b, "late.jsonl", "v1", 4096, ReadOptions{ChunkSize: 1 << 20}, &st)
	defer r.Close()
	p := make([]byte, 4096)
	if _, err := r.ReadAt(ctx, p, 0); err == nil {
		t.Fatal("read of a missing object succeeded")
	}
	if _, err := r.ReadAt(ctx, p[:512], 0); err == nil {
		t.Fatal("the repeated read succeeded")
	}
	if got := st.StoreReads.Load(); got != 1 {
		t.Fatalf("%d store reads for a read and its immediate repeat, want 1", got)
	}

	data := randomBytes(4096)
	if err := b.WriteAll(ctx, "late.jsonl", data, nil); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.chunks[0].failed = time.Now().Add(-failMemo - time.Millisecond)
	r.mu.Unlock()
	if n, err := r.ReadAt(ctx, p, 0); err != nil || n != len(data) || !bytes.Equal(p, data) {
		t.Fatalf("read after failMemo: n=%d err=%v", n, err)
	}
	if got := st.StoreReads.Load(); got != 2 {
		t.Errorf("%d store reads, want 2: the read after failMemo did not go to the store", got)
	}
}
