package indexer

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/gcerrors"
)

// faulty is a read-only blob driver over another bucket that fails where a
// test tells it to. Methods the indexer does not use are left to the nil
// embedded interface (they would panic).
type faulty struct {
	driver.Bucket
	inner *blob.Bucket

	mu       sync.Mutex
	listErr  error
	openErr  map[string]error  // NewRangeReader fails
	readErr  map[string]error  // reads fail after a few bytes
	beforeLs func()            // called before each listing page is returned
	etags    map[string]string // ETags the listing and Attributes report, as S3's do
}

var errInjected = errors.New("injected fault")

func newFaulty(inner *blob.Bucket) (*faulty, *blob.Bucket) {
	f := &faulty{inner: inner, openErr: map[string]error{}, readErr: map[string]error{}, etags: map[string]string{}}
	return f, blob.NewBucket(f)
}

func (f *faulty) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func (f *faulty) ErrorCode(err error) gcerrors.ErrorCode { return gcerrors.Code(err) }
func (f *faulty) As(any) bool                            { return false }
func (f *faulty) ErrorAs(error, any) bool                { return false }
func (f *faulty) Close() error                           { return nil }

func (f *faulty) Attributes(ctx context.Context, key string) (*driver.Attributes, error) {
	a, err := f.inner.Attributes(ctx, key)
	if err != nil {
		return nil, err
	}
	etag := a.ETag
	f.mu.Lock()
	if e := f.etags[key]; e != "" {
		etag = e
	}
	f.mu.Unlock()
	return &driver.Attributes{Size: a.Size, ModTime: a.ModTime, MD5: a.MD5, ETag: etag}, nil
}

func (f *faulty) ListPaged(ctx context.Context, opts *driver.ListOptions) (*driver.ListPage, error) {
	f.mu.Lock()
	err, hook := f.listErr, f.beforeLs
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	token := opts.PageToken
	if token == nil {
		token = blob.FirstPageToken
	}
	size := opts.PageSize
	if size == 0 {
		size = 1000
	}
	objs, next, err := f.inner.ListPage(ctx, token, size, &blob.ListOptions{Prefix: opts.Prefix, Delimiter: opts.Delimiter})
	if err != nil {
		return nil, err
	}
	if hook != nil {
		hook()
	}
	page := &driver.ListPage{NextPageToken: next}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range objs {
		lo := &driver.ListObject{Key: o.Key, ModTime: o.ModTime, Size: o.Size, MD5: o.MD5, IsDir: o.IsDir}
		if e := f.etags[o.Key]; e != "" {
			lo.AsFunc = func(i any) bool {
				p, ok := i.(*s3types.Object)
				if ok {
					*p = s3types.Object{Key: aws.String(lo.Key), ETag: aws.String(e)}
				}
				return ok
			}
		}
		page.Objects = append(page.Objects, lo)
	}
	return page, nil
}

func (f *faulty) NewRangeReader(ctx context.Context, key string, offset, length int64, opts *driver.ReaderOptions) (driver.Reader, error) {
	f.mu.Lock()
	openErr, readErr := f.openErr[key], f.readErr[key]
	f.mu.Unlock()
	if openErr != nil {
		return nil, openErr
	}
	r, err := f.inner.NewRangeReader(ctx, key, offset, length, nil)
	if err != nil {
		return nil, err
	}
	return &faultyReader{r: r, err: readErr}, nil
}

type faultyReader struct {
	r   *blob.Reader
	err error
	n   int
}

func (r *faultyReader) Read(p []byte) (int, error) {
	if r.err != nil && r.n > 0 {
		return 0, r.err
	}
	if r.err != nil && len(p) > 10 {
		p = p[:10]
	}
	n, err := r.r.Read(p)
	r.n += n
	return n, err
}

func (r *faultyReader) Close() error { return r.r.Close() }
func (r *faultyReader) As(any) bool  { return false }
func (r *faultyReader) Attributes() *driver.ReaderAttributes {
	return &driver.ReaderAttributes{Size: r.r.Size(), ModTime: r.r.ModTime(), ContentType: r.r.ContentType()}
}

var _ io.ReadCloser = (*faultyReader)(nil)
