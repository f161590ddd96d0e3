package tapegen_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/tapefs/tapefs/internal/tapegen"
	"github.com/tapefs/tapefs/tape"
)

// diff describes how got differs from want, field by field ("" if equal).
func diff(got, want *tape.Record) string {
	var out bytes.Buffer
	gv, wv := reflect.ValueOf(got).Elem(), reflect.ValueOf(want).Elem()
	for i := range gv.NumField() {
		g, w := gv.Field(i).Interface(), wv.Field(i).Interface()
		if !reflect.DeepEqual(g, w) {
			gj, _ := json.Marshal(g)
			wj, _ := json.Marshal(w)
			out.WriteString("\n  " + gv.Type().Field(i).Name + ": got " + string(gj) + ", want " + string(wj))
		}
	}
	return out.String()
}

func TestV2MatchesParser(t *testing.T) {
	cases := []struct {
		name  string
		opts  tapegen.V2Options
		valid bool
	}{
		{"default", tapegen.V2Options{}, true},
		{"no meta", tapegen.V2Options{NoMeta: true}, true},
		{"recording", tapegen.V2Options{Status: tape.StatusRecording}, true},
		{"finalized", tapegen.V2Options{Status: tape.StatusFinalized}, true},
		{"many frames", tapegen.V2Options{Frames: 400}, true},
		{"no correlations", tapegen.V2Options{NoCorrelations: true, Frames: 60}, true},
		{"unknown types", tapegen.V2Options{UnknownTypes: true}, true},
		{"no init", tapegen.V2Options{NoInit: true, Key: "x/no-init.jsonl"}, false},
		{"no init no meta", tapegen.V2Options{NoInit: true, NoMeta: true, Key: "x/no-init.jsonl"}, false},
		{"truncated", tapegen.V2Options{Truncate: true, Frames: 30}, false},
		{"truncated no correlations", tapegen.V2Options{Truncate: true, NoCorrelations: true, Frames: 30}, false},
		{"sized", tapegen.V2Options{Size: 3 << 20}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			seeds := int64(25)
			if c.opts.Size > 0 {
				seeds = 4 // large: a few are enough
			}
			for seed := range seeds {
				jsonl, meta, want := tapegen.V2(seed, c.opts)
				if want.Valid != c.valid || (meta == nil) != c.opts.NoMeta {
					t.Fatalf("seed %d: generated Valid=%v meta=%v; problems %q", seed, want.Valid, meta != nil, want.Problems)
				}
				got := tape.ParseV2(bytes.NewReader(jsonl), meta, c.opts.Key)
				if d := diff(got, &want); d != "" {
					t.Fatalf("seed %d:%s", seed, d)
				}
				if c.opts.Size > 0 && int64(len(jsonl)) < c.opts.Size {
					t.Fatalf("seed %d: %d bytes, want at least %d", seed, len(jsonl), c.opts.Size)
				}
			}
		})
	}
}

// TestVariety checks that generated tapes exercise what the parser must
// handle, so that TestV2MatchesParser means something.
func TestVariety(t *testing.T) {
	seen := map[string]bool{}
	for seed := range int64(60) {
		jsonl, meta, rec := tapegen.V2(seed, tapegen.V2Options{Frames: 80})
		s := string(jsonl) + string(meta)
		seen["error message"] = seen["error message"] || len(rec.ErrorMessages) > 0
		seen["error without message"] = seen["error without message"] || rec.ErrorCount > int64(len(rec.ErrorMessages))
		seen["error pair"] = seen["error pair"] || bytes.Contains(jsonl, []byte(`"status":"error"`))
		seen["server request"] = seen["server request"] || rec.Methods["roots/list"]+rec.Methods["sampling/createMessage"] > 0
		seen["http"] = seen["http"] || rec.Transport == "http"
		seen["stdio"] = seen["stdio"] || rec.Transport == "stdio"
		seen["no tags"] = seen["no tags"] || rec.Tags == nil
		seen["tags"] = seen["tags"] || rec.Tags != nil
		seen["recording"] = seen["recording"] || rec.Status == tape.StatusRecording
		seen["finalized"] = seen["finalized"] || !rec.FinalizedAt.IsZero()
		seen["escapes"] = seen["escapes"] || bytes.Contains(jsonl, []byte(`\n`)) && bytes.Contains(jsonl, []byte(`\u2028`))
		seen["non-ASCII"] = seen["non-ASCII"] || bytes.Contains(jsonl, []byte("東京"))
		seen["meta"] = seen["meta"] || bytes.Contains([]byte(s), []byte(`"finalized_at": null`))
		seen["checkpoint"] = seen["checkpoint"] || bytes.Contains(jsonl, []byte(`"type":"checkpoint"`))
	}
	for _, want := range []string{"error message", "error without message", "error pair", "server request",
		"http", "stdio", "no tags", "tags", "recording", "finalized", "escapes", "non-ASCII", "meta", "checkpoint"} {
		if !seen[want] {
			t.Errorf("no generated tape has: %s", want)
		}
	}
}

func TestV1MatchesParser(t *testing.T) {
	cases := []struct {
		name string
		opts tapegen.V1Options
	}{
		{"default", tapegen.V1Options{Key: "v1/a.json"}},
		{"many frames", tapegen.V1Options{Key: "a.json", Frames: 300}},
		{"no timeline", tapegen.V1Options{Key: "a.json", NoTimeline: true}},
		{"anonymous", tapegen.V1Options{Key: "a.json", Anonymous: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for seed := range int64(25) {
				doc, want := tapegen.V1(seed, c.opts)
				got := tape.ParseV1(bytes.NewReader(doc), c.opts.Key, nil)
				if d := diff(got, &want); d != "" {
					t.Fatalf("seed %d:%s", seed, d)
				}
			}
		})
	}
}

