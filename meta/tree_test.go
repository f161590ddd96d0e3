package meta

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// listing renders a directory as "name" for files and "name/" for dirs.
func listing(t testing.TB, s *Sidecar, dir string) string {
	t.Helper()
	ents, err := s.ReadDir(context.Background(), dir)
	if err != nil {
		t.Fatalf("ReadDir(%q): %v", dir, err)
	}
	var names []string
	for _, e := range ents {
		if e.IsDir {
			names = append(names, e.Name+"/")
		} else {
			names = append(names, e.Name)
		}
	}
	return strings.Join(names, " ")
}

// tree renders the whole tree, one "path: listing" line per directory.
func tree(t testing.TB, s *Sidecar) string {
	t.Helper()
	var b strings.Builder
	var walk func(dir string)
	walk = func(dir string) {
		fmt.Fprintf(&b, "%q: %s\n", dir, listing(t, s, dir))
		ents, _ := s.ReadDir(context.Background(), dir)
		for _, e := range ents {
			if e.IsDir {
				walk(strings.TrimPrefix(dir+"/"+e.Name, "/"))
			}
		}
	}
	walk("")
	return b.String()
}

func TestTree(t *testing.T) {
	tests := []struct {
		name    string
		keys    []string
		delete  []string
		want    map[string]string // dir -> listing
		gone    []string          // dirs that must not exist
		skipped []string
	}{
		{
			name: "nested",
			keys: []string{"a/b/c", "a/d", "e"},
			want: map[string]string{"": "a/ e", "a": "b/ d", "a/b": "c"},
		},
		{
			name: "sorted bytewise",
			keys: []string{"b", "B", "a", "é", "Z/x", "_"},
			want: map[string]string{"": "B Z/ _ a b é"},
		},
		{
			name:    "file and directory of the same name: the directory wins",
			keys:    []string{"a", "a/b"},
			want:    map[string]string{"": "a/", "a": "b"},
			skipped: []string{"a"},
		},
		{
			name:    "shadowed file comes back when the directory goes",
			keys:    []string{"a", "a/b"},
			delete:  []string{"a/b"},
			want:    map[string]string{"": "a"},
			gone:    []string{"a"},
			skipped: nil,
		},
		{
			name: "marker makes an empty directory",
			keys: []string{"m/", "n/o/"},
			want: map[string]string{"": "m/ n/", "m": "", "n": "o/", "n/o": ""},
		},
		{
			name:   "deleting a marker removes its directory once empty",
			keys:   []string{"m/", "n/", "n/x"},
			delete: []string{"m/", "n/"},
			want:   map[string]string{"": "n/", "n": "x"},
			gone:   []string{"m"},
		},
		{
			name:   "implicit ancestors are pruned",
			keys:   []string{"a/b/c/d", "a/x"},
			delete: []string{"a/b/c/d"},
			want:   map[string]string{"": "a/", "a": "x"},
			gone:   []string{"a/b", "a/b/c"},
		},
		{
			name:   "explicit directories stay",
			keys:   []string{"a/", "a/b/", "a/b/c"},
			delete: []string{"a/b/c"},
			want:   map[string]string{"": "a/", "a": "b/", "a/b": ""},
		},
		{
			name:    "unservable keys are stored but not in the tree",
			keys:    []string{"ok", "a//b", "/lead", "x/./y", "x/../y", "bad\x01", "t/" + strings.Repeat("n", 256), "\xff", "//"},
			want:    map[string]string{"": "ok"},
			gone:    []string{"a", "x", "t"},
			skipped: []string{"//", "/lead", "a//b", "bad\x01", "t/" + strings.Repeat("n", 256), "x/../y", "x/./y", "\xff"},
		},
		{
			name: "odd but servable names",
			keys: []string{"sp ace", "uni/ßü😀", "pct%41", "h#sh", "q?uery", `back\slash`, "co:lon", strings.Repeat("n", 255)},
			want: map[string]string{"": `back\slash co:lon h#sh ` + strings.Repeat("n", 255) + ` pct%41 q?uery sp ace uni/`, "uni": "ßü😀"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := openTest(t)
			put(t, s, tt.keys...)
			for _, k := range tt.delete {
				if err := s.DeleteObject(ctx, k); err != nil {
					t.Fatal(err)
				}
			}
			for dir, want := range tt.want {
				if got := listing(t, s, dir); got != want {
					t.Errorf("ReadDir(%q) = %q, want %q", dir, got, want)
				}
			}
			for _, dir := range tt.gone {
				if _, ok, _ := s.StatDir(ctx, dir); ok {
					t.Errorf("directory %q still exists", dir)
				}
				if _, err := s.ReadDir(ctx, dir); !errors.Is(err, ErrNotFound) {
					t.Errorf("ReadDir(%q): %v, want ErrNotFound", dir, err)
				}
			}
			sk, err := s.Skipped(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, k := range sk {
				keys = append(keys, k.Key)
				if k.Reason == "" {
					t.Errorf("skipped %q without a reason", k.Key)
				}
			}
			if !slices.Equal(keys, tt.skipped) {
				t.Errorf("Skipped = %q, want %q", keys, tt.skipped)
			}
			st, err := s.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Skipped != int64(len(tt.skipped)) || st.Objects != int64(len(tt.keys)-len(tt.delete)) {
				t.Errorf("Stats = %+v", st)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	objs := put(t, s, "a/f", "a/g", "a/g/h", "m/")
	tests := []struct {
		dir, name string
		ok, isDir bool
		id        int64
	}{
		{"a", "f", true, false, objs[0].ID},
		{"a", "g", true, true, 0}, // the directory, not the file
		{"", "m", true, true, 0},
		{"", "a", true, true, 0},
		{"a", "nope", false, false, 0},
		{"nope", "f", false, false, 0},
		{"a/g", "h", true, false, objs[2].ID},
	}
	for _, tt := range tests {
		e, ok, err := s.Lookup(ctx, tt.dir, tt.name)
		if err != nil || ok != tt.ok || e.IsDir != tt.isDir || (tt.id != 0 && e.ID != tt.id) {
			t.Errorf("Lookup(%q, %q) = %+v, %v, %v", tt.dir, tt.name, e, ok, err)
		}
		if ok && !e.IsDir && (e.Key != tt.dir+"/"+tt.name || e.Size != int64(len(e.Key))) {
			t.Errorf("Lookup(%q, %q) = %+v", tt.dir, tt.name, e)
		}
	}
	// Ids of files and directories never collide: they are inode numbers.
	seen := map[int64]string{}
	var walk func(dir string)
	walk = func(dir string) {
		ents, _ := s.ReadDir(ctx, dir)
		for _, e := range ents {
			if prev, ok := seen[e.ID]; ok {
				t.Errorf("id %d used by %q and %q", e.ID, prev, e.Name)
			}
			seen[e.ID] = e.Name
			if e.IsDir {
				walk(strings.TrimPrefix(dir+"/"+e.Name, "/"))
			}
		}
	}
	walk("")
	if root, ok, _ := s.StatDir(ctx, ""); !ok || root.ID != 1 {
		t.Errorf("root = %+v", root)
	}
}

func TestPutObjectKeepsID(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	first := put(t, s, "d/x")[0]
	mt := time.Unix(1800000000, 5)
	again, err := s.PutObject(ctx, Object{Key: "d/x", Size: 99, ModTime: mt, ETag: `"e"`, MD5: []byte{1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != first.ID {
		t.Fatalf("id changed %d -> %d", first.ID, again.ID)
	}
	got, ok, err := s.GetObject(ctx, "d/x")
	if !ok || err != nil || got.Size != 99 || !got.ModTime.Equal(mt) || got.ETag != `"e"` || string(got.MD5) != "\x01\x02" {
		t.Fatalf("GetObject = %+v %v %v", got, ok, err)
	}
	// A directory's time is the newest time below it.
	for _, d := range []string{"d", ""} {
		if e, _, _ := s.StatDir(ctx, d); !e.ModTime.Equal(mt) {
			t.Errorf("dir %q mtime %v, want %v", d, e.ModTime, mt)
		}
	}
	if err := s.DeleteObject(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteObject(missing) = %v", err)
	}
}

func TestMakeRemoveDir(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	put(t, s, "full/f", "file")
	e, err := s.MakeDir(ctx, "new/sub")
	if err != nil || !e.IsDir || e.Name != "sub" {
		t.Fatalf("MakeDir = %+v, %v", e, err)
	}
	for _, p := range []string{"new/sub", "full", "file"} {
		if _, err := s.MakeDir(ctx, p); !errors.Is(err, ErrExists) {
			t.Errorf("MakeDir(%q) = %v, want ErrExists", p, err)
		}
	}
	if _, err := s.MakeDir(ctx, "a//b"); !errors.Is(err, ErrInvalid) {
		t.Errorf("MakeDir(a//b) = %v", err)
	}
	if empty, err := s.DirIsEmpty(ctx, "new/sub"); !empty || err != nil {
		t.Errorf("DirIsEmpty(new/sub) = %v, %v", empty, err)
	}
	if empty, err := s.DirIsEmpty(ctx, "full"); empty || err != nil {
		t.Errorf("DirIsEmpty(full) = %v, %v", empty, err)
	}
	if err := s.RemoveDir(ctx, "full"); !errors.Is(err, ErrNotEmpty) {
		t.Errorf("RemoveDir(full) = %v", err)
	}
	if err := s.RemoveDir(ctx, "new"); !errors.Is(err, ErrNotEmpty) {
		t.Errorf("RemoveDir(new) = %v", err)
	}
	if err := s.RemoveDir(ctx, "new/sub"); err != nil {
		t.Fatal(err)
	}
	// "new" was made implicitly by MakeDir("new/sub"), so it goes too.
	if got := listing(t, s, ""); got != "file full/" {
		t.Errorf("root = %q", got)
	}
	if err := s.RemoveDir(ctx, "new/sub"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second RemoveDir = %v", err)
	}
	// RemoveDir drops the marker row with the directory.
	put(t, s, "mk/")
	if err := s.RemoveDir(ctx, "mk"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.GetObject(ctx, "mk/"); ok {
		t.Error("marker row survived RemoveDir")
	}
}

func TestRenameObject(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	objs := put(t, s, "a/x", "b/y", "keep/z")
	if err := s.RenameObject(ctx, "a/x", "c/d/x2"); err != nil {
		t.Fatal(err)
	}
	got, ok, _ := s.GetObject(ctx, "c/d/x2")
	if !ok || got.ID != objs[0].ID {
		t.Fatalf("renamed object = %+v, %v", got, ok)
	}
	if got := listing(t, s, ""); got != "b/ c/ keep/" {
		t.Errorf("root after rename = %q (a/ should be pruned)", got)
	}
	// Onto an existing key: it is replaced, the moved object keeps its id.
	if err := s.RenameObject(ctx, "c/d/x2", "b/y"); err != nil {
		t.Fatal(err)
	}
	got, _, _ = s.GetObject(ctx, "b/y")
	if got.ID != objs[0].ID {
		t.Errorf("id after replacing rename = %d, want %d", got.ID, objs[0].ID)
	}
	if got := tree(t, s); got != "\"\": b/ keep/\n\"b\": y\n\"keep\": z\n" {
		t.Errorf("tree:\n%s", got)
	}
	if err := s.RenameObject(ctx, "nope", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("rename missing = %v", err)
	}
	// Renaming to an unservable key keeps the row, out of the tree.
	if err := s.RenameObject(ctx, "keep/z", "keep//z"); err != nil {
		t.Fatal(err)
	}
	if sk, _ := s.Skipped(ctx); len(sk) != 1 || sk[0].Key != "keep//z" {
		t.Errorf("Skipped = %v", sk)
	}
}

func TestRenamePrefix(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	objs := put(t, s, "src/a", "src/sub/b", "src/sub/", "src/odd//key", "src", "srcx/c", "dst/empty/")
	before := map[string]int64{}
	for _, d := range []string{"src", "src/sub"} {
		e, _, _ := s.StatDir(ctx, d)
		before[d] = e.ID
	}
	if err := s.RenamePrefix(ctx, "src", "dst/empty"); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"":              "dst/ src srcx/", // the shadowed file "src" is visible again
		"dst":           "empty/",
		"dst/empty":     "a sub/",
		"dst/empty/sub": "b",
	}
	for dir, w := range want {
		if got := listing(t, s, dir); got != w {
			t.Errorf("ReadDir(%q) = %q, want %q", dir, got, w)
		}
	}
	for old, nw := range map[string]string{"src": "dst/empty", "src/sub": "dst/empty/sub"} {
		if e, _, _ := s.StatDir(ctx, nw); e.ID != before[old] {
			t.Errorf("dir %q id %d, was %d as %q", nw, e.ID, before[old], old)
		}
	}
	for i, nk := range []string{"dst/empty/a", "dst/empty/sub/b", "dst/empty/sub/", "dst/empty/odd//key", "src", "srcx/c"} {
		o, ok, _ := s.GetObject(ctx, nk)
		if !ok || o.ID != objs[i].ID {
			t.Errorf("%q: %+v, %v (want id %d)", nk, o, ok, objs[i].ID)
		}
	}
	if _, ok, _ := s.GetObject(ctx, "dst/empty/"); ok {
		t.Error("the replaced directory's marker survived")
	}
	// The moved marker still makes its directory explicit.
	if err := s.DeleteObject(ctx, "dst/empty/sub/b"); err != nil {
		t.Fatal(err)
	}
	if got := listing(t, s, "dst/empty/sub"); got != "" {
		t.Errorf("sub = %q", got)
	}

	for _, tt := range []struct {
		from, to string
		err      error
	}{
		{"dst", "dst/empty/in", ErrInvalid},
		{"dst/empty", "srcx", ErrNotEmpty},
		{"dst/empty", "src", ErrExists},
		{"nope", "x", ErrNotFound},
		{"", "x", ErrInvalid},
	} {
		if err := s.RenamePrefix(ctx, tt.from, tt.to); !errors.Is(err, tt.err) {
			t.Errorf("RenamePrefix(%q, %q) = %v, want %v", tt.from, tt.to, err, tt.err)
		}
	}
}

func TestObjectsUnder(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	put(t, s, "a/1", "a/b/2", "a/", "a//odd", "a0", "a", "ab/3")
	objs, err := s.ObjectsUnder(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range objs {
		keys = append(keys, o.Key)
	}
	if want := []string{"a/", "a//odd", "a/1", "a/b/2"}; !slices.Equal(keys, want) {
		t.Errorf("ObjectsUnder(a) = %q, want %q", keys, want)
	}
	all, _ := s.ObjectsUnder(ctx, "")
	if len(all) != 7 {
		t.Errorf("ObjectsUnder(\"\") = %d objects", len(all))
	}
}

// TestReadDirLarge checks that a 10,000-entry directory lists quickly.
func TestReadDirLarge(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	const n = 10000
	fill(t, s, "big", n)
	start := time.Now()
	ents, err := s.ReadDir(ctx, "big")
	elapsed := time.Since(start)
	if err != nil || len(ents) != n+n/10 {
		t.Fatalf("ReadDir = %d entries, %v", len(ents), err)
	}
	if !slices.IsSortedFunc(ents, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("not sorted")
	}
	t.Logf("ReadDir of %d entries: %v", n, elapsed)
	if elapsed > time.Second {
		t.Errorf("ReadDir of %d entries took %v", n, elapsed)
	}
}

func fill(t testing.TB, s *Sidecar, dir string, n int) {
	t.Helper()
	err := s.Update(context.Background(), func(tx *Tx) error {
		for i := range n {
			if _, err := tx.PutObject(Object{Key: fmt.Sprintf("%s/tape-%05d.jsonl", dir, i), Size: int64(i), ModTime: time.Unix(int64(i), 0)}); err != nil {
				return err
			}
			if i%10 == 0 {
				if _, err := tx.PutObject(Object{Key: fmt.Sprintf("%s/sub-%05d/x", dir, i)}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func BenchmarkReadDir10000(b *testing.B) {
	s := openTest(b)
	fill(b, s, "big", 9091) // 9,091 files + 910 directories ≈ 10,000 entries
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.ReadDir(ctx, "big"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLookup(b *testing.B) {
	s := openTest(b)
	fill(b, s, "big", 10000)
	ctx := context.Background()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, ok, err := s.Lookup(ctx, "big", fmt.Sprintf("tape-%05d.jsonl", i%10000)); !ok || err != nil {
			b.Fatal(ok, err)
		}
		i++
	}
}
