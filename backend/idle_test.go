package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gocloud.dev/blob"
)

// silentServer accepts connections and reads what they send, but never
// answers: a hung process, as the kernel still accepts for it.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	return l.Addr().String()
}

func idleClient(idle time.Duration) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: idleDial(nil, idle)}}
}

func TestIdleConnFailsASilentServer(t *testing.T) {
	addr := silentServer(t)
	start := time.Now()
	_, err := idleClient(200 * time.Millisecond).Get("http://" + addr + "/x")
	if !errors.Is(err, ErrIdle) {
		t.Fatalf("GET from a silent server: %v, want ErrIdle", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("ErrIdle is not a net.Error with Timeout(): %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("failed after %s, want about 200ms", took)
	}
}

// A body the server takes slowly keeps the connection alive: the read that
// net/http starts for the response at once is pushed on by every write.
func TestIdleConnSurvivesASlowUpload(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const size = 1 << 20
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 256<<10)
		n := 0
		for {
			time.Sleep(40 * time.Millisecond) // the body takes over a second
			m, err := r.Body.Read(buf)
			n += m
			if err != nil {
				break
			}
		}
		if n != size {
			http.Error(w, "short body", http.StatusBadRequest)
		}
	})}
	go srv.Serve(smallBuffers{l})
	defer srv.Close()

	// Small socket buffers on both ends, so that what is written is what
	// the server has taken: the bound counts from the last byte moved, and
	// bytes parked in megabytes of loopback buffers would hide that.
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			c.(*net.TCPConn).SetWriteBuffer(32 << 10)
		}
		return c, err
	}
	client := &http.Client{Transport: &http.Transport{DialContext: idleDial(dial, 300*time.Millisecond)}}
	start := time.Now()
	resp, err := client.Post("http://"+l.Addr().String()+"/up", "application/octet-stream", bytes.NewReader(make([]byte, size)))
	if err != nil {
		t.Fatalf("a slow but moving upload failed after %s: %v", time.Since(start), err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if took := time.Since(start); took < 600*time.Millisecond {
		t.Errorf("the upload took %s: too fast to show that the idle bound was pushed on", took)
	}
}

// The S3 opener gives the client the idle bound: opening a bucket on a
// silent endpoint fails with ErrIdle rather than waiting for the SDK.
// A defaults mode, which sets the transport's dialer in s3.New, keeps it.
func TestS3OpenerIdle(t *testing.T) {
	for _, mode := range []string{"", "standard", "in-region"} {
		t.Run("defaults_mode="+mode, func(t *testing.T) {
			t.Setenv("AWS_ACCESS_KEY_ID", "k")
			t.Setenv("AWS_SECRET_ACCESS_KEY", "s")
			t.Setenv("AWS_DEFAULTS_MODE", mode)
			addr := silentServer(t)
			mux := NewMuxWith(MuxOptions{IdleTimeout: 200 * time.Millisecond})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			_, err := Open(ctx, mux, "s3://b?endpoint=http://"+addr+"&use_path_style=true&region=us-east-1")
			if err == nil || !errors.Is(err, ErrIdle) && !bytes.Contains([]byte(err.Error()), []byte(ErrIdle.Error())) {
				t.Fatalf("open on a silent endpoint: %v, want ErrIdle", err)
			}
			if took := time.Since(start); took > 15*time.Second {
				t.Errorf("failed after %s", took)
			}
		})
	}
}

// smallBuffers gives accepted connections a small receive buffer.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		c.(*net.TCPConn).SetReadBuffer(32 << 10)
	}
	return c, err
}

// TestS3OpenerQuietChecksumSkips: the client an s3:// URL opens does not log
// "Skipped validation of multipart checksum" at WARN for every whole read
// of an object uploaded in parts (indexing a large tape).
func TestS3OpenerQuietChecksumSkips(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "k")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s")
	u, err := url.Parse("s3://b?endpoint=http://127.0.0.1:1&use_path_style=true&region=us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s3Opener{idle: time.Second}.OpenBucketURL(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var c *s3.Client
	if !b.As(&c) {
		t.Fatal("not an S3 bucket")
	}
	if !c.Options().DisableLogOutputChecksumValidationSkipped {
		t.Error("the S3 client logs every skipped multipart checksum validation")
	}
}

// TestS3OpenerKeepsConnections: after a burst of as many reads at once as
// the indexer runs (32), the next burst finds every connection it needs
// idle in the client's pool and dials none. With the SDK's pool of 10, 22
// of them were closed after each request and dialed again for the next.
func TestS3OpenerKeepsConnections(t *testing.T) {
	const burst = 32
	t.Setenv("AWS_ACCESS_KEY_ID", "k")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s")
	var (
		mu      sync.Mutex
		dialed  int
		waiting int
		arrived = make(chan struct{})
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Hold every request until the whole burst is in, so that the burst
		// has one connection per request open at once.
		mu.Lock()
		if waiting++; waiting == burst {
			close(arrived)
		}
		ch := arrived
		mu.Unlock()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
		}
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "tapes")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			dialed++
			mu.Unlock()
		}
	}
	srv.Start()
	defer srv.Close()
	b := openTestS3(t, srv.URL)
	for round := range 2 {
		mu.Lock()
		before := dialed
		waiting, arrived = 0, make(chan struct{})
		mu.Unlock()
		var wg sync.WaitGroup
		for i := range burst {
			wg.Go(func() {
				if got, err := b.ReadAll(context.Background(), fmt.Sprintf("t%d.jsonl", i)); err != nil || string(got) != "tapes" {
					t.Errorf("read %d: %q, %v", i, got, err)
				}
			})
		}
		wg.Wait()
		mu.Lock()
		n := dialed - before
		mu.Unlock()
		if want := []int{burst, 0}[round]; n != want {
			t.Errorf("burst %d of %d reads dialed %d connections, want %d", round+1, burst, n, want)
		}
	}
}

// openTestS3 opens bucket b at an S3 endpoint served by a test server,
// through the opener NewMux registers; the test closes it at its end.
func openTestS3(t *testing.T, endpoint string) *blob.Bucket {
	t.Helper()
	u, err := url.Parse("s3://b?endpoint=" + endpoint + "&use_path_style=true&region=us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s3Opener{idle: 5 * time.Second}.OpenBucketURL(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}
