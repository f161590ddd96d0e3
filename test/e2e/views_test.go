package e2e

// The tape-aware parts of the tree: the read-only views under .by/, the
// user.tape.* extended attributes and the synthesized .meta.json.

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapefs/tapefs/tape"
)

// viewValues is what a tape contributes to each view: the names of the
// value directories it must appear in.
func viewValues(r tape.Record) map[string][]string {
	out := map[string][]string{}
	for _, tag := range r.Tags {
		out["tag"] = append(out["tag"], tag)
	}
	if r.SessionID != "" {
		out["session"] = []string{r.SessionID}
	}
	if !r.CreatedAt.IsZero() {
		out["day"] = []string{r.CreatedAt.UTC().Format("2006-01-02")}
	}
	if r.Status != "" {
		out["status"] = []string{r.Status}
	}
	for tool := range r.Tools {
		out["tool"] = append(out["tool"], tool)
	}
	for v, vals := range out {
		for i, s := range vals {
			vals[i] = strings.ReplaceAll(s, "/", "_")
		}
		out[v] = vals
	}
	return out
}

// tapeKey is the user.tape.key attribute of p: the real path of a tape.
func tapeKey(p string) (string, error) {
	buf := make([]byte, 4096)
	n, err := syscall.Getxattr(p, "user.tape.key", buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// viewKeys lists a view's value directory and returns the store key of
// each entry (its user.tape.key), by entry name. Every entry must be a
// read-only regular file with an inode number of its own.
func viewKeys(t *testing.T, m *Mount, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read view %s: %v", dir, err)
	}
	out := map[string]string{}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		key, err := tapeKey(p)
		if err != nil {
			t.Errorf("getxattr user.tape.key %s: %v", p, err)
			continue
		}
		out[e.Name()] = key
		var sv, sr syscall.Stat_t
		if err := syscall.Stat(p, &sv); err != nil {
			t.Errorf("stat %s: %v", p, err)
		} else if err := syscall.Stat(m.Path(key), &sr); err != nil {
			t.Errorf("stat %s: %v", key, err)
		} else if sv.Mode != syscall.S_IFREG|0o444 || sv.Ino == sr.Ino || sv.Size != sr.Size {
			t.Errorf("%s: mode %o ino %d size %d; its tape %s: ino %d size %d (want a 0444 file of its own, same size)",
				p, sv.Mode, sv.Ino, sv.Size, key, sr.Ino, sr.Size)
		}
	}
	return out
}

func sortedValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// TestViews checks every view against the generator's truth: each value
// directory holds exactly the tapes with that value, as the same inodes and
// bytes as their real paths, and grep -r and jq work through them.
func TestViews(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st Store) {
		c := newCorpus(t)
		m := mountFiles(t, st, c.Files)
		waitIndexed(t, st, sortedCopy(mapKeys(c.Tapes))...)

		want := map[string]map[string][]string{} // view -> value -> keys
		var named []string
		for key, r := range c.Truth {
			for v, vals := range viewValues(r) {
				if want[v] == nil {
					want[v] = map[string][]string{}
				}
				for _, val := range vals {
					want[v][val] = append(want[v][val], key)
				}
			}
			if r.Name != "" {
				named = append(named, key)
			}
		}
		views := filepath.Join(m.Dir, ".by")
		if got := dirNames(t, views); strings.Join(got, " ") != "day name session status tag tool" {
			t.Errorf("ls .by = %q", got)
		}
		if strings.Contains(run(t, "ls", "-A", m.Dir), ".by") {
			t.Errorf("ls -A of the root lists .by; the views must stay out of find and grep -r")
		}
		for v, vals := range want {
			gotVals := dirNames(t, filepath.Join(views, v))
			wantVals := sortedCopy(mapKeys(vals))
			if strings.Join(gotVals, "\x00") != strings.Join(wantVals, "\x00") {
				t.Errorf(".by/%s: values %q, want %q", v, gotVals, wantVals)
				continue
			}
			for val, keys := range vals {
				got := viewKeys(t, m, filepath.Join(views, v, val))
				if g, w := sortedValues(got), sortedCopy(keys); strings.Join(g, "\x00") != strings.Join(w, "\x00") {
					t.Errorf(".by/%s/%s holds %q, want %q", v, val, g, w)
				}
				for name, key := range got {
					if base := path.Base(key); !strings.HasPrefix(name, strings.TrimSuffix(base, path.Ext(base))) {
						t.Errorf(".by/%s/%s/%s is %q: want its own file name", v, val, name, key)
					}
				}
			}
		}
		gotNamed := viewKeys(t, m, filepath.Join(views, "name"))
		if g, w := sortedValues(gotNamed), sortedCopy(named); strings.Join(g, "\x00") != strings.Join(w, "\x00") {
			t.Errorf(".by/name holds %q, want %q", g, w)
		}
		for name, key := range gotNamed {
			base := strings.ReplaceAll(c.Truth[key].Name, "/", "_")
			if !strings.HasPrefix(name, base) || path.Ext(name) != path.Ext(key) {
				t.Errorf(".by/name/%s is %q, named %q", name, key, c.Truth[key].Name)
			}
		}

		// Same bytes through a view, for every tape of every status.
		for _, status := range dirNames(t, filepath.Join(views, "status")) {
			dir := filepath.Join(views, "status", status)
			for name, key := range viewKeys(t, m, dir) {
				got, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					t.Errorf("read .by/status/%s/%s: %v", status, name, err)
				} else if d := sameBytes(got, c.Files[key]); d != "" {
					t.Errorf(".by/status/%s/%s (%s): %s", status, name, key, d)
				}
			}
		}
		// grep -r through the tool view finds exactly the tapes calling tools.
		grepped := map[string]bool{}
		for _, p := range strings.Split(strings.TrimSuffix(run(t, "grep", "-rl", `"tools/call"`, filepath.Join(views, "tool")), "\n"), "\n") {
			key, err := tapeKey(p)
			if err != nil {
				t.Fatal(err)
			}
			grepped[key] = true
		}
		for key, r := range c.Truth {
			if len(r.Tools) > 0 && !grepped[key] {
				t.Errorf("grep -rl over .by/tool misses %q", key)
			}
		}
		// jq over every valid v2 tape of a tag view.
		for _, tag := range dirNames(t, filepath.Join(views, "tag"))[:1] {
			dir := filepath.Join(views, "tag", tag)
			for name, key := range viewKeys(t, m, dir) {
				if c.Tapes[key].Valid && c.Tapes[key].Format == "v2" {
					run(t, "jq", "-c", ".type", filepath.Join(dir, name))
				}
			}
		}
	})
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestViewsReadOnly: nothing is created, removed or renamed in .by.
func TestViewsReadOnly(t *testing.T) {
	st := backendNamed(t, "file")
	c := newCorpus(t)
	m := mountFiles(t, st, c.Files)
	waitIndexed(t, st, c.V2Tape)
	tag := c.Truth[c.V2Tape].Tags[0]
	inView := filepath.Join(m.Dir, ".by", "tag", tag, path.Base(c.V2Tape))
	for _, args := range [][]string{
		{"touch", filepath.Join(m.Dir, ".by", "new")},
		{"mkdir", filepath.Join(m.Dir, ".by", "tag", "new")},
		{"rm", inView},
		{"mv", inView, filepath.Join(m.Dir, "moved.jsonl")},
		{"mv", m.Path(c.PlainText), filepath.Join(m.Dir, ".by", "tag", tag)},
		{"rmdir", filepath.Join(m.Dir, ".by", "tag", tag)},
		{"rm", "-rf", filepath.Join(m.Dir, ".by")},
		{"sh", "-c", "echo x >> '" + inView + "'"},
	} {
		r := try(t, args[0], args[1:]...)
		if r.Code == 0 || !strings.Contains(r.Stderr, "Read-only file system") {
			t.Errorf("%s: want EROFS, got %s", shellQuote(args), r)
		}
	}
	// And the store is untouched.
	checkMount(t, m, c.Files)
}

