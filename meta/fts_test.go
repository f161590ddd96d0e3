//go:build sqlite_fts5

package meta

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapefs/tapefs/tape"
)

func searchKeys(t testing.TB, s *Sidecar, query string, f TapeFilter) []string {
	t.Helper()
	hits, err := s.Search(context.Background(), query, f)
	if err != nil {
		t.Fatalf("Search(%q): %v", query, err)
	}
	var out []string
	for i, h := range hits {
		if i > 0 && h.Score > hits[i-1].Score && f.Sort == "" {
			t.Errorf("Search(%q): scores not in order: %v", query, hits)
		}
		out = append(out, h.Key)
	}
	return out
}

// ftsFixture: tapes whose text differs in one column each.
func ftsFixture(t testing.TB) *Sidecar {
	t.Helper()
	s := openTest(t)
	ctx := context.Background()
	recs := []tape.Record{
		qrec("name.jsonl", "checkout flow replay", "s1", tape.StatusFinalized, qbase.Add(1*time.Hour)),
		qrec("desc.jsonl", "other", "s1", tape.StatusFinalized, qbase.Add(2*time.Hour),
			func(r *tape.Record) {
				r.Description = "a long description that mentions checkout once among many other words"
			}),
		qrec("tags.jsonl", "tagged", "s2", tape.StatusRecording, qbase.Add(3*time.Hour),
			func(r *tape.Record) { r.Tags = []string{"checkout", "customer-a"} }),
		qrec("tools.jsonl", "tools", "s2", tape.StatusFinalized, qbase.Add(4*time.Hour), func(r *tape.Record) {
			r.Methods["tools/call"] = 3
			r.Tools = map[string]int64{"read_file": 2, "météo_lookup": 1}
		}),
		qrec("errors.jsonl", "failing", "s3", tape.StatusFinalized, qbase.Add(5*time.Hour), func(r *tape.Record) {
			r.ErrorCount = 2
			r.ErrorMessages = []string{"connection refused by upstream", `tool execution failed: "quoted" <b>`}
		}),
		qrec("peers.jsonl", "peers", "s3", tape.StatusFinalized, qbase.Add(6*time.Hour), func(r *tape.Record) {
			r.ClientName, r.ClientVersion, r.ServerName, r.ServerVersion = "claude-code", "1.0.86", "github-server", "2.1"
		}),
		qrec("team-x/2025/08/keyword-in-key.jsonl", "k", "sess-unique-42", tape.StatusFinalized, qbase.Add(7*time.Hour)),
		qrec("odd.jsonl", "", "", tape.StatusFinalized, qbase.Add(8*time.Hour), func(r *tape.Record) {
			r.TapeID, r.Tags, r.ServerVersion, r.ClientName = "", []string{"zz", "", "aa", "zz"}, "9", " spaced "
			r.Methods, r.Tools = nil, map[string]int64{"": 1, "b": 1}
		}),
		qrec("v1/old.json", "old checkout", "s4", tape.StatusFinalized, time.Time{},
			func(r *tape.Record) { r.Format = tape.FormatV1; r.Valid, r.Problems = false, []string{"bad"} }),
	}
	for i := range recs {
		o := put(t, s, recs[i].Key)[0]
		if err := s.PutTape(ctx, &recs[i], TapeSource{Data: StampOf(o)}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func TestSearch(t *testing.T) {
	s := ftsFixture(t)
	tests := []struct {
		query string
		f     TapeFilter
		want  []string
	}{
		// The name weighs most, then tags, then the description.
		{"checkout", TapeFilter{}, []string{"name.jsonl", "v1/old.json", "tags.jsonl", "desc.jsonl"}},
		{"CHECKOUT", TapeFilter{}, []string{"name.jsonl", "v1/old.json", "tags.jsonl", "desc.jsonl"}},
		{"checkout replay", TapeFilter{}, []string{"name.jsonl"}}, // all words
		{"checkout OR failing", TapeFilter{}, nil},                // checked below as a set
		{"checkout NOT old", TapeFilter{}, []string{"name.jsonl", "tags.jsonl", "desc.jsonl"}},
		{`"flow replay"`, TapeFilter{}, []string{"name.jsonl"}}, // phrase
		{`"replay flow"`, TapeFilter{}, nil},                    // order matters in a phrase
		{"check*", TapeFilter{}, []string{"name.jsonl", "v1/old.json", "tags.jsonl", "desc.jsonl"}},
		{"tags:checkout", TapeFilter{}, []string{"tags.jsonl"}},
		{`name:"checkout flow"`, TapeFilter{}, []string{"name.jsonl"}},
		{"read_file", TapeFilter{}, []string{"tools.jsonl"}}, // punctuation inside a word
		{"tools/call", TapeFilter{}, []string{"tools.jsonl"}},
		{"meteo", TapeFilter{}, []string{"tools.jsonl"}}, // accents ignored
		{"météo_lookup", TapeFilter{}, []string{"tools.jsonl"}},
		{"connection refused", TapeFilter{}, []string{"errors.jsonl"}}, // error messages
		{`"quoted"`, TapeFilter{}, []string{"errors.jsonl"}},
		{"errors:upstream", TapeFilter{}, []string{"errors.jsonl"}},
		{"claude-code", TapeFilter{}, []string{"peers.jsonl"}}, // client
		{"server:github", TapeFilter{}, []string{"peers.jsonl"}},
		{"keyword", TapeFilter{}, []string{"team-x/2025/08/keyword-in-key.jsonl"}}, // key
		{"sess-unique-42", TapeFilter{}, []string{"team-x/2025/08/keyword-in-key.jsonl"}},
		{"customer-a", TapeFilter{}, []string{"tags.jsonl"}},
		{"nothing-matches-this", TapeFilter{}, nil},
		// Filters and orders as ls.
		{"checkout", TapeFilter{Status: tape.StatusRecording}, []string{"tags.jsonl"}},
		{"checkout", TapeFilter{Invalid: true}, []string{"v1/old.json"}},
		{"checkout", TapeFilter{Format: tape.FormatV2, Limit: 2}, []string{"name.jsonl", "tags.jsonl"}},
		{"checkout", TapeFilter{Sort: "-created"}, []string{"tags.jsonl", "desc.jsonl", "name.jsonl", "v1/old.json"}},
		{"checkout", TapeFilter{Sort: "key"}, []string{"desc.jsonl", "name.jsonl", "tags.jsonl", "v1/old.json"}},
		{"checkout", TapeFilter{Limit: 1}, []string{"name.jsonl"}},
	}
	for _, tt := range tests {
		got := searchKeys(t, s, tt.query, tt.f)
		if tt.query == "checkout OR failing" {
			slices.Sort(got)
			tt.want = []string{"desc.jsonl", "errors.jsonl", "name.jsonl", "tags.jsonl", "v1/old.json"}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Search(%q, %+v) = %v, want %v", tt.query, tt.f, got, tt.want)
		}
	}
}

func TestSearchBadQueries(t *testing.T) {
	s := ftsFixture(t)
	for _, q := range []string{"", "   ", `"unterminated`, "(a", "a)", "a OR", "OR a", "AND", "a NOT", "name:*", `tags:""`, "(", "a ( )"} {
		_, err := s.Search(context.Background(), q, TapeFilter{})
		if !errors.Is(err, ErrBadQuery) {
			t.Errorf("Search(%q) = %v, want ErrBadQuery", q, err)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "SELECT") || strings.Contains(msg, "sidecar:") {
			t.Errorf("Search(%q): the error shows SQL: %v", q, err)
		}
	}
	// Stray punctuation is no error, and "-" alone is no word.
	if got := searchKeys(t, s, "checkout - /", TapeFilter{}); len(got) != 4 {
		t.Errorf("punctuation: %v", got)
	}
	if _, err := s.Search(context.Background(), "x", TapeFilter{Status: "done"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad filter: %v", err)
	}
}

func TestFTSQuery(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"a b", `"a" "b"`},
		{`"a b" c`, `"a b" "c"`},
		{"tools/call", `"tools/call"`},
		{`say "hi"x`, `"say" "hi" "x"`},
		{"pre*", `"pre"*`},
		{`"a phrase"*`, `"a phrase"*`},
		{"a OR (b NOT c)", `"a" OR ( "b" NOT "c" )`},
		{"or and not", `"or" "and" "not"`}, // operators are upper case only
		{"Name:x TAGS:\"y z\" tools:re*", `name : "x" tags : "y z" tools : "re"*`},
		{"http://host:8080/x", `"http://host:8080/x"`},
		{"colour:red", `"colour:red"`},
		{`it's "a ""b"`, `"it's" "a " "b"`},
	} {
		got, err := FTSQuery(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("FTSQuery(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// ftsContents returns the full-text index as stored, and as it should be
// (rebuilt from the tapes now), to compare.
func ftsContents(t testing.TB, s *Sidecar) (got, want string) {
	t.Helper()
	dump := func(q string) string {
		rows, err := s.read.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var b strings.Builder
		for rows.Next() {
			vals := make([]sql.NullString, 11)
			ptrs := make([]any, len(vals))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				fmt.Fprintf(&b, "%q ", v.String)
			}
			b.WriteString("\n")
		}
		return b.String()
	}
	return dump(`SELECT rowid, ` + strings.Join(FTSColumns, ", ") + ` FROM tapes_fts ORDER BY rowid`),
		dump(`SELECT * FROM (` + ftsRows + `1) ORDER BY 1`)
}

func checkFTS(t testing.TB, s *Sidecar, when string) {
	t.Helper()
	got, want := ftsContents(t, s)
	if got != want {
		t.Errorf("%s: the full-text index is out of step:\n got %s\nwant %s", when, got, want)
	}
	if _, err := s.write.Exec(`INSERT INTO tapes_fts (tapes_fts, rank) VALUES ('integrity-check', 1)`); err != nil {
		t.Errorf("%s: integrity-check: %v", when, err)
	}
}

func TestFTSMaintenance(t *testing.T) {
	ctx := context.Background()
	s := ftsFixture(t)
	checkFTS(t, s, "after PutTape")

	// Rename of a file: the key column follows.
	if err := s.RenameObject(ctx, "team-x/2025/08/keyword-in-key.jsonl", "moved/elsewhere.jsonl"); err != nil {
		t.Fatal(err)
	}
	checkFTS(t, s, "after RenameObject")
	if got := searchKeys(t, s, "key:keyword", TapeFilter{}); got != nil {
		t.Errorf("old key still found: %v", got)
	}
	if got := searchKeys(t, s, "elsewhere", TapeFilter{}); !slices.Equal(got, []string{"moved/elsewhere.jsonl"}) {
		t.Errorf("new key: %v", got)
	}
	// Rename of a directory.
	if err := s.RenamePrefix(ctx, "moved", "archive/2025"); err != nil {
		t.Fatal(err)
	}
	checkFTS(t, s, "after RenamePrefix")
	if got := searchKeys(t, s, "archive elsewhere", TapeFilter{}); !slices.Equal(got, []string{"archive/2025/elsewhere.jsonl"}) {
		t.Errorf("after RenamePrefix: %v", got)
	}
	// Rename onto another tape replaces it.
	if err := s.RenameObject(ctx, "peers.jsonl", "errors.jsonl"); err != nil {
		t.Fatal(err)
	}
	checkFTS(t, s, "after RenameObject onto a tape")
	if got := searchKeys(t, s, "upstream", TapeFilter{}); got != nil {
		t.Errorf("replaced tape still found: %v", got)
	}
	if got := searchKeys(t, s, "claude", TapeFilter{}); !slices.Equal(got, []string{"errors.jsonl"}) {
		t.Errorf("renamed tape: %v", got)
	}
	// Re-index with other content (what a reindex does).
	o, _, _ := s.GetObject(ctx, "name.jsonl")
	r := qrec("name.jsonl", "renamed in its meta", "s1", tape.StatusFinalized, qbase)
	if err := s.PutTape(ctx, &r, TapeSource{Data: StampOf(o)}); err != nil {
		t.Fatal(err)
	}
	checkFTS(t, s, "after re-index")
	if got := searchKeys(t, s, "replay", TapeFilter{}); got != nil {
		t.Errorf("old name still found: %v", got)
	}
	if got := searchKeys(t, s, "renamed", TapeFilter{}); !slices.Equal(got, []string{"name.jsonl"}) {
		t.Errorf("new name: %v", got)
	}
	// A re-index that finds it is not a tape after all.
	if err := s.PutTape(ctx, &tape.Record{Key: "name.jsonl"}, TapeSource{Data: StampOf(o)}); err != nil {
		t.Fatal(err)
	}
	checkFTS(t, s, "after re-index as not a tape")
	// Deletes.
	if err := s.DeleteTape(ctx, "tags.jsonl"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteObject(ctx, "desc.jsonl"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTape(ctx, "no-such-key"); err != nil {
		t.Fatal(err)
	}
	checkFTS(t, s, "after deletes")
	if got := searchKeys(t, s, "checkout", TapeFilter{}); !slices.Equal(got, []string{"v1/old.json"}) {
		t.Errorf("after deletes: %v", got)
	}
	// A failed transaction leaves the index as it was.
	boom := errors.New("boom")
	err := s.Update(ctx, func(tx *Tx) error {
		if err := tx.DeleteObject("v1/old.json"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	checkFTS(t, s, "after a rolled back transaction")
	if got := searchKeys(t, s, "checkout", TapeFilter{}); !slices.Equal(got, []string{"v1/old.json"}) {
		t.Errorf("after rollback: %v", got)
	}
}

// TestSearchTopK checks the quick path for a limited search by rank
// against the full query, with many equal scores and filters that drop
// most of the best matches.
func TestSearchTopK(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	putRecords(t, s, 500, func(i int) tape.Record {
		name := "common word"
		if i%7 == 0 {
			name = "common common word" // a better score
		}
		status := tape.StatusFinalized
		if i%10 == 0 {
			status = tape.StatusRecording
		}
		return qrec(fmt.Sprintf("k%03d.jsonl", (i*37)%500), name, "s", status, qbase.Add(time.Duration(i%13)*time.Hour))
	})
	for _, f := range []TapeFilter{
		{Limit: 1}, {Limit: 10}, {Limit: 71}, {Limit: 72}, {Limit: 200}, {Limit: 600},
		{Limit: 10, Status: tape.StatusRecording}, {Limit: 3, Since: qbase.Add(12 * time.Hour)},
	} {
		got, err := s.Search(ctx, "common", f)
		if err != nil {
			t.Fatal(err)
		}
		full := f
		full.Limit = 0
		all, err := s.Search(ctx, "common", full)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) > f.Limit {
			all = all[:f.Limit]
		}
		if len(got) != len(all) {
			t.Fatalf("%+v: %d hits, want %d", f, len(got), len(all))
		}
		for i := range got {
			if got[i].Key != all[i].Key || got[i].Score != all[i].Score {
				t.Errorf("%+v: hit %d = %s %v, want %s %v", f, i, got[i].Key, got[i].Score, all[i].Key, all[i].Score)
				break
			}
		}
	}
}

// TestFTSStale: a build without FTS5 writing to the sidecar leaves the
// full-text index stale; a read-only search then says so, and the next
// read-write open rebuilds it.
func TestFTSStale(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sidecar.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	r := qrec("a.jsonl", "first", "s", tape.StatusFinalized, qbase)
	o := put(t, s, "a.jsonl")[0]
	if err := s.PutTape(ctx, &r, TapeSource{Data: StampOf(o)}); err != nil {
		t.Fatal(err)
	}
	s.fts = false // as a build without FTS5
	r = qrec("a.jsonl", "second", "s", tape.StatusFinalized, qbase)
	if err := s.PutTape(ctx, &r, TapeSource{Data: StampOf(o)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Search(ctx, "second", TapeFilter{}); !errors.Is(err, ErrNoFTS) {
		t.Errorf("Search without FTS5: %v", err)
	}
	if rows, err := s.ListTapes(ctx, TapeFilter{}); err != nil || len(rows) != 1 || rows[0].Name != "second" {
		t.Errorf("ListTapes without FTS5: %v, %v", rows, err)
	}
	s.Close()

	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ro.Search(ctx, "second", TapeFilter{}); !errors.Is(err, ErrFTSStale) {
		t.Errorf("read-only Search of a stale index: %v", err)
	}
	ro.Close()

	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkFTS(t, s, "after the rebuild")
	if got := searchKeys(t, s, "second", TapeFilter{}); !slices.Equal(got, []string{"a.jsonl"}) {
		t.Errorf("after the rebuild: %v", got)
	}
}
