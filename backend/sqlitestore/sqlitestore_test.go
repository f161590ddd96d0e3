package sqlitestore

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"

	"github.com/tapefs/tapefs/backend/layer/layertest"
	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/gcerrors"
)

func TestConformance(t *testing.T) {
	layertest.RunDrivers(t, func(t *testing.T) layertest.Maker {
		path := filepath.Join(t.TempDir(), "tapes.db")
		return func(ctx context.Context) (driver.Bucket, error) { return Open(ctx, path) }
	}, verifyAs{})
}

// verifyAs checks that the bucket exposes its *sql.DB.
type verifyAs struct{}

func (verifyAs) Name() string { return "sqlitestore As" }
func (verifyAs) BucketCheck(b *blob.Bucket) error {
	var db *sql.DB
	if !b.As(&db) || db == nil {
		return errors.New("Bucket.As(**sql.DB) failed")
	}
	return nil
}
func (verifyAs) ErrorCheck(b *blob.Bucket, err error) error {
	var se sqlite3.Error
	if b.ErrorAs(err, &se) {
		return errors.New("ErrorAs found a sqlite3.Error in a not-found error")
	}
	return nil
}
func (verifyAs) BeforeRead(as func(any) bool) error           { return nil }
func (verifyAs) BeforeWrite(as func(any) bool) error          { return nil }
func (verifyAs) BeforeCopy(as func(any) bool) error           { return nil }
func (verifyAs) BeforeDelete(as func(any) bool) error         { return nil }
func (verifyAs) BeforeList(as func(any) bool) error           { return nil }
func (verifyAs) BeforeSign(as func(any) bool) error           { return nil }
func (verifyAs) AttributesCheck(attrs *blob.Attributes) error { return nil }
func (verifyAs) ReaderCheck(r *blob.Reader) error             { return nil }
func (verifyAs) ListObjectCheck(o *blob.ListObject) error     { return nil }

func openTest(t *testing.T) (*blob.Bucket, *Bucket) {
	t.Helper()
	drv, err := Open(context.Background(), filepath.Join(t.TempDir(), "tapes.db"))
	if err != nil {
		t.Fatal(err)
	}
	b := blob.NewBucket(drv)
	t.Cleanup(func() { b.Close() })
	return b, drv
}

