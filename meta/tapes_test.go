package meta

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/tapefs/tapefs/tape"
)

func record(key, session, status string, valid bool, created time.Time, tags ...string) *tape.Record {
	r := &tape.Record{
		Key: key, Format: tape.FormatV2, TapeID: "id-" + key, SessionID: session,
		Name: "name " + key, Description: "desc", Tags: tags,
		CreatedAt: created, UpdatedAt: created.Add(time.Second), Status: status, DurationMS: 1234,
		FrameCount: 10, ErrorCount: 1, ClientToServer: 6, ServerToClient: 4,
		Methods:         map[string]int64{"initialize": 1, "tools/call": 3},
		Tools:           map[string]int64{"read_file": 2, "write_file": 1},
		ProtocolVersion: "2025-06-18", ClientName: "claude-code", ClientVersion: "1.0",
		ServerName: "fs", ServerVersion: "0.3", Transport: "stdio",
		ErrorMessages: []string{"boom"},
		Slowest:       []tape.Pair{{Method: "tools/call", RequestSeq: 4, ResponseSeq: 5, RTTMS: 99, Status: "success"}},
		HasMeta:       true, Valid: valid,
	}
	if !valid {
		r.Problems = []string{"line 3: invalid JSON"}
	}
	return r
}

func TestTapeRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	obj := put(t, s, "t/a.jsonl", "t/a.meta.json")
	created := time.Date(2025, 8, 2, 10, 58, 2, 233e6, time.UTC)
	rec := record("t/a.jsonl", "s1", tape.StatusFinalized, true, created, "b", "a", "b")
	src := TapeSource{Data: StampOf(obj[0]), Companion: StampOf(obj[1])}
	if err := s.PutTape(ctx, rec, src); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.GetTape(ctx, "t/a.jsonl")
	if !ok || err != nil {
		t.Fatalf("GetTape: %v %v", ok, err)
	}
	want := *rec
	want.Tags = []string{"b", "a"} // duplicates dropped, order kept
	if !got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("times: %v %v", got.CreatedAt, got.UpdatedAt)
	}
	got.CreatedAt, got.UpdatedAt = want.CreatedAt, want.UpdatedAt
	if !reflect.DeepEqual(got.Record, want) {
		t.Errorf("GetTape record:\n got %+v\nwant %+v", got.Record, want)
	}
	if got.ObjectID != obj[0].ID || got.Size != obj[0].Size || !got.Source.Data.Same(src.Data) || !got.Source.Companion.Same(src.Companion) {
		t.Errorf("GetTape row: %+v", got)
	}
	if at, ok, err := s.IndexedAt(ctx, "t/a.jsonl"); !ok || err != nil || !at.Data.Same(src.Data) || !at.Companion.Same(src.Companion) {
		t.Errorf("IndexedAt = %+v %v %v", at, ok, err)
	}

	// Re-putting replaces the child rows.
	rec2 := record("t/a.jsonl", "s1", tape.StatusFinalized, true, created, "c")
	rec2.Methods = nil
	if err := s.PutTape(ctx, rec2, src); err != nil {
		t.Fatal(err)
	}
	got, _, _ = s.GetTape(ctx, "t/a.jsonl")
	if !slices.Equal(got.Tags, []string{"c"}) || got.Methods != nil {
		t.Errorf("after re-put: tags %v methods %v", got.Tags, got.Methods)
	}

	if err := s.PutTape(ctx, record("nope.jsonl", "", "", true, created), src); !errors.Is(err, ErrNotFound) {
		t.Errorf("PutTape without object = %v", err)
	}

	// The tape follows its object through renames and goes with it.
	if err := s.RenamePrefix(ctx, "t", "u"); err != nil {
		t.Fatal(err)
	}
	at, ok, _ := s.IndexedAt(ctx, "u/a.jsonl")
	if !ok || at.Companion.Key != "u/a.meta.json" {
		t.Errorf("after RenamePrefix: %+v %v", at, ok)
	}
	if err := s.RenameObject(ctx, "u/a.jsonl", "v.jsonl"); err != nil {
		t.Fatal(err)
	}
	if got, ok, _ := s.GetTape(ctx, "v.jsonl"); !ok || got.Key != "v.jsonl" || got.TapeID != rec.TapeID {
		t.Errorf("after RenameObject: %+v %v", got, ok)
	}
	if err := s.DeleteObject(ctx, "v.jsonl"); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Stats(ctx); st.Tapes != 0 {
		t.Errorf("tape survived its object: %+v", st)
	}
	var n int
	s.read.QueryRow(`SELECT (SELECT count(*) FROM tape_tags) + (SELECT count(*) FROM tape_methods) + (SELECT count(*) FROM tape_tools)`).Scan(&n)
	if n != 0 {
		t.Errorf("%d child rows left", n)
	}
}

func TestListTapes(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	recs := []*tape.Record{
		record("a.jsonl", "s1", tape.StatusFinalized, true, base.Add(1*time.Hour), "prod", "debug"),
		record("b.jsonl", "s1", tape.StatusRecording, true, base.Add(3*time.Hour), "debug"),
		record("c.jsonl", "s2", tape.StatusFinalized, false, base.Add(2*time.Hour), "prod"),
		record("d.json", "s3", tape.StatusFinalized, true, time.Time{}),
	}
	recs[3].Format = tape.FormatV1
	for _, r := range recs {
		o := put(t, s, r.Key)[0]
		if err := s.PutTape(ctx, r, TapeSource{Data: StampOf(o)}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		f    TapeFilter
		want []string
	}{
		{"all, newest first, unknown time last", TapeFilter{}, []string{"b.jsonl", "c.jsonl", "a.jsonl", "d.json"}},
		{"limit", TapeFilter{Limit: 2}, []string{"b.jsonl", "c.jsonl"}},
		{"tag", TapeFilter{Tag: "prod"}, []string{"c.jsonl", "a.jsonl"}},
		{"session", TapeFilter{Session: "s1"}, []string{"b.jsonl", "a.jsonl"}},
		{"status", TapeFilter{Status: tape.StatusRecording}, []string{"b.jsonl"}},
		{"format", TapeFilter{Format: tape.FormatV1}, []string{"d.json"}},
		{"invalid", TapeFilter{Invalid: true}, []string{"c.jsonl"}},
		{"combined", TapeFilter{Tag: "debug", Status: tape.StatusFinalized}, []string{"a.jsonl"}},
		{"none", TapeFilter{Tag: "nope"}, nil},
	}
	for _, tt := range tests {
		rows, err := s.ListTapes(ctx, tt.f)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, r := range rows {
			keys = append(keys, r.Key)
		}
		if !slices.Equal(keys, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, keys, tt.want)
		}
	}
	st, _ := s.Stats(ctx)
	if st.Tapes != 4 || st.InvalidTapes != 1 {
		t.Errorf("Stats = %+v", st)
	}
	srcs, err := s.IndexedSources(ctx)
	if err != nil || len(srcs) != 4 {
		t.Errorf("IndexedSources = %v, %v", srcs, err)
	}
	if err := s.DeleteTape(ctx, "a.jsonl"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.GetTape(ctx, "a.jsonl"); ok {
		t.Error("DeleteTape left the tape")
	}
	if _, ok, _ := s.GetObject(ctx, "a.jsonl"); !ok {
		t.Error("DeleteTape removed the object")
	}
}
