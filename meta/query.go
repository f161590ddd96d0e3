package meta

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/tapefs/tapefs/tape"
)

// TapeFilter selects and orders tapes for ListTapes and Search; zero fields
// do not filter. To add a criterion, add a field, a check in Validate and a
// clause in where.
type TapeFilter struct {
	Tag      string   // a tag the tape must have (kept for callers of one tag; see Tags)
	Tags     []string // tags the tape must all have
	Session  string   // session id
	IDPrefix string   // tape ids beginning with this (an exact id is its own prefix)
	Status   string   // tape.StatusRecording or tape.StatusFinalized
	Format   tape.Format
	Methods  []string  // JSON-RPC methods the tape must all call
	Tools    []string  // tools (tools/call params.name) the tape must all call
	Since    time.Time // created at or after (tapes of unknown creation time never match)
	Until    time.Time // created before
	Errors   bool      // only tapes with at least one error response
	Invalid  bool      // only tapes that did not parse cleanly
	Served   bool      // only tapes that have a place in the tree (not unservable or shadowed)
	Sort     string    // one of SortKeys, "-" in front to reverse; "" is "-created" (Search: "rank")
	Limit    int       // 0: no limit
	// Brief reads only what a listing shows (see briefCols): the other
	// fields of the rows are left zero. A table of 800 tapes allocated
	// 5 KiB per row for fields it never prints, most of them decoded JSON.
	Brief bool
}

// Sort orders. Ties are broken by key. A tape of unknown creation time sorts
// as the oldest.
const (
	SortCreated = "created"
	SortRank    = "rank" // Search only: best match first
)

// sortColumns maps the sort keys to their SQL expressions, ascending.
var sortColumns = map[string]string{
	"created":  "t.created_at",
	"name":     "t.name",
	"size":     "o.size",
	"frames":   "t.frame_count",
	"errors":   "t.error_count",
	"duration": "t.duration_ms",
	"key":      "o.key",
	"id":       "t.tape_id",
	"rank":     "score DESC",
}

// SortKeys are the valid values of TapeFilter.Sort (each may be prefixed
// with "-" to reverse, except rank).
var SortKeys = []string{"created", "-created", "name", "size", "frames", "errors", "duration", "key", "id", "rank"}

// Statuses and Formats are the valid values of those filters.
var (
	Statuses = []string{tape.StatusRecording, tape.StatusFinalized}
	Formats  = []string{string(tape.FormatV1), string(tape.FormatV2)}
)

// filterError is a bad filter value; errors.Is(err, ErrInvalid) holds.
type filterError struct{ msg string }

func (e *filterError) Error() string        { return e.msg }
func (e *filterError) Is(target error) bool { return target == ErrInvalid }

func badValue(what, got string, valid []string) error {
	return &filterError{fmt.Sprintf("%s %q is not valid; valid values: %s", what, got, strings.Join(valid, ", "))}
}

// Validate checks the filter's enumerated values; its errors wrap
// ErrInvalid and list the valid values.
func (f TapeFilter) Validate() error {
	if f.Status != "" && !slices.Contains(Statuses, f.Status) {
		return badValue("status", f.Status, Statuses)
	}
	if f.Format != "" && !slices.Contains(Formats, string(f.Format)) {
		return badValue("format", string(f.Format), Formats)
	}
	if f.Sort != "" {
		k := strings.TrimPrefix(f.Sort, "-")
		if _, ok := sortColumns[k]; !ok || f.Sort == "-"+SortRank {
			return badValue("sort", f.Sort, SortKeys)
		}
	}
	if f.Limit < 0 {
		return &filterError{fmt.Sprintf("limit %d is negative", f.Limit)}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return &filterError{fmt.Sprintf("the time range is empty: since %s is not before until %s",
			f.Since.UTC().Format(time.RFC3339Nano), f.Until.UTC().Format(time.RFC3339Nano))}
	}
	return nil
}

