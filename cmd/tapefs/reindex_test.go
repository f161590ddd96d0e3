//go:build !tapefs_lite

package main

import (
	"bytes"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tapefs/tapefs/backend/storeurl"
	"github.com/tapefs/tapefs/importer"
)

func runReindex(t *testing.T, c ReindexCmd) (string, error) {
	t.Helper()
	var out bytes.Buffer
	c.Progress = "off"
	c.Workers = 4
	err := c.run(quietGlobals, &out)
	return out.String(), err
}

func TestReindexCommand(t *testing.T) {
	testEnv(t)
	dir, m := writeCorpus(t)
	storeDir := t.TempDir()
	url, _ := storeurl.FileURL(storeDir)
	st, _ := resolveStore(url, "")
	if _, err := runImport(t, ImportCmd{StoreFlags: StoreFlags{Backend: []string{url}}, Dir: dir}); err != nil {
		t.Fatal(err)
	}
	before := indexedKeys(t, st.Meta)

	// A key removed behind the index's back, and a stale WAL: the rebuild
	// reflects the store, and the WAL is not replayed.
	gone := before[0]
	if err := os.Remove(storeDir + "/" + gone); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(st.Meta+"-wal", []byte("stale"), 0o600)
	out, err := runReindex(t, ReindexCmd{StoreFlags: StoreFlags{Backend: []string{url}}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "rebuilt the sidecar "+st.Meta) || !strings.Contains(out, "holds "+strconv.Itoa(tapeCount(m)-1)+" tape(s)") {
		t.Errorf("output:\n%s", out)
	}
	after := indexedKeys(t, st.Meta)
	want := slices.DeleteFunc(slices.Clone(before), func(k string) bool { return k == gone })
	slices.Sort(want)
	slices.Sort(after)
	if !slices.Equal(after, want) {
		t.Errorf("after reindex:\n%q\nwant\n%q", after, want)
	}
	if _, err := os.Stat(st.Meta + importer.BuildSuffix); err == nil {
		t.Error("the build file is left behind")
	}
}

func TestReindexRefusesWhileMounted(t *testing.T) {
	testEnv(t)
	url, _ := storeurl.FileURL(t.TempDir())
	st, _ := resolveStore(url, "")
	fakeMount(t, "/mnt/busy", st.Meta, st.Redacted)
	_, err := runReindex(t, ReindexCmd{StoreFlags: StoreFlags{Backend: []string{url}}})
	if err == nil || !strings.Contains(err.Error(), "in use by the mount at /mnt/busy") || !strings.Contains(err.Error(), "tapefs unmount /mnt/busy") {
		t.Fatalf("err = %v, want a refusal naming the mount and the fix", err)
	}
	if _, err := os.Stat(st.Meta + importer.BuildSuffix); err == nil {
		t.Error("a refused reindex started building")
	}

	// A mount of the same store on another sidecar does not matter; nor
	// does an entry whose daemon is gone.
	testEnv(t)
	st, _ = resolveStore(url, "")
	fakeMount(t, "/mnt/other", "/elsewhere.db", st.Redacted)
	writeMountInfo(mountInfo{Mountpoint: "/mnt/dead", Meta: st.Meta, Backend: st.Redacted})
	if _, err := runReindex(t, ReindexCmd{StoreFlags: StoreFlags{Backend: []string{url}}}); err != nil {
		t.Fatal(err)
	}
}
