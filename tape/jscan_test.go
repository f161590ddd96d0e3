package tape

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// valid runs the scanner over one whole JSON text.
func valid(b []byte) bool {
	var s jscan
	s.reset(b)
	s.skip()
	return !s.bad && s.atEnd()
}

var scanCases = []string{
	``, ` `, `{}`, `[]`, `{"a":1}`, `{"a":1,}`, `[1,]`, `[,1]`, `{"a" 1}`, `{"a":}`, `{a:1}`,
	`"x"`, `"x`, `"\"`, `"\\"`, `"\u00e9"`, `"\u00g9"`, `"\x"`, "\"a\tb\"", "\"a\x01\"",
	`0`, `-0`, `01`, `1.`, `1.5`, `.5`, `1e5`, `1E+5`, `1e`, `-`, `--1`, `1.5e-3`, `123456789012345678901234567890`,
	`true`, `tru`, `truex`, `false`, `null`, `nul`, `[true,false,null]`, `{"a":[{"b":{}}]}`,
	`{"a":1}x`, `{"a":1} `, ` {"a":1}`, `[1 2]`, `{"a":1 "b":2}`, `{"a":1}}`, `[[]]]`, `"\ud800"`,
	"\"\xff\"", `{"":0}`, `"abcdefghijklmnopqrstuvwxyz\"abcdefgh"`, `"0123456789abcdef\\"`,
}

func TestScanMatchesEncodingJSON(t *testing.T) {
	for _, c := range scanCases {
		if got, want := valid([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("%q: valid %v, encoding/json says %v", c, got, want)
		}
	}
}

func TestScanDepth(t *testing.T) {
	nest := func(n int) []byte {
		return []byte(strings.Repeat("[", n) + strings.Repeat("]", n))
	}
	for _, n := range []int{maxDepth, maxDepth + 1} {
		if got, want := valid(nest(n)), json.Valid(nest(n)); got != want {
			t.Errorf("depth %d: valid %v, encoding/json says %v", n, got, want)
		}
	}
	start := time.Now()
	if valid(nest(1_000_000)) || valid([]byte(strings.Repeat("[", 1_000_000))) ||
		valid([]byte(strings.Repeat(`{"a":`, 1_000_000))) {
		t.Error("a million levels deep is accepted")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a million levels took %v", d)
	}
}

func TestStringValues(t *testing.T) {
	cases := []string{`"plain"`, `"a\nb"`, `"\u00e9t\u00e9"`, `"\ud83c\udf9e"`, `"\ud800x"`, `"\udc00"`,
		`"\"\\\/\b\f\r\t"`, `"東京"`, `"\u2028"`, `"\ud800\u0041"`}
	for _, c := range cases {
		var want string
		if err := json.Unmarshal([]byte(c), &want); err != nil {
			t.Fatal(err)
		}
		var s jscan
		s.reset([]byte(c))
		got, g := s.str()
		if g != gotOK || string(got) != want {
			t.Errorf("%s: got %q (%v), want %q", c, got, g, want)
		}
	}
}

func TestTypedReads(t *testing.T) {
	cases := []struct {
		in    string
		v     int64
		g     got
		after bool // the value was consumed
	}{
		{`5`, 5, gotOK, true}, {`-12`, -12, gotOK, true}, {`1.9`, 1, gotOK, true}, {`1e3`, 1000, gotOK, true},
		{`"5"`, 0, gotWrong, true}, {`null`, 0, gotNull, true}, {`[1]`, 0, gotWrong, true},
		{`1e999`, 0, gotWrong, true}, {`9223372036854775807`, 9223372036854775807, gotOK, true},
	}
	for _, c := range cases {
		var s jscan
		s.reset([]byte(c.in))
		v, g := s.int()
		if v != c.v || g != c.g || s.atEnd() != c.after {
			t.Errorf("int(%s) = %d, %v; want %d, %v", c.in, v, g, c.v, c.g)
		}
	}
}

// FuzzScan checks the scanner against encoding/json on arbitrary input.
func FuzzScan(f *testing.F) {
	for _, c := range scanCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := valid(b), json.Valid(b); got != want {
			t.Fatalf("%q: valid %v, encoding/json says %v", b, got, want)
		}
		var s jscan
		s.reset(b)
		if s.peek() == '"' && utf8.Valid(b) {
			v, _ := s.str()
			var want string
			if s.atEnd() && !s.bad && json.Unmarshal(b, &want) == nil && string(v) != want {
				t.Fatalf("%q: string %q, encoding/json says %q", b, v, want)
			}
		}
	})
}
