package compress

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/tapefs/tapefs/backend/layer"
	"github.com/tapefs/tapefs/backend/layer/layertest"
	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/blob/memblob"
	"gocloud.dev/gcerrors"
)

func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"defaults", Options{}},
		// Every object of more than one byte compressed, in 7-byte frames:
		// the suite's reads then cross frames.
		{"tiny frames", Options{Threshold: 1, FrameSize: 7, MinStored: 1}},
		{"padded", Options{Threshold: 1, FrameSize: 5}},
		{"off", Options{Threshold: Off}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			layertest.Run(t, func(t *testing.T, inner *blob.Bucket) driver.Bucket {
				o := tc.opts
				o.TempDir = t.TempDir()
				return newBucket(inner, o)
			})
		})
	}
}

// counting counts what goes through the inner bucket.
type counting struct {
	layer.Base
	bytesRead  atomic.Int64
	requested  atomic.Int64 // bytes of the ranges asked for
	reads      atomic.Int64
	attributes atomic.Int64
}

func (c *counting) NewRangeReader(ctx context.Context, key string, offset, length int64, opts *driver.ReaderOptions) (driver.Reader, error) {
	c.reads.Add(1)
	c.requested.Add(length)
	r, err := c.Base.NewRangeReader(ctx, key, offset, length, opts)
	if err != nil {
		return nil, err
	}
	return &countingReader{Reader: r, n: &c.bytesRead}, nil
}

func (c *counting) Attributes(ctx context.Context, key string) (*driver.Attributes, error) {
	c.attributes.Add(1)
	return c.Base.Attributes(ctx, key)
}

type countingReader struct {
	driver.Reader
	n *atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.Reader.Read(p)
	r.n.Add(int64(n))
	return n, err
}

// text is compressible but not trivially: words drawn at random.
func text(n int, seed uint64) []byte {
	words := []string{"tape", "block", "file", "mark", "rewind", "seek", "record", "volume", "label", "density", "\n"}
	rng := rand.New(rand.NewPCG(seed, 1))
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
		b.WriteByte(' ')
		if rng.IntN(8) == 0 {
			b.WriteString(string(rune('a' + rng.IntN(26))))
		}
	}
	return b.Bytes()[:n]
}

func setup(t *testing.T, opts Options) (*blob.Bucket, *counting, *blob.Bucket) {
	t.Helper()
	mem := memblob.OpenBucket(nil)
	c := &counting{Base: layer.Base{Inner: mem}}
	inner := blob.NewBucket(c)
	opts.TempDir = t.TempDir()
	b := Wrap(inner, opts)
	t.Cleanup(func() { b.Close() })
	return b, c, mem
}

func TestRangeReadFetchesOnlyItsFrames(t *testing.T) {
	b, c, mem := setup(t, Options{})
	ctx := context.Background()
	const size = 16 << 20
	const nframes = size / DefaultFrameSize
	data := text(size, 1)
	if err := b.WriteAll(ctx, "tape", data, nil); err != nil {
		t.Fatal(err)
	}
	ia, err := mem.Attributes(ctx, "tape")
	if err != nil {
		t.Fatal(err)
	}
	if ia.Metadata[MetaSize] != strconv.Itoa(size) {
		t.Fatalf("inner metadata %v: no marker with the uncompressed size", ia.Metadata)
	}
	t.Logf("16 MiB stored as %d bytes (%.1f%%)", ia.Size, 100*float64(ia.Size)/size)
	if ia.Size > size/2 {
		t.Fatalf("stored %d bytes for %d: not compressed", ia.Size, size)
	}
	maxFrame := ia.Size / nframes * 2 // frames are about the same size
	for i, rg := range [][2]int64{{10<<20 + 100, 4096}, {10<<20 + 200, 4096}, {(8 << 20) - 10, 20}, {size - 5, 5}} {
		c.bytesRead.Store(0)
		c.reads.Store(0)
		c.requested.Store(0)
		r, err := b.NewRangeReader(ctx, "tape", rg[0], rg[1], nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data[rg[0]:rg[0]+rg[1]]) {
			t.Fatalf("range %v: wrong bytes", rg)
		}
		read, asked := c.bytesRead.Load(), c.requested.Load()
		t.Logf("range read of %d bytes at %d: %d bytes read from the inner bucket, in %d range reads asking for %d bytes (object: %d stored bytes)", rg[1], rg[0], read, c.reads.Load(), asked, ia.Size)
		frames := int64(1)
		if rg[0]/DefaultFrameSize != (rg[0]+rg[1]-1)/DefaultFrameSize {
			frames = 2
		}
		limit := frames * maxFrame
		if i == 0 {
			limit += tableSize(nframes) // the first read also fetches the seek table
		}
		if asked > limit || read > asked {
			t.Errorf("range %v asked for %d inner bytes and read %d, want at most %d (%d frames)", rg, asked, read, limit, frames)
		}
		if asked > ia.Size/4 {
			t.Errorf("range %v asked for %d of the object's %d bytes", rg, asked, ia.Size)
		}
	}
}

