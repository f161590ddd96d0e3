package meta

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapefs/tapefs/tape"
)

var qbase = time.Date(2025, 8, 1, 0, 0, 0, 0, time.UTC)

// qtape is a fixture tape: its record, the size of its object, and the
// FTS-relevant text.
type qtape struct {
	rec  tape.Record
	size int64
}

func qrec(key, name, session, status string, created time.Time, mods ...func(*tape.Record)) tape.Record {
	r := tape.Record{
		Key: key, Format: tape.FormatV2, TapeID: "id-" + strings.NewReplacer("/", "-", ".", "-").Replace(key),
		SessionID: session, Name: name, CreatedAt: created, Status: status, Valid: true, HasMeta: true,
		Methods: map[string]int64{"initialize": 1}, Tools: map[string]int64{},
	}
	for _, m := range mods {
		m(&r)
	}
	return r
}

// queryFixture is a sidecar with tapes that differ in every filtered and
// sorted field, plus a non-tape .json row and an unservable key.
func queryFixture(t testing.TB) *Sidecar {
	t.Helper()
	s := openTest(t)
	fill := func(frames, errs, dur int64, tags []string, methods, tools map[string]int64) func(*tape.Record) {
		return func(r *tape.Record) {
			r.FrameCount, r.ErrorCount, r.DurationMS, r.Tags = frames, errs, dur, tags
			for k, v := range methods {
				r.Methods[k] = v
			}
			for k, v := range tools {
				r.Tools[k] = v
			}
		}
	}
	tapes := []qtape{
		{qrec("a.jsonl", "alpha", "s1", tape.StatusFinalized, qbase.Add(1*time.Hour),
			fill(10, 1, 1234, []string{"prod", "debug"}, map[string]int64{"tools/call": 3}, map[string]int64{"read_file": 2, "write_file": 1})), 100},
		{qrec("b.jsonl", "beta", "s1", tape.StatusRecording, qbase.Add(3*time.Hour),
			fill(30, 0, 50, []string{"debug"}, map[string]int64{"tools/call": 1}, map[string]int64{"read_file": 1})), 300},
		{qrec("c.jsonl", "gamma", "s2", tape.StatusFinalized, qbase.Add(26*time.Hour),
			fill(5, 2, 9000, []string{"prod"}, map[string]int64{"resources/read": 2}, nil),
			func(r *tape.Record) { r.Valid, r.Problems = false, []string{"line 3: invalid JSON"} }), 200},
		{qrec("v1/d.json", "delta", "s3", tape.StatusFinalized, time.Time{},
			fill(1, 0, 0, nil, nil, nil), func(r *tape.Record) { r.Format = tape.FormatV1 }), 50},
		{qrec("e.jsonl", "", "s2", tape.StatusFinalized, qbase.Add(50*time.Hour),
			fill(20, 3, 100, []string{"prod", "debug", "ci"}, map[string]int64{"tools/call": 4}, map[string]int64{"sql_query": 4})), 400},
		{qrec("bad//x.jsonl", "unservable", "s4", tape.StatusFinalized, qbase.Add(2*time.Hour),
			fill(7, 0, 70, []string{"debug"}, nil, nil)), 70},
	}
	ctx := context.Background()
	for _, q := range tapes {
		o, err := s.PutObject(ctx, Object{Key: q.rec.Key, Size: q.size, ModTime: qbase})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.PutTape(ctx, &q.rec, TapeSource{Data: StampOf(o)}); err != nil {
			t.Fatal(err)
		}
	}
	// A .json file that is not a tape: never listed.
	o := put(t, s, "v1/config.json")[0]
	if err := s.PutTape(ctx, &tape.Record{Key: "v1/config.json"}, TapeSource{Data: StampOf(o)}); err != nil {
		t.Fatal(err)
	}
	return s
}