// facetFilter is one "the tape has this tag (tool, method)" criterion.
type facetFilter struct {
	facet Facet
	value string
}

// facetFilters returns f's tag, tool and method criteria.
func (f TapeFilter) facetFilters() []facetFilter {
	var out []facetFilter
	tags := f.Tags
	if f.Tag != "" {
		tags = append([]string{f.Tag}, tags...)
	}
	for _, v := range dedup(tags) {
		out = append(out, facetFilter{FacetTag, v})
	}
	for _, v := range dedup(f.Tools) {
		out = append(out, facetFilter{FacetTool, v})
	}
	for _, v := range dedup(f.Methods) {
		out = append(out, facetFilter{FacetMethod, v})
	}
	return out
}

// where returns the filter's SQL condition (on tapes t and objects o) and
// its arguments. With scanInOrder, the tag, tool and method criteria are
// written as probes that SQLite cannot drive the query with, so that it
// walks the creation-time index instead (see orderFirst).
func (f TapeFilter) where(scanInOrder bool) (string, []any) {
	conds := []string{`t.format != ''`} // rows of plain JSON files that are not tapes
	var args []any
	add := func(cond string, arg ...any) {
		conds = append(conds, cond)
		args = append(args, arg...)
	}
	for _, ff := range f.facetFilters() {
		tc := facetTables[ff.facet]
		if scanInOrder { // a primary-key probe per tape walked
			add(fmt.Sprintf(`EXISTS (SELECT 1 FROM %s WHERE tape = t.object AND %s = ?)`, tc[0], tc[1]), ff.value)
		} else {
			add(fmt.Sprintf(`t.object IN (SELECT tape FROM %s WHERE %s = ?)`, tc[0], tc[1]), ff.value)
		}
	}
	if f.Session != "" {
		add(`t.session_id = ?`, f.Session)
	}
	if f.IDPrefix != "" {
		if hi, ok := prefixEnd(f.IDPrefix); ok {
			add(`t.tape_id >= ? AND t.tape_id < ?`, f.IDPrefix, hi)
		} else {
			add(`t.tape_id >= ?`, f.IDPrefix)
		}
	}
	if f.Status != "" {
		add(`t.status = ?`, f.Status)
	}
	if f.Format != "" {
		add(`t.format = ?`, string(f.Format))
	}
	if !f.Since.IsZero() {
		add(`t.created_at >= ?`, max(nsec(f.Since), 1))
	}
	if !f.Until.IsZero() {
		add(`t.created_at > 0 AND t.created_at < ?`, nsec(f.Until))
	}
	if f.Errors {
		add(`t.error_count > 0`)
	}
	if f.Invalid {
		add(`t.valid = 0`)
	}
	if f.Served {
		add(`o.dir IS NOT NULL AND o.shadowed = 0 AND o.marker = 0`)
	}
	return strings.Join(conds, " AND "), args
}

// orderBy returns the ORDER BY list of f.Sort.
func (f TapeFilter) orderBy() string {
	key := f.Sort
	if key == "" {
		key = "-created"
	}
	desc := strings.HasPrefix(key, "-")
	key = strings.TrimPrefix(key, "-")
	col := sortColumns[key]
	if desc {
		col += " DESC"
	}
	switch key {
	case "key":
		return col
	case "rank":
		return col + ", t.created_at DESC, o.key"
	}
	return col + ", o.key"
}

