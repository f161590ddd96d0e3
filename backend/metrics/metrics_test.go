package metrics

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/tapefs/tapefs/backend/layer/layertest"
	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/blob/memblob"
	"gocloud.dev/gcerrors"
)

func TestConformance(t *testing.T) {
	reg := prometheus.NewRegistry() // shared by every driver the suite makes
	layertest.Run(t, func(t *testing.T, inner *blob.Bucket) driver.Bucket {
		b, err := newBucket(inner, Options{Profile: "conformance", Registerer: reg,
			Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
	if n := testutil.ToFloat64(mustOps(t, reg, "conformance", "write", "ok")); n == 0 {
		t.Error("the suite's writes were not counted")
	}
}

func mustOps(t *testing.T, reg *prometheus.Registry, profile, op, result string) prometheus.Counter {
	t.Helper()
	c, err := newCollectors(reg)
	if err != nil {
		t.Fatal(err)
	}
	return c.ops.WithLabelValues(profile, op, result)
}

func TestCountsBytesAndLogs(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	hot, err := Wrap(memblob.OpenBucket(nil), Options{Profile: "hot", Registerer: reg, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	cold, err := Wrap(memblob.OpenBucket(nil), Options{Profile: "cold", Registerer: reg, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := hot.WriteAll(ctx, "tape", []byte("0123456789"), nil); err != nil {
		t.Fatal(err)
	}
	r, err := hot.NewRangeReader(ctx, "tape", 2, 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || string(got) != "23456" {
		t.Fatalf("read %q, %v", got, err)
	}
	r.Close()
	if _, err := hot.Attributes(ctx, "missing"); gcerrors.Code(err) != gcerrors.NotFound {
		t.Fatalf("Attributes of a missing key: %v", err)
	}
	if err := cold.Delete(ctx, "missing"); err == nil {
		t.Fatal("Delete of a missing key succeeded")
	}
	c, err := newCollectors(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c    prometheus.Collector
		want float64
	}{
		{c.ops.WithLabelValues("hot", "write", "ok"), 1},
		{c.ops.WithLabelValues("hot", "read", "ok"), 1},
		{c.ops.WithLabelValues("hot", "attributes", "NotFound"), 1},
		{c.ops.WithLabelValues("cold", "delete", "NotFound"), 1},
		{c.ops.WithLabelValues("cold", "write", "ok"), 0},
		{c.bytes.WithLabelValues("hot", "write"), 10},
		{c.bytes.WithLabelValues("hot", "read"), 5},
	} {
		if got := testutil.ToFloat64(tc.c); got != tc.want {
			t.Errorf("%v = %v, want %v", describe(tc.c), got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(c.duration, DurationName); n != 4 {
		t.Errorf("%d latency series, want 4 (hot write, read, attributes; cold delete)", n)
	}
	// The text exposition has the profile label.
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP tapefs_store_bytes_total Bytes read from and written to the store, by profile and operation.
# TYPE tapefs_store_bytes_total counter
tapefs_store_bytes_total{op="read",profile="hot"} 5
tapefs_store_bytes_total{op="write",profile="hot"} 10
`), BytesName); err != nil {
		t.Error(err)
	}
	for _, want := range []string{
		`level=DEBUG msg="store read" profile=hot op=read`,
		`key=tape bytes=5`,
		`msg="store delete" profile=cold op=delete`,
		`result=NotFound`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

func describe(c prometheus.Collector) string {
	ch := make(chan *prometheus.Desc, 1)
	c.Describe(ch)
	return (<-ch).String()
}

func TestQuietAboveDebug(t *testing.T) {
	var logs bytes.Buffer
	b, err := Wrap(memblob.OpenBucket(nil), Options{Registerer: prometheus.NewRegistry(),
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	b.WriteAll(context.Background(), "k", []byte("v"), nil)
	if logs.Len() != 0 {
		t.Errorf("logged at info level: %s", logs.String())
	}
}

func TestNameClash(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: OperationsName, Help: "other"}))
	if _, err := Wrap(memblob.OpenBucket(nil), Options{Registerer: reg}); err == nil {
		t.Error("Wrap over a registry with another collector of the same name succeeded")
	}
}
