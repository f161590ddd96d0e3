//go:build !tapefs_lite

package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tapefs/tapefs/backend/storeurl"
	"github.com/tapefs/tapefs/importer"
	"github.com/tapefs/tapefs/internal/tapegen"
	"github.com/tapefs/tapefs/meta"
)

// testEnv points every XDG directory of the commands into temporary ones
// (the run directory short, for unix socket paths).
func testEnv(t *testing.T) {
	t.Helper()
	base := t.TempDir()
	for _, v := range []string{"XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"} {
		t.Setenv(v, filepath.Join(base, strings.ToLower(v)))
	}
	run, err := os.MkdirTemp("", "tfs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	t.Setenv("XDG_RUNTIME_DIR", run)
	t.Setenv("TAPEFS_BACKEND", "")
	t.Setenv("TAPEFS_META", "")
}

func writeCorpus(t *testing.T) (string, tapegen.Manifest) {
	t.Helper()
	dir := t.TempDir()
	m, err := tapegen.WriteCorpus(dir, tapegen.CorpusOptions{Seed: 3, V2: 8, V2NoMeta: 2, V1: 3, Odd: true, OddNames: true, Nested: true})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "ctl\x01.jsonl"), []byte("x"), 0o644)
	return dir, m
}

// tapeCount is how many tapes the manifest holds, as the index counts them.
func tapeCount(m tapegen.Manifest) int {
	n := 0
	for _, f := range m.Files {
		if f.Tape != nil && f.Tape.Format != "" {
			n++
		}
	}
	return n
}

var quietGlobals = &Globals{LogLevel: "error"}

func runImport(t *testing.T, c ImportCmd) (string, error) {
	t.Helper()
	var out bytes.Buffer
	c.Progress = "off"
	if c.Workers == 0 {
		c.Workers = 4
	}
	err := c.run(quietGlobals, &out)
	return out.String(), err
}

