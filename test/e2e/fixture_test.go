package e2e

// Test data comes from internal/tapegen, the project's deterministic
// generator: a corpus with the record a correct indexer must produce for
// every tape, plus a few files of the e2e suite's own.

import (
	"bytes"
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tapefs/tapefs/internal/tapegen"
	"github.com/tapefs/tapefs/tape"
)

// Corpus is the test data: store keys with their bytes, what the index must
// say about each tape, and the keys some tests need in a given role.
type Corpus struct {
	Files map[string][]byte
	Tapes map[string]WantTape    // by data key (.jsonl or v1 .json)
	Truth map[string]tape.Record // the generator's whole record, by data key
	// NotTapes are keys that must not be listed as tapes (.meta.json,
	// index.json, plain files, JSON that is not a tape).
	NotTapes []string
	// ToolsCall are the keys whose bytes contain "tools/call".
	ToolsCall []string

	Malformed string // the .jsonl with a truncated invalid line
	V2Tape    string // a valid v2 tape with a .meta.json that calls tools
	NoMeta    string // a valid v2 tape without a .meta.json
	PlainText string // a plain text file at the root
	OddText   string // a plain text file with an awkward name under "odd names/"
	Nested    string // a directory two levels deep holding v2 tapes
	Largest   string // the biggest file
}

// WantTape is the expected `tapefs ls --json` record of one tape. Fields
// the test cannot pin down are nil / zero / -1 and are not compared.
type WantTape struct {
	Key        string
	TapeID     string
	SessionID  string
	Name       *string
	Tags       []string // nil: not compared
	CreatedAt  time.Time
	Status     *string
	Format     string
	FrameCount int64 // -1: not compared
	ErrorCount int64 // -1: not compared
	Size       int64
	Valid      bool
}

// wantFromRecord is the ls record the generator's truth implies.
func wantFromRecord(key string, size int64, r tape.Record) WantTape {
	tags := r.Tags
	if tags == nil {
		tags = []string{}
	}
	return WantTape{
		Key: key, TapeID: r.TapeID, SessionID: r.SessionID, Name: ptr(r.Name), Tags: tags,
		CreatedAt: r.CreatedAt, Status: ptr(r.Status), Format: string(r.Format),
		FrameCount: r.FrameCount, ErrorCount: r.ErrorCount, Size: size, Valid: r.Valid,
	}
}

// corpusOptions is the standard corpus: both formats, with and without
// meta, nested directories, odd files and names, and a 1.5 MiB tape for the
// concurrent readers.
var corpusOptions = tapegen.CorpusOptions{
	Seed: 20250801, V2: 6, V2NoMeta: 2, V1: 3,
	Odd: true, OddNames: true, Nested: true, Large: 3 << 19,
}

// newCorpus generates the standard corpus.
func newCorpus(t testing.TB) *Corpus {
	t.Helper()
	dir := t.TempDir()
	man, err := tapegen.WriteCorpus(dir, corpusOptions)
	if err != nil {
		t.Fatalf("tapegen.WriteCorpus: %v", err)
	}
	c := &Corpus{Files: map[string][]byte{}, Tapes: map[string]WantTape{}, Truth: map[string]tape.Record{}}
	for _, f := range man.Files {
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Key)))
		if err != nil {
			t.Fatal(err)
		}
		c.Files[f.Key] = data
		if f.Tape != nil {
			c.Tapes[f.Key] = wantFromRecord(f.Key, f.Size, *f.Tape)
			c.Truth[f.Key] = *f.Tape
		} else {
			c.NotTapes = append(c.NotTapes, f.Key)
		}
	}
	// A plain file with an awkward name, of our own.
	c.OddText = "odd names/back\\slash & 'quotes'.txt"
	c.Files[c.OddText] = []byte("a plain file with an odd name\n")
	c.NotTapes = append(c.NotTapes, c.OddText)

	for _, key := range c.Keys() {
		data := c.Files[key]
		w, isTape := c.Tapes[key]
		if bytes.Contains(data, []byte(`"tools/call"`)) {
			c.ToolsCall = append(c.ToolsCall, key)
		}
		if strings.HasSuffix(key, ".jsonl") && hasBadLine(data) {
			if c.Malformed != "" {
				t.Fatalf("fixture: two malformed tapes, %q and %q", c.Malformed, key)
			}
			c.Malformed = key
		}
		switch {
		case c.V2Tape == "" && isTape && w.Format == "v2" && w.Valid && strings.Count(key, "/") >= 2 && !strings.HasPrefix(key, "odd") &&
			c.Files[strings.TrimSuffix(key, ".jsonl")+".meta.json"] != nil && bytes.Contains(data, []byte(`"tools/call"`)):
			c.V2Tape = key
		case c.NoMeta == "" && isTape && w.Format == "v2" && w.Valid && len(data) > 0 &&
			c.Files[strings.TrimSuffix(key, ".jsonl")+".meta.json"] == nil && !strings.HasPrefix(key, "odd"):
			c.NoMeta = key
		case c.PlainText == "" && !isTape && !strings.Contains(key, "/") && !strings.HasSuffix(key, ".json"):
			c.PlainText = key
		}
		if c.Largest == "" || len(data) > len(c.Files[c.Largest]) {
			c.Largest = key
		}
	}
	if c.V2Tape != "" {
		c.Nested = strings.Join(strings.Split(c.V2Tape, "/")[:2], "/")
	}
	for role, key := range map[string]string{"malformed": c.Malformed, "v2 tape": c.V2Tape, "no-meta tape": c.NoMeta,
		"plain text": c.PlainText, "nested dir": c.Nested} {
		if key == "" {
			t.Fatalf("fixture: the corpus has no %s (tapegen options %+v)", role, corpusOptions)
		}
	}
	sort.Strings(c.NotTapes)
	return c
}

