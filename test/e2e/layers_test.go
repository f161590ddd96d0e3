package e2e

// The optional layers of a mount: transparent compression (a "zstd"
// backend of the shared test table, so the whole suite runs over a
// compressed store) and Prometheus metrics.

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapefs/tapefs/backend/compress"
	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
)

// zstdThreshold is the compression threshold of the zstd backend: low, so
// most tapes of the corpus are stored compressed.
const zstdThreshold = "16KiB"

func init() { allBackends = append(allBackends, backend{"zstd", newZstdStore}) }

// zstdStore is a file:// store that every tapefs command opens with
// --compress (through TAPEFS_COMPRESS); the test sees its objects through
// the same layer, and raw through Raw.
type zstdStore struct {
	*fileStore
	logical *blob.Bucket
}

func newZstdStore(t *testing.T) Store {
	fs := newFileStore(t).(*fileStore)
	th, err := compress.ParseThreshold(zstdThreshold)
	if err != nil {
		t.Fatal(err)
	}
	// The layer's marker is metadata: this bucket keeps it (.attrs files),
	// as the daemon's file:// store does.
	withAttrs, err := fileblob.OpenBucket(fs.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { withAttrs.Close() })
	return &zstdStore{fileStore: fs, logical: compress.Wrap(withAttrs, compress.Options{Threshold: th})}
}

func (s *zstdStore) Kind() string         { return "zstd" }
func (s *zstdStore) Env() []string        { return []string{"TAPEFS_COMPRESS=" + zstdThreshold} }
func (s *zstdStore) Bucket() *blob.Bucket { return s.logical }
func (s *zstdStore) Raw() *blob.Bucket    { return s.fileStore.bucket }

// Seed writes through the compression layer, as tapefs import would.
func (s *zstdStore) Seed(t *testing.T, files map[string][]byte) bool {
	t.Helper()
	for key, data := range files {
		if err := storeWrite(t, s.logical, key, data); err != nil {
			t.Fatalf("seed %q: %v", key, err)
		}
	}
	return true
}

// zstdMagic starts every zstd frame.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// TestCompressedStore: through a mount with --compress, tapes above the
// threshold are zstd in the store and the original bytes (and sizes)
// through the mount; ones below it are stored as they are; a small read of
// a large tape reads a small part of the stored object.
func TestCompressedStore(t *testing.T) {
	st := newZstdStore(t).(*zstdStore)
	c := newCorpus(t)
	m := mount(t, st)
	src := writeLocal(t, c.Files)
	run(t, "cp", "-r", src+"/.", m.Dir+"/")
	checkMount(t, m, c.Files)
	checkListing(t, m, c.Files)
	ctx := context.Background()
	compressed := 0
	for key, want := range c.Files {
		raw, err := st.Raw().ReadAll(ctx, key)
		if err != nil {
			t.Fatalf("raw read %q: %v", key, err)
		}
		big := len(want) > 16<<10
		switch {
		case big && !bytes.HasPrefix(raw, zstdMagic):
			t.Errorf("%q (%d bytes) is not zstd in the store", key, len(want))
		case big && len(raw) >= len(want):
			t.Errorf("%q: stored %d bytes for %d: not compressed", key, len(raw), len(want))
		case !big && !bytes.Equal(raw, want):
			t.Errorf("%q (%d bytes, under the threshold) is not stored as it is", key, len(want))
		}
		if big {
			compressed++
		}
	}
	if compressed < 3 {
		t.Fatalf("only %d objects above the threshold: the test proves little", compressed)
	}
	// jq and grep read the original bytes.
	run(t, "jq", "-c", ".type", m.Path(c.V2Tape))
	if out := run(t, "grep", "-l", `"tools/call"`, m.Path(c.V2Tape)); strings.TrimSpace(out) != m.Path(c.V2Tape) {
		t.Errorf("grep -l over a compressed tape: %q", out)
	}
	// A 4 KiB read in the middle of the largest tape reads a frame or two
	// of the stored object, not all of it.
	before := bytesReadFromStore(t, m)
	run(t, "dd", "if="+m.Path(c.Largest), "of=/dev/null", "bs=4096", "count=1", "skip=100", "iflag=direct")
	if got := settledBytesRead(t, m) - before; got > int64(len(c.Files[c.Largest]))/2 {
		t.Errorf("a 4 KiB read of %q (%d bytes) read %d bytes from the store", c.Largest, len(c.Files[c.Largest]), got)
	}
	// After a remount everything still reads back, and the index is whole.
	m = m.Remount(t)
	checkMount(t, m, c.Files)
	waitIndexed(t, st, c.V2Tape, c.NoMeta, c.Largest)
}

// TestMetricsEndpoint: --metrics-addr serves the store's operations,
// latencies and bytes in Prometheus text format.
func TestMetricsEndpoint(t *testing.T) {
	st := backendNamed(t, "file")
	c := newCorpus(t)
	addr := "127.0.0.1:" + freePort(t)
	m := mountFiles(t, st, c.Files, withArgs("--metrics-addr", addr))
	run(t, "cat", m.Path(c.V2Tape))
	run(t, "cp", m.Path(c.V2Tape), m.Path("copy.jsonl"))
	var body string
	if !waitFor(10*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == 200 && strings.Contains(body, `op="write"`)
	}) {
		t.Fatalf("GET /metrics:\n%s", clip(body))
	}
	for _, want := range []string{
		`tapefs_store_operations_total{op="read",profile="default",result="ok"}`,
		`tapefs_store_operations_total{op="write",profile="default",result="ok"}`,
		`tapefs_store_operations_total{op="list",profile="default",result="ok"}`,
		`tapefs_store_operation_duration_seconds_bucket{op="read",profile="default"`,
		`tapefs_store_bytes_total{op="read",profile="default"}`,
		`tapefs_store_bytes_total{op="write",profile="default"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
	// A second mount cannot take the same address: a clear error.
	r := tapefs(t, backendNamed(t, "mem"), mountArgs(backendNamed(t, "mem"), t.TempDir(), true, "--metrics-addr", addr)...)
	if r.Code == 0 || !strings.Contains(r.Stderr, "--metrics-addr") {
		t.Errorf("a busy --metrics-addr: %s", r)
	}
}

// Series of the mount's Prometheus metrics that tests read with metric.
const (
	storeBytesRead  = `tapefs_store_bytes_total{op="read",profile="default"}`
	storeAttributes = `tapefs_store_operations_total{op="attributes",profile="default",result="ok"}`
)

// metric is the value of series in the mount's metrics at addr (0 while
// the series has no sample).
func metric(t *testing.T, addr, series string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("/metrics: %q: %v", line, err)
			}
			return int64(f)
		}
	}
	return 0
}