func indexedKeys(t *testing.T, path string) []string {
	t.Helper()
	sc, err := meta.OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	rows, err := sc.ListTapes(context.Background(), meta.TapeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rows {
		out = append(out, r.Key)
	}
	return out
}

func TestImportCommand(t *testing.T) {
	testEnv(t)
	dir, m := writeCorpus(t)
	storeDir := t.TempDir()
	url, _ := storeurl.FileURL(storeDir)
	flags := StoreFlags{Backend: []string{url}}
	st, _ := resolveStore(url, "")

	// A dry run writes nothing: no object, no sidecar.
	out, err := runImport(t, ImportCmd{StoreFlags: flags, Dir: dir, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(storeDir); len(ents) != 0 {
		t.Errorf("dry run wrote %d entries into the store", len(ents))
	}
	if _, err := os.Stat(st.Meta); err == nil {
		t.Error("dry run created the sidecar")
	}
	if !strings.Contains(out, "(dry run): would copy") {
		t.Errorf("dry run output:\n%s", out)
	}

	out, err = runImport(t, ImportCmd{StoreFlags: flags, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"copied " + strconv.Itoa(len(m.Files)) + " file(s)", "1 unservable name", "-v lists", "tape(s) indexed"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The index shows the tapes at once.
	if got := indexedKeys(t, st.Meta); len(got) != tapeCount(m) {
		t.Errorf("%d tapes indexed after import, want %d", len(got), tapeCount(m))
	}

	// Second run, verbose: every file identical, the skip listed with its reason.
	out, err = runImport(t, ImportCmd{StoreFlags: flags, Dir: dir, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"copied 0 file(s)", strconv.Itoa(len(m.Files)) + " identical",
		`skipped    "ctl\x01.jsonl": unservable name (NUL or control character)`,
		"skipped    notes.txt: identical (same size and bytes; the store keeps no MD5)"} {
		if !strings.Contains(out, want) {
			t.Errorf("second run output lacks %q:\n%s", want, out)
		}
	}
	// -v lines come in path order.
	var paths []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "skipped    ") {
			paths = append(paths, strings.SplitN(line[11:], ":", 2)[0])
		}
	}
	for i := 1; i < len(paths); i++ {
		if strings.Trim(paths[i-1], `"`) > strings.Trim(paths[i], `"`) {
			t.Errorf("-v lines out of order: %q before %q", paths[i-1], paths[i])
		}
	}
}

func TestImportCommandErrors(t *testing.T) {
	testEnv(t)
	dir, _ := writeCorpus(t)
	url, _ := storeurl.FileURL(t.TempDir())
	for _, c := range []struct {
		cmd  ImportCmd
		want string
	}{
		{ImportCmd{StoreFlags: StoreFlags{Backend: []string{url}}, Dir: filepath.Join(dir, "nope")}, "does not exist"},
		{ImportCmd{StoreFlags: StoreFlags{Backend: []string{url}}, Dir: filepath.Join(dir, "notes.txt")}, "is not a directory"},
		{ImportCmd{StoreFlags: StoreFlags{Backend: []string{"file:///no/such/store"}}, Dir: dir}, "create the directory, or add ?create_dir=1"},
		{ImportCmd{StoreFlags: StoreFlags{Backend: []string{"nosuch://x"}}, Dir: dir}, "unknown scheme"},
		{ImportCmd{StoreFlags: StoreFlags{Backend: []string{url}}, Dir: dir, Prefix: "/abs"}, "--prefix"},
		{ImportCmd{StoreFlags: StoreFlags{Backend: []string{"mem://"}}, Dir: dir}, "memory store"},
	} {
		_, err := runImport(t, c.cmd)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want %q", c.cmd, err, c.want)
		}
	}
}

func TestAbortMessage(t *testing.T) {
	st := storeStack{store: store{Redacted: "s3://tapes"}}
	rep := &importer.Report{Copied: 3, ByReason: map[importer.Reason]int{importer.Identical: 2}}
	full := &importer.AbortError{Key: "a.jsonl", Err: &os.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC}}
	msg := abortMessage(full, st, rep).Error()
	for _, want := range []string{"s3://tapes is full", "free some space", "run the same command again", "the 5 file(s) already copied"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
	other := abortMessage(&importer.AbortError{Key: "k", Err: errors.New("boom")}, st, rep).Error()
	if !strings.Contains(other, "check that the store answers") {
		t.Errorf("%q", other)
	}
}

// fakeMount serves a mount's control socket for mp, recording requests,
// and lists it in the run directory with the given sidecar.
func fakeMount(t *testing.T, mp, metaPath, backendRedacted string) *atomic.Int64 {
	t.Helper()
	var refreshes atomic.Int64
	sock := socketPath(mp)
	os.MkdirAll(filepath.Dir(sock), 0o700)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]any{}) })
	mux.HandleFunc("POST /refresh", func(w http.ResponseWriter, r *http.Request) {
		refreshes.Add(1)
		writeJSON(w, 200, map[string]any{"Added": 7, "TapesIndexed": 5})
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	if err := writeMountInfo(mountInfo{Mountpoint: mp, PID: os.Getpid(), Backend: backendRedacted, Meta: metaPath,
		Socket: sock, Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return &refreshes
}

// With a mount of the store running on its sidecar, import asks the mount
// to refresh instead of writing the sidecar the daemon holds.
func TestImportRefreshesRunningMount(t *testing.T) {
	testEnv(t)
	dir, _ := writeCorpus(t)
	url, _ := storeurl.FileURL(t.TempDir())
	st, _ := resolveStore(url, "")
	refreshes := fakeMount(t, "/mnt/fake", st.Meta, st.Redacted)
	otherRefreshes := fakeMount(t, "/mnt/other", "/elsewhere/other.db", st.Redacted)

	out, err := runImport(t, ImportCmd{StoreFlags: StoreFlags{Backend: []string{url}}, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if refreshes.Load() != 1 || otherRefreshes.Load() != 1 {
		t.Errorf("refreshes: %d of the mount on the sidecar, %d of the other mount; want 1 and 1", refreshes.Load(), otherRefreshes.Load())
	}
	if !strings.Contains(out, "refreshed the mount at /mnt/fake: 7 key(s) added") {
		t.Errorf("output:\n%s", out)
	}
	if _, err := os.Stat(st.Meta); err == nil {
		t.Error("import wrote the sidecar that the mount's daemon owns")
	}
}

// A mount entry whose daemon is gone does not stop import from indexing.
func TestImportStaleMountEntry(t *testing.T) {
	testEnv(t)
	dir, m := writeCorpus(t)
	url, _ := storeurl.FileURL(t.TempDir())
	st, _ := resolveStore(url, "")
	writeMountInfo(mountInfo{Mountpoint: "/mnt/dead", Meta: st.Meta, Backend: st.Redacted})
	out, err := runImport(t, ImportCmd{StoreFlags: StoreFlags{Backend: []string{url}}, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if got := indexedKeys(t, st.Meta); len(got) != tapeCount(m) {
		t.Errorf("%d tapes indexed, want %d:\n%s", len(got), tapeCount(m), out)
	}
}
