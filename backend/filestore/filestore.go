// Package filestore is tapefs's file:// store: gocloud's fileblob, adjusted
// for a store that is a plain directory of tapes. Temporary files are written
// next to their target rather than in $TMPDIR (a rename across file systems
// fails, and /tmp is often tmpfs), in-flight temporary files never show in
// listings, and names up to 255 bytes (the Linux limit) can be read and
// written although fileblob's own temporary and attribute file names would
// be too long for them.
package filestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"github.com/tapefs/tapefs/backend/layer"
	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/gcerrors"
)

// Scheme is the URL scheme of the store.
const Scheme = fileblob.Scheme

// longName is the longest base name fileblob handles by itself: its
// temporary file adds "." + 16 hex digits + ".tmp" to the name.
const longName = 255 - 21

// URLOpener opens file:// URLs with fileblob's query parameters, with
// no_tmp_dir always on: a temporary file outside the store cannot be renamed
// into it when the two are on different file systems.
type URLOpener struct{}

// OpenBucketURL implements blob.BucketURLOpener.
func (URLOpener) OpenBucketURL(ctx context.Context, u *url.URL) (*blob.Bucket, error) {
	inner, err := (&fileblob.URLOpener{Options: fileblob.Options{NoTempDir: true}}).OpenBucketURL(ctx, u)
	if err != nil {
		return nil, err
	}
	return blob.NewBucket(Wrap(inner, dirOf(u))), nil
}

// dirOf is the directory a file:// URL names, the way fileblob reads it.
func dirOf(u *url.URL) string {
	p := u.Path
	if u.Host == "." {
		p = strings.TrimPrefix(p, "/")
	}
	return filepath.FromSlash(p)
}

// Wrap makes the driver over a fileblob bucket rooted at dir.
func Wrap(inner *blob.Bucket, dir string) driver.Bucket {
	return &bucket{Base: layer.Base{Inner: inner}, dir: dir}
}

type bucket struct {
	layer.Base
	dir string
}

// tempName matches the temporary files fileblob (".<hex time>.tmp") and
// this package (".tapefs-*.tmp") write next to their targets.
var tempName = regexp.MustCompile(`(\.[0-9a-f]{15,16}\.tmp|^\.tapefs-[0-9]+\.tmp)$`)

// IsTemp says whether a key names an in-flight (or abandoned) temporary file.
func IsTemp(key string) bool {
	return tempName.MatchString(key[strings.LastIndexByte(key, '/')+1:])
}

func (b *bucket) ListPaged(ctx context.Context, opts *driver.ListOptions) (*driver.ListPage, error) {
	page, err := b.Base.ListPaged(ctx, opts)
	if err != nil {
		return nil, err
	}
	kept := page.Objects[:0]
	for _, o := range page.Objects {
		if !o.IsDir && IsTemp(o.Key) {
			continue
		}
		kept = append(kept, o)
	}
	page.Objects = kept
	return page, nil
}

// plainPath is the file of key when fileblob would store it under the key
// itself (no escaping), which is the case for every key the mount serves.
func (b *bucket) plainPath(key string) (string, bool) {
	if key == "" || strings.HasSuffix(key, "/") || strings.Contains(key, "//") {
		return "", false
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "." || seg == ".." {
			return "", false
		}
		for _, r := range seg {
			if r < 0x20 {
				return "", false
			}
		}
	}
	return filepath.Join(b.dir, filepath.FromSlash(key)), true
}

// long says whether key's last segment is too long for fileblob.
func (b *bucket) long(key string) (string, bool) {
	if len(key)-strings.LastIndexByte(key, '/')-1 <= longName {
		return "", false
	}
	return b.plainPath(key)
}

func tooLong(err error) bool { return errors.Is(err, syscall.ENAMETOOLONG) }

func (b *bucket) Attributes(ctx context.Context, key string) (*driver.Attributes, error) {
	a, err := b.Base.Attributes(ctx, key)
	if err == nil || !tooLong(err) {
		return a, err
	}
	p, ok := b.long(key)
	if !ok {
		return nil, err
	}
	info, serr := os.Stat(p)
	if serr != nil {
		return nil, serr
	}
	if info.IsDir() {
		return nil, os.ErrNotExist
	}
	return &driver.Attributes{
		ContentType: "application/octet-stream",
		ModTime:     info.ModTime(),
		Size:        info.Size(),
		ETag:        etag(info),
	}, nil
}

// etag is fileblob's ETag for a file, so both paths agree.
func etag(info os.FileInfo) string {
	return fmt.Sprintf("\"%x-%x\"", info.ModTime().UnixNano(), info.Size())
}

