package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// badKeys are store keys a mount has to survive. Some are fine POSIX names
// and must be served as they are; the rest must be served under a safe name
// or skipped, never shown outside the mount and never crash the daemon.
func badKeys() []string {
	return []string{
		// Odd but valid names: served as they are.
		"bad/with space.jsonl",
		"bad/ünïcødé テープ.jsonl",
		"bad/100%.jsonl",
		"bad/%41%2F%2e%2e.jsonl",
		"bad/hash#tag.jsonl",
		"bad/what?.jsonl",
		"bad/back\\slash.jsonl",
		"bad/colon:semi;.jsonl",
		"bad/" + strings.Repeat("y", 249) + ".jsonl", // 255 bytes: the longest name
		// Not a POSIX name as it is.
		"bad/" + strings.Repeat("x", 294) + ".jsonl", // 300 bytes
		"bad/tab\there.jsonl",
		"bad/new\nline.jsonl",
		"bad/\xff\xfe.jsonl",
		"bad//double.jsonl",
		"//leading-double.jsonl",
		"/leading.jsonl",
		"bad/trailing.jsonl/",
		"bad/./dot.jsonl",
		"bad/../dotdot.jsonl",
		"../escape.jsonl",
		"../../escape2.jsonl",
		"bad/..",
		"bad/.",
		".",
		"..",
		"./dotslash.jsonl",
	}
}

// servable says whether key must appear in the mount under its own path:
// every segment a non-empty, valid UTF-8 name of at most 255 bytes, without
// control characters, and not "." or "..".
func servable(key string) bool {
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." || len(seg) > 255 || !utf8.ValidString(seg) {
			return false
		}
		if strings.IndexFunc(seg, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
			return false
		}
	}
	return true
}

// TestBadKeys: a store holding every kind of bad key mounts, serves the
// valid ones byte for byte, shows nothing outside the mount, and keeps
// running.
func TestBadKeys(t *testing.T) {
	c := newCorpus(t)
	forEachBackend(t, func(t *testing.T, st Store) {
		b := needBucket(t, st)
		st.Seed(t, c.Files)
		written := map[string][]byte{}
		for i, key := range badKeys() {
			data := newTape(int64(100+i), 1).Data
			err := storeWrite(t, b, key, data)
			if fs, ok := st.(*fileStore); ok && err != nil && servable(key) {
				// fileblob's temporary file name is longer than the key's
				// (255 bytes is too long for it): write such plain names directly.
				err = os.WriteFile(fs.Path(key), data, 0o644)
			}
			if err != nil {
				t.Logf("the %s store refuses key %q: %v", st.Kind(), key, err)
				continue
			}
			written[key] = data
		}

		// The truth is what the store lists (fileblob, for one, cleans some keys).
		contents := map[string][]byte{}
		var required []string
		for _, key := range storeKeys(t, b) {
			data, err := b.ReadAll(context.Background(), key)
			if fs, ok := st.(*fileStore); ok && err != nil && servable(key) {
				// fileblob cannot read a 255-byte name either (it looks for
				// NAME.attrs, which is too long): read the file itself.
				data, err = os.ReadFile(fs.Path(key))
			}
			if err != nil {
				t.Logf("cannot read key %q back from the store: %v", key, err)
				continue
			}
			contents[key] = data
			if _, isBad := written[key]; isBad && servable(key) {
				required = append(required, key)
			}
		}
		for key := range written {
			if _, ok := contents[key]; !ok {
				t.Logf("key %q written but listed differently by the store", key)
			}
		}
		if len(required) < 8 {
			t.Fatalf("fixture: only %d servable bad keys made it into the store: %q", len(required), required)
		}

		m := mount(t, st)
		parent := filepath.Dir(m.Dir)
		outsideBefore := dirNames(t, parent)

		// Valid names are served byte for byte.
		for _, key := range required {
			r := try(t, "cat", "--", m.Path(key))
			if r.Code != 0 || r.Stdout != string(contents[key]) {
				t.Errorf("key %q is a valid name but is not served byte for byte:\n%s", key, r)
			}
		}
		for key, data := range c.Files {
			if r := try(t, "cat", "--", m.Path(key)); r.Stdout != string(data) {
				t.Errorf("corpus key %q not served byte for byte next to the bad keys:\n%s", key, r)
			}
		}

		// Walk everything: every listed entry can be looked up, no name is
		// "." or "..", no duplicates, and every file has the bytes of some key.
		r := Cmd{Dir: m.Dir}.exe(t, "find", ".", "-print0")
		if r.Code != 0 {
			t.Errorf("find over the mount failed (a listed name that cannot be looked up?):\n%s", r)
		}
		seen := map[string]bool{}
		for _, p := range strings.Split(strings.TrimSuffix(r.Stdout, "\x00"), "\x00") {
			if p == "." || p == "" {
				continue
			}
			if seen[p] {
				t.Errorf("find lists %q twice", p)
			}
			seen[p] = true
			for _, seg := range strings.Split(strings.TrimPrefix(p, "./"), "/") {
				if seg == "." || seg == ".." || seg == "" {
					t.Errorf("the mount shows a path with a %q segment: %q", seg, p)
				}
			}
			full := filepath.Join(m.Dir, p)
			fi, err := os.Lstat(full)
			if err != nil {
				t.Errorf("lstat %q: %v", p, err)
				continue
			}
			if !fi.Mode().IsRegular() {
				continue
			}
			data, err := os.ReadFile(full)
			if err != nil {
				t.Errorf("read %q: %v", p, err)
				continue
			}
			key := strings.TrimPrefix(p, "./")
			if want, ok := contents[key]; ok {
				if !bytes.Equal(data, want) {
					t.Errorf("%q: %s", key, sameBytes(data, want))
				}
				continue
			}
			if !slices.ContainsFunc(mapValues(contents), func(v []byte) bool { return bytes.Equal(v, data) }) {
				t.Errorf("%q is served but its bytes are not those of any store key", key)
			}
			t.Logf("served under a safe name: %q", key)
		}

		// Nothing appeared beside the mount, and the daemon is still serving.
		if after := dirNames(t, parent); !slices.Equal(after, outsideBefore) {
			t.Errorf("entries beside the mountpoint changed: %q -> %q", outsideBefore, after)
		}
		if len(daemonPIDs(m.Dir)) == 0 {
			t.Errorf("no tapefs process serves %s any more", m.Dir)
		}
		run(t, "ls", "-lR", m.Dir)
		Cmd{Stdin: c.Files[c.Malformed]}.run(t, "cmp", "-", m.Path(c.Malformed))
		recs := waitIndexed(t, st, "bad/with space.jsonl")
		for _, key := range required {
			if strings.HasSuffix(key, ".jsonl") {
				if _, ok := recs[key]; !ok {
					t.Errorf("tapefs ls --json does not list the tape at %q", key)
				}
			}
		}
		for key := range recs {
			if !servable(key) {
				t.Logf("tapefs ls lists the unservable key %q", key)
			}
		}
	})
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func mapValues[K comparable, V any](m map[K]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
