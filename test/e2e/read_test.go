package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// lsEntry is one line of `ls -l`.
type lsEntry struct {
	Mode string
	Size int64
}

func (e lsEntry) IsDir() bool { return strings.HasPrefix(e.Mode, "d") }

var lsLine = regexp.MustCompile(`^([-dlcbps][-rwxsStT]{9}[.+@]?)\s+\d+\s+\S+\s+\S+\s+(\d+)\s+T (.*)$`)

// lsDir runs `ls -l` on dir and parses it (names unquoted, so any byte but
// '\n' survives).
func lsDir(t *testing.T, dir string) map[string]lsEntry {
	t.Helper()
	out := run(t, "ls", "-l", "-A", "--quoting-style=literal", "--time-style=+T", dir)
	entries := map[string]lsEntry{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" || strings.HasPrefix(line, "total ") {
			continue
		}
		m := lsLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("cannot parse `ls -l %s` line %q", dir, line)
		}
		size, _ := strconv.ParseInt(m[2], 10, 64)
		entries[m[3]] = lsEntry{Mode: m[1], Size: size}
	}
	return entries
}

// wantListing is what `ls -l DIR` must show for dir given the keys in the store.
func wantListing(keys []string, files map[string][]byte, dir string) map[string]lsEntry {
	want := map[string]lsEntry{}
	prefix := ""
	if dir != "" {
		prefix = dir + "/"
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		rest := k[len(prefix):]
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			want[rest[:i]] = lsEntry{Mode: "d"}
		} else {
			want[rest] = lsEntry{Mode: "-", Size: int64(len(files[k]))}
		}
	}
	return want
}

// checkListing compares `ls -l` of every corpus directory with the corpus.
func checkListing(t *testing.T, m *Mount, files map[string][]byte) {
	t.Helper()
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, dir := range dirsOf(keys) {
		got := lsDir(t, m.Path(dir))
		want := wantListing(keys, files, dir)
		for name, w := range want {
			g, ok := got[name]
			switch {
			case !ok:
				t.Errorf("ls -l %q: %q missing", dir, name)
			case w.IsDir() != g.IsDir():
				t.Errorf("ls -l %q: %q has mode %s, want a %s", dir, name, g.Mode, map[bool]string{true: "directory", false: "file"}[w.IsDir()])
			case !w.IsDir() && g.Size != w.Size:
				t.Errorf("ls -l %q: %q has size %d, want %d", dir, name, g.Size, w.Size)
			}
		}
		for name, g := range got {
			if _, ok := want[name]; !ok {
				t.Errorf("ls -l %q: unexpected entry %q (%s)", dir, name, g.Mode)
			}
		}
	}
}

// TestListing: `ls -l` shows every seeded key, with the right sizes, and
// nothing else.
func TestListing(t *testing.T) {
	c := newCorpus(t)
	forEachBackend(t, func(t *testing.T, st Store) {
		m := mountFiles(t, st, c.Files)
		checkListing(t, m, c.Files)

		// Modes are the mount's defaults: 0644 files, 0755 directories.
		for _, key := range []string{"v1", c.Malformed} {
			got := strings.TrimSpace(run(t, "stat", "-c", "%a %F", m.Path(key)))
			want := "644 regular file"
			if key == "v1" {
				want = "755 directory"
			}
			if !strings.HasPrefix(got, want) {
				t.Errorf("stat %s: %q, want %q", key, got, want)
			}
		}
	})
}

// TestDotEntries: every directory lists "." and ".." first, as on a local
// disk, with the inode numbers that stat gives them; and no two paths of the
// mount share an inode number (the root had 0, which ls -i prints as "?").
func TestDotEntries(t *testing.T) {
	c := newCorpus(t)
	st := backendNamed(t, "file")
	m := mountFiles(t, st, c.Files)
	for _, dir := range []string{m.Dir, m.Path("v1"), m.Path(".by"), m.Path(".by/status")} {
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("stat %s: %v", dir, err)
			continue
		}
		names := strings.Fields(run(t, "ls", "-a", "-U", dir))
		if len(names) < 2 || names[0] != "." || names[1] != ".." {
			t.Errorf("ls -a %s starts with %q, want . and ..", dir, names[:min(len(names), 3)])
		}
		dots := strings.Fields(run(t, "ls", "-aid", dir+"/.", dir+"/.."))
		stat := strings.Fields(run(t, "stat", "-c", "%i", dir+"/.", dir+"/.."))
		if len(dots) != 4 || len(stat) != 2 || dots[0] != stat[0] || dots[2] != stat[1] {
			t.Errorf("%s: ls -i of . and .. says %q, stat says %q", dir, dots, stat)
		}
	}
	seen := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, "find", m.Dir, "-printf", "%i %p\n")), "\n") {
		ino, p, _ := strings.Cut(line, " ")
		if ino == "0" {
			t.Errorf("%s has inode number 0", p)
		}
		if other, ok := seen[ino]; ok {
			t.Errorf("%s and %s share inode number %s", p, other, ino)
		}
		seen[ino] = p
	}
}

