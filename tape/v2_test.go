package tape_test

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"

	"github.com/tapefs/tapefs/internal/tapegen"
	"github.com/tapefs/tapefs/tape"
)

// lines splits a generated tape into its lines (without '\n').
func lines(jsonl []byte) [][]byte {
	return bytes.Split(bytes.TrimSuffix(jsonl, []byte("\n")), []byte("\n"))
}

func join(ls [][]byte) []byte {
	return append(bytes.Join(ls, []byte("\n")), '\n')
}

// frameLine returns the index of the first line holding the frame with seq.
func frameLine(t *testing.T, ls [][]byte, seq int) int {
	t.Helper()
	want := fmt.Sprintf(`{"type":"frame","seq":%d,`, seq)
	for i, l := range ls {
		if bytes.HasPrefix(l, []byte(want)) {
			return i
		}
	}
	t.Fatalf("no frame %d", seq)
	return 0
}

func TestParseV2OddCases(t *testing.T) {
	const key = "team/x.jsonl"
	jsonl, meta, truth := tapegen.V2(42, tapegen.V2Options{Frames: 30, Status: tape.StatusFinalized, Key: key})
	base := lines(jsonl)
	// Frame 6 is a tools/call request, 7 or later its answer.
	callLine := frameLine(t, base, 5)

	type edit func(t *testing.T, ls [][]byte) [][]byte
	replace := func(i int, l string) edit {
		return func(t *testing.T, ls [][]byte) [][]byte { ls[i] = []byte(l); return ls }
	}
	insert := func(i int, l []byte) edit {
		return func(t *testing.T, ls [][]byte) [][]byte {
			return append(ls[:i], append([][]byte{l}, ls[i:]...)...)
		}
	}
	sub := func(i int, old, new string) edit {
		return func(t *testing.T, ls [][]byte) [][]byte {
			if !bytes.Contains(ls[i], []byte(old)) {
				t.Fatalf("line %d has no %q", i+1, old)
			}
			ls[i] = bytes.Replace(ls[i], []byte(old), []byte(new), 1)
			return ls
		}
	}
	bigResult := func(n int) []byte {
		return []byte(`{"type":"frame","seq":999,"ts":5,"dir":"server_to_client","env":{"message":{"jsonrpc":"2.0","id":999,"result":{"content":[{"type":"text","text":"` +
			strings.Repeat("frame ", n/6) + `"}]}}},"flags":{"is_error":false}}`)
	}
	n := func(i int) string { return fmt.Sprint(i + 1) } // line number of index i

	cases := []struct {
		name     string
		edit     edit
		noMeta   bool
		meta     string
		problems []string
		check    func(t *testing.T, got *tape.Record)
	}{
		{name: "clean", problems: nil, check: func(t *testing.T, got *tape.Record) {
			if got.FrameCount != truth.FrameCount || !got.HasMeta {
				t.Errorf("frames %d, has meta %v", got.FrameCount, got.HasMeta)
			}
		}},
		{name: "truncated line mid-file",
			edit:     replace(callLine, `{"type":"frame","seq":5, this line is truncated`),
			problems: []string{"line " + n(callLine) + ": invalid JSON"},
			check:    frames(truth.FrameCount - 1)},
		{name: "first line not init",
			edit:     func(t *testing.T, ls [][]byte) [][]byte { return ls[1:] },
			problems: []string{"line 1: first line is not init"},
			check: func(t *testing.T, got *tape.Record) {
				if got.SessionID != "" || got.TapeID != truth.TapeID || !got.CreatedAt.Equal(truth.CreatedAt) ||
					got.ProtocolVersion != truth.ProtocolVersion || got.FrameCount != truth.FrameCount {
					t.Errorf("fallbacks: %+v", got)
				}
			}},
		{name: "first line invalid",
			edit:     replace(0, `{"type":"init",`),
			problems: []string{"line 1: invalid JSON", "line 1: first line is not init"}},
		{name: "duplicate init",
			edit:     func(t *testing.T, ls [][]byte) [][]byte { return append(ls, ls[0]) },
			problems: []string{"line " + n(len(base)) + ": duplicate init"}},
		{name: "unknown types are fine",
			edit:  insert(3, []byte(`{"type":"x-future","payload":{"deep":[1,2,{"a":null}]}}`)),
			check: frames(truth.FrameCount)},
		{name: "seq as a string",
			edit:     sub(callLine, `"seq":5,`, `"seq":"5",`),
			problems: []string{"line " + n(callLine) + ": wrong type for seq"},
			check:    frames(truth.FrameCount)},
		{name: "method as a number",
			edit:     sub(callLine, `"method":"tools/call"`, `"method":7`),
			problems: []string{"line " + n(callLine) + ": wrong type for env.message.method"},
			check: func(t *testing.T, got *tape.Record) {
				if got.Methods["tools/call"] != truth.Methods["tools/call"]-1 || got.FrameCount != truth.FrameCount {
					t.Errorf("tools/call %d, frames %d", got.Methods["tools/call"], got.FrameCount)
				}
			}},
		{name: "env not an object",
			edit:     sub(callLine, `"env":{`, `"env":"x","e":{`),
			problems: []string{"line " + n(callLine) + ": wrong type for env"},
			check: func(t *testing.T, got *tape.Record) {
				if got.FrameCount != truth.FrameCount || got.Methods["tools/call"] != truth.Methods["tools/call"]-1 {
					t.Errorf("frames %d, tools/call %d", got.FrameCount, got.Methods["tools/call"])
				}
			}},
		{name: "brackets do not match",
			edit:     sub(callLine, `"env":{`, `"env":[{`),
			problems: []string{"line " + n(callLine) + ": invalid JSON"}},
		{name: "flags.is_error as a string",
			edit:     sub(callLine, `"is_error":false`, `"is_error":"no"`),
			problems: []string{"line " + n(callLine) + ": wrong type for flags.is_error"}},
		{name: "unknown dir",
			edit:     sub(callLine, `"dir":"client_to_server"`, `"dir":"sideways"`),
			problems: []string{"line " + n(callLine) + ": unknown dir"},
			check: func(t *testing.T, got *tape.Record) {
				if got.FrameCount != truth.FrameCount || got.ClientToServer != truth.ClientToServer-1 {
					t.Errorf("frames %d, c2s %d", got.FrameCount, got.ClientToServer)
				}
			}},
		{name: "not an object", edit: insert(2, []byte(`[1,2,3]`)),
			problems: []string{"line 3: not a JSON object"}},
		{name: "no type", edit: insert(2, []byte(`{"seq":3}`)),
			problems: []string{"line 3: no type"}},
		{name: "incomplete correlation", edit: insert(2, []byte(`{"type":"correlation","request_seq":0}`)),
			problems: []string{"line 3: incomplete correlation"}},
		{name: "invalid UTF-8 in a string",
			edit:     sub(callLine, `"arguments":{"arg":"`, "\"arguments\":{\"arg\":\"\xff\xfe"),
			problems: []string{"line " + n(callLine) + ": invalid UTF-8"},
			check:    frames(truth.FrameCount)},
		{name: "invalid UTF-8 in a tool name",
			edit:     sub(callLine, `},"name":"`, "},\"name\":\"\xff"),
			problems: []string{"line " + n(callLine) + ": invalid UTF-8"},
			check: func(t *testing.T, got *tape.Record) {
				for name := range got.Tools {
					if strings.ContainsRune(name, 0xfffd) {
						return
					}
				}
				t.Errorf("no tool name with U+FFFD: %v", got.Tools)
			}},
		{name: "10 MB line parses", edit: insert(2, bigResult(10<<20)),
			check: frames(truth.FrameCount + 1)},
		{name: "line over the cap is skipped", edit: insert(2, bigResult(tape.MaxLineSize+10)),
			problems: []string{"line 3: longer than 16 MiB, skipped"},
			check:    frames(truth.FrameCount)},
		{name: "100k deep nesting", edit: insert(2, []byte(strings.Repeat("[", 100_000))),
			problems: []string{"line 3: invalid JSON"}},
		{name: "100k deep balanced nesting", edit: insert(2, []byte(`{"type":"x","a":`+strings.Repeat("[", 100_000)+strings.Repeat("]", 100_000)+`}`)),
			problems: []string{"line 3: invalid JSON"}},
		{name: "9000 deep nesting in a result is fine",
			edit:  insert(2, []byte(`{"type":"frame","seq":99,"ts":1,"dir":"server_to_client","env":{"message":{"id":99,"result":`+strings.Repeat("[", 9000)+strings.Repeat("]", 9000)+`}}}`)),
			check: frames(truth.FrameCount + 1)},
		{name: "blank lines and CRLF",
			edit: func(t *testing.T, ls [][]byte) [][]byte {
				for i := range ls {
					ls[i] = append(ls[i], '\r')
				}
				return append([][]byte{{}, []byte("   ")}, append(ls, []byte(""))...)
			},
			check: frames(truth.FrameCount)},
		{name: "missing meta", noMeta: true, check: func(t *testing.T, got *tape.Record) {
			if got.HasMeta || got.Status != tape.StatusRecording || got.Name != "" || got.Transport != truth.Transport ||
				got.TapeID != truth.TapeID || !got.UpdatedAt.IsZero() {
				t.Errorf("without meta: %+v", got)
			}
		}},
		{name: "meta invalid JSON", meta: `{"tape_id": `, problems: []string{"meta.json: invalid JSON"},
			check: func(t *testing.T, got *tape.Record) {
				if got.HasMeta || got.Name != "" {
					t.Errorf("bad meta used: %+v", got)
				}
			}},
		{name: "meta not an object", meta: `[1]`, problems: []string{"meta.json: not a JSON object"}},
		{name: "meta wrong types", meta: `{"name": "n", "tags": "x", "stats": {"duration_ms": "long"}}`,
			problems: []string{"meta.json: wrong type for tags"},
			check: func(t *testing.T, got *tape.Record) {
				if !got.HasMeta || got.Name != "n" || got.Tags != nil {
					t.Errorf("meta: %+v", got)
				}
			}},
		{name: "meta bad time", meta: `{"updated_at": "yesterday", "transport": "http"}`,
			problems: []string{"meta.json: invalid updated_at"},
			check: func(t *testing.T, got *tape.Record) {
				if got.Transport != "http" || got.Status != tape.StatusRecording {
					t.Errorf("meta: %+v", got)
				}
			}},
		{name: "meta invalid UTF-8", meta: "{\"name\": \"\xff\"}", problems: []string{"meta.json: invalid UTF-8"}},
		{name: "problems are capped",
			edit: func(t *testing.T, ls [][]byte) [][]byte {
				for range 30 {
					ls = append(ls, []byte("garbage"))
				}
				return ls
			},
			check: func(t *testing.T, got *tape.Record) {
				if len(got.Problems) != tape.MaxProblems+1 || got.Problems[tape.MaxProblems] != "10 more problems" {
					t.Errorf("problems: %q", got.Problems)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ls := lines(bytes.Clone(jsonl))
			for i := range ls {
				ls[i] = bytes.Clone(ls[i])
			}
			data := jsonl
			if c.edit != nil {
				data = join(c.edit(t, ls))
			}
			m := meta
			if c.noMeta {
				m = nil
			}
			if c.meta != "" {
				m = []byte(c.meta)
			}
			start := time.Now()
			got := tape.ParseV2(bytes.NewReader(data), m, key)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
			if c.problems != nil || c.check == nil || c.name == "clean" {
				if !reflect.DeepEqual(got.Problems, c.problems) {
					t.Errorf("problems %q, want %q", got.Problems, c.problems)
				}
			}
			if got.Valid != (len(got.Problems) == 0) {
				t.Errorf("Valid %v with problems %q", got.Valid, got.Problems)
			}
			if c.check != nil {
				c.check(t, got)
			}
			checkInvariants(t, got)
		})
	}
	if !strings.HasSuffix(string(jsonl), "\n") {
		t.Fatal("generated tape does not end with a newline")
	}
}

func frames(n int64) func(t *testing.T, got *tape.Record) {
	return func(t *testing.T, got *tape.Record) {
		t.Helper()
		if got.FrameCount != n {
			t.Errorf("FrameCount %d, want %d", got.FrameCount, n)
		}
	}
}

func TestParseV2Empty(t *testing.T) {
	for _, data := range []string{"", "\n", "  \n\n\t\n"} {
		got := tape.ParseV2(strings.NewReader(data), nil, "a/b/empty.jsonl")
		want := []string{"empty tape"}
		if !reflect.DeepEqual(got.Problems, want) || got.Valid || got.TapeID != "empty" ||
			got.Format != tape.FormatV2 || got.Status != tape.StatusRecording {
			t.Errorf("%q: %+v", data, got)
		}
	}
}

func TestParseV2IncompleteLastLine(t *testing.T) {
	got := tape.ParseV2(strings.NewReader(`{"type":"init","tape_id":"t"}`+"\n"+`{"type":"fr`), nil, "x.jsonl")
	want := []string{"line 2: invalid JSON (incomplete last line)"}
	if !reflect.DeepEqual(got.Problems, want) || got.TapeID != "t" {
		t.Errorf("%+v", got)
	}
}

func TestParseV2ReadError(t *testing.T) {
	jsonl, meta, truth := tapegen.V2(1, tapegen.V2Options{Frames: 200})
	r := iotest.TimeoutReader(iotest.HalfReader(bytes.NewReader(jsonl)))
	got := tape.ParseV2(r, meta, "")
	if got.Valid || len(got.Problems) != 1 || !strings.HasPrefix(got.Problems[0], "read error: ") ||
		got.FrameCount >= truth.FrameCount {
		t.Errorf("%d frames, problems %q", got.FrameCount, got.Problems)
	}
}

// TestParseV2Chunking checks that how the reader splits the stream does
// not matter.
func TestParseV2Chunking(t *testing.T) {
	for seed := range int64(10) {
		jsonl, meta, truth := tapegen.V2(seed, tapegen.V2Options{UnknownTypes: true})
		got := tape.ParseV2(iotest.OneByteReader(bytes.NewReader(jsonl)), meta, "")
		if !reflect.DeepEqual(*got, truth) {
			t.Fatalf("seed %d: one byte at a time gives %+v", seed, got)
		}
	}
}

// checkInvariants asserts what holds for any Record, whatever the input.
func checkInvariants(t *testing.T, r *tape.Record) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("invariant: "+format, args...)
	}
	if r.Valid != (len(r.Problems) == 0) {
		fail("Valid %v with %d problems", r.Valid, len(r.Problems))
	}
	if len(r.Problems) > tape.MaxProblems+1 {
		fail("%d problems", len(r.Problems))
	}
	if r.FrameCount < 0 || r.ClientToServer < 0 || r.ServerToClient < 0 ||
		r.ClientToServer+r.ServerToClient > r.FrameCount {
		fail("frames %d, c2s %d, s2c %d", r.FrameCount, r.ClientToServer, r.ServerToClient)
	}
	if r.Format == "" {
		return // not a tape
	}
	if r.ErrorCount > r.FrameCount {
		fail("errors %d > frames %d", r.ErrorCount, r.FrameCount)
	}
	var calls int64
	for m, n := range r.Methods {
		if n <= 0 {
			fail("method %q counted %d", m, n)
		}
		calls += n
	}
	if calls > r.FrameCount {
		fail("methods %d > frames %d", calls, r.FrameCount)
	}
	var tools int64
	for _, n := range r.Tools {
		tools += n
	}
	if tools > r.Methods["tools/call"] {
		fail("tools %d > tools/call %d", tools, r.Methods["tools/call"])
	}
	if len(r.Methods) > tape.MaxNames || len(r.Tools) > tape.MaxNames {
		fail("%d methods, %d tools", len(r.Methods), len(r.Tools))
	}
	if len(r.ErrorMessages) > tape.MaxErrorMessages || int64(len(r.ErrorMessages)) > r.ErrorCount {
		fail("%d error messages for %d errors", len(r.ErrorMessages), r.ErrorCount)
	}
	if len(r.Slowest) > tape.MaxSlowest {
		fail("%d slowest", len(r.Slowest))
	}
	for i := 1; i < len(r.Slowest); i++ {
		if r.Slowest[i].RTTMS > r.Slowest[i-1].RTTMS {
			fail("slowest not sorted: %+v", r.Slowest)
		}
	}
	for _, s := range append([]string{r.TapeID, r.SessionID, r.Name, r.Description, r.Status, r.Transport,
		r.ProtocolVersion, r.ClientName, r.ClientVersion, r.ServerName, r.ServerVersion},
		append(r.Tags, r.ErrorMessages...)...) {
		if !utf8.ValidString(s) {
			fail("invalid UTF-8: %q", s)
		}
	}
	for m := range r.Methods {
		if !utf8.ValidString(m) {
			fail("invalid UTF-8 method %q", m)
		}
	}
}
