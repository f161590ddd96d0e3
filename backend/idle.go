package backend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"gocloud.dev/blob"
	"gocloud.dev/blob/s3blob"
)

// DefaultIdleTimeout is the idle bound of NewMux's S3 connections.
const DefaultIdleTimeout = 30 * time.Second

// ErrIdle is what a request to a network store fails with when its
// connection moved no byte, either way, for the idle timeout.
var ErrIdle = errors.New("the store took and sent no data")

// idleError is ErrIdle as a net.Error whose Timeout is true, so that the
// SDK's retryer and the retry layer count it as the transient fault it is.
type idleError struct{ idle time.Duration }

func (e *idleError) Error() string {
	return fmt.Sprintf("%v for %s (bound: --timeout)", ErrIdle, e.idle)
}
func (e *idleError) Timeout() bool   { return true }
func (e *idleError) Temporary() bool { return true }
func (e *idleError) Is(target error) bool {
	return target == ErrIdle || target == os.ErrDeadlineExceeded
}

// idleConn fails once its connection has been silent both ways for idle.
// Every read and every write pushes the deadline of both directions: a
// request body still being sent keeps alive the read that net/http starts
// at once for its response, and a slow response that keeps coming survives.
// What it ends is a server that accepts connections and then says nothing
// (a stopped process, a lost route), which would otherwise hold a read until
// its own timeout and an upload for as long as an upload may take.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetDeadline(time.Now().Add(c.idle)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	return n, c.mapErr(err)
}

func (c *idleConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetDeadline(time.Now().Add(c.idle)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	return n, c.mapErr(err)
}

func (c *idleConn) mapErr(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return &idleError{idle: c.idle}
	}
	return err
}

// idleDial wraps dial so that its connections are idleConns.
func idleDial(dial func(ctx context.Context, network, addr string) (net.Conn, error), idle time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if dial == nil {
		dial = (&net.Dialer{Timeout: idle, KeepAlive: 30 * time.Second}).DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &idleConn{Conn: c, idle: idle}, nil
	}
}

// s3Opener opens s3:// URLs with gocloud's own opener (so every parameter
// and credential chain is gocloud's), then gives the client an HTTP
// transport whose connections fail when idle (idleConn): the AWS SDK sets no
// such bound by default, so a server that stops answering held a close for
// the whole upload timeout. The client also does not log, at WARN, every
// whole read of an object uploaded in parts (which has no whole-object
// checksum to validate), and sends uploads to a loopback endpoint unsigned
// (unsignedLoopbackPayload). It keeps up to storeConns idle connections
// to the server instead of the SDK's 10.
type s3Opener struct{ idle time.Duration }

// storeConns is how many idle connections to one S3 endpoint a client
// keeps for the next request. It is above the most requests tapefs runs at
// once on one store (32 index workers by default, and read-ahead and
// upload parts beside them): with the SDK's 10, every request beyond the
// tenth at a time closed its connection when done, so indexing 2,000 tapes
// over a server that keeps connections alive still dialed 1,000 of them.
const storeConns = 64

func (o s3Opener) OpenBucketURL(ctx context.Context, u *url.URL) (*blob.Bucket, error) {
	b, err := blob.DefaultURLMux().OpenBucketURL(ctx, u)
	if err != nil {
		return b, err
	}
	var c *s3.Client
	if !b.As(&c) {
		return b, nil
	}
	opts := c.Options()
	if _, ok := opts.HTTPClient.(*awshttp.BuildableClient); !ok {
		return b, nil // a client of the caller's own: left as it is
	}
	// After s3.New's own resolution of the client: a defaults mode
	// (AWS_DEFAULTS_MODE, defaults_mode in ~/.aws/config) sets the
	// transport's dialer there, which would drop a wrapper set before.
	tune := func(so *s3.Options) {
		// A GET of an object uploaded in parts has no whole-object
		// checksum to validate; the SDK would log "Skipped validation of
		// multipart checksum" at WARN for every such read of a tape.
		so.DisableLogOutputChecksumValidationSkipped = true
		if so.RequestChecksumCalculation == aws.RequestChecksumCalculationWhenSupported {
			so.APIOptions = append(so.APIOptions, unsignedLoopbackPayload)
		}
		if bc, ok := so.HTTPClient.(*awshttp.BuildableClient); ok {
			so.HTTPClient = bc.WithTransportOptions(func(t *http.Transport) {
				t.MaxIdleConnsPerHost = max(t.MaxIdleConnsPerHost, storeConns)
				t.MaxIdleConns = max(t.MaxIdleConns, storeConns)
				if o.idle <= 0 {
					return
				}
				t.DialContext = idleDial(t.DialContext, o.idle)
				// Retire pooled connections before their waiting read
				// fails, so a request never picks one that is about to.
				t.IdleConnTimeout = o.idle / 2
			})
		}
	}
	// The options gocloud's opener reads from the URL for the bucket rather
	// than the client (it has checked them already).
	so := &s3blob.Options{RequestChecksumCalculation: opts.RequestChecksumCalculation}
	q := u.Query()
	if v := q.Get("ssetype"); v != "" {
		for _, t := range s3types.ServerSideEncryptionAes256.Values() {
			if strings.EqualFold(string(t), v) {
				so.EncryptionType = t
			}
		}
	}
	so.KMSEncryptionID = q.Get("kmskeyid")
	b.Close()
	return s3blob.OpenBucket(ctx, s3.New(opts, tune), u.Host, so)
}
