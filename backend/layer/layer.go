// Package layer is the base of tapefs's storage layers: a gocloud blob driver
// that passes every call through to an inner *blob.Bucket. A layer (retry,
// metrics, compression, tiering) embeds Base and overrides only the calls it
// changes, so every layer is itself a driver and the stack above still sees
// one *blob.Bucket.
package layer

import (
	"context"
	"errors"
	"io"

	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/gcerrors"
)

// Base forwards every driver call to Inner.
type Base struct {
	Inner *blob.Bucket
}

var _ driver.Bucket = (*Base)(nil)

// ErrorCode classifies errors of the inner bucket (already portable).
func (b *Base) ErrorCode(err error) gcerrors.ErrorCode { return gcerrors.Code(err) }

// As exposes the inner bucket's driver types.
func (b *Base) As(i any) bool { return b.Inner.As(i) }

// ErrorAs exposes the inner bucket's error types.
func (b *Base) ErrorAs(err error, i any) bool { return b.Inner.ErrorAs(err, i) }

// Attributes forwards to the inner bucket.
func (b *Base) Attributes(ctx context.Context, key string) (*driver.Attributes, error) {
	a, err := b.Inner.Attributes(ctx, key)
	if err != nil {
		return nil, err
	}
	return ToDriverAttributes(a), nil
}

// ToDriverAttributes converts portable attributes to the driver's form.
func ToDriverAttributes(a *blob.Attributes) *driver.Attributes {
	return &driver.Attributes{
		CacheControl: a.CacheControl, ContentDisposition: a.ContentDisposition,
		ContentEncoding: a.ContentEncoding, ContentLanguage: a.ContentLanguage,
		ContentType: a.ContentType, Metadata: a.Metadata, CreateTime: a.CreateTime,
		ModTime: a.ModTime, Size: a.Size, MD5: a.MD5, ETag: a.ETag, AsFunc: a.As,
	}
}

// ListPaged forwards to the inner bucket.
func (b *Base) ListPaged(ctx context.Context, opts *driver.ListOptions) (*driver.ListPage, error) {
	token := opts.PageToken
	if len(token) == 0 {
		token = blob.FirstPageToken
	}
	objs, next, err := b.Inner.ListPage(ctx, token, pageSize(opts.PageSize), &blob.ListOptions{
		Prefix: opts.Prefix, Delimiter: opts.Delimiter, BeforeList: opts.BeforeList,
	})
	if err != nil {
		return nil, err
	}
	page := &driver.ListPage{NextPageToken: next}
	for _, o := range objs {
		page.Objects = append(page.Objects, &driver.ListObject{
			Key: o.Key, ModTime: o.ModTime, Size: o.Size, MD5: o.MD5, IsDir: o.IsDir, AsFunc: o.As,
		})
	}
	return page, nil
}

func pageSize(n int) int {
	if n <= 0 {
		return 1000
	}
	return n
}

// NewRangeReader forwards to the inner bucket.
func (b *Base) NewRangeReader(ctx context.Context, key string, offset, length int64, opts *driver.ReaderOptions) (driver.Reader, error) {
	r, err := b.Inner.NewRangeReader(ctx, key, offset, length, &blob.ReaderOptions{BeforeRead: opts.BeforeRead})
	if err != nil {
		return nil, err
	}
	return WrapReader(r), nil
}

// reader adapts a portable reader to the driver interface.
type reader struct {
	r     *blob.Reader
	attrs driver.ReaderAttributes
}

// WrapReader adapts a portable reader to the driver interface.
func WrapReader(r *blob.Reader) driver.Reader {
	return &reader{r: r, attrs: driver.ReaderAttributes{ContentType: r.ContentType(), ModTime: r.ModTime(), Size: r.Size()}}
}

func (r *reader) Read(p []byte) (int, error)           { return r.r.Read(p) }
func (r *reader) Close() error                         { return r.r.Close() }
func (r *reader) Attributes() *driver.ReaderAttributes { return &r.attrs }
func (r *reader) As(i any) bool                        { return r.r.As(i) }
func (r *reader) WriteTo(w io.Writer) (int64, error)   { return r.r.WriteTo(w) }

var _ io.WriterTo = (*reader)(nil)

// NewTypedWriter forwards to the inner bucket.
func (b *Base) NewTypedWriter(ctx context.Context, key, contentType string, opts *driver.WriterOptions) (driver.Writer, error) {
	return b.Inner.NewWriter(ctx, key, ToWriterOptions(contentType, opts))
}

// ToWriterOptions converts driver writer options to the portable form.
func ToWriterOptions(contentType string, opts *driver.WriterOptions) *blob.WriterOptions {
	return &blob.WriterOptions{
		BufferSize: opts.BufferSize, MaxConcurrency: opts.MaxConcurrency,
		CacheControl: opts.CacheControl, ContentDisposition: opts.ContentDisposition,
		ContentEncoding: opts.ContentEncoding, ContentLanguage: opts.ContentLanguage,
		ContentType: contentType, ContentMD5: opts.ContentMD5, Metadata: opts.Metadata,
		BeforeWrite: opts.BeforeWrite, IfNotExist: opts.IfNotExist,
		DisableContentTypeDetection: true,
	}
}

// Copy forwards to the inner bucket.
func (b *Base) Copy(ctx context.Context, dstKey, srcKey string, opts *driver.CopyOptions) error {
	return b.Inner.Copy(ctx, dstKey, srcKey, &blob.CopyOptions{BeforeCopy: opts.BeforeCopy})
}

// Delete forwards to the inner bucket.
func (b *Base) Delete(ctx context.Context, key string, opts *driver.DeleteOptions) error {
	return b.Inner.DeleteWithOptions(ctx, key, &blob.DeleteOptions{BeforeDelete: opts.BeforeDelete})
}

// SignedURL forwards to the inner bucket.
func (b *Base) SignedURL(ctx context.Context, key string, opts *driver.SignedURLOptions) (string, error) {
	return b.Inner.SignedURL(ctx, key, &blob.SignedURLOptions{
		Expiry: opts.Expiry, Method: opts.Method, ContentType: opts.ContentType,
		EnforceAbsentContentType: opts.EnforceAbsentContentType, BeforeSign: opts.BeforeSign,
	})
}

// Close closes the inner bucket.
func (b *Base) Close() error { return b.Inner.Close() }

// ErrNotImplemented is what a layer returns for a call it cannot pass on.
var ErrNotImplemented = errors.New("not implemented by this layer")
