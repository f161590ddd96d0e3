// Package backend opens the store tapefs mounts: a gocloud.dev/blob *Bucket
// chosen by URL through one URLMux that the program builds. Every scheme,
// gocloud's own and ours, is registered here, so the layers above only ever
// see a *blob.Bucket.
package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tapefs/tapefs/backend/compress"
	"github.com/tapefs/tapefs/backend/filestore"
	"github.com/tapefs/tapefs/backend/metrics"
	"github.com/tapefs/tapefs/backend/retry"
	"github.com/tapefs/tapefs/backend/sqlitestore"
	"github.com/tapefs/tapefs/backend/storeurl"
	"gocloud.dev/blob"
	"gocloud.dev/blob/azureblob"
	"gocloud.dev/blob/gcsblob"
	"gocloud.dev/blob/memblob"
	"gocloud.dev/blob/s3blob"
	"gocloud.dev/gcerrors"
)

// ErrBadURL is returned for a store URL that cannot be used as given.
var ErrBadURL = errors.New("bad store URL")

// ErrUnreachable is returned when the store was opened but does not answer.
var ErrUnreachable = errors.New("store unreachable")

// NewMux returns the URL mux with every scheme tapefs understands, its S3
// connections bounded by DefaultIdleTimeout.
func NewMux() *blob.URLMux { return NewMuxWith(MuxOptions{IdleTimeout: DefaultIdleTimeout}) }

// MuxOptions tune the stores a mux opens.
type MuxOptions struct {
	// IdleTimeout fails a request to an S3 store once its connection has
	// moved no byte, either way, for this long (ErrIdle); 0: no bound.
	IdleTimeout time.Duration
}

// NewMuxWith is NewMux with its options.
func NewMuxWith(o MuxOptions) *blob.URLMux {
	mux := new(blob.URLMux)
	mux.RegisterBucket(filestore.Scheme, filestore.URLOpener{})
	mux.RegisterBucket(memblob.Scheme, &memblob.URLOpener{})
	mux.RegisterBucket(sqlitestore.Scheme, sqlitestore.URLOpener{})
	// The cloud drivers register openers that find credentials through the
	// standard chains (environment, profiles, instance metadata) on gocloud's
	// default mux; we reach them through it rather than re-implementing that.
	mux.RegisterBucket(s3blob.Scheme, s3Opener{idle: o.IdleTimeout})
	for _, scheme := range []string{gcsblob.Scheme, azureblob.Scheme} {
		mux.RegisterBucket(scheme, defaultMuxOpener{})
	}
	return mux
}

type defaultMuxOpener struct{}

func (defaultMuxOpener) OpenBucketURL(ctx context.Context, u *url.URL) (*blob.Bucket, error) {
	return blob.DefaultURLMux().OpenBucketURL(ctx, u)
}

// Layers says which optional layers OpenWith stacks over a store.
type Layers struct {
	// Compress: 0 stacks no compression layer; a positive value stores
	// objects larger than that many bytes zstd-compressed; compress.Off
	// reads compressed objects but writes none compressed.
	Compress int64
	// Metrics, when set, receives Prometheus metrics of every store
	// operation, labelled with Profile.
	Metrics prometheus.Registerer
	Profile string
	// Logger gets a debug record per store operation (with Metrics).
	Logger *slog.Logger
	// Unchecked opens the store without checking that it answers: for a
	// mount that can serve its last listing from the sidecar while the
	// store is unreachable.
	Unchecked bool
}

// Open is OpenWith and no optional layers.
func Open(ctx context.Context, mux *blob.URLMux, rawURL string) (*blob.Bucket, error) {
	return OpenWith(ctx, mux, rawURL, Layers{})
}