// TestViewsFollowChanges: a tape written, moved and removed through the
// mount shows in, moves within and leaves the views.
func TestViewsFollowChanges(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st Store) {
		m := mount(t, st)
		g := newTape(7001, 12)
		tag := g.Truth.Tags[0]
		src := writeLocal(t, map[string][]byte{"t.jsonl": g.Data, "t.meta.json": g.Meta})
		run(t, "mkdir", "-p", filepath.Join(m.Dir, "in"))
		run(t, "cp", filepath.Join(src, "t.jsonl"), filepath.Join(src, "t.meta.json"), filepath.Join(m.Dir, "in"))
		inView := filepath.Join(m.Dir, ".by", "tag", tag, "t.jsonl")
		day := filepath.Join(m.Dir, ".by", "day", g.Truth.CreatedAt.UTC().Format("2006-01-02"), "t.jsonl")
		for _, p := range []string{inView, day} {
			if !waitFor(10*time.Second, func() bool { b, err := os.ReadFile(p); return err == nil && string(b) == string(g.Data) }) {
				t.Fatalf("%s does not show the new tape", p)
			}
		}
		// The tags are in the .meta.json: move the tape with it, as a directory.
		run(t, "mkdir", filepath.Join(m.Dir, "archive"))
		run(t, "mv", filepath.Join(m.Dir, "in"), filepath.Join(m.Dir, "archive"))
		if !waitFor(10*time.Second, func() bool { k, err := tapeKey(inView); return err == nil && k == "archive/in/t.jsonl" }) {
			t.Fatalf("after mv, %s is not the moved tape", inView)
		}
		if b, err := os.ReadFile(inView); err != nil || string(b) != string(g.Data) {
			t.Fatalf("read %s after mv: %v", inView, err)
		}
		run(t, "rm", filepath.Join(m.Dir, "archive", "in", "t.jsonl"))
		if !waitFor(10*time.Second, func() bool { _, err := os.Stat(inView); return os.IsNotExist(err) }) {
			t.Fatalf("%s still there after rm", inView)
		}
	})
}

// TestXattrs: a tape's indexed fields are its user.tape.* attributes
// (getfattr -d lists them); other files have none; none can be set.
func TestXattrs(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st Store) {
		c := newCorpus(t)
		m := mountFiles(t, st, c.Files)
		waitIndexed(t, st, sortedCopy(mapKeys(c.Tapes))...)
		for _, key := range []string{c.V2Tape, c.NoMeta, c.Malformed} {
			r := c.Truth[key]
			out := run(t, "getfattr", "-d", "--absolute-names", m.Path(key))
			got := map[string]string{}
			for _, line := range strings.Split(out, "\n") {
				if k, v, ok := strings.Cut(line, "="); ok {
					got[k] = strings.Trim(v, `"`)
				}
			}
			want := map[string]string{
				"user.tape.id":          r.TapeID,
				"user.tape.session":     r.SessionID,
				"user.tape.status":      r.Status,
				"user.tape.tags":        strings.Join(r.Tags, ","),
				"user.tape.format":      string(r.Format),
				"user.tape.frame_count": fmt.Sprint(r.FrameCount),
				"user.tape.error_count": fmt.Sprint(r.ErrorCount),
				"user.tape.valid":       fmt.Sprint(r.Valid),
			}
			for k, v := range want {
				if v == "" {
					if _, ok := got[k]; ok {
						t.Errorf("%s: %s=%q, want it absent", key, k, got[k])
					}
				} else if got[k] != v {
					t.Errorf("%s: %s=%q, want %q\n%s", key, k, got[k], v, out)
				}
			}
			tools := strings.Split(got["user.tape.tools"], ",")
			if got["user.tape.tools"] == "" {
				tools = nil
			}
			if g, w := strings.Join(tools, ","), strings.Join(sortedCopy(mapKeys(r.Tools)), ","); g != w {
				t.Errorf("%s: user.tape.tools=%q, want %q", key, g, w)
			}
		}
		one := run(t, "getfattr", "--only-values", "-n", "user.tape.id", m.Path(c.V2Tape))
		if one != c.Truth[c.V2Tape].TapeID {
			t.Errorf("getfattr -n user.tape.id = %q", one)
		}
		if k := run(t, "getfattr", "--only-values", "-n", "user.tape.key", m.Path(c.V2Tape)); k != c.V2Tape {
			t.Errorf("getfattr -n user.tape.key = %q, want %q", k, c.V2Tape)
		}
		if out := run(t, "getfattr", "-d", m.Path(c.PlainText)); strings.TrimSpace(out) != "" {
			t.Errorf("a plain file has attributes:\n%s", out)
		}
		if r := try(t, "setfattr", "-n", "user.x", "-v", "1", m.Path(c.V2Tape)); r.Code == 0 {
			t.Errorf("setfattr succeeded; the store keeps no attributes")
		}
	})
}