// selectIDs returns the query of the object ids (and, with match, the
// scores) of the tapes f selects, in order.
func (f TapeFilter) selectIDs(match string, scanInOrder bool) (string, []any) {
	cond, args := f.where(scanInOrder)
	q := idsSelect + ` FROM tapes t JOIN objects o ON o.id = t.object`
	if scanInOrder {
		q = idsSelect + ` FROM tapes t INDEXED BY tapes_created JOIN objects o ON o.id = t.object`
	}
	if match != "" {
		q = `SELECT t.object, f.score
			FROM (SELECT rowid AS id, -bm25(tapes_fts, ` + ftsWeightArgs() + `) AS score
				FROM tapes_fts WHERE tapes_fts MATCH ?) f
			JOIN tapes t ON t.object = f.id JOIN objects o ON o.id = t.object`
		args = append([]any{match}, args...)
	}
	q += ` WHERE ` + cond + ` ORDER BY ` + f.orderBy()
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	return q, args
}

// idsSelect is the select list of selectIDs' query without a match.
const idsSelect = `SELECT t.object, 0 AS score`

// briefRows runs q, a query of briefCols, and returns its rows in order.
func briefRows(ctx context.Context, db querier, q string, args []any) ([]TapeRow, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []TapeRow
	for rows.Next() {
		r, err := scanBrief(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// querier is a *sql.DB or a *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// view runs fn in one read transaction, so that its queries see one
// snapshot of the sidecar.
func (s *Sidecar) view(ctx context.Context, fn func(q querier) error) error {
	tx, err := s.read.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return fn(tx)
}

func selectIDs(ctx context.Context, db querier, q string, args []any) ([]int64, []float64, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var ids []int64
	var scores []float64
	for rows.Next() {
		var id int64
		var score float64
		if err := rows.Scan(&id, &score); err != nil {
			return nil, nil, err
		}
		ids = append(ids, id)
		scores = append(scores, score)
	}
	return ids, scores, rows.Err()
}

// orderFirst decides how to run a listing by creation time with a limit
// and tag, tool or method criteria. SQLite drives such a query with the
// criterion's index and sorts every match: right for a rare tag, but for a
// tag on a fifth of 100,000 tapes that sorts 20,000 rows to keep 50.
// Walking the creation-time index and testing each tape stops after about
// limit*N/m tapes (m matches of N); it wins when that is well under m.
func orderFirst(ctx context.Context, db querier, f TapeFilter) (bool, error) {
	key := strings.TrimPrefix(f.Sort, "-")
	ffs := f.facetFilters()
	if f.Limit <= 0 || (key != "" && key != SortCreated) || f.Session != "" || f.IDPrefix != "" {
		return false, nil
	}
	if len(ffs) == 0 {
		// Nothing drives the query better than creation order itself. Left
		// to itself, SQLite with statistics (after PRAGMA optimize) sorts
		// every tape to keep the newest few: 65-330 ms on 100,000 tapes,
		// against about a millisecond for the walk.
		return true, nil
	}
	// N: SQLite's own statistics when it has gathered them (PRAGMA
	// optimize), else the highest id (an overestimate: ids count
	// directories and other files too).
	var n int64
	var stat string
	if db.QueryRowContext(ctx, `SELECT stat FROM sqlite_stat1 WHERE tbl = 'tapes' AND idx = 'tapes_created'`).Scan(&stat) == nil {
		fmt.Sscan(stat, &n)
	}
	if n <= 0 {
		if err := db.QueryRowContext(ctx, `SELECT coalesce(max(object), 0) FROM tapes`).Scan(&n); err != nil {
			return false, err
		}
	}
	// Every criterion must be common: a rare one is the better driver.
	threshold := int64(math.Sqrt(4 * float64(f.Limit) * float64(n)))
	for _, ff := range ffs {
		m, err := ff.countUpTo(ctx, db, threshold+1)
		if err != nil {
			return false, err
		}
		if m <= threshold {
			return false, nil
		}
	}
	return true, nil
}

// bulkTapes is how many tapes a query must read before a one-shot query
// maps the sidecar file: past it, a page fault per page of the file beats a
// pread into the small page cache (on 100,000 tapes, a listing of all took
// 3.6 s mapped and 5-7 s not).
const bulkTapes = 1000

// mapForBulk maps the sidecar file for a query of a one-shot sidecar (see
// queryDriver) in read transaction db when f selects more than bulkTapes
// tapes: it has no limit (or a larger one), no tag, tool or method of it
// is on bulkTapes tapes or fewer, and a count of its matches, up to
// bulkTapes+1, says so. unmap ends the map; call it before the
// transaction ends.
func (s *Sidecar) mapForBulk(ctx context.Context, db querier, f TapeFilter) (unmap func(), err error) {
	unmap = func() {}
	if !s.oneShot || (f.Limit > 0 && f.Limit <= bulkTapes) {
		return unmap, nil
	}
	// A rare tag, tool or method is counted from its own index, cheaply.
	for _, ff := range f.facetFilters() {
		m, err := ff.countUpTo(ctx, db, bulkTapes+1)
		if err != nil || m <= bulkTapes {
			return unmap, err
		}
	}
	cond, args := f.where(false)
	var m int64
	err = db.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM tapes t JOIN objects o ON o.id = t.object WHERE `+
		cond+` LIMIT ?)`, append(args, bulkTapes+1)...).Scan(&m)
	if err != nil || m <= bulkTapes {
		return unmap, err
	}
	var size int64
	if err := db.QueryRowContext(ctx, fmt.Sprintf(`PRAGMA mmap_size = %d`, mmapSize)).Scan(&size); err != nil {
		return unmap, err
	}
	return func() { db.QueryRowContext(ctx, `PRAGMA mmap_size = 0`).Scan(&size) }, nil
}

// countUpTo counts the tapes ff matches, from its index, up to max.
func (ff facetFilter) countUpTo(ctx context.Context, db querier, max int64) (int64, error) {
	tc := facetTables[ff.facet]
	var m int64
	err := db.QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*) FROM (SELECT 1 FROM %s WHERE %s = ? LIMIT ?)`,
		tc[0], tc[1]), ff.value, max).Scan(&m)
	return m, err
}

