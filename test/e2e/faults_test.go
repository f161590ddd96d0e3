package e2e

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Tests of the errors a real S3 server sends when it is overloaded, broken
// or refusing: versitygw does not throttle or fail on demand, so a proxy in
// front of it answers chosen requests with the S3 error itself and passes
// every other one to the server.

// s3Fault is the S3 error a faultProxy answers a request with; or, with
// CutAfter, the server's own answer cut off: the proxy sends its headers
// and the first CutAfter bytes of its body, then drops the connection, as
// a server that crashes or a network that fails mid-transfer does.
type s3Fault struct {
	Status   int
	Code     string // the S3 error code, e.g. SlowDown
	Message  string
	CutAfter int64
	// CutUploadAfter: the proxy reads this many bytes of the request's
	// body, then drops the connection (an upload that breaks off).
	CutUploadAfter int64
	// Delay: the proxy holds the request this long (or until the client
	// gives up on it), then passes it on: a slow server. The proxy's log
	// has the request from when it arrived.
	Delay time.Duration
	// Hold: the proxy holds the request until Hold is closed (or the
	// client gives up on it), then passes it on.
	Hold <-chan struct{}
}

// cutWriter passes on the first n bytes of a body and fails after them.
type cutWriter struct {
	http.ResponseWriter
	n int64
}

var errCut = fmt.Errorf("fault proxy: body cut off")

func (w *cutWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > w.n {
		m, _ := w.ResponseWriter.Write(p[:w.n])
		w.n -= int64(m)
		if f, ok := w.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		return m, errCut // the reverse proxy then aborts the connection
	}
	w.n -= int64(len(p))
	return w.ResponseWriter.Write(p)
}