// TestReadBytes: cat and cmp return every kind of file byte for byte.
func TestReadBytes(t *testing.T) {
	c := newCorpus(t)
	src := t.TempDir()
	writeTree(t, src, c.Files)
	forEachBackend(t, func(t *testing.T, st Store) {
		m := mountFiles(t, st, c.Files)
		for _, key := range c.Keys() {
			if r := try(t, "cmp", "--", filepath.Join(src, key), m.Path(key)); r.Code != 0 {
				t.Errorf("cmp %q differs:\n%s", key, r)
				continue
			}
			out := run(t, "cat", "--", m.Path(key))
			if out != string(c.Files[key]) {
				t.Errorf("cat %q: got %d bytes, want %d (contents differ)", key, len(out), len(c.Files[key]))
			}
		}
	})
}

// TestJQ: jq parses every .jsonl through the mount exactly as it parses the
// source file, including failing the same way on the malformed one.
func TestJQ(t *testing.T) {
	c := newCorpus(t)
	src := t.TempDir()
	writeTree(t, src, c.Files)
	forEachBackend(t, func(t *testing.T, st Store) {
		m := mountFiles(t, st, c.Files)
		n := 0
		for _, key := range c.Keys() {
			if !strings.HasSuffix(key, ".jsonl") {
				continue
			}
			n++
			// Same relative name in both runs, so even error texts compare equal.
			dir, base := path.Split(key)
			want := Cmd{Dir: filepath.Join(src, dir)}.exe(t, "jq", "-c", ".", "./"+base)
			got := Cmd{Dir: m.Path(dir)}.exe(t, "jq", "-c", ".", "./"+base)
			if got.Code != want.Code || got.Stdout != want.Stdout || got.Stderr != want.Stderr {
				t.Errorf("jq -c . %q through the mount differs from the source:\nmount: %s\nsource: %s", key, got, want)
			}
			if (key == c.Malformed) != (want.Code != 0) {
				t.Errorf("fixture: jq on %q exited %d", key, want.Code)
			}
		}
		// A typical query from the docs, over the mount.
		tape := c.V2Tape
		methods := run(t, "jq", "-r", `select(.type=="frame") | .env.message.method // empty`, m.Path(tape))
		if !strings.Contains(methods, "tools/call") || !strings.Contains(methods, "initialize\n") {
			t.Errorf("jq methods of %q: %q", tape, clip(methods))
		}
		t.Logf("compared jq over %d .jsonl files", n)
	})
}

// TestGrep: grep -l finds exactly the tapes that call tools, through the
// mount as on the source.
func TestGrep(t *testing.T) {
	c := newCorpus(t)
	src := t.TempDir()
	writeTree(t, src, c.Files)
	forEachBackend(t, func(t *testing.T, st Store) {
		m := mountFiles(t, st, c.Files)

		// grep -rl over the whole tree.
		want := sortedLines(Cmd{Dir: src}.run(t, "grep", "-rl", `"tools/call"`, "."))
		got := sortedLines(Cmd{Dir: m.Dir}.run(t, "grep", "-rl", `"tools/call"`, "."))
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("grep -rl through the mount:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		var fromCorpus []string
		for _, k := range c.ToolsCall {
			fromCorpus = append(fromCorpus, "./"+k)
		}
		if strings.Join(want, "\n") != strings.Join(sortedCopy(fromCorpus), "\n") {
			t.Errorf("fixture: grep on the source found %q, corpus says %q", want, fromCorpus)
		}

		// grep -l over the .jsonl files of one directory, as in the docs.
		dir := path.Dir(c.V2Tape)
		var args []string
		for _, k := range c.Keys() {
			if path.Dir(k) == dir && strings.HasSuffix(k, ".jsonl") {
				args = append(args, path.Base(k))
			}
		}
		grepArgs := append([]string{"-l", `"tools/call"`}, args...)
		wantDir := Cmd{Dir: filepath.Join(src, dir)}.exe(t, "grep", grepArgs...)
		gotDir := Cmd{Dir: m.Path(dir)}.exe(t, "grep", grepArgs...)
		if gotDir.Stdout != wantDir.Stdout || gotDir.Code != wantDir.Code {
			t.Errorf("grep -l in %s:\n%s\nwant:\n%s", dir, gotDir, wantDir)
		}
	})
}

func sortedLines(s string) []string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return nil
	}
	sort.Strings(lines)
	return lines
}

