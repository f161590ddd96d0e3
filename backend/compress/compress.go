// Package compress is a storage layer that compresses large objects with
// zstd, transparently: above it every object reads, lists and stats as the
// bytes that were written.
//
// # Layout
//
// An object larger than Options.Threshold is stored in the zstd seekable
// format: independent zstd frames of Options.FrameSize bytes of input each
// (the last one shorter), then a seek table (a skippable frame listing each
// frame's compressed and uncompressed size, with the seekable format's
// footer), so that any zstd tool can decompress the object and a range read
// fetches only the frames it covers. If the result is smaller than
// Options.MinStored, a skippable padding frame before the seek table brings
// it to that size (see Listing). Smaller objects are stored as they are.
//
// A compressed object is recognised by its metadata, never by trying to
// decompress: MetaSize holds the uncompressed size, MetaFrame the frame
// size and MetaMD5 the MD5 of the uncompressed content. Attributes report
// these (and hide the keys) without reading any data; ETag is the inner
// object's. Writing metadata under these keys is refused.
//
// A range read of a compressed object costs the inner Attributes call (to
// learn whether and how the object is compressed), a read of the seek table
// (its last 17+8n bytes for n frames; cached per key and ETag), and one
// range read covering the frames needed. A range read of a stored-as-is
// object costs the Attributes call and the inner range read.
//
// Because the uncompressed size is in the metadata, which must be known when
// the inner write starts, a compressed object's frames are spooled to a
// temporary file (Options.TempDir) and uploaded in Close; input below the
// threshold is kept in memory until the writer knows which case it is, so a
// writer holds up to Threshold bytes in memory.
//
// # Listing
//
// Store listings carry no metadata, so the listed size of a compressed
// object is its compressed size. Rather than change keys (a size suffix in
// the key would make every lookup a listing, and overwriting an object that
// changes between compressed and stored-as-is could not be atomic), ListPaged
// asks for the attributes of each listed object that may be compressed, and
// reports the uncompressed size and MD5. "May be compressed" means listed at
// MinStored bytes or more: the padding above guarantees that anything listed
// smaller is stored as it is, so small files cost nothing. The answers are
// cached per key, listed size, modification time and listed MD5, so each
// object version is asked about once per process; the first listing of a
// store of n large objects costs n Attributes calls (ListConcurrency at a
// time). The trade-off: a listing is exact, and its first pass over many
// large objects is slower; an object rewritten with the same compressed
// size, modification time and MD5 (or no MD5) as the cached version would
// list with the older version's uncompressed size until the process
// restarts (its Attributes and reads are always right).
package compress

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/tapefs/tapefs/backend/layer"
	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/gcerrors"
	"golang.org/x/sync/errgroup"
)

// Metadata keys of a compressed object.
const (
	MetaSize  = "tapefs-zstd"       // uncompressed size, decimal; the marker
	MetaFrame = "tapefs-zstd-frame" // uncompressed bytes per frame, decimal
	MetaMD5   = "tapefs-zstd-md5"   // MD5 of the uncompressed content, base64
)

const metaPrefix = "tapefs-zstd"

// Defaults of Options.
const (
	DefaultThreshold       = 1 << 20
	DefaultFrameSize       = 1 << 20
	DefaultMinStored       = 4096
	DefaultListConcurrency = 16
)

// Off as Options.Threshold stores every new object as it is (objects
// already compressed still read as before).
const Off = -1

// Options configure the layer. The zero value means the defaults.
type Options struct {
	// Threshold: objects larger than this many bytes are compressed.
	// 0 means DefaultThreshold; Off (or any negative value) disables.
	Threshold int64
	// FrameSize is the input size of each zstd frame (0: DefaultFrameSize).
	// A range read decompresses whole frames.
	FrameSize int
	// Level is the zstd encoder level (0: zstd.SpeedDefault).
	Level zstd.EncoderLevel
	// TempDir is where compressed frames are spooled before the upload
	// ("": os.TempDir()).
	TempDir string
	// MinStored is the least inner size of a compressed object (0:
	// DefaultMinStored); listings ask nothing about smaller objects.
	MinStored int64
	// ListConcurrency bounds the Attributes calls of one ListPaged (0:
	// DefaultListConcurrency).
	ListConcurrency int
}