func count(t *testing.T, drv *Bucket, table string) int {
	t.Helper()
	var n int
	if err := drv.r.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestLargeObjectRanges(t *testing.T) {
	b, drv := openTest(t)
	ctx := context.Background()
	data := make([]byte, 5*ChunkSize+12345)
	rand.Read(data)
	if err := b.WriteAll(ctx, "tape", data, nil); err != nil {
		t.Fatal(err)
	}
	if n := count(t, drv, "chunks"); n != 6 {
		t.Errorf("%d chunks for 5 MiB + 12345 bytes, want 6", n)
	}
	for _, r := range [][2]int64{{0, 10}, {ChunkSize - 5, 10}, {3*ChunkSize + 7, 2*ChunkSize + 100}, {5 * ChunkSize, -1}, {int64(len(data)) - 1, 5}, {0, -1}} {
		got, err := readRange(b, "tape", r[0], r[1])
		if err != nil {
			t.Fatal(err)
		}
		end := int64(len(data))
		if r[1] >= 0 && r[0]+r[1] < end {
			end = r[0] + r[1]
		}
		if !bytes.Equal(got, data[r[0]:end]) {
			t.Errorf("range %v: got %d bytes, not the written ones", r, len(got))
		}
	}
	a, err := b.Attributes(ctx, "tape")
	if err != nil {
		t.Fatal(err)
	}
	if a.Size != int64(len(data)) {
		t.Errorf("size %d, want %d", a.Size, len(data))
	}
	// Overwriting and deleting leave no chunks behind.
	if err := b.WriteAll(ctx, "tape", data[:10], nil); err != nil {
		t.Fatal(err)
	}
	if n := count(t, drv, "chunks"); n != 1 {
		t.Errorf("%d chunks after overwrite with 10 bytes, want 1", n)
	}
	if err := b.Delete(ctx, "tape"); err != nil {
		t.Fatal(err)
	}
	if n := count(t, drv, "chunks") + count(t, drv, "blobs"); n != 0 {
		t.Errorf("%d chunk and upload rows after delete, want 0", n)
	}
}

func readRange(b *blob.Bucket, key string, off, n int64) ([]byte, error) {
	r, err := b.NewRangeReader(context.Background(), key, off, n, nil)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func TestCanceledLargeWriteLeavesNothing(t *testing.T) {
	b, drv := openTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	w, err := b.NewWriter(ctx, "tape", &blob.WriterOptions{ContentType: "application/octet-stream"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, 3*ChunkSize+1)); err != nil {
		t.Fatal(err)
	}
	if n := count(t, drv, "chunks"); n != 3 {
		t.Errorf("%d chunks stored while writing, want 3", n)
	}
	if ok, _ := b.Exists(context.Background(), "tape"); ok {
		t.Error("object visible before Close")
	}
	cancel()
	if err := w.Close(); err == nil {
		t.Error("Close after cancel succeeded")
	}
	if ok, _ := b.Exists(context.Background(), "tape"); ok {
		t.Error("object visible after a canceled Close")
	}
	if n := count(t, drv, "chunks") + count(t, drv, "blobs"); n != 0 {
		t.Errorf("%d chunk and upload rows left by a canceled write, want 0", n)
	}
}

func TestIfNotExistLosesNothing(t *testing.T) {
	b, drv := openTest(t)
	ctx := context.Background()
	if err := b.WriteAll(ctx, "tape", []byte("first"), nil); err != nil {
		t.Fatal(err)
	}
	err := b.WriteAll(ctx, "tape", make([]byte, 2*ChunkSize), &blob.WriterOptions{IfNotExist: true})
	if gcerrors.Code(err) != gcerrors.FailedPrecondition {
		t.Fatalf("IfNotExist over an object: %v, want FailedPrecondition", err)
	}
	got, err := b.ReadAll(ctx, "tape")
	if err != nil || string(got) != "first" {
		t.Fatalf("after a refused write: %q, %v", got, err)
	}
	if n := count(t, drv, "chunks"); n != 1 {
		t.Errorf("%d chunks after a refused write, want 1", n)
	}
}

func TestReplacedDuringReadFails(t *testing.T) {
	b, _ := openTest(t)
	ctx := context.Background()
	old := bytes.Repeat([]byte("a"), 3*ChunkSize)
	if err := b.WriteAll(ctx, "tape", old, nil); err != nil {
		t.Fatal(err)
	}
	r, err := b.NewReader(ctx, "tape", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, ChunkSize)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteAll(ctx, "tape", bytes.Repeat([]byte("b"), 3*ChunkSize), nil); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if err == nil {
		t.Fatalf("read of a replaced object went on (%d bytes)", len(rest))
	}
	if gcerrors.Code(err) != gcerrors.NotFound {
		t.Errorf("code %v, want NotFound", gcerrors.Code(err))
	}
}

func TestSweepRemovesAbandonedUploads(t *testing.T) {
	b, drv := openTest(t)
	ctx := context.Background()
	w, err := b.NewWriter(ctx, "tape", &blob.WriterOptions{ContentType: "application/octet-stream"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, 2*ChunkSize)); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteAll(ctx, "kept", make([]byte, ChunkSize+1), nil); err != nil {
		t.Fatal(err)
	}
	// A sweep with a recent cutoff spares the writer in flight.
	if err := drv.sweep(ctx, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := count(t, drv, "chunks"); n != 4 {
		t.Errorf("%d chunks after a sweep that must spare all, want 4", n)
	}
	// As if the writer's process had died long ago.
	if err := drv.sweep(ctx, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := count(t, drv, "chunks"); n != 2 {
		t.Errorf("%d chunks after sweeping the abandoned upload, want the 2 of \"kept\"", n)
	}
	if got, err := b.ReadAll(ctx, "kept"); err != nil || len(got) != ChunkSize+1 {
		t.Errorf("kept object after the sweep: %d bytes, %v", len(got), err)
	}
}

func TestPathOf(t *testing.T) {
	home, err := os.UserHomeDir()
	if err != nil {
		t.Skip(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ url, want string }{
		{"sqlite:///srv/tapes.db", "/srv/tapes.db"},
		{"sqlite://tapes.db", filepath.Join(wd, "tapes.db")},
		{"sqlite://./dir/tapes.db", filepath.Join(wd, "dir/tapes.db")},
		{"sqlite://dir/tapes.db", filepath.Join(wd, "dir/tapes.db")},
		{"sqlite://~/tapes.db", filepath.Join(home, "tapes.db")},
		{"sqlite:rel.db", filepath.Join(wd, "rel.db")},
	}
	for _, tc := range tests {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		got, err := PathOf(u)
		if err != nil || got != tc.want {
			t.Errorf("PathOf(%s) = %q, %v; want %q", tc.url, got, err, tc.want)
		}
	}
	for _, bad := range []string{"sqlite://", "sqlite:///srv/dir/"} {
		u, _ := url.Parse(bad)
		if p, err := PathOf(u); err == nil {
			t.Errorf("PathOf(%s) = %q, want an error", bad, p)
		}
	}
}

func TestOpenerCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "dir")
	u, _ := url.Parse("sqlite://" + dir + "/tapes.db")
	b, err := URLOpener{}.OpenBucketURL(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.WriteAll(context.Background(), "k", []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, filepath.Join(dir, "tapes.db"): 0o600} {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, info.Mode(), want)
		}
	}
	if _, err := (URLOpener{}).OpenBucketURL(context.Background(), &url.URL{Scheme: Scheme, Path: dir + "/x.db", RawQuery: "a=b"}); err == nil {
		t.Error("a query parameter was accepted")
	}
}

// A range read touches only the chunks it covers: with every other chunk
// gone from the file, it still succeeds.
func TestRangeReadTouchesOnlyItsChunks(t *testing.T) {
	b, drv := openTest(t)
	ctx := context.Background()
	data := make([]byte, 8*ChunkSize)
	rand.Read(data)
	if err := b.WriteAll(ctx, "tape", data, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := drv.w.Exec(`DELETE FROM chunks WHERE n NOT IN (5, 6)`); err != nil {
		t.Fatal(err)
	}
	off := int64(5*ChunkSize + 100)
	got, err := readRange(b, "tape", off, ChunkSize)
	if err != nil {
		t.Fatalf("range read within chunks 5 and 6: %v", err)
	}
	if !bytes.Equal(got, data[off:off+ChunkSize]) {
		t.Error("wrong bytes")
	}
	if _, err := readRange(b, "tape", 0, 10); err == nil {
		t.Error("read of a deleted chunk succeeded: the test proves nothing")
	}
}
