package tape_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"github.com/tapefs/tapefs/internal/tapegen"
	"github.com/tapefs/tapefs/tape"
)

func FuzzParseV2(f *testing.F) {
	for seed := range int64(4) {
		opts := []tapegen.V2Options{{Frames: 8}, {Frames: 8, NoCorrelations: true, UnknownTypes: true},
			{Frames: 12, Truncate: true}, {Frames: 6, NoInit: true}}[seed]
		jsonl, meta, _ := tapegen.V2(seed, opts)
		f.Add(jsonl, meta, meta != nil)
	}
	f.Add([]byte{}, []byte{}, false)
	f.Add([]byte("\n\n"), []byte(`{"tags": "x"}`), true)
	f.Add([]byte(`{"type":"init"}`+"\n"+`{"type":"frame","seq":"1","dir":"up","env":{"message":{"id":[],"method":{}}}}`), []byte(`[]`), true)
	f.Add([]byte(`{"type":"correlation","request_seq":0,"response_seq":1,"rtt_ms":1e400}`), []byte(`{`), true)
	f.Add([]byte("{\"type\":\"frame\",\"env\":{\"message\":{\"error\":{\"message\":\"\xff\"}}}}"), []byte(nil), false)

	f.Fuzz(func(t *testing.T, data, meta []byte, hasMeta bool) {
		if !hasMeta {
			meta = nil
		}
		got := tape.ParseV2(bytes.NewReader(data), meta, "dir/fuzz.jsonl")
		if got.Format != tape.FormatV2 || got.Key != "dir/fuzz.jsonl" || got.TapeID == "" {
			t.Fatalf("identity: %+v", got)
		}
		checkInvariants(t, got)
		if n := int64(bytes.Count(data, []byte("\n")) + 1); got.FrameCount > n {
			t.Fatalf("%d frames in %d lines", got.FrameCount, n)
		}
		// The parser agrees with encoding/json about every line.
		anyBad, blank := false, true
		for _, l := range bytes.Split(data, []byte("\n")) {
			if len(bytes.TrimSpace(l)) == 0 {
				continue
			}
			blank = false
			if !json.Valid(l) || !utf8.Valid(l) || l[0] != '{' && l[0] != ' ' && l[0] != '\t' && l[0] != '\r' {
				anyBad = true
			}
		}
		if anyBad && got.Valid {
			t.Fatalf("valid, but a line is not a valid JSON object")
		}
		if blank && (got.Valid || got.Problems[len(got.Problems)-1] != "empty tape") {
			t.Fatalf("blank input: %q", got.Problems)
		}
		if meta != nil && !json.Valid(meta) && got.HasMeta {
			t.Fatalf("invalid meta used")
		}
		// How the stream is split into reads does not matter.
		again := tape.ParseV2(iotest.OneByteReader(bytes.NewReader(data)), meta, "dir/fuzz.jsonl")
		if !reflect.DeepEqual(got, again) {
			t.Fatalf("one byte at a time:\n%+v\n%+v", got, again)
		}
	})
}

func FuzzParseV1(f *testing.F) {
	for seed := range int64(3) {
		doc, _ := tapegen.V1(seed, []tapegen.V1Options{{Frames: 6}, {Frames: 6, NoTimeline: true},
			{Frames: 6, Anonymous: true}}[seed])
		f.Add(doc)
	}
	for _, s := range []string{``, `{}`, `[]`, `42`, `{"frames": 1}`, `{"format": {}}`, `{"frames": [1, {}]}`,
		`{"session": {"tags": "x"}, "frames": [{"direction": "Up", "message": {"method": 1}}]}`,
		`{"frames": []} x`, `{"frames": [{"message": {"id": 1, "method": "initialize"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		ix := &tape.V1Index{Tapes: []tape.V1IndexEntry{{ID: "fuzz", Name: "n", Tags: []string{"t"}}}}
		got := tape.ParseV1(bytes.NewReader(doc), "v1/fuzz.json", ix)
		checkInvariants(t, got)
		valid := json.Valid(doc)
		switch {
		case !valid && (!got.IsTape() || got.Valid):
			t.Fatalf("malformed JSON must be an invalid v1 tape: %+v", got)
		case !got.IsTape() && (got.Valid || got.FrameCount != 0):
			t.Fatalf("not a tape: %+v", got)
		case got.IsTape() && (got.Format != tape.FormatV1 || got.Status != tape.StatusFinalized):
			t.Fatalf("identity: %+v", got)
		case got.IsTape() && got.Valid && !got.HasMeta:
			t.Fatalf("index entry not used: %+v", got)
		}
		again := tape.ParseV1(iotest.OneByteReader(bytes.NewReader(doc)), "v1/fuzz.json", ix)
		if !reflect.DeepEqual(got, again) {
			t.Fatalf("one byte at a time:\n%+v\n%+v", got, again)
		}
	})
}