// putRecords indexes the n tapes rec(0), …, rec(n-1), each with a data
// object of size 1, in one transaction.
func putRecords(t testing.TB, s *Sidecar, n int, rec func(i int) tape.Record) {
	t.Helper()
	err := s.Update(context.Background(), func(tx *Tx) error {
		for i := range n {
			r := rec(i)
			o, err := tx.PutObject(Object{Key: r.Key, Size: 1})
			if err != nil {
				return err
			}
			if err := tx.PutTape(&r, TapeSource{Data: StampOf(o)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func keysOf(rows []TapeRow) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.Key)
	}
	return out
}

func TestListTapesFilters(t *testing.T) {
	ctx := context.Background()
	s := queryFixture(t)
	all := []string{"e.jsonl", "c.jsonl", "b.jsonl", "bad//x.jsonl", "a.jsonl", "v1/d.json"}
	tests := []struct {
		name string
		f    TapeFilter
		want []string
	}{
		{"all, newest first, unknown time last", TapeFilter{}, all},
		{"limit", TapeFilter{Limit: 2}, all[:2]},
		{"tag (old field)", TapeFilter{Tag: "prod"}, []string{"e.jsonl", "c.jsonl", "a.jsonl"}},
		{"tags", TapeFilter{Tags: []string{"prod"}}, []string{"e.jsonl", "c.jsonl", "a.jsonl"}},
		{"tags: all must match", TapeFilter{Tags: []string{"prod", "debug"}}, []string{"e.jsonl", "a.jsonl"}},
		{"tag and tags together", TapeFilter{Tag: "ci", Tags: []string{"prod"}}, []string{"e.jsonl"}},
		{"repeated tag", TapeFilter{Tags: []string{"ci", "ci"}}, []string{"e.jsonl"}},
		{"unknown tag", TapeFilter{Tags: []string{"nope"}}, nil},
		{"tag is case-sensitive", TapeFilter{Tags: []string{"PROD"}}, nil},
		{"session", TapeFilter{Session: "s1"}, []string{"b.jsonl", "a.jsonl"}},
		{"id prefix", TapeFilter{IDPrefix: "id-a"}, []string{"a.jsonl"}},
		{"id prefix, several", TapeFilter{IDPrefix: "id-"}, all},
		{"exact id", TapeFilter{IDPrefix: "id-b-jsonl"}, []string{"b.jsonl"}},
		{"status recording", TapeFilter{Status: tape.StatusRecording}, []string{"b.jsonl"}},
		{"status finalized", TapeFilter{Status: tape.StatusFinalized}, []string{"e.jsonl", "c.jsonl", "bad//x.jsonl", "a.jsonl", "v1/d.json"}},
		{"format v1", TapeFilter{Format: tape.FormatV1}, []string{"v1/d.json"}},
		{"format v2", TapeFilter{Format: tape.FormatV2}, all[:5]},
		{"method", TapeFilter{Methods: []string{"tools/call"}}, []string{"e.jsonl", "b.jsonl", "a.jsonl"}},
		{"methods: all", TapeFilter{Methods: []string{"tools/call", "resources/read"}}, nil},
		{"method resources/read", TapeFilter{Methods: []string{"resources/read"}}, []string{"c.jsonl"}},
		{"tool", TapeFilter{Tools: []string{"read_file"}}, []string{"b.jsonl", "a.jsonl"}},
		{"tools: all", TapeFilter{Tools: []string{"read_file", "write_file"}}, []string{"a.jsonl"}},
		{"since (inclusive)", TapeFilter{Since: qbase.Add(3 * time.Hour)}, []string{"e.jsonl", "c.jsonl", "b.jsonl"}},
		{"until (exclusive)", TapeFilter{Until: qbase.Add(3 * time.Hour)}, []string{"bad//x.jsonl", "a.jsonl"}},
		{"since and until: one day", TapeFilter{Since: qbase.AddDate(0, 0, 1), Until: qbase.AddDate(0, 0, 2)}, []string{"c.jsonl"}},
		{"until leaves out unknown times", TapeFilter{Until: qbase.AddDate(1, 0, 0)}, all[:5]},
		{"errors", TapeFilter{Errors: true}, []string{"e.jsonl", "c.jsonl", "a.jsonl"}},
		{"invalid", TapeFilter{Invalid: true}, []string{"c.jsonl"}},
		{"served", TapeFilter{Served: true}, []string{"e.jsonl", "c.jsonl", "b.jsonl", "a.jsonl", "v1/d.json"}},
		{"combined", TapeFilter{Tags: []string{"debug"}, Status: tape.StatusFinalized, Errors: true, Tools: []string{"read_file"}}, []string{"a.jsonl"}},
		{"combined with limit", TapeFilter{Tags: []string{"debug"}, Limit: 2, Since: qbase}, []string{"e.jsonl", "b.jsonl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := s.ListTapes(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := keysOf(rows); !slices.Equal(got, tt.want) {
				t.Errorf("%v, want %v", got, tt.want)
			}
		})
	}
}

func TestListTapesSort(t *testing.T) {
	ctx := context.Background()
	s := queryFixture(t)
	tests := []struct {
		sort string
		want []string
	}{
		{"", []string{"e.jsonl", "c.jsonl", "b.jsonl", "bad//x.jsonl", "a.jsonl", "v1/d.json"}},
		{"-created", []string{"e.jsonl", "c.jsonl", "b.jsonl", "bad//x.jsonl", "a.jsonl", "v1/d.json"}},
		{"created", []string{"v1/d.json", "a.jsonl", "bad//x.jsonl", "b.jsonl", "c.jsonl", "e.jsonl"}},
		{"name", []string{"e.jsonl", "a.jsonl", "b.jsonl", "v1/d.json", "c.jsonl", "bad//x.jsonl"}},
		{"-name", []string{"bad//x.jsonl", "c.jsonl", "v1/d.json", "b.jsonl", "a.jsonl", "e.jsonl"}},
		{"size", []string{"v1/d.json", "bad//x.jsonl", "a.jsonl", "c.jsonl", "b.jsonl", "e.jsonl"}},
		{"-size", []string{"e.jsonl", "b.jsonl", "c.jsonl", "a.jsonl", "bad//x.jsonl", "v1/d.json"}},
		{"frames", []string{"v1/d.json", "c.jsonl", "bad//x.jsonl", "a.jsonl", "e.jsonl", "b.jsonl"}},
		{"-frames", []string{"b.jsonl", "e.jsonl", "a.jsonl", "bad//x.jsonl", "c.jsonl", "v1/d.json"}},
		// Ties go by key, ascending, in both directions.
		{"errors", []string{"b.jsonl", "bad//x.jsonl", "v1/d.json", "a.jsonl", "c.jsonl", "e.jsonl"}},
		{"-errors", []string{"e.jsonl", "c.jsonl", "a.jsonl", "b.jsonl", "bad//x.jsonl", "v1/d.json"}},
		{"duration", []string{"v1/d.json", "b.jsonl", "bad//x.jsonl", "e.jsonl", "a.jsonl", "c.jsonl"}},
		{"-duration", []string{"c.jsonl", "a.jsonl", "e.jsonl", "bad//x.jsonl", "b.jsonl", "v1/d.json"}},
		{"key", []string{"a.jsonl", "b.jsonl", "bad//x.jsonl", "c.jsonl", "e.jsonl", "v1/d.json"}},
		{"-key", []string{"v1/d.json", "e.jsonl", "c.jsonl", "bad//x.jsonl", "b.jsonl", "a.jsonl"}},
		{"id", []string{"a.jsonl", "b.jsonl", "bad//x.jsonl", "c.jsonl", "e.jsonl", "v1/d.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.sort, func(t *testing.T) {
			rows, err := s.ListTapes(ctx, TapeFilter{Sort: tt.sort})
			if err != nil {
				t.Fatal(err)
			}
			if got := keysOf(rows); !slices.Equal(got, tt.want) {
				t.Errorf("%v, want %v", got, tt.want)
			}
			// A limit takes the first of the same order.
			rows, err = s.ListTapes(ctx, TapeFilter{Sort: tt.sort, Limit: 3})
			if err != nil {
				t.Fatal(err)
			}
			if got := keysOf(rows); !slices.Equal(got, tt.want[:3]) {
				t.Errorf("limit 3: %v, want %v", got, tt.want[:3])
			}
		})
	}
}

func TestTapeFilterValidate(t *testing.T) {
	ctx := context.Background()
	s := queryFixture(t)
	tests := []struct {
		f    TapeFilter
		want string
	}{
		{TapeFilter{Status: "done"}, `status "done" is not valid; valid values: recording, finalized`},
		{TapeFilter{Format: "v3"}, `format "v3" is not valid; valid values: v1, v2`},
		{TapeFilter{Sort: "sizes"}, `sort "sizes" is not valid; valid values: created, -created, name`},
		{TapeFilter{Sort: "-rank"}, `sort "-rank" is not valid`},
		{TapeFilter{Sort: "rank"}, `sort rank is only for a search`},
		{TapeFilter{Limit: -1}, `limit -1 is negative`},
		{TapeFilter{Since: qbase, Until: qbase}, `the time range is empty`},
	}
	for _, tt := range tests {
		_, err := s.ListTapes(ctx, tt.f)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ListTapes(%+v) = %v, want ErrInvalid with %q", tt.f, err, tt.want)
		}
	}
}

// TestOrderFirst checks that both ways of running a listing by creation
// time with a limit (driven by the tag index, or walking the time index)
// give the same tapes, and that the choice follows how common the tag is.
func TestOrderFirst(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	const n = 400
	putRecords(t, s, n, func(i int) tape.Record {
		tags := []string{"common"}
		if i%50 == 0 {
			tags = append(tags, "rare")
		}
		if i%3 == 0 {
			tags = append(tags, "third")
		}
		// Equal times in pairs, so the key tie-break matters.
		return qrec(fmt.Sprintf("t%03d.jsonl", n-i), "", "s", tape.StatusFinalized, qbase.Add(time.Duration(i/2)*time.Minute),
			func(r *tape.Record) { r.Tags = tags })
	})
	for _, tt := range []struct {
		f       TapeFilter
		inOrder bool
	}{
		{TapeFilter{Tags: []string{"common"}, Limit: 5}, true},
		{TapeFilter{Tags: []string{"common", "third"}, Limit: 5}, true},
		{TapeFilter{Tags: []string{"common"}, Limit: 5, Sort: "created"}, true},
		{TapeFilter{Tags: []string{"common"}, Limit: 5, Since: qbase.Add(time.Hour)}, true},
		{TapeFilter{Tags: []string{"rare"}, Limit: 5}, false},
		{TapeFilter{Tags: []string{"common", "rare"}, Limit: 5}, false},
		{TapeFilter{Tags: []string{"common"}}, false},
		{TapeFilter{Tags: []string{"common"}, Limit: 5, Sort: "size"}, false},
		{TapeFilter{Tags: []string{"common"}, Limit: 5, Session: "s"}, false},
	} {
		var got bool
		if err := s.view(ctx, func(db querier) (err error) { got, err = orderFirst(ctx, db, tt.f); return err }); err != nil {
			t.Fatal(err)
		}
		if got != tt.inOrder {
			t.Errorf("orderFirst(%+v) = %v, want %v", tt.f, got, tt.inOrder)
		}
		limited, err := s.ListTapes(ctx, tt.f)
		if err != nil {
			t.Fatal(err)
		}
		f := tt.f
		f.Limit = 0
		full, err := s.ListTapes(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		want := keysOf(full)
		if tt.f.Limit > 0 && len(want) > tt.f.Limit {
			want = want[:tt.f.Limit]
		}
		if !slices.Equal(keysOf(limited), want) {
			t.Errorf("%+v: %v, want %v", tt.f, keysOf(limited), want)
		}
		plan, err := s.QueryPlan(ctx, "", tt.f)
		if err != nil {
			t.Fatal(err)
		}
		if walks := strings.Contains(strings.Join(plan, "\n"), "tapes_created"); walks != tt.inOrder && tt.f.Since.IsZero() {
			t.Errorf("%+v: plan %q, want a walk of tapes_created: %v", tt.f, plan, tt.inOrder)
		}
	}
}

func TestFacetValues(t *testing.T) {
	ctx := context.Background()
	s := queryFixture(t)
	tags, err := s.FacetValues(ctx, FacetTag)
	if err != nil {
		t.Fatal(err)
	}
	want := []ValueCount{{"debug", 4}, {"prod", 3}, {"ci", 1}}
	if !slices.Equal(tags, want) {
		t.Errorf("tags = %v, want %v", tags, want)
	}
	tools, _ := s.FacetValues(ctx, FacetTool)
	if !slices.Equal(tools, []ValueCount{{"read_file", 2}, {"sql_query", 1}, {"write_file", 1}}) {
		t.Errorf("tools = %v", tools)
	}
	for _, tt := range []struct {
		facet Facet
		value string
		want  bool
	}{
		{FacetTag, "prod", true}, {FacetTag, "nope", false}, {FacetTool, "sql_query", true},
		{FacetMethod, "resources/read", true}, {FacetMethod, "ping", false},
	} {
		if got, err := s.HasFacetValue(ctx, tt.facet, tt.value); err != nil || got != tt.want {
			t.Errorf("HasFacetValue(%s, %s) = %v, %v", tt.facet, tt.value, got, err)
		}
	}
	if _, err := s.FacetValues(ctx, "colour"); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown facet: %v", err)
	}
}

func TestPrefixEnd(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"abc", "abd", true}, {"a\xff", "b", true}, {"\xff\xff", "", false}, {"é", "é"[:1] + "\xaa", true},
	} {
		if got, ok := prefixEnd(tt.in); got != tt.want || ok != tt.ok {
			t.Errorf("prefixEnd(%q) = %q, %v", tt.in, got, ok)
		}
	}
}

