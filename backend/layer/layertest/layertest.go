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

// Maker opens a fresh driver over the one store of a conformance test; the
// suite opens several per test and expects them to see the same objects.
type Maker func(ctx context.Context) (driver.Bucket, error)

type harness struct {
	make   Maker
	prefix string
}

func (h *harness) MakeDriver(ctx context.Context) (driver.Bucket, error) {
	drv, err := h.make(ctx)
	if err != nil {
		return nil, err
	}
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

// RunDrivers runs the conformance suite, plain and under a prefix, for the
// drivers of any store or layer: newMaker is called once per suite test
// (with its t, for a fresh store) and returns how to open drivers on it.
func RunDrivers(t *testing.T, newMaker func(t *testing.T) Maker, asTests ...drivertest.AsTest) {
	for _, prefix := range []string{"", "some/prefix/dir/"} {
		name := "plain"
		if prefix != "" {
			name = "prefixed"
		}
		t.Run(name, func(t *testing.T) {
			drivertest.RunConformanceTests(t, func(ctx context.Context, t *testing.T) (drivertest.Harness, error) {
				return &harness{make: newMaker(t), prefix: prefix}, nil
			}, asTests)
		})
	}
}

// Run runs the conformance suite for a layer over a real fileblob store,
// plain and under a prefix.
func Run(t *testing.T, wrap Wrap) {
	RunDrivers(t, func(t *testing.T) Maker {
		dir := t.TempDir()
		return func(ctx context.Context) (driver.Bucket, error) {
			inner, err := fileblob.OpenBucket(dir, nil)
			if err != nil {
				return nil, err
			}
			return wrap(t, inner), nil
		}
	})
}
