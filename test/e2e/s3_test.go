package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gocloud.dev/blob"
	"gocloud.dev/blob/s3blob"
)

// S3Server is a real versitygw process serving one fresh bucket from a
// directory (the posix backend: bucket B is the directory Root/B).
type S3Server struct {
	Addr       string // 127.0.0.1:PORT
	Root       string // versitygw's posix root
	BucketName string
	AccessKey  string
	SecretKey  string
	// Bucket is a gocloud s3blob bucket on the server, for seeding and
	// inspecting the store directly from the test.
	Bucket *blob.Bucket

	bin    string
	log    string
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has exited
	paused bool          // stopped by Pause (SIGSTOP)
}

const s3Region = "us-east-1"

// versitygwPath finds the versitygw binary: $TAPEFS_VERSITYGW, the tools
// cache scripts/install-versitygw.sh installs into, then $PATH.
func versitygwPath() (string, error) {
	if p := os.Getenv("TAPEFS_VERSITYGW"); p != "" {
		return p, nil
	}
	if toolsDir != "" {
		p := filepath.Join(toolsDir, "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("versitygw not found (run scripts/install-versitygw.sh, or make test, or set TAPEFS_VERSITYGW)")
}

// startS3 starts versitygw on a free loopback port with a fresh root
// directory and an empty bucket; it is stopped when the test ends.
func startS3(t *testing.T) *S3Server {
	t.Helper()
	bin, err := versitygwPath()
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	s := &S3Server{
		Addr:       "127.0.0.1:" + freePort(t),
		Root:       filepath.Join(base, "root"),
		BucketName: "tapes",
		AccessKey:  "tapefs-test-access",
		SecretKey:  "tapefs-test-secret-0123456789",
		bin:        bin,
		log:        filepath.Join(base, "versitygw.log"),
	}
	if err := os.MkdirAll(filepath.Join(s.Root, s.BucketName), 0o755); err != nil {
		t.Fatal(err)
	}
	s.Start(t)
	t.Cleanup(func() {
		if t.Failed() {
			if data, err := os.ReadFile(s.log); err == nil && len(data) > 0 {
				t.Logf("versitygw log:\n%s", tail(string(data), 8000))
			}
		}
		s.Stop(t)
		if s.Bucket != nil {
			s.Bucket.Close()
		}
	})

	client := s3.New(s3.Options{
		Region:       s3Region,
		BaseEndpoint: aws.String("http://" + s.Addr),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
	s.Bucket, err = s3blob.OpenBucket(context.Background(), client, s.BucketName, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// URL is the --backend URL of the server's bucket.
func (s *S3Server) URL() string {
	q := url.Values{}
	q.Set("endpoint", "http://"+s.Addr)
	q.Set("use_path_style", "true")
	q.Set("region", s3Region)
	return "s3://" + s.BucketName + "?" + q.Encode()
}

// Env is the environment a tapefs daemon needs to reach the server.
func (s *S3Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_REGION=" + s3Region,
	}
}

// Start (re)starts the server on its address and root, and waits until it
// answers.
func (s *S3Server) Start(t *testing.T) {
	t.Helper()
	if s.cmd != nil {
		t.Fatalf("versitygw is already running")
	}
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// Connections kept alive, as AWS S3 and other S3 servers keep them
	// (versitygw's default closes each after one request): the suite then
	// also covers pooled connections to a server that stops and starts.
	cmd := exec.Command(s.bin, "--port", s.Addr, "--keep-alive", "posix", s.Root)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting versitygw: %v", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(s.done)

	ready := waitFor(30*time.Second, func() bool {
		select {
		case <-s.done:
			return true
		default:
		}
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	select {
	case <-s.done:
		data, _ := os.ReadFile(s.log)
		s.cmd = nil
		t.Fatalf("versitygw exited at start (%v):\n%s", cmd.ProcessState, data)
	default:
	}
	if !ready {
		t.Fatalf("versitygw did not listen on %s within 30s", s.Addr)
	}
}

// Stop stops the server (SIGTERM, then SIGKILL) and waits until it is gone.
// The data stays in Root; Start serves it again.
func (s *S3Server) Stop(t *testing.T) {
	t.Helper()
	if s.cmd == nil {
		return
	}
	s.Resume(t)
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Pause freezes the server (SIGSTOP): it keeps its port, and the kernel
// still accepts connections to it, but it answers nothing, as a server that
// hangs or a peer behind a lost route does. Resume lets it go on.
func (s *S3Server) Pause(t *testing.T) {
	t.Helper()
	if s.cmd == nil || s.paused {
		t.Fatalf("versitygw is not running, or already paused")
	}
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	s.paused = true
}

// Resume continues a paused server (SIGCONT).
func (s *S3Server) Resume(t *testing.T) {
	t.Helper()
	if s.cmd == nil || !s.paused {
		return
	}
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	s.paused = false
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// TestS3ServerSmoke checks the harness's S3 server itself with gocloud's
// s3blob, through the same URL and environment a tapefs daemon gets: write,
// list, range-read, delete, and a stop/start cycle.
func TestS3ServerSmoke(t *testing.T) {
	s := startS3(t)
	ctx := context.Background()

	data := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	keys := []string{"a.jsonl", "dir/sub/b.json", "odd names/ü %#?.jsonl"}
	for _, k := range keys {
		if err := s.Bucket.WriteAll(ctx, k, data, nil); err != nil {
			t.Fatalf("write %q: %v", k, err)
		}
	}
	if got := storeKeys(t, s.Bucket); fmt.Sprint(got) != fmt.Sprint(sortedCopy(keys)) {
		t.Errorf("listing = %q, want %q", got, sortedCopy(keys))
	}
	r, err := s.Bucket.NewRangeReader(ctx, "a.jsonl", 4096, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	part, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(part, data[4096:4196]) {
		t.Errorf("range read returned the wrong bytes")
	}

	// The URL and environment the daemon gets work with gocloud's own opener.
	for _, kv := range s.Env() {
		k, v, _ := cutEnv(kv)
		t.Setenv(k, v)
	}
	b, err := blob.OpenBucket(ctx, s.URL())
	if err != nil {
		t.Fatalf("blob.OpenBucket(%s): %v", s.URL(), err)
	}
	defer b.Close()
	if got, err := b.ReadAll(ctx, "dir/sub/b.json"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read through the URL opener: %v", err)
	}

	// Stop: requests fail (promptly); Start: the same data is back.
	s.Stop(t)
	ctxShort, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := s.Bucket.ReadAll(ctxShort, "a.jsonl"); err == nil {
		t.Errorf("read succeeded while the server was stopped")
	}
	s.Start(t)
	if got, ok := storeRead(t, s.Bucket, "a.jsonl"); !ok || !bytes.Equal(got, data) {
		t.Errorf("after restart: a.jsonl missing or changed")
	}
	if err := s.Bucket.Delete(ctx, "a.jsonl"); err != nil {
		t.Fatal(err)
	}
	if _, ok := storeRead(t, s.Bucket, "a.jsonl"); ok {
		t.Errorf("a.jsonl still there after delete")
	}
}

func cutEnv(kv string) (string, string, bool) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return kv, "", false
}