// OpenWith parses rawURL, opens the bucket it names, checks that it
// answers, and stacks tapefs's layers over it. Errors name the store (with
// secrets redacted) and say what to fix.
func OpenWith(ctx context.Context, mux *blob.URLMux, rawURL string, layers Layers) (*blob.Bucket, error) {
	u, err := Parse(mux, rawURL)
	if err != nil {
		return nil, err
	}
	b, err := mux.OpenBucketURL(ctx, u)
	if err != nil {
		hint := ""
		if u.Scheme == "file" && strings.Contains(err.Error(), "no such file or directory") {
			hint = " (create the directory, or add ?create_dir=1 to the URL)"
		}
		return nil, fmt.Errorf("%w: cannot open %s: %v%s", ErrBadURL, storeurl.Redact(rawURL), cleanErr(err), hint)
	}
	if !layers.Unchecked {
		ok, err := b.IsAccessible(ctx)
		if err != nil || !ok {
			b.Close()
			return nil, openError(u, rawURL, err)
		}
	}
	out, err := compose(b, layers)
	if err != nil {
		b.Close()
		return nil, err
	}
	return out, nil
}

// ErrNoBucket is returned when the server answers but has no such bucket.
var ErrNoBucket = errors.New("no such bucket")

// ErrAccessDenied is returned when the server refuses the credentials.
var ErrAccessDenied = errors.New("access denied")

// apiError is what the S3 client's errors (smithy-go) say of themselves.
type apiError interface {
	ErrorCode() string
	ErrorMessage() string
}

// openError says why the bucket of u cannot be used: missing, refused, or
// unreachable, with the server's own code and the fix. err is nil when
// the server said only that the bucket is not there.
func openError(u *url.URL, rawURL string, err error) error {
	bucket := fmt.Sprintf("bucket %q", u.Host)
	if u.Scheme == "file" {
		bucket = fmt.Sprintf("directory %q", u.Path)
	}
	var ae apiError
	code, msg := "", ""
	if err != nil && errors.As(err, &ae) {
		code, msg = ae.ErrorCode(), ae.ErrorMessage()
	}
	switch {
	case err == nil || code == "NoSuchBucket":
		return fmt.Errorf("%w: %s does not exist at %s (create it, or correct the name in the URL)", ErrNoBucket, bucket, storeurl.Redact(rawURL))
	case code == "AccessDenied" || code == "SignatureDoesNotMatch" || code == "InvalidAccessKeyId" ||
		code == "XAdminUserNotFound" || code == "InvalidToken" || code == "ExpiredToken" ||
		gcerrors.Code(err) == gcerrors.PermissionDenied:
		why := "the server refused the request"
		if code != "" {
			why = code + ": " + msg
		}
		return fmt.Errorf("%w to %s at %s: %s (check the credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the profile in use)", ErrAccessDenied, bucket, storeurl.Redact(rawURL), why)
	case code == "InvalidBucketName" || code == "AuthorizationHeaderMalformed" || code == "PermanentRedirect" ||
		code == "IllegalLocationConstraintException" || code == "InvalidURI":
		// The server answered, and no retry or wait changes its answer.
		return fmt.Errorf("%w: %s at %s: %s: %s (correct the bucket name, the region or the endpoint in the URL)", ErrBadURL, bucket, storeurl.Redact(rawURL), code, msg)
	case code != "":
		return fmt.Errorf("%w: %s at %s: %s: %s (check the URL and that the server is running)", ErrUnreachable, bucket, storeurl.Redact(rawURL), code, msg)
	}
	return fmt.Errorf("%w: %s at %s: %s (check the URL, the credentials and that the server is running)", ErrUnreachable, bucket, storeurl.Redact(rawURL), cleanErr(err))
}

// Explain says what a failure of a store in use means when the server
// answered with a lasting refusal (the bucket gone, the credentials
// refused), naming the bucket and the fix as at open; any other error,
// which a retry or the server's return may mend, is returned as it is.
func Explain(rawURL string, err error) error {
	var ae apiError
	if err == nil || !errors.As(err, &ae) || errors.Is(err, ErrNoBucket) || errors.Is(err, ErrAccessDenied) {
		return err
	}
	switch ae.ErrorCode() {
	case "NoSuchBucket", "AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken", "ExpiredToken":
	default:
		return err
	}
	u, perr := url.Parse(rawURL)
	if perr != nil {
		return err
	}
	return openError(u, rawURL, err)
}