func (o *Options) fill() {
	if o.Threshold == 0 {
		o.Threshold = DefaultThreshold
	}
	if o.FrameSize <= 0 {
		o.FrameSize = DefaultFrameSize
	}
	if o.Level == 0 {
		o.Level = zstd.SpeedDefault
	}
	if o.MinStored <= 0 {
		o.MinStored = DefaultMinStored
	}
	if o.ListConcurrency <= 0 {
		o.ListConcurrency = DefaultListConcurrency
	}
}

// ParseThreshold reads a threshold as configuration gives it: "off" or "0"
// (disabled), or a size in bytes with an optional K, KiB, M, MiB, G or GiB
// suffix (all binary).
func ParseThreshold(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if strings.EqualFold(t, "off") || t == "0" {
		return Off, nil
	}
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("compression threshold %q: want off, 0, or a size like 1MiB", s)
	}
	if n == 0 {
		return Off, nil
	}
	return n * mult, nil
}

// Wrap returns b with compression on top.
func Wrap(b *blob.Bucket, opts Options) *blob.Bucket {
	return blob.NewBucket(newBucket(b, opts))
}

func newBucket(inner *blob.Bucket, opts Options) *bucket {
	opts.fill()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(opts.Level), zstd.WithEncoderConcurrency(1))
	if err != nil {
		panic(err) // only for invalid options, which fill rules out
	}
	return &bucket{Base: layer.Base{Inner: inner}, opts: opts, enc: enc,
		sizes: map[listKey]listed{}, tables: map[tableKey][]int64{}}
}

type bucket struct {
	layer.Base
	opts Options
	enc  *zstd.Encoder // EncodeAll is safe for concurrent use

	mu     sync.Mutex
	sizes  map[listKey]listed
	tables map[tableKey][]int64
}

// Cache bounds: when full, a cache is emptied.
const (
	maxSizes  = 1 << 17
	maxTables = 256
)

type listKey struct {
	key     string
	size    int64
	modTime int64
	md5     string
}

type listed struct {
	compressed bool
	size       int64
	md5        []byte
}

type tableKey struct{ key, etag string }

var (
	errReserved = errors.New("compress: metadata keys starting with " + metaPrefix + " are reserved")
	errCorrupt  = errors.New("compress: corrupt compressed object")
)

func (b *bucket) ErrorCode(err error) gcerrors.ErrorCode {
	switch {
	case errors.Is(err, errReserved):
		return gcerrors.InvalidArgument
	case errors.Is(err, errCorrupt):
		return gcerrors.Internal
	}
	return b.Base.ErrorCode(err)
}

// info is what the metadata says of a compressed object.
type info struct {
	size  int64 // uncompressed
	frame int64
	md5   []byte
}

// parse reads the marker; ok is false for an object stored as it is.
func parse(md map[string]string) (info, bool, error) {
	s, ok := md[MetaSize]
	if !ok {
		return info{}, false, nil
	}
	var in info
	var err error
	if in.size, err = strconv.ParseInt(s, 10, 64); err != nil || in.size < 0 {
		return info{}, true, fmt.Errorf("%w: size %q", errCorrupt, s)
	}
	if in.frame, err = strconv.ParseInt(md[MetaFrame], 10, 64); err != nil || in.frame <= 0 || in.frame > 1<<32-1 {
		return info{}, true, fmt.Errorf("%w: frame size %q", errCorrupt, md[MetaFrame])
	}
	if m := md[MetaMD5]; m != "" {
		if in.md5, err = base64.StdEncoding.DecodeString(m); err != nil {
			return info{}, true, fmt.Errorf("%w: MD5 %q", errCorrupt, m)
		}
	}
	return in, true, nil
}