func (w *cutWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// faultRule decides, for each request in turn, whether the proxy answers it
// with a fault (non-nil) or passes it on. n is how many requests with the
// same method and path the proxy has seen before this one since the rule
// was set.
type faultRule func(r *http.Request, n int) *s3Fault

// proxied is one request the proxy saw, and what it answered.
type proxied struct {
	Method, Path string
	Status       int
	Injected     bool
	At           time.Time
}

// faultProxy is a reverse proxy to an S3Server on its own loopback port.
// The Host header goes through unchanged, so the SigV4 signature, made for
// the proxy's address, still verifies at the server.
type faultProxy struct {
	Addr string

	mu   sync.Mutex
	rule faultRule
	seen map[string]int // method+path → requests since the rule was set
	log  []proxied
}

func startFaultProxy(t *testing.T, srv *S3Server) *faultProxy {
	t.Helper()
	target, err := url.Parse("http://" + srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{Addr: ln.Addr().String(), seen: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1 // stream bodies as they come
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := p.decide(r)
		if f != nil && (f.Delay > 0 || f.Hold != nil) {
			p.record(r, 0, true) // when it arrived: it is held from now
			var after <-chan time.Time
			if f.Delay > 0 {
				after = time.After(f.Delay)
			}
			select {
			case <-after:
				rp.ServeHTTP(w, r)
			case <-f.Hold:
				rp.ServeHTTP(w, r)
			case <-r.Context().Done():
			}
			return
		}
		if f != nil && f.CutUploadAfter > 0 {
			p.record(r, 0, true)
			io.CopyN(io.Discard, r.Body, f.CutUploadAfter)
			panic(http.ErrAbortHandler) // the server drops the connection
		}
		if f != nil && f.CutAfter > 0 {
			sw := &statusWriter{ResponseWriter: &cutWriter{ResponseWriter: w, n: f.CutAfter}, status: http.StatusOK}
			defer func() { p.record(r, sw.status, true) }()
			rp.ServeHTTP(sw, r)
			return
		}
		if f != nil {
			p.record(r, f.Status, true)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(f.Status)
			if r.Method != http.MethodHead {
				fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message><Resource>%s</Resource><RequestId>fault-proxy</RequestId></Error>`,
					f.Code, f.Message, r.URL.Path)
			}
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		rp.ServeHTTP(sw, r)
		p.record(r, sw.status, false)
	})}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return p
}

// SetRule makes rule decide from now on (nil: pass everything on) and
// starts counting requests afresh.
func (p *faultProxy) SetRule(rule faultRule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rule, p.seen = rule, map[string]int{}
}

func (p *faultProxy) decide(r *http.Request) *s3Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	id := r.Method + " " + r.URL.Path
	n := p.seen[id]
	p.seen[id] = n + 1
	if p.rule == nil {
		return nil
	}
	return p.rule(r, n)
}

func (p *faultProxy) record(r *http.Request, status int, injected bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, proxied{Method: r.Method, Path: r.URL.Path, Status: status, Injected: injected, At: time.Now()})
}

// Requests returns what the proxy saw since mark (an index into its log;
// Mark returns the current one).
func (p *faultProxy) Requests(mark int) []proxied {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]proxied(nil), p.log[mark:]...)
}

// Injected is how many requests since mark the proxy answered with a
// fault.
func (p *faultProxy) Injected(mark int) int {
	n := 0
	for _, r := range p.Requests(mark) {
		if r.Injected {
			n++
		}
	}
	return n
}

func (p *faultProxy) Mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.log)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// proxiedStore is an S3 store reached through a faultProxy.
type proxiedStore struct {
	*s3Store
	proxy *faultProxy
}

func newProxiedStore(t *testing.T) *proxiedStore {
	t.Helper()
	st := newS3Store(t).(*s3Store)
	return &proxiedStore{s3Store: st, proxy: startFaultProxy(t, st.srv)}
}

func (s *proxiedStore) URL() string {
	q := url.Values{}
	q.Set("endpoint", "http://"+s.proxy.Addr)
	q.Set("use_path_style", "true")
	q.Set("region", s3Region)
	return "s3://" + s.srv.BucketName + "?" + q.Encode()
}

// objectPath is the request path of key in the bucket (path-style).
func (s *proxiedStore) objectPath(key string) string {
	return "/" + s.srv.BucketName + "/" + key
}

// firstTries fails the first n requests of every object (of the methods
// given) with fault, and passes the rest on: what an overloaded server
// does to a client that retries.
func firstTries(n int, fault s3Fault, methods ...string) faultRule {
	return func(r *http.Request, seen int) *s3Fault {
		for _, m := range methods {
			if r.Method == m && seen < n {
				return &fault
			}
		}
		return nil
	}
}

var (
	slowDown      = s3Fault{Status: http.StatusServiceUnavailable, Code: "SlowDown", Message: "Please reduce your request rate."}
	internalError = s3Fault{Status: http.StatusInternalServerError, Code: "InternalError", Message: "We encountered an internal error. Please try again."}
	accessDenied  = s3Fault{Status: http.StatusForbidden, Code: "AccessDenied", Message: "Access Denied"}
)

// retryGaps is, for every request the proxy answered with a fault, how
// long the client waited before it sent the same request again.
func retryGaps(reqs []proxied) []time.Duration {
	var gaps []time.Duration
	last := map[string]proxied{}
	for _, r := range reqs {
		id := r.Method + " " + r.Path
		if prev, ok := last[id]; ok && prev.Injected {
			gaps = append(gaps, r.At.Sub(prev.At))
		}
		last[id] = r
	}
	return gaps
}

// checkBackoff fails the test unless the retries of what waited: the median
// of gaps (each drawn at random up to a growing bound by the SDK's
// backoff) is far above the millisecond of a retry sent at once.
func checkBackoff(t *testing.T, what string, gaps []time.Duration) {
	t.Helper()
	t.Logf("%s: waits before retrying a fault: %v", what, gaps)
	if len(gaps) == 0 {
		t.Errorf("%s: no fault was retried", what)
		return
	}
	sorted := append([]time.Duration(nil), gaps...)
	slices.Sort(sorted)
	if med := sorted[len(sorted)/2]; med < 20*time.Millisecond {
		t.Errorf("%s: the median wait before a retry is %s: faults are retried without backing off", what, med)
	}
}

// countFor returns how many of reqs went to path, and how many of those
// the proxy answered with a fault.
func countFor(reqs []proxied, method, path string) (all, injected int) {
	for _, r := range reqs {
		if r.Method == method && r.Path == path {
			all++
			if r.Injected {
				injected++
			}
		}
	}
	return all, injected
}

// TestRemoteTransientErrorsRetried: a server that throttles (503 SlowDown)
// or fails (500 InternalError) the first tries of every request, or
// breaks off the first try of every upload. The mount's first listing and
// indexing, cold reads (cat, grep) and uploads (a small file and a
// streamed multipart one) all succeed with the right bytes, and the proxy
// shows the faults were met and retried.
func TestRemoteTransientErrorsRetried(t *testing.T) {
	t.Parallel() // it mostly waits out its own server's timeouts
	st := newProxiedStore(t)
	tapes := map[string]genTape{}
	files := map[string][]byte{}
	for i := range 4 {
		g := newTape(int64(700+i), 60)
		key := fmt.Sprintf("busy/t%d.jsonl", i)
		tapes[key] = g
		files[key] = g.Data
		files[strings.TrimSuffix(key, ".jsonl")+".meta.json"] = g.Meta
	}
	st.Seed(t, files)

	// The listing and the indexing's reads meet throttling first.
	st.proxy.SetRule(firstTries(1, slowDown, http.MethodGet))
	mark := st.proxy.Mark()
	m := mount(t, st)
	recs := lsJSON(t, st)
	for key, g := range tapes {
		rec, ok := recs[key]
		if !ok {
			t.Errorf("%s not indexed through a throttling server", key)
			continue
		}
		checkRecord(t, rec, g.Want(key))
	}
	checkBackoff(t, "mount", retryGaps(st.proxy.Requests(mark)))
	if injected := st.proxy.Injected(mark); injected < len(files) {
		t.Errorf("the proxy throttled %d requests while mounting, want at least %d (one per object): the rule did not apply", injected, len(files))
	}

	// Cold reads: every GET is throttled or fails twice before it goes
	// through (two keys each way).
	st.proxy.SetRule(func(r *http.Request, n int) *s3Fault {
		if r.Method != http.MethodGet || n >= 2 || !strings.HasPrefix(r.URL.Path, st.objectPath("busy/t")) {
			return nil
		}
		if strings.HasSuffix(r.URL.Path, "0.jsonl") || strings.HasSuffix(r.URL.Path, "2.jsonl") {
			return &internalError
		}
		return &slowDown
	})
	mark = st.proxy.Mark()
	for key, g := range tapes {
		if got, ok := catBytes(t, m.Path(key)); !ok || got != string(g.Data) {
			t.Errorf("cat %s through a failing server: ok=%v, %d bytes, want %d", key, ok, len(got), len(g.Data))
		}
	}
	grep := run(t, "sh", "-c", "cd "+shellQuote([]string{m.Path("busy")})+` && grep -l '"jsonrpc"' *.jsonl`)
	if n := len(strings.Fields(grep)); n != len(tapes) {
		t.Errorf("grep -l found %d tapes, want %d:\n%s", n, len(tapes), grep)
	}
	reqs := st.proxy.Requests(mark)
	checkBackoff(t, "cold reads", retryGaps(reqs))
	for key := range tapes {
		all, inj := countFor(reqs, http.MethodGet, st.objectPath(key))
		if inj != 2 || all < 3 {
			t.Errorf("GET %s: %d requests, %d of them faults; want the 2 faults retried and a request that succeeded", key, all, inj)
		}
	}

	// Uploads: the first try of every PUT (a whole object or one part of a
	// multipart upload) fails; close still returns 0 and the store holds
	// the bytes.
	st.proxy.SetRule(firstTries(1, internalError, http.MethodPut))
	mark = st.proxy.Mark()
	src := t.TempDir()
	small, large := newTape(720, 40), bigTape(20<<20)
	uploads := map[string][]byte{"up/small.jsonl": small.Data, "up/large.jsonl": large.Data}
	for key, data := range uploads {
		p := filepath.Join(src, filepath.Base(key))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(m.Path("up"), 0o755); err != nil {
			t.Fatal(err)
		}
		if r := try(t, "cp", p, m.Path(key)); r.Code != 0 {
			t.Errorf("cp to %s through a failing server:\n%s", key, r)
		}
	}
	t.Logf("uploads: waits before retrying a fault: %v", retryGaps(st.proxy.Requests(mark)))
	for key, data := range uploads {
		got, ok := storeRead(t, st.Bucket(), key)
		if !ok || !bytes.Equal(got, data) {
			t.Errorf("%s in the store after cp: present=%v, %d bytes, want %d", key, ok, len(got), len(data))
		}
		all, inj := countFor(st.proxy.Requests(mark), http.MethodPut, st.objectPath(key))
		if inj == 0 || all <= inj {
			t.Errorf("PUT %s: %d requests, %d faults; want the faults met and retried", key, all, inj)
		}
	}
	if p := pendingKeys(t, m); len(p) != 0 {
		t.Errorf("pending uploads after every close succeeded: %q", p)
	}

	// The same uploads again, with the first try of every PUT broken off
	// after 64 KiB of its body: close still returns 0, and the store holds
	// the exact bytes.
	st.proxy.SetRule(firstTries(1, s3Fault{CutUploadAfter: 64 << 10}, http.MethodPut))
	mark = st.proxy.Mark()
	for key := range uploads {
		dst := strings.Replace(key, "up/", "up/again-", 1)
		if r := try(t, "cp", filepath.Join(src, filepath.Base(key)), m.Path(dst)); r.Code != 0 {
			t.Errorf("cp to %s with uploads broken off:\n%s", dst, r)
		}
	}
	for key, data := range uploads {
		dst := strings.Replace(key, "up/", "up/again-", 1)
		if got, ok := storeRead(t, st.Bucket(), dst); !ok || !bytes.Equal(got, data) {
			t.Errorf("%s in the store after cp: present=%v, %d bytes, want %d", dst, ok, len(got), len(data))
		}
		if all, inj := countFor(st.proxy.Requests(mark), http.MethodPut, st.objectPath(dst)); inj == 0 || all <= inj {
			t.Errorf("PUT %s: %d requests, %d broken off; want the breaks met and retried", dst, all, inj)
		}
	}
}

// TestRemotePermanentErrorsFailAtOnce: a server that starts refusing the
// mount's credentials (403 AccessDenied). A cold read fails with EACCES
// after one request, not after retries; a write's close fails with EIO, as
// every upload that did not reach the store does, and keeps the data,
// which goes up once the server accepts again. A new mount is
// refused at once with a message naming the bucket and the cause.
func TestRemotePermanentErrorsFailAtOnce(t *testing.T) {
	t.Parallel() // it mostly waits out its own server's timeouts
	st := newProxiedStore(t)
	g := newTape(740, 40)
	m := mountFiles(t, st, map[string][]byte{"deny/t.jsonl": g.Data})

	st.proxy.SetRule(func(r *http.Request, n int) *s3Fault { return &accessDenied })
	mark := st.proxy.Mark()
	start := time.Now()
	r := try(t, "cat", m.Path("deny/t.jsonl"))
	took := time.Since(start)
	if r.Code == 0 || !strings.Contains(r.Stderr, "Permission denied") {
		t.Errorf("a cold read with the credentials refused should fail with EACCES:\n%s", r)
	}
	all, _ := countFor(st.proxy.Requests(mark), http.MethodGet, st.objectPath("deny/t.jsonl"))
	if all != 1 {
		t.Errorf("a read refused with 403 sent %d GETs, want 1: a permanent error must not be retried", all)
	}
	if took > 5*time.Second {
		t.Errorf("a read refused with 403 took %s to fail: it should fail at once", took)
	}
	if !strings.Contains(m.logs(), "AccessDenied") {
		t.Errorf("the daemon log does not name the cause (AccessDenied):\n%s", tail(m.logs(), 3000))
	}

	src := filepath.Join(t.TempDir(), "new.jsonl")
	w := newTape(741, 30)
	if err := os.WriteFile(src, w.Data, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := try(t, "cp", src, m.Path("deny/new.jsonl")); r.Code == 0 || !strings.Contains(r.Stderr, "Input/output error") {
		t.Errorf("cp with the credentials refused should fail at close with EIO:\n%s", r)
	}
	if p := pendingKeys(t, m); len(p) != 1 || p[0] != "deny/new.jsonl" {
		t.Errorf("pending uploads = %q, want [deny/new.jsonl] (the refused upload kept)", p)
	}

	// A refresh of the mount says the same, and the listing stays.
	r = tapefs(t, st, "refresh", m.Dir)
	if r.Code == 0 || !strings.Contains(r.Stderr, `bucket "`+st.srv.BucketName+`"`) || !strings.Contains(r.Stderr, "check the credentials") {
		t.Errorf("a refresh with the credentials refused should fail naming the bucket %q and the fix:\n%s", st.srv.BucketName, r)
	}
	if absent(t, m.Path("deny/t.jsonl")) {
		t.Error("a refused refresh emptied the listing")
	}

	// A new mount (its own sidecar) is refused at once, naming the bucket
	// and the cause.
	fresh := &proxiedStore{s3Store: &s3Store{srv: st.srv, dirs: newStoreDirs(t)}, proxy: st.proxy}
	dir := t.TempDir()
	start = time.Now()
	r = Cmd{Env: fresh.Env()}.exe(t, tapefsBin, mountArgs(fresh, dir, true)...)
	if r.Code == 0 {
		detach(dir)
		t.Fatalf("mount with the credentials refused succeeded")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("mount refused with 403 took %s to fail", took)
	}
	if msg := r.Stderr + r.Stdout; !strings.Contains(msg, `"`+st.srv.BucketName+`"`) || !strings.Contains(strings.ToLower(msg), "access denied") {
		t.Errorf("the mount error should name the bucket %q and the cause (access denied):\n%s", st.srv.BucketName, r)
	}

	// Accepted again: the kept upload goes up without a remount.
	st.proxy.SetRule(nil)
	if !waitFor(60*time.Second, func() bool { return len(pendingKeys(t, m)) == 0 }) {
		t.Fatalf("the refused upload is still pending a minute after the server accepts again: %q", pendingKeys(t, m))
	}
	if got, ok := storeRead(t, st.Bucket(), "deny/new.jsonl"); !ok || !bytes.Equal(got, w.Data) {
		t.Errorf("deny/new.jsonl in the store after the retry: present=%v, %d bytes, want %d", ok, len(got), len(w.Data))
	}
	if got, ok := catBytes(t, m.Path("deny/t.jsonl")); !ok || got != string(g.Data) {
		t.Errorf("deny/t.jsonl does not read once the server accepts again (ok=%v)", ok)
	}
}

// TestRemoteCutOffResponses: the first answer to every GET of a tape stops
// mid-body (the connection dropped after 1,000 bytes). A read through the
// mount resumes the range where it broke and returns the tape's exact
// bytes; read again from the disk cache they are still right; and grep
// finds every tape.
func TestRemoteCutOffResponses(t *testing.T) {
	st := newProxiedStore(t)
	files := map[string][]byte{}
	for i := range 3 {
		files[fmt.Sprintf("cut/t%d.jsonl", i)] = newTape(int64(760+i), 80).Data
	}
	files["cut/large.jsonl"] = bigTape(3 << 20).Data
	m := mountFiles(t, st, files)

	st.proxy.SetRule(func(r *http.Request, n int) *s3Fault {
		if r.Method == http.MethodGet && n == 0 && strings.HasPrefix(r.URL.Path, st.objectPath("cut/")) {
			return &s3Fault{CutAfter: 1000}
		}
		return nil
	})
	mark := st.proxy.Mark()
	for key, data := range files {
		if got, ok := catBytes(t, m.Path(key)); !ok || got != string(data) {
			t.Errorf("cat %s through cut-off answers: ok=%v, %d bytes, want the tape's %d (%s)", key, ok, len(got), len(data), sameBytes([]byte(got), data))
		}
	}
	if cut := st.proxy.Injected(mark); cut < len(files) {
		t.Errorf("the proxy cut %d answers, want at least %d (one per tape): the rule did not apply", cut, len(files))
	}

	// Read again, from the daemon (not the page cache): every tape is
	// whole, whatever the first read met.
	st.proxy.SetRule(nil)
	for key, data := range files {
		run(t, "dd", "if="+m.Path(key), "iflag=nocache", "count=0", "status=none")
		if got, ok := catBytes(t, m.Path(key)); !ok || got != string(data) {
			t.Errorf("cat %s again: ok=%v, %d bytes, want the tape's %d", key, ok, len(got), len(data))
		}
	}
	grep := run(t, "sh", "-c", "cd "+shellQuote([]string{m.Path("cut")})+` && grep -l '"jsonrpc"' *.jsonl`)
	if n := len(strings.Fields(grep)); n != len(files) {
		t.Errorf("grep -l found %d tapes, want %d:\n%s", n, len(files), grep)
	}
}

// TestRemoteRenameFailsPartWay: a directory rename that the store stops
// part way (a copy refused, or a delete after the copies; and a file's
// delete after its copy) fails, loses
// nothing, and leaves the listing showing exactly what is in the store,
// with the store's listing refused too (so no refresh can mend it); once
// the store answers again a refresh changes nothing in it.
func TestRemoteRenameFailsPartWay(t *testing.T) {
	st := newProxiedStore(t)
	files := map[string][]byte{}
	for _, dir := range []string{"mv", "cp"} {
		for i := range 30 {
			files[fmt.Sprintf("%s/src/f%02d.txt", dir, i)] = []byte(fmt.Sprintf("%s file %d\n", dir, i))
		}
	}
	st.Seed(t, files)
	m := mount(t, st)
	listing := "/" + st.srv.BucketName
	refuse := func(method, path string, copy bool) faultRule {
		return func(r *http.Request, n int) *s3Fault {
			if r.Method == http.MethodGet && r.URL.Path == listing {
				return &accessDenied
			}
			if r.Method == method && r.URL.Path == path && copy == (r.Header.Get("X-Amz-Copy-Source") != "") {
				return &accessDenied
			}
			return nil
		}
	}
	cases := []struct {
		dir  string
		rule faultRule
		want func(i int) (src, dst bool) // where f<i> is afterwards
	}{
		{"mv", refuse(http.MethodDelete, st.objectPath("mv/src/f12.txt"), false), func(i int) (bool, bool) { return i >= 12, true }},
		{"cp", refuse(http.MethodPut, st.objectPath("cp/dst/f07.txt"), true), func(i int) (bool, bool) { return true, i < 7 }},
	}
	state := maps.Clone(files) // what the whole store holds
	// statAll stats every name the rename touches: the kernel keeps what
	// it learns (names, attributes, and that dst is not there) for the
	// entry timeout.
	statAll := func(dir string) map[string]bool {
		seen := map[string]bool{}
		for _, side := range []string{"src", "dst"} {
			_, err := os.Stat(m.Path(dir + "/" + side))
			seen[dir+"/"+side] = err == nil
			for i := range 30 {
				key := fmt.Sprintf("%s/%s/f%02d.txt", dir, side, i)
				_, err := os.Stat(m.Path(key))
				seen[key] = err == nil
			}
		}
		return seen
	}
	for _, c := range cases {
		statAll(c.dir)
		st.proxy.SetRule(c.rule)
		err := syscall.Rename(m.Path(c.dir+"/src"), m.Path(c.dir+"/dst"))
		if err == nil {
			t.Fatalf("%s: the rename succeeded though the store refused part of it", c.dir)
		}
		t.Logf("%s: rename failed part way: %v", c.dir, err)
		want := map[string][]byte{}
		for i := range 30 {
			data := files[fmt.Sprintf("%s/src/f%02d.txt", c.dir, i)]
			inSrc, inDst := c.want(i)
			if inSrc {
				want[fmt.Sprintf("%s/src/f%02d.txt", c.dir, i)] = data
			}
			if inDst {
				want[fmt.Sprintf("%s/dst/f%02d.txt", c.dir, i)] = data
			}
		}
		for key, data := range want {
			if got, ok := storeRead(t, st.Bucket(), key); !ok || !bytes.Equal(got, data) {
				t.Fatalf("%s: the store does not hold %s as the test expects (ok=%v): the faults did not apply", c.dir, key, ok)
			}
		}
		// At once, before any refresh: the names the kernel knew and
		// the store no longer has are gone.
		for key, there := range statAll(c.dir) {
			if _, want := want[key]; there && !want && strings.Count(key, "/") == 2 {
				t.Errorf("%s: stat %s right after the failed rename finds it; the store has deleted it", c.dir, key)
			}
		}
		maps.DeleteFunc(state, func(k string, _ []byte) bool { return strings.HasPrefix(k, c.dir+"/") })
		maps.Copy(state, want)
		time.Sleep(1500 * time.Millisecond) // the refresh the failure asks for, refused
		checkListing(t, m, state)
		// After the negative timeout (1 s) the new names are seen too.
		for key, there := range statAll(c.dir) {
			if _, want := want[key]; there != want && strings.Count(key, "/") == 2 {
				t.Errorf("%s: stat %s after the failed rename: there=%v, the store says %v", c.dir, key, there, want)
			}
		}
		for key, data := range want {
			if got, ok := catBytes(t, m.Path(key)); !ok || got != string(data) {
				t.Errorf("%s: cat %s after the failed rename: ok=%v, %q", c.dir, key, ok, got)
			}
		}
		st.proxy.SetRule(nil)
		if r := tapefs(t, st, "refresh", m.Dir); r.Code != 0 {
			t.Fatalf("refresh: %s", r)
		}
		checkListing(t, m, state)
	}

	// A file: copied, then its delete refused: both names show it.
	st.proxy.SetRule(refuse(http.MethodDelete, st.objectPath("mv/src/f20.txt"), false))
	if err := syscall.Rename(m.Path("mv/src/f20.txt"), m.Path("mv/src/moved.txt")); err == nil {
		t.Fatal("the rename of a file succeeded though the store refused its delete")
	}
	state["mv/src/moved.txt"] = state["mv/src/f20.txt"]
	checkListing(t, m, state)
	if got, ok := catBytes(t, m.Path("mv/src/moved.txt")); !ok || got != string(state["mv/src/moved.txt"]) {
		t.Errorf("cat of the copy of a file whose rename failed: ok=%v, %q", ok, got)
	}
	st.proxy.SetRule(nil)
}
