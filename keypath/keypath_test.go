package keypath

import (
	"errors"
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	long := strings.Repeat("x", 256)
	tests := []struct {
		key  string
		want Place
		err  error
	}{
		{"a.jsonl", Place{Name: "a.jsonl"}, nil},
		{"team/2025/a.jsonl", Place{Dir: "team/2025", Name: "a.jsonl"}, nil},
		{"with space/ünïcode %#?\\:.jsonl", Place{Dir: "with space", Name: "ünïcode %#?\\:.jsonl"}, nil},
		{"dir/", Place{Name: "dir", IsDirMarker: true}, nil},
		{"a/b/", Place{Dir: "a", Name: "b", IsDirMarker: true}, nil},
		{strings.Repeat("y", 255), Place{Name: strings.Repeat("y", 255)}, nil},
		{"", Place{}, ErrEmptyKey},
		{"/", Place{}, ErrEmptySeg},
		{"/lead", Place{}, ErrEmptySeg},
		{"a//b", Place{}, ErrEmptySeg},
		{"a//", Place{}, ErrEmptySeg},
		{"./a", Place{}, ErrDot},
		{"a/../b", Place{}, ErrDot},
		{"..", Place{}, ErrDot},
		{long, Place{}, ErrTooLong},
		{"a/" + long + "/b", Place{}, ErrTooLong},
		{"nul\x00byte", Place{}, ErrControl},
		{"tab\there", Place{}, ErrControl},
		{"del\x7f", Place{}, ErrControl},
		{"bad\xffutf8", Place{}, ErrBadUTF8},
	}
	for _, tc := range tests {
		got, err := Split(tc.key)
		if !errors.Is(err, tc.err) {
			t.Errorf("Split(%q) error = %v, want %v", tc.key, err, tc.err)
			continue
		}
		if err == nil && got != tc.want {
			t.Errorf("Split(%q) = %+v, want %+v", tc.key, got, tc.want)
		}
	}
}

func TestPathHelpers(t *testing.T) {
	if Join("", "a") != "a" || Join("a/b", "c") != "a/b/c" {
		t.Error("Join")
	}
	if Parent("a/b/c") != "a/b" || Parent("a") != "" {
		t.Error("Parent")
	}
	if Base("a/b/c") != "c" || Base("a") != "a" {
		t.Error("Base")
	}
	if DirPrefix("") != "" || DirPrefix("a") != "a/" || DirMarkerKey("a/b") != "a/b/" {
		t.Error("prefixes")
	}
}

// FuzzSplit checks that every servable key round-trips: the place it is
// served at writes back to the very same key, and no place can escape.
func FuzzSplit(f *testing.F) {
	for _, s := range []string{"a", "a/b", "a/", "/a", "a//b", "../x", "a/./b", "é/ü", "x\x00y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		p, err := Split(key)
		if err != nil {
			return
		}
		back := p.Path()
		if p.IsDirMarker {
			back = DirMarkerKey(back)
		}
		if back != key {
			t.Fatalf("Split(%q) = %+v, which maps back to %q", key, p, back)
		}
		for _, seg := range strings.Split(p.Path(), "/") {
			if seg == "" || seg == "." || seg == ".." || len(seg) > MaxName || strings.ContainsRune(seg, 0) {
				t.Fatalf("Split(%q) served an unsafe segment %q", key, seg)
			}
		}
	})
}