// userMetadata is md without the layer's keys (nil if nothing is left).
func userMetadata(md map[string]string) map[string]string {
	var out map[string]string
	for k, v := range md {
		if strings.HasPrefix(k, metaPrefix) {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}

func (b *bucket) Attributes(ctx context.Context, key string) (*driver.Attributes, error) {
	a, err := b.Inner.Attributes(ctx, key)
	if err != nil {
		return nil, err
	}
	da := layer.ToDriverAttributes(a)
	in, ok, err := parse(a.Metadata)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if ok {
		da.Size, da.MD5 = in.size, in.md5
		da.Metadata = userMetadata(a.Metadata)
	}
	return da, nil
}

func (b *bucket) ListPaged(ctx context.Context, opts *driver.ListOptions) (*driver.ListPage, error) {
	page, err := b.Base.ListPaged(ctx, opts)
	if err != nil {
		return nil, err
	}
	found := make([]*listed, len(page.Objects))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(b.opts.ListConcurrency)
	for i, o := range page.Objects {
		if o.IsDir || o.Size < b.opts.MinStored {
			continue
		}
		lk := listKey{key: o.Key, size: o.Size, modTime: o.ModTime.UnixNano(), md5: string(o.MD5)}
		b.mu.Lock()
		l, hit := b.sizes[lk]
		b.mu.Unlock()
		if hit {
			found[i] = &l
			continue
		}
		g.Go(func() error {
			a, err := b.Inner.Attributes(gctx, o.Key)
			if gcerrors.Code(err) == gcerrors.NotFound {
				found[i] = &listed{size: -1} // deleted since the listing
				return nil
			}
			if err != nil {
				return err
			}
			in, ok, err := parse(a.Metadata)
			if err != nil {
				return fmt.Errorf("%s: %w", o.Key, err)
			}
			l := listed{compressed: ok, size: in.size, md5: in.md5}
			found[i] = &l
			if a.Size == o.Size && a.ModTime.Equal(o.ModTime) {
				b.mu.Lock()
				if len(b.sizes) >= maxSizes {
					clear(b.sizes)
				}
				b.sizes[lk] = l
				b.mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	kept := page.Objects[:0]
	for i, o := range page.Objects {
		if l := found[i]; l != nil {
			if l.size < 0 {
				continue
			}
			if l.compressed {
				o.Size, o.MD5 = l.size, l.md5
			}
		}
		kept = append(kept, o)
	}
	page.Objects = kept
	return page, nil
}

// Seekable format constants.
const (
	skippableMagic = 0x184D2A5E // the seek table's skippable frame
	paddingMagic   = 0x184D2A50 // padding: another skippable frame
	seekableMagic  = 0x8F92EAB1
	footerSize     = 9
)

func tableSize(frames int64) int64 { return 8 + 8*frames + footerSize }

func frames(size, frame int64) int64 { return (size + frame - 1) / frame }

// table returns the compressed offsets of the frames (n+1 of them) of a
// compressed object.
func (b *bucket) table(ctx context.Context, key string, a *blob.Attributes, in info) ([]int64, error) {
	tk := tableKey{key, a.ETag}
	if a.ETag != "" {
		b.mu.Lock()
		t, ok := b.tables[tk]
		b.mu.Unlock()
		if ok {
			return t, nil
		}
	}
	n := frames(in.size, in.frame)
	ts := tableSize(n)
	if a.Size < ts {
		return nil, fmt.Errorf("%w: %s: %d bytes, too short for a seek table of %d frames", errCorrupt, key, a.Size, n)
	}
	r, err := b.Inner.NewRangeReader(ctx, key, a.Size-ts, ts, nil)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	buf := make([]byte, ts)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("%s: seek table: %w", key, err)
	}
	le := binary.LittleEndian
	foot := buf[ts-footerSize:]
	if le.Uint32(buf) != skippableMagic || int64(le.Uint32(buf[4:])) != ts-8 ||
		int64(le.Uint32(foot)) != n || foot[4] != 0 || le.Uint32(foot[5:]) != seekableMagic {
		return nil, fmt.Errorf("%w: %s: no seek table of %d frames at its end", errCorrupt, key, n)
	}
	offs := make([]int64, n+1)
	var usize int64
	for i := range n {
		e := buf[8+8*i:]
		offs[i+1] = offs[i] + int64(le.Uint32(e))
		d := int64(le.Uint32(e[4:]))
		if d != in.frame && (i != n-1 || d > in.frame || d == 0) {
			return nil, fmt.Errorf("%w: %s: frame %d holds %d bytes, want %d", errCorrupt, key, i, d, in.frame)
		}
		usize += d
	}
	if usize != in.size || offs[n] > a.Size-ts {
		return nil, fmt.Errorf("%w: %s: seek table does not match the object", errCorrupt, key)
	}
	if a.ETag != "" {
		b.mu.Lock()
		if len(b.tables) >= maxTables {
			clear(b.tables)
		}
		b.tables[tk] = offs
		b.mu.Unlock()
	}
	return offs, nil
}

var decoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		panic(err)
	}
	return d
}}

func (b *bucket) NewRangeReader(ctx context.Context, key string, offset, length int64, opts *driver.ReaderOptions) (driver.Reader, error) {
	a, err := b.Inner.Attributes(ctx, key)
	if err != nil {
		return nil, err
	}
	in, ok, err := parse(a.Metadata)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if !ok {
		return b.Base.NewRangeReader(ctx, key, offset, length, opts)
	}
	end := in.size
	if length >= 0 && offset+length < end {
		end = offset + length
	}
	attrs := driver.ReaderAttributes{ContentType: a.ContentType, ModTime: a.ModTime, Size: in.size}
	ropts := &blob.ReaderOptions{BeforeRead: opts.BeforeRead}
	if offset >= end {
		// Nothing to decompress; still let the store see the read.
		r, err := b.Inner.NewRangeReader(ctx, key, 0, 0, ropts)
		if err != nil {
			return nil, err
		}
		return &reader{inner: r, attrs: attrs}, nil
	}
	offs, err := b.table(ctx, key, a, in)
	if err != nil {
		return nil, err
	}
	first, last := offset/in.frame, (end-1)/in.frame
	r, err := b.Inner.NewRangeReader(ctx, key, offs[first], offs[last+1]-offs[first], ropts)
	if err != nil {
		return nil, err
	}
	dec := decoders.Get().(*zstd.Decoder)
	if err := dec.Reset(r); err != nil {
		decoders.Put(dec)
		r.Close()
		return nil, err
	}
	rd := &reader{inner: r, dec: dec, left: end - offset, attrs: attrs}
	if _, err := io.CopyN(io.Discard, dec, offset-first*in.frame); err != nil {
		rd.Close()
		return nil, fmt.Errorf("%w: %s: %v", errCorrupt, key, err)
	}
	return rd, nil
}

type reader struct {
	inner *blob.Reader
	dec   *zstd.Decoder // nil for an empty range
	left  int64
	attrs driver.ReaderAttributes
}

func (r *reader) Read(p []byte) (int, error) {
	if r.left <= 0 || r.dec == nil {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	// Fill p across frame boundaries, as a reader of one stream would.
	n, err := io.ReadFull(r.dec, p)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	r.left -= int64(n)
	if err == io.EOF && r.left > 0 {
		err = fmt.Errorf("%w: %d bytes short", errCorrupt, r.left)
	}
	if err == nil && r.left == 0 {
		err = io.EOF
	}
	return n, err
}

func (r *reader) Close() error {
	if r.dec != nil {
		r.dec.Reset(nil)
		decoders.Put(r.dec)
		r.dec = nil
	}
	return r.inner.Close()
}

func (r *reader) Attributes() *driver.ReaderAttributes { return &r.attrs }
func (r *reader) As(i any) bool                        { return r.inner.As(i) }

func (b *bucket) NewTypedWriter(ctx context.Context, key, contentType string, opts *driver.WriterOptions) (driver.Writer, error) {
	for k := range opts.Metadata {
		if strings.HasPrefix(strings.ToLower(k), metaPrefix) {
			return nil, fmt.Errorf("%w: %q", errReserved, k)
		}
	}
	return &writer{ctx: ctx, b: b, key: key, contentType: contentType, opts: opts, md5: md5.New()}, nil
}

// writer keeps its input in memory until it passes the threshold, then
// compresses it frame by frame into a spool file; Close uploads either.
type writer struct {
	ctx         context.Context
	b           *bucket
	key         string
	contentType string
	opts        *driver.WriterOptions
	md5         hash.Hash
	size        int64
	buf         []byte
	spool       *os.File
	spooled     int64
	sizes       []uint32 // compressed size of each frame
	scratch     []byte
	err         error
}

func (w *writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	w.md5.Write(p)
	w.size += int64(len(p))
	w.buf = append(w.buf, p...)
	if w.spool == nil && w.b.opts.Threshold >= 0 && w.size > w.b.opts.Threshold {
		f, err := os.CreateTemp(w.b.opts.TempDir, "tapefs-zstd-*")
		if err != nil {
			w.err = err
			return 0, err
		}
		w.spool = f
	}
	if w.spool != nil {
		if err := w.frames(false); err != nil {
			w.fail(err)
			return 0, err
		}
	}
	return len(p), nil
}

// frames compresses the full frames in buf (and, if final, the rest).
func (w *writer) frames(final bool) error {
	fs := w.b.opts.FrameSize
	done := 0
	for len(w.buf)-done >= fs || (final && len(w.buf) > done) {
		n := min(fs, len(w.buf)-done)
		w.scratch = w.b.enc.EncodeAll(w.buf[done:done+n], w.scratch[:0])
		if _, err := w.spool.Write(w.scratch); err != nil {
			return err
		}
		w.sizes = append(w.sizes, uint32(len(w.scratch)))
		w.spooled += int64(len(w.scratch))
		done += n
	}
	w.buf = append(w.buf[:0], w.buf[done:]...)
	return nil
}

func (w *writer) fail(err error) {
	w.err = err
	if w.spool != nil {
		w.spool.Close()
		os.Remove(w.spool.Name())
		w.spool = nil
	}
}

// Close uploads the object, unless the context is done: then nothing is
// written.
func (w *writer) Close() (err error) {
	if w.err != nil {
		return w.err
	}
	defer w.fail(errors.New("compress: writer closed"))
	if err := w.ctx.Err(); err != nil {
		return err
	}
	opts := layer.ToWriterOptions(w.contentType, w.opts)
	var body io.Reader
	if w.spool == nil {
		body = bytes.NewReader(w.buf)
	} else {
		if err := w.frames(true); err != nil {
			return err
		}
		if err := w.trailer(); err != nil {
			return err
		}
		if _, err := w.spool.Seek(0, io.SeekStart); err != nil {
			return err
		}
		body = w.spool
		md := maps.Clone(w.opts.Metadata)
		if md == nil {
			md = map[string]string{}
		}
		md[MetaSize] = strconv.FormatInt(w.size, 10)
		md[MetaFrame] = strconv.Itoa(w.b.opts.FrameSize)
		md[MetaMD5] = base64.StdEncoding.EncodeToString(w.md5.Sum(nil))
		opts.Metadata = md
		opts.ContentMD5 = nil // it was of the uncompressed content, and checked above us
	}
	iw, err := w.b.Inner.NewWriter(w.ctx, w.key, opts)
	if err != nil {
		return err
	}
	if _, err := io.Copy(iw, body); err != nil {
		iw.Close() // the context is canceled or the store failed: it commits nothing
		return err
	}
	if err := w.ctx.Err(); err != nil {
		iw.Close()
		return err
	}
	return iw.Close()
}

// trailer writes the padding (if any) and the seek table.
func (w *writer) trailer() error {
	le := binary.LittleEndian
	n := int64(len(w.sizes))
	ts := tableSize(n)
	if pad := w.b.opts.MinStored - w.spooled - ts; pad > 0 {
		// A skippable frame is at least its 8-byte header.
		skip := make([]byte, max(pad, 8))
		le.PutUint32(skip, paddingMagic)
		le.PutUint32(skip[4:], uint32(len(skip)-8))
		if _, err := w.spool.Write(skip); err != nil {
			return err
		}
	}
	t := make([]byte, ts)
	le.PutUint32(t, skippableMagic)
	le.PutUint32(t[4:], uint32(ts-8))
	fs := int64(w.b.opts.FrameSize)
	for i, c := range w.sizes {
		e := t[8+8*i:]
		le.PutUint32(e, c)
		le.PutUint32(e[4:], uint32(min(fs, w.size-int64(i)*fs)))
	}
	foot := t[ts-footerSize:]
	le.PutUint32(foot, uint32(n))
	foot[4] = 0 // no checksums: each frame carries its own
	le.PutUint32(foot[5:], seekableMagic)
	_, err := w.spool.Write(t)
	return err
}
