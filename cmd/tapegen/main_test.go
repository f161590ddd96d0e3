package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tapefs/tapefs/internal/tapegen"
)

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"123", 123, true}, {"64KiB", 64 << 10, true}, {"200MiB", 200 << 20, true},
		{"1GiB", 1 << 30, true}, {"5MB", 5e6, true}, {"7 KB", 7000, true}, {"10B", 10, true},
		{"", 0, false}, {"MiB", 0, false}, {"-1", 0, false}, {"1.5MiB", 0, false}, {"1TiB", 0, false},
		{"99999999999GiB", 0, false},
	}
	for _, c := range cases {
		got, err := parseSize(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	out, manifest := filepath.Join(dir, "corpus"), filepath.Join(dir, "manifest.json")
	var stdout, stderr bytes.Buffer
	err := run([]string{"-out", out, "-seed", "3", "-v2", "4", "-v1", "2", "-large", "1MiB", "-nested",
		"-odd", "-odd-names", "-manifest", manifest}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "wrote ") {
		t.Errorf("stdout: %q", stdout.String())
	}
	b, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	var m tapegen.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.Seed != 3 || len(m.Tapes()) != 4+2+5+5+1 {
		t.Errorf("manifest: seed %d, %d tapes", m.Seed, len(m.Tapes()))
	}
	for _, f := range m.Files {
		if _, err := os.Stat(filepath.Join(out, filepath.FromSlash(f.Key))); err != nil {
			t.Error(err)
		}
	}
	for _, bad := range [][]string{{}, {"-out", dir, "extra"}, {"-out", dir, "-large", "lots"}, {"-nope"}} {
		if err := run(bad, &stdout, &stderr); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
