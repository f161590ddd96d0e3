package tape_test

import (
	"testing"

	"github.com/tapefs/tapefs/tape"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		key  string
		want tape.Kind
	}{
		{"a.jsonl", tape.KindV2Data},
		{"x/y/0b3c.jsonl", tape.KindV2Data},
		{"x/y.meta.json", tape.KindV2Meta},
		{"index.json", tape.KindV1Index},
		{"v1/index.json", tape.KindV1Index},
		{"v1/old-index.json", tape.KindV1Data},
		{"v1/abc.json", tape.KindV1Data},
		{"notes.txt", tape.KindOther},
		{"dir/", tape.KindOther},
		{"", tape.KindOther},
		{"x.jsonl/notes", tape.KindOther},
		{"A.JSONL", tape.KindOther},
		{"odd names/100% #1?.jsonl", tape.KindV2Data},
		{`back\slash.meta.json`, tape.KindV2Meta},
		{"index.json/x.json", tape.KindV1Data},
	}
	for _, c := range cases {
		if got := tape.Classify(c.key); got != c.want {
			t.Errorf("Classify(%q) = %v, want %v", c.key, got, c.want)
		}
	}
}

func TestCompanionKeys(t *testing.T) {
	cases := []struct {
		fn   func(string) string
		name string
		in   string
		want string
	}{
		{tape.V2MetaKey, "V2MetaKey", "x/y.jsonl", "x/y.meta.json"},
		{tape.V2MetaKey, "V2MetaKey", "y.jsonl", "y.meta.json"},
		{tape.V2MetaKey, "V2MetaKey", "y.json", ""},
		{tape.V2DataKey, "V2DataKey", "x/y.meta.json", "x/y.jsonl"},
		{tape.V2DataKey, "V2DataKey", "x/y.json", ""},
		{tape.V1IndexKey, "V1IndexKey", "x/y.json", "x/index.json"},
		{tape.V1IndexKey, "V1IndexKey", "y.json", "index.json"},
		{tape.V1IndexKey, "V1IndexKey", "a//b/y.json", "a//b/index.json"},
	}
	for _, c := range cases {
		if got := c.fn(c.in); got != c.want {
			t.Errorf("%s(%q) = %q, want %q", c.name, c.in, got, c.want)
		}
	}
}

func TestKindText(t *testing.T) {
	for k := tape.KindOther; k <= tape.KindV1Data; k++ {
		b, _ := k.MarshalText()
		var back tape.Kind
		if err := back.UnmarshalText(b); err != nil || back != k {
			t.Errorf("%v → %q → %v", k, b, back)
		}
	}
}
