package tapegen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tapefs/tapefs/tape"
)

// V1Options shape a generated v1 tape.
type V1Options struct {
	Key        string // the store key: Truth.Key and the tape id
	Frames     int    // at least this many frames; 0: 6 to 45, by seed
	NoTimeline bool   // leave out the timeline: times come from the frames
	Anonymous  bool   // no session name or tags: only an index entry can give them
}

// V1 generates a v1 tape document and the record a parser must produce for
// it without an index (HasMeta false).
func V1(seed int64, opts V1Options) (doc []byte, truth tape.Record) {
	r := newRand(seed)
	t := newTruth(opts.Key, tape.FormatV1)
	sessionID := uuid(r)
	started := epoch.Add(time.Duration(r.Int64N(60*24*3600*1000)) * time.Millisecond)
	s := newSession(r)
	target := opts.Frames
	if target <= 0 {
		target = 6 + r.IntN(40)
	}
	d := v1Doc{
		Format: v1Format{Version: "1.0", SchemaVersion: 1, CreatedBy: "shadowcat-0.1.0",
			CreatedAt: rfc3339ms(started)},
		Session: v1Session{ID: sessionID, Name: fmt.Sprintf("%s v1 session %d", s.server, r.IntN(1000)),
			Description: words(r, 5), Tags: tags(r), TransportType: "stdio"},
		Frames: []v1Frame{},
	}
	if opts.Anonymous {
		d.Session.Name, d.Session.Tags = "", nil
	}
	s.padLen = func() int { return 0 }
	s.more = func() bool { return len(d.Frames) < target }
	s.emit = func(f *frame) error {
		dir := "ServerToClient"
		if f.c2s {
			dir = "ClientToServer"
		}
		d.Frames = append(d.Frames, v1Frame{ID: uuid(r), Sequence: f.seq,
			Timestamp: started.UnixMilli() + f.ts, Direction: dir, Message: f.msg,
			Metadata: obj{"size": 50 + r.IntN(400), "processing_time_us": r.IntN(900)}})
		t.frame(f)
		return nil
	}
	_ = s.run() // emit never fails
	last := d.Frames[len(d.Frames)-1].Timestamp
	if !opts.NoTimeline {
		d.Timeline = &v1Timeline{StartedAt: started.UnixMilli(), EndedAt: last,
			DurationMS: last - started.UnixMilli(), FrameCount: len(d.Frames)}
	}

	rec := &t.rec
	rec.TapeID, rec.SessionID = stem(opts.Key), sessionID
	rec.Name, rec.Description, rec.Tags = d.Session.Name, d.Session.Description, d.Session.Tags
	rec.Transport, rec.Status = "stdio", tape.StatusFinalized
	rec.CreatedAt = started
	rec.DurationMS = last - started.UnixMilli()
	if !opts.NoTimeline {
		rec.FinalizedAt = time.UnixMilli(last).UTC()
	}
	return encodeIndent(d), t.finish()
}

// IndexEntry is one tape in a v1 index.json.
type IndexEntry struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Tags       []string `json:"tags"`
	CreatedAt  int64    `json:"created_at"` // ms since the epoch
	DurationMS int64    `json:"duration_ms"`
	FrameCount int64    `json:"frame_count"`
	FilePath   string   `json:"file_path"`
	SizeBytes  int64    `json:"size_bytes"`
}

// Entry makes the index entry of a generated v1 tape (file path: the base
// name of its key).
func Entry(truth tape.Record, size int) IndexEntry {
	return IndexEntry{ID: truth.TapeID, Name: truth.Name, Tags: truth.Tags,
		CreatedAt: truth.CreatedAt.UnixMilli(), DurationMS: truth.DurationMS,
		FrameCount: truth.FrameCount, FilePath: truth.TapeID + ".json", SizeBytes: int64(size)}
}

// V1Index encodes an index.json listing entries.
func V1Index(entries []IndexEntry) []byte {
	doc := struct {
		Version int          `json:"version"`
		Tapes   []IndexEntry `json:"tapes"`
	}{1, make([]IndexEntry, 0, len(entries))}
	for _, e := range entries {
		if e.Tags == nil {
			e.Tags = []string{}
		}
		doc.Tapes = append(doc.Tapes, e)
	}
	return encodeIndent(doc)
}

func encodeIndent(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		panic(err) // plain data always encodes
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}