func (b *bucket) NewRangeReader(ctx context.Context, key string, offset, length int64, opts *driver.ReaderOptions) (driver.Reader, error) {
	r, err := b.Base.NewRangeReader(ctx, key, offset, length, opts)
	if err == nil || !tooLong(err) {
		return r, err
	}
	p, ok := b.long(key)
	if !ok {
		return nil, err
	}
	f, oerr := os.Open(p)
	if oerr != nil {
		return nil, oerr
	}
	info, serr := f.Stat()
	if serr != nil || info.IsDir() {
		f.Close()
		return nil, os.ErrNotExist
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
	}
	var rd io.Reader = f
	if length >= 0 {
		rd = io.LimitReader(f, length)
	}
	return &fileReader{r: rd, f: f, attrs: driver.ReaderAttributes{
		ContentType: "application/octet-stream", ModTime: info.ModTime(), Size: info.Size(),
	}}, nil
}

type fileReader struct {
	r     io.Reader
	f     *os.File
	attrs driver.ReaderAttributes
}

func (r *fileReader) Read(p []byte) (int, error)           { return r.r.Read(p) }
func (r *fileReader) Close() error                         { return r.f.Close() }
func (r *fileReader) Attributes() *driver.ReaderAttributes { return &r.attrs }
func (r *fileReader) As(i any) bool                        { return false }

// NewTypedWriter writes long names through a short temporary file in the
// same directory, renamed into place on Close (fileblob's own temporary
// name would exceed 255 bytes). Such objects carry no attributes.
func (b *bucket) NewTypedWriter(ctx context.Context, key, contentType string, opts *driver.WriterOptions) (driver.Writer, error) {
	p, ok := b.long(key)
	if !ok || len(filepath.Base(p)) > 255 {
		return b.Base.NewTypedWriter(ctx, key, contentType, opts)
	}
	if opts.IfNotExist {
		if _, err := os.Stat(p); err == nil {
			return nil, errExists
		}
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tapefs-*.tmp")
	if err != nil {
		return nil, err
	}
	// CreateTemp's random part is digits only: IsTemp hides it.
	return &longWriter{ctx: ctx, f: f, path: p, excl: opts.IfNotExist}, nil
}

// Copy goes through a reader and a writer when a name is too long for
// fileblob.
func (b *bucket) Copy(ctx context.Context, dstKey, srcKey string, opts *driver.CopyOptions) error {
	_, srcLong := b.long(srcKey)
	_, dstLong := b.long(dstKey)
	if !srcLong && !dstLong {
		return b.Base.Copy(ctx, dstKey, srcKey, opts)
	}
	r, err := b.NewRangeReader(ctx, srcKey, 0, -1, &driver.ReaderOptions{})
	if err != nil {
		return err
	}
	defer r.Close()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := b.NewTypedWriter(wctx, dstKey, "application/octet-stream", &driver.WriterOptions{})
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		cancel() // the writer then leaves nothing behind
		w.Close()
		return err
	}
	return w.Close()
}

// Delete removes a long-named file itself (fileblob would fail on the name
// of its attribute file).
func (b *bucket) Delete(ctx context.Context, key string, opts *driver.DeleteOptions) error {
	p, ok := b.long(key)
	if !ok {
		return b.Base.Delete(ctx, key, opts)
	}
	info, err := os.Stat(p)
	if err != nil {
		return err
	}
	if info.IsDir() {
		return os.ErrNotExist
	}
	return os.Remove(p)
}

var errExists = errors.New("filestore: object exists")

func (b *bucket) ErrorCode(err error) gcerrors.ErrorCode {
	switch {
	case errors.Is(err, errExists):
		return gcerrors.FailedPrecondition
	case errors.Is(err, os.ErrNotExist):
		return gcerrors.NotFound
	}
	return b.Base.ErrorCode(err)
}

type longWriter struct {
	ctx  context.Context
	f    *os.File
	path string
	excl bool
}

func (w *longWriter) Write(p []byte) (int, error) { return w.f.Write(p) }

func (w *longWriter) Close() error {
	tmp := w.f.Name()
	err := w.f.Close()
	if err == nil && w.ctx.Err() != nil {
		err = w.ctx.Err() // a cancelled write leaves nothing behind
	}
	if err == nil && w.excl {
		// link(2) fails if the target exists: a conditional create.
		if err = os.Link(tmp, w.path); err != nil {
			if errors.Is(err, os.ErrExist) {
				err = errExists
			}
		}
		os.Remove(tmp)
		return err
	}
	if err == nil {
		err = os.Rename(tmp, w.path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