// TestConcurrentReaders: 8 cmp processes read one tape at the same time,
// several rounds, and all see the right bytes.
func TestConcurrentReaders(t *testing.T) {
	c := newCorpus(t)
	src := t.TempDir()
	writeTree(t, src, c.Files)
	big := c.Largest
	forEachBackend(t, func(t *testing.T, st Store) {
		m := mountFiles(t, st, c.Files)
		const readers, rounds = 8, 3
		var wg sync.WaitGroup
		errs := make(chan string, readers*rounds)
		for i := 0; i < readers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < rounds; j++ {
					if r := try(t, "cmp", filepath.Join(src, big), m.Path(big)); r.Code != 0 {
						errs <- r.String()
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Errorf("concurrent reader of %q (%d bytes):\n%s", big, len(c.Files[big]), e)
		}
	})
}

// TestSmallReadOfLargeTape: reading 4 KiB from the middle of a 64 MiB tape
// fetches only a small part of it from the store. The daemon reports what it
// read from the store as bytes_read_from_store in `tapefs status --json`.
func TestSmallReadOfLargeTape(t *testing.T) {
	tp := bigTape(64 << 20)
	key := "large/" + tp.ID() + ".jsonl"
	forEachBackend(t, func(t *testing.T, st Store) {
		m := mountFiles(t, st, map[string][]byte{key: tp.Data})
		// Let reconciling and indexing (which may read the whole tape) settle.
		waitIndexed(t, st, key)
		before := settledBytesRead(t, m)

		const offset = 32 << 20
		out := filepath.Join(t.TempDir(), "chunk")
		run(t, "dd", "if="+m.Path(key), "of="+out, "bs=4096", "count=1", fmt.Sprintf("skip=%d", offset/4096), "status=none")
		chunk, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(chunk, tp.Data[offset:offset+4096]) {
			t.Errorf("dd of 4 KiB at %d returned the wrong bytes", offset)
		}
		time.Sleep(500 * time.Millisecond) // let any read-ahead finish, it counts too
		after := bytesReadFromStore(t, m)
		fetched := after - before
		t.Logf("4 KiB read of a %d MiB tape fetched %d bytes from the store", len(tp.Data)>>20, fetched)
		if limit := int64(len(tp.Data) / 8); fetched > limit {
			t.Errorf("reading 4 KiB fetched %d bytes from the store (limit %d, the tape is %d)", fetched, limit, len(tp.Data))
		}
	})
}

// TestAttrsFromSidecar: sizes and times come from the sidecar: with the file
// gone from a file:// store behind the daemon's back, stat and ls -l still
// answer with what the mount saw.
func TestAttrsFromSidecar(t *testing.T) {
	c := newCorpus(t)
	st := backendNamed(t, "file").(*fileStore)
	m := mountFiles(t, st, c.Files)
	key := c.V2Tape
	stat := func() string {
		return strings.TrimSpace(run(t, "stat", "-c", "%s %Y %F", m.Path(key)))
	}
	before := stat()
	if want := fmt.Sprintf("%d ", len(c.Files[key])); !strings.HasPrefix(before, want) {
		t.Fatalf("stat %q = %q, want size %d", key, before, len(c.Files[key]))
	}
	beforeLs := lsDir(t, m.Path(path.Dir(key)))[path.Base(key)]

	if err := os.Remove(st.Path(key)); err != nil {
		t.Fatal(err)
	}
	if after := stat(); after != before {
		t.Errorf("after deleting the store file: stat %q = %q, want %q (from the sidecar)", key, after, before)
	}
	if afterLs, ok := lsDir(t, m.Path(path.Dir(key)))[path.Base(key)]; !ok || afterLs != beforeLs {
		t.Errorf("after deleting the store file: ls -l shows %+v (present %v), want %+v", afterLs, ok, beforeLs)
	}
}