// compose stacks tapefs's layers over an opened store, in one place, from
// the store up: metrics (what really reaches the store, every attempt),
// retry of transient errors, then compression (so what is retried and
// counted is what the store holds).
func compose(b *blob.Bucket, l Layers) (*blob.Bucket, error) {
	if l.Metrics != nil {
		var err error
		if b, err = metrics.Wrap(b, metrics.Options{Profile: l.Profile, Registerer: l.Metrics, Logger: l.Logger}); err != nil {
			return nil, fmt.Errorf("store metrics: %w", err)
		}
	}
	b = retry.Wrap(b, retry.Options{})
	if l.Compress != 0 {
		b = compress.Wrap(b, compress.Options{Threshold: l.Compress})
	}
	return b, nil
}

// Parse checks the URL's form and scheme without opening anything.
func Parse(mux *blob.URLMux, rawURL string) (*url.URL, error) {
	if strings.TrimSpace(rawURL) == "" {
		return nil, fmt.Errorf("%w: empty URL (e.g. file:///srv/tapes or s3://bucket?region=us-east-1)", ErrBadURL)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: not a URL (%v); examples: file:///srv/tapes, s3://bucket?region=us-east-1", ErrBadURL, errors.Unwrap(err))
	}
	if u.Scheme == "" {
		return nil, fmt.Errorf("%w: %q has no scheme; known schemes: %s", ErrBadURL, storeurl.Redact(rawURL), strings.Join(Schemes(mux), ", "))
	}
	if _, err := url.ParseQuery(u.RawQuery); err != nil {
		return nil, fmt.Errorf("%w: malformed query in %q: %v (escape '%%' as %%25)", ErrBadURL, storeurl.Redact(rawURL), err)
	}
	if !mux.ValidBucketScheme(u.Scheme) {
		return nil, fmt.Errorf("%w: unknown scheme %q in %q; known schemes: %s", ErrBadURL, u.Scheme, storeurl.Redact(rawURL), strings.Join(Schemes(mux), ", "))
	}
	return u, nil
}

// Schemes lists the registered schemes, sorted.
func Schemes(mux *blob.URLMux) []string {
	s := mux.BucketSchemes()
	sort.Strings(s)
	return s
}

// cleanErr shortens gocloud's wrapped error texts to their cause.
func cleanErr(err error) string {
	msg := err.Error()
	if code := gcerrors.Code(err); code == gcerrors.PermissionDenied {
		msg = "access denied: " + msg
	}
	return msg
}

// ListedETag is the ETag in the store's own entry for lo in a listing, or
// "" where the listing has none (gocloud's ListObject carries no ETag). An
// S3 listing has every object's ETag, the one a HEAD of it returns, so a
// reconcile of 2,000 new tapes needs no 4,000 HEAD requests; the layers
// (compress, retry, metrics) pass the entry through.
func ListedETag(lo *blob.ListObject) string {
	var o s3types.Object
	if lo.As(&o) && o.ETag != nil {
		return *o.ETag
	}
	return ""
}

// IfMatch is the options of a range read of the version with the given
// ETag only. An S3 store refuses it (412, gcerrors.FailedPrecondition) once
// the object was replaced, so a reader that began on one version never gets
// bytes of the next; the layers pass it through, and stores other than S3
// ignore it. nil when etag is "".
func IfMatch(etag string) *blob.ReaderOptions {
	if etag == "" {
		return nil
	}
	return &blob.ReaderOptions{BeforeRead: func(as func(any) bool) error {
		var in *s3.GetObjectInput
		if as(&in) {
			in.IfMatch = aws.String(etag)
		}
		return nil
	}}
}
