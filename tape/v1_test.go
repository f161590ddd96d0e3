package tape_test

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tapefs/tapefs/internal/tapegen"
	"github.com/tapefs/tapefs/tape"
)

func TestParseV1IndexFill(t *testing.T) {
	const key = "v1/aaaa.json"
	named, namedTruth := tapegen.V1(1, tapegen.V1Options{Key: key})
	anon, anonTruth := tapegen.V1(1, tapegen.V1Options{Key: key, Anonymous: true})
	entry := tapegen.IndexEntry{ID: "aaaa", Name: "from index", Tags: []string{"idx"},
		CreatedAt: 1000, DurationMS: 5, FrameCount: 999, FilePath: "aaaa.json"}
	index := func(entries ...tapegen.IndexEntry) *tape.V1Index {
		ix, err := tape.ParseV1Index(tapegen.V1Index(entries))
		if err != nil {
			t.Fatal(err)
		}
		return ix
	}
	byID := entry
	byID.FilePath, byID.ID = "", "aaaa"
	renamed := entry
	renamed.ID = "the-real-id"

	cases := []struct {
		name string
		doc  []byte
		ix   *tape.V1Index
		want func(r tape.Record) tape.Record
	}{
		{"no index", named, nil, func(r tape.Record) tape.Record { return r }},
		{"not in index", named, index(tapegen.IndexEntry{ID: "other", FilePath: "other.json"}),
			func(r tape.Record) tape.Record { return r }},
		{"tape file wins", named, index(entry), func(r tape.Record) tape.Record {
			r.HasMeta = true
			return r
		}},
		{"index fills name and tags", anon, index(entry), func(r tape.Record) tape.Record {
			r.HasMeta, r.Name, r.Tags = true, "from index", []string{"idx"}
			return r
		}},
		{"found by id", anon, index(byID), func(r tape.Record) tape.Record {
			r.HasMeta, r.Name, r.Tags = true, "from index", []string{"idx"}
			return r
		}},
		{"index id names the tape", named, index(renamed), func(r tape.Record) tape.Record {
			r.HasMeta, r.TapeID = true, "the-real-id"
			return r
		}},
		{"hand-built index", anon, &tape.V1Index{Tapes: []tape.V1IndexEntry{{ID: "aaaa", Name: "by hand"}}},
			func(r tape.Record) tape.Record {
				r.HasMeta, r.Name = true, "by hand"
				return r
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			truth := namedTruth
			if bytes.Equal(c.doc, anon) {
				truth = anonTruth
			}
			want := c.want(truth)
			got := tape.ParseV1(bytes.NewReader(c.doc), key, c.ix)
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("got  %+v\nwant %+v", *got, want)
			}
		})
	}
}

func TestParseV1IndexOnlyFillsGaps(t *testing.T) {
	doc := `{"format": {"version": "1.0"}, "session": {"id": "s"}, "timeline": {"frame_count": 7}}`
	ix := &tape.V1Index{Tapes: []tape.V1IndexEntry{{ID: "t", Name: "n", DurationMS: 42, FrameCount: 9,
		CreatedAt: time.UnixMilli(1754000000000).UTC()}}}
	got := tape.ParseV1(strings.NewReader(doc), "t.json", ix)
	if got.Name != "n" || got.DurationMS != 42 || got.FrameCount != 7 || !got.CreatedAt.Equal(time.UnixMilli(1754000000000)) ||
		!reflect.DeepEqual(got.Problems, []string{"no frames"}) {
		t.Errorf("%+v", got)
	}
}