// TestMapForBulk: a one-shot (read-only) sidecar maps its file only for a
// query that selects more than bulkTapes tapes, and unmaps it afterwards; the
// daemon's sidecar is always mapped by its driver and never touched here.
func TestMapForBulk(t *testing.T) {
	ctx := context.Background()
	rw := openTest(t)
	n := bulkTapes + 10
	putRecords(t, rw, n, func(i int) tape.Record {
		tags := []string{"many"}
		if i%100 == 0 {
			tags = append(tags, "few")
		}
		return qrec(fmt.Sprintf("t%05d.jsonl", i), "", "s", tape.StatusFinalized, qbase.Add(time.Duration(i)*time.Minute),
			func(r *tape.Record) { r.Tags = tags })
	})
	ro, err := OpenReadOnly(rw.path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	mapped := func(db querier) int64 {
		var size int64
		if err := db.QueryRowContext(ctx, `PRAGMA mmap_size`).Scan(&size); err != nil {
			t.Fatal(err)
		}
		return size
	}
	for _, tt := range []struct {
		f    TapeFilter
		want bool
	}{
		{TapeFilter{}, true},
		{TapeFilter{Limit: 50}, false},
		{TapeFilter{Limit: bulkTapes + 1}, true},
		{TapeFilter{Tags: []string{"many"}}, true},
		{TapeFilter{Tags: []string{"few"}}, false},
		{TapeFilter{Tags: []string{"many", "few"}}, false},
		{TapeFilter{Tags: []string{"many"}, Limit: 10}, false},
		{TapeFilter{Status: tape.StatusFinalized}, true},
		{TapeFilter{Since: qbase.Add(time.Duration(n-100) * time.Minute)}, false}, // 100 tapes
	} {
		err := ro.view(ctx, func(db querier) error {
			if got := mapped(db); got != 0 {
				t.Errorf("%+v: mmap_size %d before, want 0", tt.f, got)
			}
			unmap, err := ro.mapForBulk(ctx, db, tt.f)
			if err != nil {
				return err
			}
			if got := mapped(db) > 0; got != tt.want {
				t.Errorf("%+v: mapped %v, want %v", tt.f, got, tt.want)
			}
			unmap()
			if got := mapped(db); got != 0 {
				t.Errorf("%+v: mmap_size %d after unmap, want 0", tt.f, got)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		rows, err := ro.ListTapes(ctx, tt.f)
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := rw.ListTapes(ctx, tt.f); !slices.Equal(keysOf(rows), keysOf(want)) {
			t.Errorf("%+v: the read-only sidecar lists %d tapes, the read-write one %d", tt.f, len(rows), len(want))
		}
	}
	// The daemon's sidecar is mapped by its driver, and mapForBulk leaves it.
	if err := rw.view(ctx, func(db querier) error {
		if got := mapped(db); got != mmapSize {
			t.Errorf("read-write sidecar: mmap_size %d, want %d", got, mmapSize)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestBriefListing: a Brief listing has the same tapes in the same order,
// with every field of briefCols as in the full rows and the others zero.
func TestBriefListing(t *testing.T) {
	ctx := context.Background()
	s := queryFixture(t)
	for _, f := range []TapeFilter{{}, {Tags: []string{"debug"}}, {Sort: "key"}, {Errors: true, Limit: 2}} {
		full, err := s.ListTapes(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		f.Brief = true
		brief, err := s.ListTapes(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(full) == 0 || len(brief) != len(full) {
			t.Fatalf("%+v: %d brief rows, %d full rows", f, len(brief), len(full))
		}
		for i, r := range full {
			want := TapeRow{ObjectID: r.ObjectID, Size: r.Size}
			want.Key, want.Format, want.TapeID, want.Name, want.CreatedAt, want.Status = r.Key, r.Format, r.TapeID, r.Name, r.CreatedAt, r.Status
			want.FrameCount, want.ErrorCount, want.Valid, want.Tags = r.FrameCount, r.ErrorCount, r.Valid, r.Tags
			if !reflect.DeepEqual(brief[i], want) {
				t.Errorf("%+v row %d:\n brief %+v\n want  %+v", f, i, brief[i], want)
			}
		}
	}
}