func hasBadLine(data []byte) bool {
	for _, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		if len(line) > 0 && !json.Valid(line) {
			return true
		}
	}
	return false
}

// Keys returns every key of the corpus, sorted.
func (c *Corpus) Keys() []string {
	keys := make([]string, 0, len(c.Files))
	for k := range c.Files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Under returns the corpus files below dir.
func (c *Corpus) Under(dir string) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range c.Files {
		if strings.HasPrefix(k, dir+"/") {
			out[k] = v
		}
	}
	return out
}

// dirsOf returns every directory the keys imply ("" is the root), sorted.
func dirsOf(keys []string) []string {
	set := map[string]bool{"": true}
	for _, k := range keys {
		for d := path.Dir(k); d != "."; d = path.Dir(d) {
			set[d] = true
		}
	}
	out := make([]string, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// genTape is one generated v2 tape outside the corpus.
type genTape struct {
	Data, Meta []byte
	Truth      tape.Record
}

func (g genTape) ID() string { return g.Truth.TapeID }

// Want is the ls record of the tape stored at key.
func (g genTape) Want(key string) WantTape {
	return wantFromRecord(key, int64(len(g.Data)), g.Truth)
}

// newTape returns a fresh valid v2 tape (with its .meta.json), e.g. to cp
// into a mount.
func newTape(seed int64, frames int) genTape {
	data, meta, truth := tapegen.V2(seed, tapegen.V2Options{Frames: frames, Status: tape.StatusFinalized})
	return genTape{Data: data, Meta: meta, Truth: truth}
}

// bigTape returns a valid v2 tape of at least size bytes.
func bigTape(size int64) genTape {
	data, meta, truth := tapegen.V2(42, tapegen.V2Options{Size: size, Status: tape.StatusFinalized})
	return genTape{Data: data, Meta: meta, Truth: truth}
}

func ptr[T any](v T) *T { return &v }

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// TestFixture checks the corpus the other tests rely on (no mount).
func TestFixture(t *testing.T) {
	c := newCorpus(t)
	again := newCorpus(t)
	for key, data := range c.Files {
		if !bytes.Equal(data, again.Files[key]) {
			t.Errorf("%q: the generator is not deterministic", key)
		}
	}
	for key, w := range c.Tapes {
		if int64(len(c.Files[key])) != w.Size {
			t.Errorf("%q: size %d, manifest says %d", key, len(c.Files[key]), w.Size)
		}
	}
	if w := c.Tapes[c.Malformed]; w.Valid {
		t.Errorf("the malformed tape %q is expected to be valid", c.Malformed)
	}
	if len(c.ToolsCall) < 3 || len(c.ToolsCall) == len(c.Files) {
		t.Errorf("want some but not all files to call tools: %d of %d", len(c.ToolsCall), len(c.Files))
	}
	t.Logf("%d files, %d tapes; roles: malformed %q, v2 %q, no meta %q, text %q, nested %q, largest %q (%d bytes)",
		len(c.Files), len(c.Tapes), c.Malformed, c.V2Tape, c.NoMeta, c.PlainText, c.Nested, c.Largest, len(c.Files[c.Largest]))
}