// tapesByID returns the rows of the tapes with these object ids, in the
// order given.
func tapesByID(ctx context.Context, db querier, ids []int64, brief bool) ([]TapeRow, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	// Put in order here: an ORDER BY would make SQLite sort whole rows.
	pos := make(map[int64]int, len(ids))
	for i, id := range ids {
		pos[id] = i
	}
	list, _ := json.Marshal(ids)
	cols, scan := tapeCols, scanTape
	if brief {
		cols, scan = briefCols, scanBrief
	}
	rows, err := db.QueryContext(ctx, cols+`
		FROM json_each(?) j JOIN tapes t ON t.object = j.value JOIN objects o ON o.id = t.object`, string(list))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]TapeRow, len(ids))
	found := make([]bool, len(ids))
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, err
		}
		if i, ok := pos[r.ObjectID]; ok {
			out[i], found[i] = r, true
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	n := 0
	for i := range out {
		if found[i] {
			out[n] = out[i]
			n++
		}
	}
	return out[:n], nil
}

// ListTapes returns the tapes f selects, in f.Sort order (newest first by
// default). Bad filter values give an error wrapping ErrInvalid.
func (s *Sidecar) ListTapes(ctx context.Context, f TapeFilter) ([]TapeRow, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if f.Sort == SortRank {
		return nil, &filterError{"sort rank is only for a search"}
	}
	var out []TapeRow
	err := s.view(ctx, func(db querier) error {
		unmap, err := s.mapForBulk(ctx, db, f)
		if err != nil {
			return err
		}
		defer unmap()
		inOrder, err := orderFirst(ctx, db, f)
		if err != nil {
			return err
		}
		q, args := f.selectIDs("", inOrder)
		if f.Brief && f.Limit <= 0 {
			// Every match is read: read each row once, sorted with its
			// few columns, not once to sort its id and again to fetch it
			// (815 tapes: 3,993 page reads, now about half).
			out, err = briefRows(ctx, db, briefCols+strings.TrimPrefix(q, idsSelect), args)
			return err
		}
		ids, _, err := selectIDs(ctx, db, q, args)
		if err != nil {
			return err
		}
		out, err = tapesByID(ctx, db, ids, f.Brief)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sidecar: list tapes: %w", err)
	}
	return out, nil
}

// QueryPlan returns SQLite's plan (EXPLAIN QUERY PLAN) of the query that
// ListTapes (query "") or Search (query non-empty; its full query, which a
// search by rank with a limit runs only when FTS5's own top matches do not
// settle it) runs to pick the tapes, one line per step, for benchmarks and
// for checking that indexes are used.
func (s *Sidecar) QueryPlan(ctx context.Context, query string, f TapeFilter) ([]string, error) {
	match := ""
	if query != "" {
		var err error
		if match, err = FTSQuery(query); err != nil {
			return nil, err
		}
		if f.Sort == "" {
			f.Sort = SortRank
		}
	}
	var q string
	var args []any
	err := s.view(ctx, func(db querier) error {
		inOrder, err := orderFirst(ctx, db, f)
		q, args = f.selectIDs(match, inOrder && match == "")
		return err
	})
	if err != nil {
		return nil, err
	}
	rows, err := s.read.QueryContext(ctx, `EXPLAIN QUERY PLAN `+q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	depth := map[int64]int{}
	var out []string
	for rows.Next() {
		var id, parent, notused int64
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			return nil, err
		}
		depth[id] = depth[parent] + 1
		out = append(out, strings.Repeat("  ", depth[id]-1)+detail)
	}
	return out, rows.Err()
}

// Facet names a many-valued field of tapes.
type Facet string

const (
	FacetTag    Facet = "tag"
	FacetTool   Facet = "tool"
	FacetMethod Facet = "method"
)

var facetTables = map[Facet][2]string{
	FacetTag:    {"tape_tags", "tag"},
	FacetTool:   {"tape_tools", "tool"},
	FacetMethod: {"tape_methods", "method"},
}

// ValueCount is one value of a facet and how many tapes have it.
type ValueCount struct {
	Value string
	Tapes int64
}

// FacetValues returns the values of a facet that some tape has, the most
// common first (then by value).
func (s *Sidecar) FacetValues(ctx context.Context, facet Facet) ([]ValueCount, error) {
	tc, ok := facetTables[facet]
	if !ok {
		return nil, fmt.Errorf("sidecar: %w: facet %q", ErrInvalid, facet)
	}
	rows, err := s.read.QueryContext(ctx, fmt.Sprintf(`SELECT %[2]s, count(*) AS n FROM %[1]s
		GROUP BY %[2]s ORDER BY n DESC, %[2]s`, tc[0], tc[1]))
	if err != nil {
		return nil, fmt.Errorf("sidecar: %s values: %w", facet, err)
	}
	defer rows.Close()
	var out []ValueCount
	for rows.Next() {
		var v ValueCount
		if err := rows.Scan(&v.Value, &v.Tapes); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// HasFacetValue says whether any tape has value in the facet.
func (s *Sidecar) HasFacetValue(ctx context.Context, facet Facet, value string) (bool, error) {
	tc, ok := facetTables[facet]
	if !ok {
		return false, fmt.Errorf("sidecar: %w: facet %q", ErrInvalid, facet)
	}
	var found bool
	err := s.read.QueryRowContext(ctx, fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %s WHERE %s = ?)`, tc[0], tc[1]),
		value).Scan(&found)
	if err != nil && err != sql.ErrNoRows {
		return false, fmt.Errorf("sidecar: %s values: %w", facet, err)
	}
	return found, nil
}

func dedup(xs []string) []string {
	var out []string
	for _, x := range xs {
		if x != "" && !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// prefixEnd returns the least string greater than every string that
// begins with p; false when there is none (p is all 0xff bytes).
func prefixEnd(p string) (string, bool) {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}