func TestSizesWithoutReadingData(t *testing.T) {
	b, c, _ := setup(t, Options{Threshold: 1000, FrameSize: 512})
	ctx := context.Background()
	want := map[string]int{}
	for i, n := range []int{0, 10, 1000, 1001, 5000, 100000} {
		k := string(rune('a'+i)) + "/obj"
		if err := b.WriteAll(ctx, k, text(n, uint64(i)), nil); err != nil {
			t.Fatal(err)
		}
		want[k] = n
	}
	c.bytesRead.Store(0)
	c.attributes.Store(0)
	check := func() {
		t.Helper()
		it := b.List(&blob.ListOptions{})
		seen := 0
		for {
			o, err := it.Next(ctx)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			seen++
			if o.Size != int64(want[o.Key]) {
				t.Errorf("listed %s with %d bytes, want %d", o.Key, o.Size, want[o.Key])
			}
		}
		if seen != len(want) {
			t.Errorf("listed %d objects, want %d", seen, len(want))
		}
	}
	check()
	// The three compressed ones are padded to MinStored and asked about;
	// the small ones are not.
	if n := c.attributes.Load(); n != 3 {
		t.Errorf("first listing made %d Attributes calls, want 3", n)
	}
	check()
	if n := c.attributes.Load(); n != 3 {
		t.Errorf("second listing made %d more Attributes calls, want none", n-3)
	}
	for k, n := range want {
		a, err := b.Attributes(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if a.Size != int64(n) {
			t.Errorf("%s: Attributes size %d, want %d", k, a.Size, n)
		}
		if _, ok := a.Metadata[MetaSize]; ok {
			t.Errorf("%s: the layer's metadata shows above it", k)
		}
	}
	if r := c.bytesRead.Load(); r != 0 {
		t.Errorf("listings and Attributes read %d bytes of data", r)
	}
}

// An object is decompressed only when its metadata says so.
func TestMarkerNotContent(t *testing.T) {
	b, _, mem := setup(t, Options{Threshold: 1})
	ctx := context.Background()
	enc, _ := zstd.NewWriter(nil)
	z := enc.EncodeAll(text(10000, 3), nil)
	if err := mem.WriteAll(ctx, "raw.zst", z, nil); err != nil {
		t.Fatal(err)
	}
	got, err := b.ReadAll(ctx, "raw.zst")
	if err != nil || !bytes.Equal(got, z) {
		t.Errorf("a zstd file written by someone else was not read as it is (%d bytes, %v)", len(got), err)
	}
	err = b.WriteAll(ctx, "k", []byte("v"), &blob.WriterOptions{Metadata: map[string]string{"tapefs-zstd": "1"}})
	if gcerrors.Code(err) != gcerrors.InvalidArgument {
		t.Errorf("writing the reserved metadata key: %v, want InvalidArgument", err)
	}
}

// Any zstd decoder reads a compressed object whole (the seek table and the
// padding are skippable frames).
func TestStandardDecoderReadsObjects(t *testing.T) {
	b, _, mem := setup(t, Options{Threshold: 10, FrameSize: 1000})
	ctx := context.Background()
	data := text(12345, 4)
	if err := b.WriteAll(ctx, "tape", data, nil); err != nil {
		t.Fatal(err)
	}
	z, err := mem.ReadAll(ctx, "tape")
	if err != nil {
		t.Fatal(err)
	}
	if len(z) < DefaultMinStored {
		t.Errorf("stored %d bytes, want at least MinStored", len(z))
	}
	dec, _ := zstd.NewReader(nil)
	got, err := dec.DecodeAll(z, nil)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("standard decoder: %d bytes, %v", len(got), err)
	}
}

func TestCanceledCompressedWriteCommitsNothing(t *testing.T) {
	b, _, mem := setup(t, Options{Threshold: 10, FrameSize: 100})
	ctx, cancel := context.WithCancel(context.Background())
	w, err := b.NewWriter(ctx, "tape", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(text(5000, 5)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := w.Close(); err == nil {
		t.Error("Close after cancel succeeded")
	}
	if ok, _ := mem.Exists(context.Background(), "tape"); ok {
		t.Error("a canceled compressed write left an object")
	}
}

func TestParseThreshold(t *testing.T) {
	for in, want := range map[string]int64{"off": Off, "OFF": Off, "0": Off, "1048576": 1 << 20, "1MiB": 1 << 20, "512KiB": 512 << 10, "2M": 2 << 20, "1 GiB": 1 << 30} {
		got, err := ParseThreshold(in)
		if err != nil || got != want {
			t.Errorf("ParseThreshold(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "1TB", "lots", "99999999999GiB"} {
		if got, err := ParseThreshold(bad); err == nil {
			t.Errorf("ParseThreshold(%q) = %d, want an error", bad, got)
		}
	}
}
