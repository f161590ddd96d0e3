// Package layertest runs gocloud's blob driver conformance suite against a
// storage layer, plain and under a prefix, over a real fileblob store.
package layertest

import (
	"context"
	"net/http"
	"testing"

	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/blob/drivertest"
	"gocloud.dev/blob/fileblob"
)

// Wrap builds the layer under test over inner.
type Wrap func(t *testing.T, inner *blob.Bucket) driver.Bucket

type harness struct {
	t      *testing.T
	dir    string
	prefix string
	wrap   Wrap
}

func (h *harness) MakeDriver(ctx context.Context) (driver.Bucket, error) {
	inner, err := fileblob.OpenBucket(h.dir, nil)
	if err != nil {
		return nil, err
	}
	drv := h.wrap(h.t, inner)
	if h.prefix != "" {
		drv = driver.NewPrefixedBucket(drv, h.prefix)
	}
	return drv, nil
}

func (h *harness) MakeDriverForNonexistentBucket(ctx context.Context) (driver.Bucket, error) {
	return nil, nil
}
func (h *harness) HTTPClient() *http.Client         { return nil }
func (h *harness) SupportsCopy() bool               { return true }
func (h *harness) SupportsNonSlashDelimiters() bool { return true }
func (h *harness) Close()                           {}

// Run runs the conformance suite for the layer, plain and under a prefix.
func Run(t *testing.T, wrap Wrap) {
	for _, prefix := range []string{"", "some/prefix/dir/"} {
		name := "plain"
		if prefix != "" {
			name = "prefixed"
		}
		t.Run(name, func(t *testing.T) {
			drivertest.RunConformanceTests(t, func(ctx context.Context, t *testing.T) (drivertest.Harness, error) {
				return &harness{t: t, dir: t.TempDir(), prefix: prefix, wrap: wrap}, nil
			}, nil)
		})
	}
}
