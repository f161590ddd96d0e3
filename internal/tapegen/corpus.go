package tapegen

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/tapefs/tapefs/tape"
)

// CorpusOptions say what WriteCorpus writes.
type CorpusOptions struct {
	Seed     int64
	V2       int   // clean v2 tapes with a .meta.json
	V2NoMeta int   // clean v2 tapes without one
	V1       int   // v1 tapes under v1/ with an index.json (see WriteCorpus)
	Odd      bool  // odd files under odd/, and notes.txt at the root
	OddNames bool  // v2 tapes under "odd names/" with spaces, unicode, %, #, ?, \ and : in their names
	Nested   bool  // v2 tapes under team-x/YYYY/MM/ rather than at the root
	Large    int64 // > 0: large/large.jsonl (+ meta) of at least this many bytes
}

// Manifest lists what WriteCorpus wrote.
type Manifest struct {
	Seed  int64
	Files []File // sorted by key
}

// File is one object of a corpus.
type File struct {
	Key  string    // relative, '/'-separated
	Kind tape.Kind // tape.Classify(Key)
	Size int64
	// Tape is the record a parser must produce for a tape (valid or not);
	// nil for what is not a tape: meta and index files, plain files, and
	// JSON documents that are not v1 tapes.
	Tape *tape.Record
}

// Tapes returns the expected records of all tapes, by key.
func (m Manifest) Tapes() []tape.Record {
	var out []tape.Record
	for _, f := range m.Files {
		if f.Tape != nil {
			out = append(out, *f.Tape)
		}
	}
	return out
}

// File returns the entry for key.
func (m Manifest) File(key string) (File, bool) {
	i := sort.Search(len(m.Files), func(i int) bool { return m.Files[i].Key >= key })
	if i < len(m.Files) && m.Files[i].Key == key {
		return m.Files[i], true
	}
	return File{}, false
}

// WriteCorpus writes a deterministic corpus into dir (created if needed)
// and returns its manifest. The layout:
//
//	<id>.jsonl, <id>.meta.json         V2 tapes (team-x/YYYY/MM/ with Nested)
//	<id>.jsonl                         V2NoMeta tapes (likewise)
//	v1/<id>.json, v1/index.json        V1 tapes; with 2 or more, the first has no session
//	                                   name or tags (the index has them), the last is missing
//	                                   from the index, and with 3 or more the second has no
//	                                   timeline; the index also lists a file that does not exist
//	odd/<id>.jsonl (+ meta)            a truncated invalid line in the middle
//	odd/no-init.jsonl                  no init line, no meta
//	odd/<id>.jsonl (+ meta)            unknown line types, no correlation lines (valid)
//	odd/empty.jsonl                    empty
//	odd/orphan.meta.json               a meta without its .jsonl
//	odd/not-a-tape.json, odd/list.json valid JSON that is not a tape
//	odd/broken.json                    malformed JSON: an invalid v1 tape
//	notes.txt                          plain text
//	odd names/…                        v2 tapes with awkward names
//	large/large.jsonl (+ meta)         the large tape
func WriteCorpus(dir string, c CorpusOptions) (Manifest, error) {
	w := &corpus{dir: dir, opts: c, m: Manifest{Seed: c.Seed}}
	steps := []func() error{w.v2, w.v1, w.odd, w.oddNames, w.large}
	for _, step := range steps {
		if err := step(); err != nil {
			return Manifest{}, err
		}
	}
	sort.Slice(w.m.Files, func(i, j int) bool { return w.m.Files[i].Key < w.m.Files[j].Key })
	return w.m, nil
}

type corpus struct {
	dir  string
	opts CorpusOptions
	m    Manifest
	n    int // items generated, for their seeds
}

// seed returns the seed of the next generated item.
func (w *corpus) seed() int64 {
	w.n++
	return subSeed(w.opts.Seed, w.n)
}