// TestSynthesizedMeta: a v2 tape with no .meta.json in the store has one
// to read, made from the index, not listed; a real one written later wins.
func TestSynthesizedMeta(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st Store) {
		c := newCorpus(t)
		m := mountFiles(t, st, c.Files)
		waitIndexed(t, st, c.NoMeta)
		companion := strings.TrimSuffix(c.NoMeta, ".jsonl") + ".meta.json"
		r := c.Truth[c.NoMeta]
		// Through cp (mem://) the directory was just written into; the
		// companion comes once it is quiet.
		var doc map[string]any
		var last Result
		if !waitFor(20*time.Second, func() bool {
			last = try(t, "jq", "-c", ".", m.Path(companion))
			return last.Code == 0 && json.Unmarshal([]byte(last.Stdout), &doc) == nil
		}) {
			t.Fatalf("jq . %s: %s", companion, last)
		}
		if doc["tape_id"] != r.TapeID || doc["status"] != r.Status {
			t.Errorf("synthesized %s = %s; want tape_id %q, status %q", companion, last.Stdout, r.TapeID, r.Status)
		}
		if stats, _ := doc["stats"].(map[string]any); stats == nil || stats["frame_count"] != float64(r.FrameCount) {
			t.Errorf("synthesized stats = %v, want frame_count %d", doc["stats"], r.FrameCount)
		}
		if names := dirNames(t, filepath.Dir(m.Path(companion))); strings.Contains(strings.Join(names, "\n"), path.Base(companion)) {
			t.Errorf("the synthesized %s is listed: %q", companion, names)
		}
		if b := st.Bucket(); b != nil {
			if _, ok := storeRead(t, b, companion); ok {
				t.Errorf("the synthesized companion reached the store")
			}
		}
		// A real companion written over it is stored and wins.
		real := fmt.Sprintf(`{"tape_id":%q,"name":"written later","tags":["later"],"status":"finalized"}`, r.TapeID)
		src := writeLocal(t, map[string][]byte{"c.meta.json": []byte(real)})
		run(t, "cp", filepath.Join(src, "c.meta.json"), m.Path(companion))
		if got := run(t, "cat", m.Path(companion)); got != real {
			t.Errorf("after cp, %s = %q", companion, got)
		}
		if b := st.Bucket(); b != nil {
			if got, ok := storeRead(t, b, companion); !ok || string(got) != real {
				t.Errorf("the store has %q for %s", got, companion)
			}
		}
		waitLs(t, st, "the real companion indexed", func(recs map[string]TapeRecord) bool {
			return recs[c.NoMeta].Name == "written later"
		})
		// rm leaves nothing there: no synthesized one comes back.
		run(t, "rm", m.Path(companion))
		time.Sleep(1500 * time.Millisecond) // past the kernel's negative entry cache
		if r := try(t, "cat", m.Path(companion)); r.Code == 0 || !strings.Contains(r.Stderr, "No such file") {
			t.Errorf("after rm, %s: %s", companion, r)
		}
	})
}
