package tape

import (
	"encoding/json"
	"errors"
	"time"
)

// V1Index is a v1 index.json: a catalogue of the tapes in one directory.
// It may be stale; ParseV1 uses it only for what a tape file lacks. Once
// built it is only read, so it may serve concurrent parses.
type V1Index struct {
	Tapes  []V1IndexEntry
	byFile map[string]int // base name of file_path → position in Tapes
	byID   map[string]int
}

// V1IndexEntry is one tape of a V1Index. Fields that were absent or of the
// wrong type are zero.
type V1IndexEntry struct {
	ID         string
	Name       string
	Tags       []string
	CreatedAt  time.Time // from ms since the epoch (or an RFC 3339 string)
	DurationMS int64
	FrameCount int64
	FilePath   string
	SizeBytes  int64
}

// ParseV1Index decodes an index.json. It fails only if data is not a JSON
// object with a "tapes" array; an entry it cannot read is dropped, and a
// field of the wrong type in an entry is left zero.
func ParseV1Index(data []byte) (*V1Index, error) {
	var doc struct {
		Tapes *[]json.RawMessage `json:"tapes"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.Tapes == nil {
		return nil, errors.New("index.json: no tapes array")
	}
	ix := &V1Index{byFile: map[string]int{}, byID: map[string]int{}}
	for _, raw := range *doc.Tapes {
		var e struct {
			ID         string          `json:"id"`
			Name       string          `json:"name"`
			Tags       []string        `json:"tags"`
			CreatedAt  json.RawMessage `json:"created_at"`
			DurationMS int64           `json:"duration_ms"`
			FrameCount int64           `json:"frame_count"`
			FilePath   string          `json:"file_path"`
			SizeBytes  int64           `json:"size_bytes"`
		}
		err := json.Unmarshal(raw, &e)
		var te *json.UnmarshalTypeError
		if err != nil && (!errors.As(err, &te) || te.Field == "") {
			continue // not an object
		}
		created, _ := epochOrRFC3339(e.CreatedAt)
		entry := V1IndexEntry{ID: e.ID, Name: e.Name, Tags: e.Tags, CreatedAt: created,
			DurationMS: e.DurationMS, FrameCount: e.FrameCount, FilePath: e.FilePath,
			SizeBytes: e.SizeBytes}
		if len(entry.Tags) == 0 {
			entry.Tags = nil
		}
		ix.add(entry)
	}
	return ix, nil
}

func (ix *V1Index) add(e V1IndexEntry) {
	n := len(ix.Tapes)
	ix.Tapes = append(ix.Tapes, e)
	if f := baseName(e.FilePath); f != "" {
		if _, dup := ix.byFile[f]; !dup {
			ix.byFile[f] = n
		}
	}
	if e.ID != "" {
		if _, dup := ix.byID[e.ID]; !dup {
			ix.byID[e.ID] = n
		}
	}
}

// Lookup finds the entry of a tape: first by the base name of file_path,
// then by id. It returns nil if there is none (or ix is nil). An index built
// by hand rather than by ParseV1Index is searched linearly.
func (ix *V1Index) Lookup(tapeID, fileName string) *V1IndexEntry {
	if ix == nil {
		return nil
	}
	if ix.byFile == nil {
		for _, pass := range []func(e *V1IndexEntry) bool{
			func(e *V1IndexEntry) bool { return fileName != "" && baseName(e.FilePath) == fileName },
			func(e *V1IndexEntry) bool { return tapeID != "" && e.ID == tapeID },
		} {
			for i := range ix.Tapes {
				if pass(&ix.Tapes[i]) {
					return &ix.Tapes[i]
				}
			}
		}
		return nil
	}
	if i, ok := ix.byFile[fileName]; ok && fileName != "" {
		return &ix.Tapes[i]
	}
	if i, ok := ix.byID[tapeID]; ok && tapeID != "" {
		return &ix.Tapes[i]
	}
	return nil
}

// epochOrRFC3339 reads a time given as ms since the epoch or as RFC 3339.
// Absent or null is the zero time with ok true.
func epochOrRFC3339(raw json.RawMessage) (t time.Time, ok bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, true
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		if ms, err := n.Int64(); err == nil {
			return time.UnixMilli(ms).UTC(), true
		}
		if f, err := n.Float64(); err == nil && f > -1e15 && f < 1e15 {
			return time.UnixMilli(int64(f)).UTC(), true
		}
		return time.Time{}, false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		t, err := parseTime(s)
		return t, err == nil
	}
	return time.Time{}, false
}
