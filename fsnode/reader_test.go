package fsnode

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/tapefs/tapefs/backend/layer"
	"github.com/tapefs/tapefs/cache"
	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/blob/memblob"
	"gocloud.dev/gcerrors"
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
		dc, err := cache.Open(t.TempDir(), 64<<20, 0)
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

// errPrecondition is what ifMatchBucket answers a read of a replaced object.
var errPrecondition = errors.New("412 precondition failed")

// ifMatchBucket is a store that, as S3 does, refuses a range read whose
// GetObjectInput asks for an ETag other than the object's current one.
type ifMatchBucket struct {
	layer.Base
}

func (b *ifMatchBucket) ErrorCode(err error) gcerrors.ErrorCode {
	if errors.Is(err, errPrecondition) {
		return gcerrors.FailedPrecondition
	}
	return b.Base.ErrorCode(err)
}

func (b *ifMatchBucket) NewRangeReader(ctx context.Context, key string, off, n int64, opts *driver.ReaderOptions) (driver.Reader, error) {
	in := &s3.GetObjectInput{}
	if opts.BeforeRead != nil {
		if err := opts.BeforeRead(func(i any) bool {
			p, ok := i.(**s3.GetObjectInput)
			if ok {
				*p = in
			}
			return ok
		}); err != nil {
			return nil, err
		}
	}
	if in.IfMatch != nil {
		a, err := b.Inner.Attributes(ctx, key)
		if err != nil {
			return nil, err
		}
		if *in.IfMatch != a.ETag {
			return nil, errPrecondition
		}
	}
	return b.Base.NewRangeReader(ctx, key, off, n, opts)
}

// TestObjectReaderReplacedObject: with IfMatch, a reader whose object was
// replaced in the store fails with ErrChanged (EIO), never reading the new
// bytes, and says which key changed; without it, it reads the new bytes.
func TestObjectReaderReplacedObject(t *testing.T) {
	ctx := t.Context()
	mem := memblob.OpenBucket(nil)
	b := blob.NewBucket(&ifMatchBucket{Base: layer.Base{Inner: mem}})
	old, repl := bytes.Repeat([]byte("a"), 4096), bytes.Repeat([]byte("b"), 4096)
	for _, ifMatch := range []bool{true, false} {
		if err := mem.WriteAll(ctx, "t.jsonl", old, nil); err != nil {
			t.Fatal(err)
		}
		a, err := b.Attributes(ctx, "t.jsonl")
		if err != nil {
			t.Fatal(err)
		}
		var told []string
		opts := ReadOptions{ChunkSize: 1024, IfMatch: ifMatch, changed: func(key string) { told = append(told, key) }}
		r := NewObjectReader(b, "t.jsonl", a.ETag, int64(len(old)), opts, &Stats{})
		r.matchETag(a.ETag)
		p := make([]byte, 1024)
		if _, err := r.ReadAt(ctx, p, 0); err != nil || !bytes.Equal(p, old[:1024]) {
			t.Fatalf("IfMatch %v: first read: %v", ifMatch, err)
		}
		if err := mem.WriteAll(ctx, "t.jsonl", repl, nil); err != nil {
			t.Fatal(err)
		}
		_, err = r.ReadAt(ctx, p, 3072)
		switch {
		case ifMatch && !errors.Is(err, ErrChanged):
			t.Errorf("a read after the object was replaced: %v, want ErrChanged", err)
		case ifMatch && toErrno(slog.New(slog.DiscardHandler), "read", "t.jsonl", err) != syscall.EIO:
			t.Errorf("ErrChanged is errno %v, want EIO", toErrno(slog.New(slog.DiscardHandler), "read", "t.jsonl", err))
		case ifMatch && (len(told) == 0 || told[0] != "t.jsonl"):
			t.Errorf("told of %q, want t.jsonl", told)
		case !ifMatch && (err != nil || !bytes.Equal(p, repl[3072:])):
			t.Errorf("without IfMatch: %v, want the new bytes", err)
		}
		r.Close()
		r.wait()
	}
}