func TestParseV1Odd(t *testing.T) {
	frame := func(dir, msg string) string {
		return `{"id": "f", "sequence": 0, "timestamp": 1754000000000, "direction": "` + dir + `", "message": ` + msg + `}`
	}
	init := `{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "p", "clientInfo": {"name": "c", "version": "1"}}}`
	cases := []struct {
		name     string
		doc      string
		isTape   bool
		problems []string
		check    func(t *testing.T, r *tape.Record)
	}{
		{"empty", "", true, []string{"empty tape"}, nil},
		{"white space", " \n", true, []string{"empty tape"}, nil},
		{"truncated", `{"format": {"version": "1.0"}, "frames": [` + frame("ClientToServer", init) + `,`, true,
			[]string{"invalid JSON"}, func(t *testing.T, r *tape.Record) {
				if r.FrameCount != 1 || r.ClientName != "c" {
					t.Errorf("frames read before the break: %+v", r)
				}
			}},
		{"unbalanced", `{"a": [1, 2}`, true, []string{"invalid JSON"}, nil},
		{"array unbalanced", `[1, 2`, true, []string{"invalid JSON"}, nil},
		{"trailing garbage", `{"frames": []} x`, true, []string{"invalid JSON"}, nil},
		{"two documents", `{"frames": []} {"frames": []}`, true, []string{"invalid JSON"}, nil},
		{"deep nesting", strings.Repeat("[", 100_000), true, []string{"invalid JSON"}, nil},
		{"deep nesting in frames", `{"frames": [` + strings.Repeat("[", 100_000), true, []string{"invalid JSON"}, nil},
		{"plain object", `{"name": "settings", "tags": ["x"]}`, false, nil, nil},
		{"session only", `{"session": {"id": "x"}}`, false, nil, nil},
		{"array", `[1, 2, {"frames": []}]`, false, nil, nil},
		{"number", `42`, false, nil, nil},
		{"string", `"frames"`, false, nil, nil},
		{"deep but valid", strings.Repeat("[", 5000) + strings.Repeat("]", 5000), false, nil, nil},
		{"minimal tape", `{"frames": []}`, true, nil, nil},
		{"format only", `{"format": {"version": "1.0"}}`, true, []string{"no frames"}, nil},
		{"frames not an array", `{"format": {}, "frames": {"a": [1]}}`, true,
			[]string{"wrong type for frames", "no frames"}, nil},
		{"session wrong types", `{"session": {"id": 5, "name": "n", "tags": "x"}, "frames": []}`, true,
			[]string{"wrong type for session.id"}, func(t *testing.T, r *tape.Record) {
				if r.Name != "n" {
					t.Errorf("name %q", r.Name)
				}
			}},
		{"timeline wrong types", `{"timeline": {"started_at": true, "duration_ms": "x"}, "frames": []}`, true,
			[]string{"wrong type for timeline.duration_ms", "wrong type for timeline.started_at"}, nil},
		{"timeline as RFC 3339", `{"timeline": {"started_at": "2025-08-01T10:00:00.5Z"}, "frames": []}`, true, nil,
			func(t *testing.T, r *tape.Record) {
				if !r.CreatedAt.Equal(time.Date(2025, 8, 1, 10, 0, 0, 5e8, time.UTC)) {
					t.Errorf("created %v", r.CreatedAt)
				}
			}},
		{"frame not an object", `{"frames": [1, ` + frame("ServerToClient", `{"id": 1, "result": {}}`) + `]}`, true,
			[]string{"frames[0]: not a JSON object"}, func(t *testing.T, r *tape.Record) {
				if r.FrameCount != 1 || r.ServerToClient != 1 {
					t.Errorf("%+v", r)
				}
			}},
		{"unknown direction", `{"frames": [` + frame("Up", init) + `]}`, true,
			[]string{"frames[0]: unknown direction"}, nil},
		{"method wrong type", `{"frames": [` + frame("ClientToServer", `{"id": 1, "method": []}`) + `]}`, true,
			[]string{"frames[0]: wrong type for message.method"}, nil},
		{"invalid UTF-8", "{\"frames\": [" + frame("ClientToServer", "{\"method\": \"\xff\"}") + "]}", true,
			[]string{"frames[0]: invalid UTF-8"}, nil},
		{"pairs by id", `{"frames": [` + frame("ClientToServer", init) + `, ` +
			strings.Replace(frame("ServerToClient", `{"id": 1, "result": {"serverInfo": {"name": "s", "version": "2"}}}`),
				"1754000000000", "1754000000250", 1) + `]}`, true, nil,
			func(t *testing.T, r *tape.Record) {
				want := []tape.Pair{{Method: "initialize", RequestSeq: 0, ResponseSeq: 0, RTTMS: 250, Status: "success"}}
				if r.ServerName != "s" || r.ProtocolVersion != "p" || r.DurationMS != 250 || !reflect.DeepEqual(r.Slowest, want) {
					t.Errorf("%+v", r)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			got := tape.ParseV1(strings.NewReader(c.doc), "d/t.json", nil)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
			if got.IsTape() != c.isTape {
				t.Fatalf("IsTape %v, want %v: %+v", got.IsTape(), c.isTape, got)
			}
			if !c.isTape {
				if got.Valid || !reflect.DeepEqual(got.Problems, []string{"not a tape"}) || got.Key != "d/t.json" {
					t.Errorf("not a tape: %+v", got)
				}
				return
			}
			if !reflect.DeepEqual(got.Problems, c.problems) {
				t.Errorf("problems %q, want %q", got.Problems, c.problems)
			}
			if got.Format != tape.FormatV1 || got.TapeID != "t" || got.Status != tape.StatusFinalized {
				t.Errorf("identity: %+v", got)
			}
			if c.check != nil {
				c.check(t, got)
			}
			checkInvariants(t, got)
		})
	}
}

func TestParseV1Index(t *testing.T) {
	ix, err := tape.ParseV1Index([]byte(`{"version": 1, "tapes": [
		{"id": "a", "name": "A", "tags": ["x"], "created_at": 1754000000000, "duration_ms": 5, "frame_count": 3, "file_path": "sub/a.json", "size_bytes": 10},
		{"id": "b", "name": 7, "created_at": "2025-08-01T00:00:00Z"},
		"not an entry",
		{"id": "a", "name": "duplicate"}
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(ix.Tapes) != 3 {
		t.Fatalf("%d entries", len(ix.Tapes))
	}
	a := ix.Lookup("zzz", "a.json")
	if a == nil || a.Name != "A" || a.FrameCount != 3 || !a.CreatedAt.Equal(time.UnixMilli(1754000000000)) {
		t.Errorf("a: %+v", a)
	}
	if b := ix.Lookup("b", "b.json"); b == nil || b.Name != "" || b.CreatedAt.Year() != 2025 {
		t.Errorf("b: %+v", b)
	}
	if ix.Lookup("a", "") != a || ix.Lookup("c", "c.json") != nil || ix.Lookup("", "") != nil {
		t.Error("lookup")
	}
	var nilIndex *tape.V1Index
	if nilIndex.Lookup("a", "a.json") != nil {
		t.Error("nil index")
	}
	for _, bad := range []string{``, `{`, `[]`, `{"tapes": 5}`, `{"version": 1}`} {
		if _, err := tape.ParseV1Index([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
