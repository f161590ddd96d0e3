package e2e

// Hostile keys and names beyond those of TestBadKeys: a key that is both a
// file and a prefix, a directory of 10,000 entries, and names written
// through the mount that the stores cannot hold.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	stores "github.com/tapefs/tapefs/backend"
	"gocloud.dev/blob"
)

// TestFileAndPrefix: a store that has both "a" and "a/b" (S3 allows it) is
// served with the directory: a/ holds b, and the file "a" is skipped with
// one warning naming it; nothing else is lost.
func TestFileAndPrefix(t *testing.T) {
	// versitygw's posix backend refuses "a/b" beside a file "a"; a
	// sqlite:// store holds any keys.
	path := filepath.Join(t.TempDir(), "tapes.db")
	b, err := stores.Open(context.Background(), stores.NewMux(), "sqlite://"+path)
	if err != nil {
		t.Fatal(err)
	}
	for key, data := range map[string]string{"a": "the file a\n", "a/b": "the file a/b\n", "x/y/z": "deep\n"} {
		if err := storeWrite(t, b, key, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	st := &urlStore{url: "sqlite://" + path, dirs: newStoreDirs(t)}
	m := mount(t, st)
	if fi, err := os.Stat(m.Path("a")); err != nil || !fi.IsDir() {
		t.Fatalf("a: %v; want the directory", err)
	}
	if got := run(t, "cat", m.Path("a/b")); got != "the file a/b\n" {
		t.Errorf("a/b = %q", got)
	}
	if got := run(t, "cat", m.Path("x/y/z")); got != "deep\n" {
		t.Errorf("x/y/z = %q", got)
	}
	if names := dirNames(t, m.Dir); strings.Join(names, " ") != "a x" {
		t.Errorf("root lists %q, want a and x", names)
	}
	m.Unmount(t)
	if n := strings.Count(m.logs(), `key=a `); n != 1 {
		t.Errorf("want one warning naming the shadowed key a, got %d:\n%s", n, m.logs())
	}
	b, err = stores.Open(context.Background(), stores.NewMux(), "sqlite://"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got, ok := storeRead(t, b, "a"); !ok || string(got) != "the file a\n" {
		t.Errorf("the shadowed object a is gone from the store")
	}
}

// urlStore is a store the daemon opens by URL and the test does not look
// into while it is mounted.
type urlStore struct {
	url  string
	dirs StoreDirs
}

func (s *urlStore) Kind() string                            { return "url" }
func (s *urlStore) URL() string                             { return s.url }
func (s *urlStore) Env() []string                           { return nil }
func (s *urlStore) Dirs() StoreDirs                         { return s.dirs }
func (s *urlStore) Persistent() bool                        { return true }
func (s *urlStore) Seed(*testing.T, map[string][]byte) bool { return false }
func (s *urlStore) Bucket() *blob.Bucket                    { return nil }

// TestManyEntries: one directory of 10,000 tapes lists, stats and reads.
func TestManyEntries(t *testing.T) {
	st := backendNamed(t, "file").(*fileStore)
	const n = 10_000
	os.MkdirAll(st.Path("many"), 0o755)
	for i := 0; i < n; i++ {
		if err := os.WriteFile(st.Path(fmt.Sprintf("many/t%05d.jsonl", i)), []byte(fmt.Sprintf("{\"n\":%d}\n", i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := mount(t, st)
	if got := strings.Count(run(t, "ls", "-A", m.Path("many")), "\n"); got != n {
		t.Errorf("ls lists %d entries, want %d", got, n)
	}
	if got := strings.Count(run(t, "ls", "-l", m.Path("many")), ".jsonl\n"); got != n {
		t.Errorf("ls -l lists %d files, want %d", got, n)
	}
	for _, i := range []int{0, 4999, n - 1} {
		if got := run(t, "cat", m.Path(fmt.Sprintf("many/t%05d.jsonl", i))); got != fmt.Sprintf("{\"n\":%d}\n", i) {
			t.Errorf("t%05d.jsonl = %q", i, got)
		}
	}
}

// TestNamesRefused: names the stores cannot hold are refused with a clear
// errno when written through the mount, never mangled: a control
// character (EINVAL), a name over 255 bytes and a key over 1,024 bytes
// (ENAMETOOLONG); nothing reaches the store.
func TestNamesRefused(t *testing.T) {
	forStoredBackends(t, func(t *testing.T, st Store) {
		m := mount(t, st)
		deep := m.Dir
		for i := 0; i < 5; i++ {
			deep = filepath.Join(deep, strings.Repeat("d", 200))
		}
		run(t, "mkdir", "-p", deep) // a key of 5*201 = 1,005 bytes: allowed
		tooDeep := filepath.Join(deep, strings.Repeat("e", 30))
		cases := []struct {
			name string
			args []string
			want string
		}{
			{"newline in a name", []string{"touch", filepath.Join(m.Dir, "new\nline.jsonl")}, "Invalid argument"},
			{"tab in a directory name", []string{"mkdir", filepath.Join(m.Dir, "tab\there")}, "Invalid argument"},
			{"name over 255 bytes", []string{"touch", filepath.Join(m.Dir, strings.Repeat("n", 256))}, "File name too long"},
			{"file key over 1024 bytes", []string{"touch", filepath.Join(deep, strings.Repeat("f", 30))}, "File name too long"},
			{"directory key over 1024 bytes", []string{"mkdir", tooDeep}, "File name too long"},
			{"rename to a key over 1024 bytes", []string{"sh", "-c", "echo x > '" + m.Dir + "/short' && mv '" + m.Dir + "/short' '" + filepath.Join(deep, strings.Repeat("g", 30)) + "'"}, "File name too long"},
		}
		for _, tc := range cases {
			r := try(t, tc.args[0], tc.args[1:]...)
			if r.Code == 0 || !strings.Contains(r.Stderr, tc.want) {
				t.Errorf("%s: want %q, got %s", tc.name, tc.want, r)
			}
		}
		if b := st.Bucket(); b != nil {
			for _, k := range storeKeys(t, b) {
				if len(k) > 1024 || strings.ContainsAny(k, "\n\t") {
					t.Errorf("the store holds %q", k)
				}
			}
		}
	})
}
