package meta

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/tapefs/tapefs/tape"
)

var jsonFastSeeds = []string{
	`null`, ``, `[]`, `{}`, `["a","b"]`, `["",""]`, `[ "a" , "b" ]`, `["\u003cb\u003e","tab\there","q\"x","\\"]`,
	`["naïve","東京","🎞"]`, "[\"\xff\"]", `["a",]`, `["a"`, `[1]`, `{"a":1,"b":-2}`, `{"a":1.5}`, `{"a":"x"}`,
	`{"a":1,}`, `{"a":01}`, `{"x":9223372036854775807}`, `{"x":9223372036854775808}`,
	`[{"Method":"tools/call","RequestSeq":2,"ResponseSeq":3,"RTTMS":40,"Status":"success"}]`,
	`[{"Method":"","RequestSeq":0,"ResponseSeq":0,"RTTMS":0,"Status":""},{}]`,
	`[{"method":"x"}]`, `[{"Method":"x","Extra":1}]`, `[{"RTTMS":"1"}]`, `[{"Method":"a\nb"}]`, `[null]`,
	`"x"`, `[] x`, `{"a":1}{}`,
}

// The fast decoders must agree with encoding/json on everything.
func checkJSONFast(t *testing.T, text string) {
	var s1, s2 []string
	e1, e2 := decodeStrings(text, &s1), json.Unmarshal([]byte(text), &s2)
	if text == "" {
		e2 = nil // "" is how an absent value reads: null
	}
	if (e1 == nil) != (e2 == nil) || (e1 == nil && !reflect.DeepEqual(s1, s2)) {
		t.Errorf("decodeStrings(%q) = %#v, %v; json: %#v, %v", text, s1, e1, s2, e2)
	}
	var m1, m2 map[string]int64
	e1, e2 = decodeCounts(text, &m1), json.Unmarshal([]byte(text), &m2)
	if text == "" {
		e2 = nil
	}
	if (e1 == nil) != (e2 == nil) || (e1 == nil && !reflect.DeepEqual(m1, m2)) {
		t.Errorf("decodeCounts(%q) = %#v, %v; json: %#v, %v", text, m1, e1, m2, e2)
	}
	var p1, p2 []tape.Pair
	e1, e2 = decodePairs(text, &p1), json.Unmarshal([]byte(text), &p2)
	if text == "" {
		e2 = nil
	}
	if (e1 == nil) != (e2 == nil) || (e1 == nil && !reflect.DeepEqual(p1, p2)) {
		t.Errorf("decodePairs(%q) = %#v, %v; json: %#v, %v", text, p1, e1, p2, e2)
	}
}

func TestJSONFast(t *testing.T) {
	for _, s := range jsonFastSeeds {
		checkJSONFast(t, s)
	}
}

func FuzzJSONFast(f *testing.F) {
	for _, s := range jsonFastSeeds {
		f.Add(s)
	}
	f.Fuzz(checkJSONFast)
}
