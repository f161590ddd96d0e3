package backend

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// putRecorder is an S3 endpoint that answers every request with 200 and
// keeps the headers and body of the last PutObject.
type putRecorder struct {
	mu     sync.Mutex
	header http.Header
	body   []byte
}

func (p *putRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.Method == http.MethodPut {
		p.mu.Lock()
		p.header, p.body = r.Header.Clone(), body
		p.mu.Unlock()
	}
	w.Header().Set("ETag", `"e"`)
}

func (p *putRecorder) last() (http.Header, []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.header, p.body
}

// checkPayload checks how the recorded PutObject sent its body: unsigned
// with a CRC32 checksum among its signed headers, or signed with its SHA-256.
func checkPayload(t *testing.T, rec *putRecorder, wantUnsigned bool) {
	t.Helper()
	h, body := rec.last()
	if h == nil {
		t.Fatal("no PutObject reached the server")
	}
	sha := h.Get("X-Amz-Content-Sha256")
	if !wantUnsigned {
		if want := fmt.Sprintf("%x", sha256.Sum256(body)); sha != want {
			t.Errorf("X-Amz-Content-Sha256 = %q, want the body's SHA-256 %s", sha, want)
		}
		return
	}
	if sha != "UNSIGNED-PAYLOAD" {
		t.Errorf("X-Amz-Content-Sha256 = %q, want UNSIGNED-PAYLOAD", sha)
	}
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc32.ChecksumIEEE(body))
	if got, want := h.Get("X-Amz-Checksum-Crc32"), base64.StdEncoding.EncodeToString(sum[:]); got != want {
		t.Errorf("X-Amz-Checksum-Crc32 = %q, want %q (the body's)", got, want)
	}
	if auth := h.Get("Authorization"); !strings.Contains(auth, "x-amz-checksum-crc32") {
		t.Errorf("the checksum is not a signed header: %s", auth)
	}
}

// An upload through the s3:// opener to a server on 127.0.0.1 goes
// unsigned, with its CRC32 checksum signed in its place; unless the
// checksum is configured away (when_required), which leaves the body
// nothing to guard it but its signed SHA-256.
func TestS3OpenerLoopbackUploadUnsigned(t *testing.T) {
	for _, tc := range []struct {
		calc         string
		wantUnsigned bool
	}{{"", true}, {"when_supported", true}, {"when_required", false}} {
		t.Run("checksum_calculation="+tc.calc, func(t *testing.T) {
			t.Setenv("AWS_REQUEST_CHECKSUM_CALCULATION", tc.calc)
			loopbackUpload(t, tc.wantUnsigned)
		})
	}
}

func loopbackUpload(t *testing.T, wantUnsigned bool) {
	t.Setenv("AWS_ACCESS_KEY_ID", "k")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s")
	rec := &putRecorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	b := openTestS3(t, srv.URL)
	if err := b.WriteAll(context.Background(), "t.jsonl", bytes.Repeat([]byte("tape "), 1000), nil); err != nil {
		t.Fatal(err)
	}
	checkPayload(t, rec, wantUnsigned)
}

// The same upload to any other plain-HTTP endpoint keeps the SHA-256 of
// its body signed: there is a network between client and server.
func TestUnsignedPayloadOnlyOnLoopback(t *testing.T) {
	rec := &putRecorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	// Every host name dials the recorder: the request still names its host.
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	_, port, _ := net.SplitHostPort(addr)
	for _, tc := range []struct {
		host         string
		wantUnsigned bool
	}{
		{"127.0.0.1", true},
		{"localhost", true},
		{"s3.example.com", false},
		{"10.1.2.3", false},
	} {
		t.Run(tc.host, func(t *testing.T) {
			c := s3.New(s3.Options{
				Region:       "us-east-1",
				Credentials:  credentials.NewStaticCredentialsProvider("k", "s", ""),
				BaseEndpoint: aws.String("http://" + net.JoinHostPort(tc.host, port)),
				UsePathStyle: true,
				// The default of a client from the SDK's config loader.
				RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported,
				HTTPClient:                 &http.Client{Transport: &http.Transport{DialContext: dial}},
				APIOptions:                 append([]func(*middleware.Stack) error{}, unsignedLoopbackPayload),
			})
			_, err := c.PutObject(context.Background(), &s3.PutObjectInput{
				Bucket: aws.String("b"), Key: aws.String("k"), Body: bytes.NewReader([]byte("frame\n")),
			})
			if err != nil {
				t.Fatal(err)
			}
			checkPayload(t, rec, tc.wantUnsigned)
		})
	}
}

func TestUnsignedBodyOK(t *testing.T) {
	for _, tc := range []struct {
		op, url string
		want    bool
	}{
		{"PutObject", "http://127.0.0.1:9000/b/k", true},
		{"UploadPart", "http://[::1]:9000/b/k", true},
		{"UploadPart", "http://127.8.0.1/b/k", true},
		{"PutObject", "http://localhost:9000/b/k", true},
		{"PutObject", "http://s3.localhost:9000/b/k", true},
		{"PutObject", "http://192.168.1.5:9000/b/k", false},
		{"PutObject", "http://minio.lan/b/k", false},
		{"PutObject", "http://localhost.example.com/b/k", false},
		{"PutObject", "https://127.0.0.1/b/k", false}, // the SDK's own choice over TLS
		{"GetObject", "http://127.0.0.1/b/k", false},
		{"CompleteMultipartUpload", "http://127.0.0.1/b/k", false},
	} {
		req := smithyhttp.NewStackRequest().(*smithyhttp.Request)
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		req.URL = u
		if got := unsignedBodyOK(tc.op, req); got != tc.want {
			t.Errorf("unsignedBodyOK(%s, %s) = %v, want %v", tc.op, tc.url, got, tc.want)
		}
	}
}
