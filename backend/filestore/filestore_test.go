package filestore

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tapefs/tapefs/backend/layer/layertest"
	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/gcerrors"
)

func TestConformance(t *testing.T) {
	layertest.Run(t, func(t *testing.T, inner *blob.Bucket) driver.Bucket {
		// The directory is used only for names over 234 bytes, which the
		// suite does not write; TestLongNames covers them.
		return Wrap(inner, t.TempDir())
	})
}

func open(t *testing.T) (*blob.Bucket, string) {
	t.Helper()
	dir := t.TempDir()
	b, err := URLOpener{}.OpenBucketURL(context.Background(), &url.URL{Scheme: "file", Path: dir, RawQuery: "metadata=skip"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, dir
}

func TestLongNames(t *testing.T) {
	ctx := context.Background()
	b, dir := open(t)
	for _, n := range []int{longName, longName + 1, 250, 255} {
		key := "d/" + strings.Repeat("x", n-5) + ".json"
		data := bytes.Repeat([]byte{byte(n)}, 1000)
		if err := b.WriteAll(ctx, key, data, nil); err != nil {
			t.Fatalf("write %d-byte name: %v", n, err)
		}
		if got, err := os.ReadFile(filepath.Join(dir, key)); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d-byte name: file on disk %v", n, err)
		}
		got, err := b.ReadAll(ctx, key)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read %d-byte name: %v", n, err)
		}
		r, err := b.NewRangeReader(ctx, key, 10, 20, nil)
		if err != nil {
			t.Fatal(err)
		}
		part := make([]byte, 30)
		m, _ := r.Read(part)
		r.Close()
		if m != 20 {
			t.Fatalf("range read of %d-byte name: %d bytes", n, m)
		}
		a, err := b.Attributes(ctx, key)
		if err != nil || a.Size != 1000 || a.ETag == "" {
			t.Fatalf("attributes of %d-byte name: %+v %v", n, a, err)
		}
		err = b.WriteAll(ctx, key, data, &blob.WriterOptions{IfNotExist: true})
		if gcerrors.Code(err) != gcerrors.FailedPrecondition {
			t.Fatalf("conditional create over %d-byte name: %v", n, err)
		}
		dst := key[:len(key)-1] + "X"
		if err := b.Copy(ctx, dst, key, nil); err != nil {
			t.Fatalf("copy %d-byte name: %v", n, err)
		}
		if err := b.Delete(ctx, key); err != nil {
			t.Fatalf("delete %d-byte name: %v", n, err)
		}
		if _, err := b.Attributes(ctx, key); gcerrors.Code(err) != gcerrors.NotFound {
			t.Fatalf("deleted %d-byte name: %v", n, err)
		}
		if err := b.Delete(ctx, dst); err != nil {
			t.Fatal(err)
		}
	}
}

func TestListingHidesTemporaryFiles(t *testing.T) {
	ctx := context.Background()
	b, dir := open(t)
	for _, name := range []string{"a.jsonl.1879a3f0b2c4d5e6.tmp", ".tapefs-12345.tmp", "keep.tmp", "b.jsonl"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	it := b.List(nil)
	for {
		o, err := it.Next(ctx)
		if err != nil {
			break
		}
		keys = append(keys, o.Key)
	}
	if strings.Join(keys, ",") != "b.jsonl,keep.tmp" {
		t.Fatalf("listing: %q", keys)
	}
}

func TestWriteStaysInStore(t *testing.T) {
	// A temporary file in $TMPDIR could not be renamed into a store on
	// another file system: point TMPDIR at a place that cannot be written.
	b, _ := open(t)
	t.Setenv("TMPDIR", "/nonexistent/tapefs-tmp")
	if err := b.WriteAll(context.Background(), "t.jsonl", []byte("{}\n"), nil); err != nil {
		t.Fatalf("write with an unusable TMPDIR: %v", err)
	}
}
