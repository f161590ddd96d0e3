package main

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"github.com/tapefs/tapefs/backend/storeurl"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	"github.com/tapefs/tapefs/backend"
	"github.com/tapefs/tapefs/indexer"
	"github.com/tapefs/tapefs/internal/tapegen"
	"github.com/tapefs/tapefs/meta"
	"github.com/tapefs/tapefs/tape"
)

// queryEnv is a store written by tapegen, indexed into a sidecar, with the
// generator's truth to compare the commands' answers with.
type queryEnv struct {
	store, db string
	url       string
	truth     []tape.Record // every tape, by key
	fts       bool
}

func newQueryEnv(t *testing.T) *queryEnv {
	t.Helper()
	tmp := t.TempDir()
	// No running mounts, no default store of the user's.
	t.Setenv("XDG_RUNTIME_DIR", filepath.Join(tmp, "run"))
	t.Setenv("XDG_DATA_HOME", filepath.Join(tmp, "data"))
	t.Setenv("TAPEFS_BACKEND", "")
	t.Setenv("TAPEFS_META", "")
	e := &queryEnv{store: filepath.Join(tmp, "store"), db: filepath.Join(tmp, "index.db")}
	m, err := tapegen.WriteCorpus(e.store, tapegen.CorpusOptions{Seed: 11, V2: 40, V2NoMeta: 5, V1: 4,
		Odd: true, OddNames: true, Nested: true})
	if err != nil {
		t.Fatal(err)
	}
	e.truth = m.Tapes()
	if e.url, err = storeurl.FileURL(e.store); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bucket, err := backend.Open(ctx, backend.NewMux(), e.url)
	if err != nil {
		t.Fatal(err)
	}
	defer bucket.Close()
	sc, err := meta.Open(e.db)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	e.fts = sc.HasFTS()
	if _, err := indexer.New(bucket, sc, indexer.Options{Logger: slog.New(slog.DiscardHandler)}).Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

// run runs a tapefs command line as main does and returns its output.
func run(t *testing.T, args ...string) (string, error) {
	out, _, err := run2(t, args...)
	return out, err
}

// run2 is run, also returning what went to standard error.
func run2(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var cli CLI
	parser, err := kong.New(&cli, kong.Name("tapefs"), kong.Exit(func(int) { panic("kong exit") }))
	if err != nil {
		t.Fatal(err)
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		return "", "", err
	}
	var out, errOut bytes.Buffer
	cli.Ls.w, cli.Search.w, cli.Show.w = &out, &out, &out
	cli.Ls.ew, cli.Search.ew = &errOut, &errOut
	err = kctx.Run(&cli.Globals, slog.New(slog.DiscardHandler))
	return out.String(), errOut.String(), err
}

// q runs a query command against the test sidecar.
func (e *queryEnv) q(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return run(t, append(args, "--backend", e.url, "--meta", e.db)...)
}

func (e *queryEnv) mustQ(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.q(t, args...)
	if err != nil {
		t.Fatalf("tapefs %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func decodeLines[T any](t *testing.T, out string) []T {
	t.Helper()
	var res []T
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var v T
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%v in %q", err, out)
		}
		res = append(res, v)
	}
	return res
}

func jsonKeys(t *testing.T, out string) []string {
	t.Helper()
	var keys []string
	for _, j := range decodeLines[tapeJSON](t, out) {
		keys = append(keys, j.Key)
	}
	return keys
}

// expect returns the keys of the truth's tapes that keep selects, newest
// first (unknown times last), ties by key: the default order of ls.
func (e *queryEnv) expect(keep func(r tape.Record) bool) []string {
	var rs []tape.Record
	for _, r := range e.truth {
		if keep(r) {
			rs = append(rs, r)
		}
	}
	slices.SortFunc(rs, func(a, b tape.Record) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	var keys []string
	for _, r := range rs {
		keys = append(keys, r.Key)
	}
	return keys
}

// common returns the most frequent value of a tape field over the truth.
func (e *queryEnv) common(values func(r tape.Record) []string) string {
	n := map[string]int{}
	for _, r := range e.truth {
		for _, v := range values(r) {
			n[v]++
		}
	}
	best := ""
	for _, v := range slices.Sorted(maps.Keys(n)) {
		if n[v] > n[best] {
			best = v
		}
	}
	return best
}

func TestLsMatchesTruth(t *testing.T) {
	e := newQueryEnv(t)
	rows := decodeLines[tapeJSON](t, e.mustQ(t, "ls", "--json"))
	if got, want := len(rows), len(e.truth); got != want {
		t.Fatalf("ls --json: %d tapes, want %d", got, want)
	}
	byKey := map[string]tape.Record{}
	for _, r := range e.truth {
		byKey[r.Key] = r
	}
	var keys []string
	for _, j := range rows {
		keys = append(keys, j.Key)
		r, ok := byKey[j.Key]
		if !ok {
			t.Errorf("ls lists %q, which is not a tape", j.Key)
			continue
		}
		want := toJSON(meta.TapeRow{Record: r})
		j.Size, j.ETag, j.Modified = 0, "", time.Time{}
		want.Modified = time.Time{}
		if !reflect.DeepEqual(j, want) {
			t.Errorf("ls --json %s:\n got %+v\nwant %+v", j.Key, j, want)
		}
	}
	if want := e.expect(func(tape.Record) bool { return true }); !slices.Equal(keys, want) {
		t.Errorf("order:\n got %v\nwant %v", keys, want)
	}
	// The table has a header and one line per tape.
	table := e.mustQ(t, "ls")
	if lines := strings.Split(strings.TrimSpace(table), "\n"); len(lines) != len(e.truth)+1 || !strings.HasPrefix(lines[0], "TAPE") {
		t.Errorf("ls table: %d lines:\n%s", len(lines), table)
	}
}

func TestLsFilters(t *testing.T) {
	e := newQueryEnv(t)
	tags := func(r tape.Record) []string { return r.Tags }
	tag := e.common(tags)
	var tag2 string // another tag on some tape with tag
	for _, r := range e.truth {
		for _, x := range r.Tags {
			if slices.Contains(r.Tags, tag) && x != tag && tag2 == "" {
				tag2 = x
			}
		}
	}
	tool := e.common(func(r tape.Record) []string { return slices.Collect(maps.Keys(r.Tools)) })
	session := ""
	for _, r := range e.truth {
		if r.SessionID != "" {
			session = r.SessionID
			break
		}
	}
	// A day in the middle of the corpus, and a tape's exact time.
	var times []time.Time
	for _, r := range e.truth {
		if !r.CreatedAt.IsZero() {
			times = append(times, r.CreatedAt)
		}
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	mid := times[len(times)/2].UTC()
	day := time.Date(mid.Year(), mid.Month(), mid.Day(), 0, 0, 0, 0, time.UTC)
	if tag == "" || tag2 == "" || tool == "" || session == "" {
		t.Fatalf("corpus lacks variety: tag %q %q tool %q session %q", tag, tag2, tool, session)
	}
	tests := []struct {
		args []string
		keep func(r tape.Record) bool
	}{
		{[]string{"--tag", tag}, func(r tape.Record) bool { return slices.Contains(r.Tags, tag) }},
		{[]string{"--tag", tag, "--tag", tag2}, func(r tape.Record) bool {
			return slices.Contains(r.Tags, tag) && slices.Contains(r.Tags, tag2)
		}},
		{[]string{"--session", session}, func(r tape.Record) bool { return r.SessionID == session }},
		{[]string{"--status", "recording"}, func(r tape.Record) bool { return r.Status == tape.StatusRecording }},
		{[]string{"--status", "finalized"}, func(r tape.Record) bool { return r.Status == tape.StatusFinalized }},
		{[]string{"--method", "tools/call"}, func(r tape.Record) bool { return r.Methods["tools/call"] > 0 }},
		{[]string{"--method", "tools/call", "--method", "initialize"}, func(r tape.Record) bool {
			return r.Methods["tools/call"] > 0 && r.Methods["initialize"] > 0
		}},
		{[]string{"--tool", tool}, func(r tape.Record) bool { return r.Tools[tool] > 0 }},
		{[]string{"--errors"}, func(r tape.Record) bool { return r.ErrorCount > 0 }},
		{[]string{"--format", "v1"}, func(r tape.Record) bool { return r.Format == tape.FormatV1 }},
		{[]string{"--format", "v2"}, func(r tape.Record) bool { return r.Format == tape.FormatV2 }},
		{[]string{"--invalid"}, func(r tape.Record) bool { return !r.Valid }},
		{[]string{"--since", day.Format("2006-01-02")}, func(r tape.Record) bool { return !r.CreatedAt.Before(day) }},
		{[]string{"--until", day.Format("2006-01-02")}, func(r tape.Record) bool {
			return !r.CreatedAt.IsZero() && r.CreatedAt.Before(day.AddDate(0, 0, 1))
		}},
		{[]string{"--since", day.Format("2006-01-02"), "--until", day.Format("2006-01-02")}, func(r tape.Record) bool {
			return !r.CreatedAt.Before(day) && r.CreatedAt.Before(day.AddDate(0, 0, 1))
		}},
		{[]string{"--since", mid.Format(time.RFC3339Nano)}, func(r tape.Record) bool { return !r.CreatedAt.Before(mid) }},
		{[]string{"--until", mid.Format(time.RFC3339Nano)}, func(r tape.Record) bool {
			return !r.CreatedAt.IsZero() && !r.CreatedAt.After(mid)
		}},
		{[]string{"--since", "100000d"}, func(r tape.Record) bool { return !r.CreatedAt.IsZero() }},
		{[]string{"--since", "1h"}, func(r tape.Record) bool { return false }},
		{[]string{"--tag", tag, "--errors", "--status", "finalized"}, func(r tape.Record) bool {
			return slices.Contains(r.Tags, tag) && r.ErrorCount > 0 && r.Status == tape.StatusFinalized
		}},
		{[]string{"--tag", "no-such-tag"}, func(r tape.Record) bool { return false }},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			got := jsonKeys(t, e.mustQ(t, append([]string{"ls", "--json"}, tt.args...)...))
			if want := e.expect(tt.keep); !slices.Equal(got, want) {
				t.Errorf("\n got %v\nwant %v", got, want)
			}
			// --limit takes the first of the same list.
			got = jsonKeys(t, e.mustQ(t, append([]string{"ls", "--json", "-n", "3"}, tt.args...)...))
			if want := e.expect(tt.keep); !slices.Equal(got, want[:min(3, len(want))]) {
				t.Errorf("--limit 3:\n got %v\nwant %v", got, want[:min(3, len(want))])
			}
		})
	}
}

func TestLsSort(t *testing.T) {
	e := newQueryEnv(t)
	all := decodeLines[tapeJSON](t, e.mustQ(t, "ls", "--json"))
	size := map[string]int64{}
	for _, j := range all {
		size[j.Key] = j.Size
	}
	compare := func(key string, a, b tape.Record) int {
		switch key {
		case "created":
			return a.CreatedAt.Compare(b.CreatedAt)
		case "name":
			return strings.Compare(a.Name, b.Name)
		case "size":
			return cmp.Compare(size[a.Key], size[b.Key])
		case "frames":
			return cmp.Compare(a.FrameCount, b.FrameCount)
		case "errors":
			return cmp.Compare(a.ErrorCount, b.ErrorCount)
		case "duration":
			return cmp.Compare(a.DurationMS, b.DurationMS)
		}
		return 0
	}
	for _, key := range []string{"created", "name", "size", "frames", "errors", "duration", "key"} {
		for _, desc := range []bool{false, true} {
			arg := key
			if desc {
				arg = "-" + key
			}
			want := slices.Clone(e.truth)
			slices.SortFunc(want, func(a, b tape.Record) int {
				c := compare(key, a, b)
				if desc {
					c = -c
				}
				if c != 0 {
					return c
				}
				c = strings.Compare(a.Key, b.Key)
				if desc && key == "key" {
					c = -c
				}
				return c
			})
			var wantKeys []string
			for _, r := range want {
				wantKeys = append(wantKeys, r.Key)
			}
			got := jsonKeys(t, e.mustQ(t, "ls", "--json", "--sort", arg))
			if !slices.Equal(got, wantKeys) {
				t.Errorf("--sort %s:\n got %v\nwant %v", arg, got, wantKeys)
			}
		}
	}
}

func TestLsPaths(t *testing.T) {
	e := newQueryEnv(t)
	mp := filepath.Join(t.TempDir(), "mnt")
	tag := e.common(func(r tape.Record) []string { return r.Tags })
	want := ""
	for _, k := range e.expect(func(r tape.Record) bool { return slices.Contains(r.Tags, tag) }) {
		want += mp + "/" + k + "\n"
	}
	if got := e.mustQ(t, "ls", "--tag", tag, "--paths", mp); got != want {
		t.Errorf("--paths:\n got %q\nwant %q", got, want)
	}
	if got := e.mustQ(t, "ls", "--tag", tag, "--paths", mp, "-0"); got != strings.ReplaceAll(want, "\n", "\x00") {
		t.Errorf("--paths -0: %q", got)
	}
	// Awkward names come out as they are.
	got := e.mustQ(t, "ls", "--paths", mp, "--null", "--sort", "key")
	for _, name := range []string{"odd names/tape with spaces.jsonl", "odd names/100% #1?.jsonl", `odd names/back\slash.jsonl`} {
		if !strings.Contains("\x00"+got, "\x00"+mp+"/"+name+"\x00") {
			t.Errorf("--paths lacks %q: %q", name, got)
		}
	}
	// Without a store, --paths of a running mount uses that mount's index.
	if err := writeMountInfo(mountInfo{Mountpoint: mp, PID: os.Getpid(), Meta: e.db}); err != nil {
		t.Fatal(err)
	}
	got, err := run(t, "ls", "--tag", tag, "--paths", mp)
	if err != nil || got != want {
		t.Errorf("--paths of a running mount: %v\n got %q\nwant %q", err, got, want)
	}
}

func TestQueryBadFlags(t *testing.T) {
	e := newQueryEnv(t)
	// A --tag no tape has: no error, nothing listed, a hint.
	out, hint, err := run2(t, "ls", "--tag", "regresion", "--tool", "read_file", "--backend", e.url, "--meta", e.db)
	if err != nil || strings.Count(out, "\n") != 1 ||
		!strings.HasPrefix(hint, `tapefs: no tape has tag "regresion"; tags in the index: `) || strings.Contains(hint, "read_file") {
		t.Errorf("ls --tag regresion: %v\n%s%s", err, out, hint)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"ls", "--status", "done"}, `--status "done" is not valid; valid values: recording, finalized`},
		{[]string{"ls", "--format", "v3"}, `--format "v3" is not valid; valid values: v1, v2`},
		{[]string{"ls", "--sort", "bogus"}, `--sort "bogus" is not valid; valid values: created, -created`},
		{[]string{"ls", "--sort", "rank"}, `--sort "rank" is not valid`},
		{[]string{"ls", "--since", "last week"}, `--since "last week": want a day (2025-08-01)`},
		{[]string{"ls", "--until", "7x"}, `--until "7x": want a day`},
		{[]string{"ls", "--since", "2025-08-03", "--until", "2025-08-01"}, `is not before --until`},
		{[]string{"ls", "--limit=-1"}, `--limit -1`},
		{[]string{"ls", "--json", "--paths", "/mnt"}, `--json and --paths`},
		{[]string{"ls", "-0"}, `goes with --paths`},
		{[]string{"search", "--status", "x", "a"}, `--status "x" is not valid`},
		{[]string{"search", `"open`}, `invalid search query "\"open": unterminated quote`},
		{[]string{"search", "a", "OR"}, `invalid search query "a OR"`}, // found by FTS5 itself
		{[]string{"show", "no-such-tape"}, `no tape has the key, id or id prefix "no-such-tape"`},
	} {
		if !e.fts && strings.Join(tt.args, " ") == "search a OR" {
			continue
		}
		_, err := e.q(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("tapefs %s: %v, want an error with %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
}

func TestSearchCmd(t *testing.T) {
	e := newQueryEnv(t)
	if !e.fts {
		out, err := e.q(t, "search", "x")
		if err == nil || !strings.Contains(err.Error(), "built without FTS5; build with -tags sqlite_fts5") {
			t.Errorf("search without FTS5: %q, %v", out, err)
		}
		return
	}
	set := func(keys []string) []string { return slices.Sorted(slices.Values(keys)) }
	tag := e.common(func(r tape.Record) []string { return r.Tags })
	tool := e.common(func(r tape.Record) []string { return slices.Collect(maps.Keys(r.Tools)) })
	msg := e.common(func(r tape.Record) []string { return r.ErrorMessages })
	for _, tt := range []struct {
		query string
		keep  func(r tape.Record) bool
		exact bool // else the tapes kept must be among the hits
	}{
		{"tags:" + tag, func(r tape.Record) bool { return slices.Contains(r.Tags, tag) }, true},
		{"tools:" + tool, func(r tape.Record) bool { return r.Tools[tool] > 0 }, true},
		{`errors:"` + msg + `"`, func(r tape.Record) bool { return slices.Contains(r.ErrorMessages, msg) }, true},
		{`"` + msg + `"`, func(r tape.Record) bool { return slices.Contains(r.ErrorMessages, msg) }, false},
		{"tools/call", func(r tape.Record) bool { return r.Methods["tools/call"] > 0 }, false},
	} {
		hits := decodeLines[struct {
			tapeJSON
			Score float64 `json:"score"`
		}](t, e.mustQ(t, "search", tt.query, "--json"))
		var got []string
		for i, h := range hits {
			got = append(got, h.Key)
			if i > 0 && h.Score > hits[i-1].Score {
				t.Errorf("search %s: not best first: %v", tt.query, hits)
			}
		}
		want := e.expect(tt.keep)
		if len(want) == 0 {
			t.Fatalf("search %s: the corpus has no such tape", tt.query)
		}
		if tt.exact && !slices.Equal(set(got), set(want)) {
			t.Errorf("search %s:\n got %v\nwant %v", tt.query, set(got), set(want))
		}
		for _, k := range want {
			if !slices.Contains(got, k) {
				t.Errorf("search %s: %s missing", tt.query, k)
			}
		}
	}
	// Every tape is found by its name.
	for _, r := range e.truth {
		if r.Name == "" {
			continue
		}
		got := jsonKeys(t, e.mustQ(t, "search", fmt.Sprintf("name:%q", r.Name), "--json"))
		if !slices.Contains(got, r.Key) {
			t.Errorf("search by the name of %s (%q): %v", r.Key, r.Name, got)
		}
	}
	// Filters, --limit and --paths as ls.
	got := jsonKeys(t, e.mustQ(t, "search", "tags:"+tag, "--errors", "--json", "--sort", "-created"))
	if want := e.expect(func(r tape.Record) bool { return slices.Contains(r.Tags, tag) && r.ErrorCount > 0 }); !slices.Equal(got, want) {
		t.Errorf("search with --errors --sort -created:\n got %v\nwant %v", got, want)
	}
	if out := e.mustQ(t, "search", "tags:"+tag, "-n", "2", "--paths", "/m"); strings.Count(out, "\n") != 2 || !strings.HasPrefix(out, "/m/") {
		t.Errorf("search --paths -n 2: %q", out)
	}
	if out := e.mustQ(t, "search", "tags:"+tag); !strings.HasPrefix(out, "SCORE") {
		t.Errorf("search table: %q", out)
	}
	// A full-text index left stale (by a build without FTS5) is rebuilt.
	db, err := sql.Open("sqlite3", e.db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE counters SET value = 0 WHERE name = 'fts'`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if got := jsonKeys(t, e.mustQ(t, "search", "tags:"+tag, "--json")); len(got) == 0 {
		t.Error("search after the index went stale found nothing")
	}
}

func TestShowCmd(t *testing.T) {
	e := newQueryEnv(t)
	// A tape with slowest pairs, errors and tools: the richest.
	var r tape.Record
	for _, x := range e.truth {
		if len(x.Slowest)+len(x.ErrorMessages)+len(x.Tools) > len(r.Slowest)+len(r.ErrorMessages)+len(r.Tools) {
			r = x
		}
	}
	check := func(how string, args ...string) {
		t.Helper()
		out, err := e.q(t, append([]string{"show", "--json"}, args...)...)
		if err != nil {
			t.Errorf("show %s: %v", how, err)
			return
		}
		var got showJSON
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatal(err)
		}
		if got.Key != r.Key || got.TapeID != r.TapeID || !reflect.DeepEqual(got.Methods, r.Methods) ||
			!reflect.DeepEqual(got.Tools, r.Tools) || !slices.Equal(got.ErrorMessages, r.ErrorMessages) ||
			got.ClientName != r.ClientName || got.ServerVersion != r.ServerVersion {
			t.Errorf("show %s:\n got %+v\nwant %+v", how, got, r)
		}
		var slow []tape.Pair
		for _, p := range got.Slowest {
			slow = append(slow, tape.Pair{Method: p.Method, RequestSeq: p.RequestSeq, ResponseSeq: p.ResponseSeq, RTTMS: p.RTTMS, Status: p.Status})
		}
		if !reflect.DeepEqual(slow, r.Slowest) {
			t.Errorf("show %s: slowest %+v, want %+v", how, slow, r.Slowest)
		}
	}
	check("by key", r.Key)
	check("by id", r.TapeID)
	// The shortest prefix of its id that no other id has.
	for n := 1; n <= len(r.TapeID); n++ {
		p := r.TapeID[:n]
		unique := true
		for _, x := range e.truth {
			if x.Key != r.Key && strings.HasPrefix(x.TapeID, p) {
				unique = false
			}
		}
		if unique {
			check("by id prefix "+p, p)
			break
		}
	}
	if meta := tape.V2MetaKey(r.Key); meta != "" {
		check("by its .meta.json", meta)
	}
	// By path: in a mount this host runs, or under --mount.
	mp := filepath.Join(t.TempDir(), "mnt")
	check("by path with --mount", filepath.Join(mp, r.Key), "--mount", mp)
	if err := writeMountInfo(mountInfo{Mountpoint: mp, PID: os.Getpid(), Meta: e.db}); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "show", "--json", filepath.Join(mp, r.Key))
	if err != nil || !strings.Contains(out, `"path": "`+filepath.Join(mp, r.Key)+`"`) {
		t.Errorf("show by path in a running mount: %v\n%s", err, out)
	}

	// An ambiguous prefix lists the candidates.
	byFirst := map[string][]string{}
	for _, x := range e.truth {
		if x.TapeID != "" {
			byFirst[x.TapeID[:1]] = append(byFirst[x.TapeID[:1]], x.Key)
		}
	}
	for p, keys := range byFirst {
		if len(keys) < 2 {
			continue
		}
		_, err := e.q(t, "show", p)
		if err == nil || !strings.Contains(err.Error(), "ambiguous") {
			t.Errorf("show %s: %v, want ambiguous", p, err)
			break
		}
		for _, k := range keys[:min(len(keys), 20)] {
			if !strings.Contains(err.Error(), k) {
				t.Errorf("show %s: candidates lack %s: %v", p, k, err)
			}
		}
		break
	}

	// The human form has every part.
	out = e.mustQ(t, "show", r.Key)
	for _, want := range []string{"key:", r.Key, "tape id:", r.TapeID, "Methods", "Tools", "Slowest requests", "Error messages", "frames:"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	// An invalid tape shows its problems.
	for _, x := range e.truth {
		if !x.Valid && len(x.Problems) > 0 {
			out := e.mustQ(t, "show", x.Key)
			if !strings.Contains(out, "Problems") || !strings.Contains(out, x.Problems[0]) {
				t.Errorf("show %s lacks its problems:\n%s", x.Key, out)
			}
			break
		}
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2025, 8, 10, 15, 30, 0, 0, time.UTC)
	day := func(d int) time.Time { return time.Date(2025, 8, d, 0, 0, 0, 0, time.UTC) }
	for _, tt := range []struct {
		in        string
		end       bool
		want      time.Time
		wantError bool
	}{
		{"2025-08-01", false, day(1), false},
		{"2025-08-01", true, day(2), false},
		{"2025-08-01T10:00:00Z", false, time.Date(2025, 8, 1, 10, 0, 0, 0, time.UTC), false},
		{"2025-08-01T10:00:00Z", true, time.Date(2025, 8, 1, 10, 0, 0, 1, time.UTC), false},
		{"2025-08-01T12:00:00+02:00", false, time.Date(2025, 8, 1, 10, 0, 0, 0, time.UTC), false},
		{"2025-08-01 10:00", false, time.Date(2025, 8, 1, 10, 0, 0, 0, time.UTC), false},
		{"today", false, day(10), false},
		{"today", true, day(11), false},
		{"Yesterday", false, day(9), false},
		{"7d", false, now.AddDate(0, 0, -7), false},
		{"36h", false, now.Add(-36 * time.Hour), false},
		{"2w", true, now.AddDate(0, 0, -14), false},
		{"1d12h", false, now.Add(-36 * time.Hour), false},
		{"90m", false, now.Add(-90 * time.Minute), false},
		{"1.5h", false, now.Add(-90 * time.Minute), false},
		{"", false, time.Time{}, true},
		{"7", false, time.Time{}, true},
		{"d", false, time.Time{}, true},
		{"7x", false, time.Time{}, true},
		{"-7d", false, time.Time{}, true},
		{"2025-13-01", false, time.Time{}, true},
	} {
		got, err := parseWhen(tt.in, now, tt.end)
		if (err != nil) != tt.wantError || !got.Equal(tt.want) {
			t.Errorf("parseWhen(%q, end=%v) = %v, %v; want %v", tt.in, tt.end, got, err, tt.want)
		}
	}
}
