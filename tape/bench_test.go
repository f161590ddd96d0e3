package tape_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/tapefs/tapefs/internal/tapegen"
	"github.com/tapefs/tapefs/tape"
)

// BenchmarkParseV2Large parses a large padded tape from a file, as the
// indexer would. TAPE_BENCH_MB sets its size (default 64).
func BenchmarkParseV2Large(b *testing.B) {
	size := int64(64)
	if s := os.Getenv("TAPE_BENCH_MB"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		size = n
	}
	path := filepath.Join(b.TempDir(), "large.jsonl")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := tapegen.WriteLargeV2(f, 1, size<<20); err != nil {
		b.Fatal(err)
	}
	fi, _ := f.Stat()
	f.Close()
	b.SetBytes(fi.Size())
	b.ResetTimer()
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		rec := tape.ParseV2(f, nil, "large.jsonl")
		f.Close()
		if !rec.Valid {
			b.Fatal(rec.Problems)
		}
	}
}

// BenchmarkParseV2Small parses typical small tapes (tens of KiB) from memory.
func BenchmarkParseV2Small(b *testing.B) {
	type tp struct{ jsonl, meta []byte }
	var tapes []tp
	var total int64
	for seed := range int64(50) {
		jsonl, meta, _ := tapegen.V2(seed, tapegen.V2Options{Frames: 40})
		tapes = append(tapes, tp{jsonl, meta})
		total += int64(len(jsonl) + len(meta))
	}
	b.SetBytes(total)
	for b.Loop() {
		for _, t := range tapes {
			tape.ParseV2(bytes.NewReader(t.jsonl), t.meta, "x.jsonl")
		}
	}
}

func BenchmarkParseV1(b *testing.B) {
	doc, _ := tapegen.V1(1, tapegen.V1Options{Frames: 2000})
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		tape.ParseV1(bytes.NewReader(doc), "x.json", nil)
	}
}