// TestCorpusMatchesParser parses every object of a corpus the way the
// indexer would and compares with the manifest.
func TestCorpusMatchesParser(t *testing.T) {
	dir := t.TempDir()
	m, err := tapegen.WriteCorpus(dir, tapegen.CorpusOptions{Seed: 7, V2: 40, V2NoMeta: 5, V1: 5,
		Odd: true, OddNames: true, Nested: true, Large: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	read := func(key string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(key)))
		if err != nil {
			return nil
		}
		return b
	}
	var onDisk []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			onDisk = append(onDisk, filepath.ToSlash(rel))
		}
		return err
	})
	sort.Strings(onDisk)
	var listed []string
	for _, f := range m.Files {
		listed = append(listed, f.Key)
	}
	if !reflect.DeepEqual(onDisk, listed) {
		t.Fatalf("manifest lists %q\nbut the directory holds %q", listed, onDisk)
	}
	nTapes := 0
	for _, f := range m.Files {
		data := read(f.Key)
		if int64(len(data)) != f.Size || f.Kind != tape.Classify(f.Key) {
			t.Errorf("%s: size %d kind %v, manifest says %d %v", f.Key, len(data), tape.Classify(f.Key), f.Size, f.Kind)
		}
		var got *tape.Record
		switch f.Kind {
		case tape.KindV2Data:
			got = tape.ParseV2(bytes.NewReader(data), read(tape.V2MetaKey(f.Key)), f.Key)
		case tape.KindV1Data:
			var ix *tape.V1Index
			if b := read(tape.V1IndexKey(f.Key)); b != nil {
				if ix, err = tape.ParseV1Index(b); err != nil {
					t.Fatal(err)
				}
			}
			got = tape.ParseV1(bytes.NewReader(data), f.Key, ix)
			if !got.IsTape() {
				got = nil
			}
		default:
			if f.Tape != nil {
				t.Errorf("%s: kind %v has a tape record", f.Key, f.Kind)
			}
			continue
		}
		if (got == nil) != (f.Tape == nil) {
			t.Errorf("%s: is a tape: parser %v, manifest %v", f.Key, got != nil, f.Tape != nil)
			continue
		}
		if got == nil {
			continue
		}
		nTapes++
		if d := diff(got, f.Tape); d != "" {
			t.Errorf("%s:%s", f.Key, d)
		}
	}
	if want := 40 + 5 + 5 + 3 + 2 + 5 + 1; nTapes != want {
		t.Errorf("%d tapes checked, want %d", nTapes, want)
	}
}

func TestDeterministic(t *testing.T) {
	hash := func(b ...[]byte) string {
		h := sha256.New()
		for _, x := range b {
			h.Write(x)
		}
		return hex.EncodeToString(h.Sum(nil))
	}
	t.Run("V2", func(t *testing.T) {
		opts := tapegen.V2Options{Truncate: true, UnknownTypes: true}
		a1, m1, _ := tapegen.V2(3, opts)
		a2, m2, _ := tapegen.V2(3, opts)
		b, _, _ := tapegen.V2(4, opts)
		if hash(a1, m1) != hash(a2, m2) || bytes.Equal(a1, b) {
			t.Fatal("V2 is not a function of its seed")
		}
	})
	t.Run("V1", func(t *testing.T) {
		a1, _ := tapegen.V1(3, tapegen.V1Options{})
		a2, _ := tapegen.V1(3, tapegen.V1Options{})
		if !bytes.Equal(a1, a2) {
			t.Fatal("V1 is not a function of its seed")
		}
	})
	t.Run("WriteLargeV2", func(t *testing.T) {
		h := func() string {
			var buf bytes.Buffer
			if err := tapegen.WriteLargeV2(&buf, 5, 1<<20); err != nil {
				t.Fatal(err)
			}
			return hash(buf.Bytes())
		}
		if h() != h() {
			t.Fatal("WriteLargeV2 is not a function of its seed")
		}
	})
	t.Run("corpus", func(t *testing.T) {
		opts := tapegen.CorpusOptions{Seed: 11, V2: 5, V2NoMeta: 2, V1: 3, Odd: true, OddNames: true, Nested: true, Large: 1 << 20}
		sum := func() string {
			dir := t.TempDir()
			m, err := tapegen.WriteCorpus(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			for _, f := range m.Files {
				b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Key)))
				if err != nil {
					t.Fatal(err)
				}
				io.WriteString(h, f.Key+"\x00")
				h.Write(b)
			}
			mj, _ := json.Marshal(m)
			h.Write(mj)
			return hex.EncodeToString(h.Sum(nil))
		}
		if sum() != sum() {
			t.Fatal("WriteCorpus is not a function of its options")
		}
	})
}

func TestWriteLargeV2Size(t *testing.T) {
	for _, size := range []int64{1, 10 << 10, 3 << 20} {
		var buf bytes.Buffer
		if err := tapegen.WriteLargeV2(&buf, 1, size); err != nil {
			t.Fatal(err)
		}
		n := int64(buf.Len())
		if n < size || (size > 64<<10 && n > size+8<<10) {
			t.Errorf("size %d: wrote %d bytes", size, n)
		}
		if rec := tape.ParseV2(&buf, nil, "l.jsonl"); !rec.Valid {
			t.Errorf("size %d: invalid: %q", size, rec.Problems)
		}
	}
}