func (w *corpus) put(key string, data []byte, truth *tape.Record) error {
	path := filepath.Join(w.dir, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	w.add(key, int64(len(data)), truth)
	return nil
}

func (w *corpus) add(key string, size int64, truth *tape.Record) {
	if truth != nil {
		truth.Key = key
	}
	w.m.Files = append(w.m.Files, File{Key: key, Kind: tape.Classify(key), Size: size, Tape: truth})
}

// putV2 writes a generated v2 tape under prefix (its base name: the tape
// id, unless name is given).
func (w *corpus) putV2(prefix, name string, opts V2Options) error {
	if name != "" {
		opts.Key = prefix + name + ".jsonl"
	}
	jsonl, meta, truth := V2(w.seed(), opts)
	if name == "" {
		name = truth.TapeID
		if w.opts.Nested {
			prefix += fmt.Sprintf("team-%c/%s/", 'a'+truth.CreatedAt.Day()%3, truth.CreatedAt.Format("2006/01"))
		}
	}
	key := prefix + name + ".jsonl"
	if meta != nil {
		if err := w.put(tape.V2MetaKey(key), meta, nil); err != nil {
			return err
		}
	}
	return w.put(key, jsonl, &truth)
}

func (w *corpus) v2() error {
	for i := range w.opts.V2 + w.opts.V2NoMeta {
		if err := w.putV2("", "", V2Options{NoMeta: i >= w.opts.V2}); err != nil {
			return err
		}
	}
	return nil
}

func (w *corpus) v1() error {
	n := w.opts.V1
	if n == 0 {
		return nil
	}
	var entries []IndexEntry
	for i := range n {
		seed := w.seed()
		id := uuid(newRand(seed))
		key := "v1/" + id + ".json"
		opts := V1Options{Key: key, Anonymous: i == 0 && n >= 2, NoTimeline: i == 1 && n >= 3}
		doc, truth := V1(seed, opts)
		if indexed := i < n-1 || n == 1; indexed {
			e := Entry(truth, len(doc))
			if opts.Anonymous {
				e.Name, e.Tags = fmt.Sprintf("indexed session %d", i), []string{"from-index"}
				truth.Name, truth.Tags = e.Name, e.Tags
			}
			truth.HasMeta = true
			entries = append(entries, e)
		}
		if err := w.put(key, doc, &truth); err != nil {
			return err
		}
	}
	entries = append(entries, IndexEntry{ID: "00000000-0000-4000-8000-000000000000",
		Name: "deleted long ago", FilePath: "00000000-0000-4000-8000-000000000000.json"})
	return w.put("v1/index.json", V1Index(entries), nil)
}

func (w *corpus) odd() error {
	if !w.opts.Odd {
		return nil
	}
	if err := w.putV2("odd/", "", V2Options{Truncate: true, Frames: 20}); err != nil {
		return err
	}
	if err := w.putV2("odd/", "no-init", V2Options{NoInit: true, NoMeta: true}); err != nil {
		return err
	}
	if err := w.putV2("odd/", "", V2Options{UnknownTypes: true, NoCorrelations: true}); err != nil {
		return err
	}
	_, orphan, _ := V2(w.seed(), V2Options{})
	broken := tape.Record{Format: tape.FormatV1, TapeID: "broken", Status: tape.StatusFinalized,
		Methods: map[string]int64{}, Tools: map[string]int64{}, Problems: []string{"invalid JSON"}}
	empty := tape.Record{Format: tape.FormatV2, TapeID: "empty", Status: tape.StatusRecording,
		Methods: map[string]int64{}, Tools: map[string]int64{}, Problems: []string{"empty tape"}}
	files := []struct {
		key   string
		data  string
		truth *tape.Record
	}{
		{"odd/empty.jsonl", "", &empty},
		{"odd/orphan.meta.json", string(orphan), nil},
		{"odd/not-a-tape.json", `{"name": "settings", "frames_per_second": 30, "tags": ["x"]}` + "\n", nil},
		{"odd/list.json", "[1, 2, 3]\n", nil},
		{"odd/broken.json", `{"format": {"version": "1.0"}, "session": {"id": "`, &broken},
		{"notes.txt", "notes about these tapes\nnot a tape: served byte for byte\n", nil},
	}
	for _, f := range files {
		if err := w.put(f.key, []byte(f.data), f.truth); err != nil {
			return err
		}
	}
	return nil
}

func (w *corpus) oddNames() error {
	if !w.opts.OddNames {
		return nil
	}
	names := []string{"tape with spaces", "ünïcødé テープ", "100% #1?", `back\slash`, "colon:tape"}
	for i, name := range names {
		if err := w.putV2("odd names/", name, V2Options{NoMeta: i == 3}); err != nil {
			return err
		}
	}
	return nil
}

func (w *corpus) large() error {
	if w.opts.Large <= 0 {
		return nil
	}
	const key = "large/large.jsonl"
	path := filepath.Join(w.dir, "large", "large.jsonl")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	meta, truth, err := WriteV2(f, w.seed(), V2Options{Key: key, Size: w.opts.Large,
		Status: tape.StatusFinalized})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	w.add(key, fi.Size(), &truth)
	return w.put(tape.V2MetaKey(key), meta, nil)
}
