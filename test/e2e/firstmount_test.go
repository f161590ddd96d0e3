package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestFirstMountServesWhileIndexing: the first mount of a store serves as
// soon as the store is listed, while its tapes are still being read and
// indexed in the background. Here the server holds the GET of one tape, so
// the indexing cannot end until the test lets it go (the GETs after that
// first one go through). Meanwhile the tree
// (ls -l, stat) and the data (cat) work; `tapefs status` shows the
// indexing; what comes from the tape index (a view directory, a tape's
// xattrs, `tapefs ls`) waits for it and then has every tape, never the
// ones read so far. The xattrs of a file that is no tape, `tapefs status`
// and a `tapefs refresh` waiting for the indexing do not hold each other
// up.
func TestFirstMountServesWhileIndexing(t *testing.T) {
	st := newProxiedStore(t)
	files := map[string][]byte{}
	var names []string
	for i := range 6 {
		g := newTape(int64(900+i), 20)
		key := fmt.Sprintf("first/t%d.jsonl", i)
		files[key] = g.Data
		files[strings.TrimSuffix(key, ".jsonl")+".meta.json"] = g.Meta
		names = append(names, filepath.Base(key))
	}
	files["first/notes.txt"] = []byte("not a tape\n")
	st.Seed(t, files)
	const heldKey = "first/t3.jsonl"
	release := make(chan struct{})
	released := false
	let := func() {
		if !released {
			close(release)
			released = true
		}
	}
	defer let()
	st.proxy.SetRule(func(r *http.Request, n int) *s3Fault {
		if r.Method == http.MethodGet && r.URL.Path == st.objectPath(heldKey) && n == 0 {
			return &s3Fault{Hold: release}
		}
		return nil
	})

	m := mount(t, st, whileIndexing())
	if _, ok := m.status(t)["indexing"]; !ok {
		t.Fatalf("tapefs status --json shows no indexing while the server holds the GET of %s: %v", heldKey, m.status(t))
	}
	if r := tapefs(t, st, "status"); !strings.Contains(r.Stdout, "indexing:") {
		t.Errorf("tapefs status does not say the mount is indexing:\n%s", r)
	}

	// The tree and the data do not wait.
	out := run(t, "ls", "-l", m.Path("first"))
	for key := range files {
		if !strings.Contains(out, filepath.Base(key)) {
			t.Errorf("ls -l while indexing lacks %s:\n%s", key, out)
		}
	}
	for _, key := range []string{"first/t0.jsonl", heldKey} {
		got, err := os.ReadFile(m.Path(key))
		if err != nil || string(got) != string(files[key]) {
			t.Errorf("cat %s while indexing: %d bytes, %v; want its %d bytes", key, len(got), err, len(files[key]))
		}
	}

	// What needs the index waits for it.
	type answer struct {
		out string
		err error
	}
	view := make(chan answer, 1)
	go func() {
		ents, err := os.ReadDir(m.Path(".by/status/finalized"))
		var got []string
		for _, e := range ents {
			got = append(got, e.Name())
		}
		view <- answer{strings.Join(got, " "), err}
	}()
	xattr := make(chan Result, 1)
	go func() { xattr <- try(t, "getfattr", "--only-values", "-n", "user.tape.key", m.Path(heldKey)) }()
	query := make(chan Result, 1)
	go func() { query <- tapefs(t, st, lsArgs(st)...) }()
	refresh := make(chan Result, 1)
	go func() { refresh <- tapefs(t, st, "refresh", m.Dir) }()

	// These answer while the indexing is held (a guard, not a measure:
	// they would wait for as long as it is held).
	plain := make(chan Result, 1)
	go func() { plain <- try(t, "getfattr", "-d", m.Path("first/notes.txt")) }()
	status := make(chan Result, 1)
	go func() {
		time.Sleep(200 * time.Millisecond) // the refresh above is waiting by now
		status <- tapefs(t, st, "status")
	}()
	for _, c := range []struct {
		what, want string
		ch         chan Result
	}{{"getfattr -d of a file that is no tape", "", plain}, {"tapefs status beside a waiting refresh", "indexing:", status}} {
		select {
		case r := <-c.ch:
			if r.Code != 0 || !strings.Contains(r.Stdout, c.want) {
				t.Errorf("%s while indexing: want exit 0 and %q:\n%s", c.what, c.want, r)
			}
		case <-time.After(20 * time.Second): // under the mount's --timeout (30 s), which ends the hold
			let()
			t.Fatalf("%s waited for the indexing", c.what)
		}
	}

	// They cannot have answered from a complete index yet: the held tape
	// is not read. Give them time to answer wrongly, then let it go.
	time.Sleep(500 * time.Millisecond)
	select {
	case a := <-view:
		t.Fatalf("ls .by/status/finalized answered before the indexing ended: %q, %v", a.out, a.err)
	case r := <-xattr:
		t.Fatalf("getfattr of %s answered before the indexing ended:\n%s", heldKey, r)
	case r := <-query:
		t.Fatalf("tapefs ls answered before the indexing ended:\n%s", r)
	case r := <-refresh:
		t.Fatalf("tapefs refresh answered before the indexing ended:\n%s", r)
	default:
	}
	let()

	a := <-view
	got := strings.Fields(a.out)
	slices.Sort(got)
	if a.err != nil || !slices.Equal(got, names) {
		t.Errorf("ls .by/status/finalized = %q, %v; want %q", got, a.err, names)
	}
	if r := <-xattr; r.Code != 0 || strings.TrimSpace(r.Stdout) != heldKey {
		t.Errorf("getfattr -n user.tape.key %s: want %q:\n%s", heldKey, heldKey, r)
	}
	r := <-query
	if r.Code != 0 || !strings.Contains(r.Stderr, "still indexing") {
		t.Errorf("tapefs ls during the indexing: want it to say it waits, and exit 0:\n%s", r)
	}
	recs, err := parseLsJSON(r.Stdout)
	if err != nil || len(recs) != len(names) {
		t.Errorf("tapefs ls during the indexing lists %d tapes (%v), want %d:\n%s", len(recs), err, len(names), r)
	}
	if r := <-refresh; r.Code != 0 {
		t.Errorf("tapefs refresh during the indexing:\n%s", r)
	}
	m.awaitIndexed(t)
}
