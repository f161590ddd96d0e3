package meta

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"unicode"

	"github.com/tapefs/tapefs/tape"
)

// The full-text index: one row of tapes_fts per tape (rowid = the tape's
// object id), over the text a person searches tapes by. It is an ordinary
// FTS5 table kept in step by the Tx methods that change tapes or their keys
// (PutTape, DeleteTape, DeleteObject, RenameObject, RenamePrefix), in the
// same transaction.
//
// FTS5 is compiled into go-sqlite3 only with -tags sqlite_fts5. A build
// without it opens and writes the same sidecar (everything else works), but
// cannot touch tapes_fts: it marks the index stale instead ('fts' counter
// 0), and the next read-write Open by a build with FTS5 rebuilds it.

// ErrNoFTS is returned by Search when this program's SQLite has no FTS5.
var ErrNoFTS = errors.New("full-text search is not available: tapefs was built without FTS5; build with -tags sqlite_fts5")

// ErrFTSStale is returned by Search on a sidecar opened read-only whose
// full-text index is missing or out of date; a read-write Open rebuilds it.
var ErrFTSStale = errors.New("the full-text index must be rebuilt: open the sidecar read-write once")

// ErrBadQuery wraps the errors of a search query that cannot be parsed.
var ErrBadQuery = errors.New("invalid search query")

// FTSColumns are the columns of the full-text index, in order. A search
// term may be limited to one of them: name:deploy, tools:read_file.
var FTSColumns = []string{"name", "description", "tags", "tools", "methods", "errors",
	"client", "server", "key", "ids"}

// ftsWeights are the bm25 weights of FTSColumns: a word in the name or the
// tags counts for more than one in the key or an error message.
var ftsWeights = []float64{10, 4, 8, 5, 2, 3, 2, 2, 1, 1}

// ftsCreate makes the index. unicode61 with remove_diacritics folds case and
// accents (meteo finds météo); '_', '/', '-' and '.' separate words, so
// read_file is the phrase "read file" and tools/call the phrase "tools call".
const ftsCreate = `CREATE VIRTUAL TABLE tapes_fts USING fts5(
	name, description, tags, tools, methods, errors, client, server, key, ids,
	tokenize = 'unicode61 remove_diacritics 2')`

// ftsRows selects the index rows of the tapes a condition on tapes t and
// objects o picks.
const ftsRows = `
	SELECT t.object, t.name, t.description,
		(SELECT group_concat(tag, ' ' ORDER BY tag) FROM tape_tags WHERE tape = t.object),
		(SELECT group_concat(tool, ' ' ORDER BY tool) FROM tape_tools WHERE tape = t.object),
		(SELECT group_concat(method, ' ' ORDER BY method) FROM tape_methods WHERE tape = t.object),
		(SELECT group_concat(value, ' ') FROM json_each(t.error_messages) WHERE type = 'text'),
		trim(t.client_name || ' ' || t.client_version), trim(t.server_name || ' ' || t.server_version),
		o.key, trim(t.tape_id || ' ' || t.session_id)
	FROM tapes t JOIN objects o ON o.id = t.object
	WHERE t.format != '' AND `

const ftsInsert = `INSERT INTO tapes_fts (rowid, name, description, tags, tools, methods, errors,
	client, server, key, ids)`

// hasFTS5 says whether this program's SQLite has the fts5 module: it tries
// to make an FTS5 table in a scratch in-memory database, once per process.
var hasFTS5 = sync.OnceValues(func() (bool, error) {
	db, err := sql.Open("sqlite3", "file::memory:")
	if err != nil {
		return false, err
	}
	defer db.Close()
	_, err = db.Exec(`CREATE VIRTUAL TABLE probe USING fts5(x)`)
	if err != nil && !strings.Contains(err.Error(), "no such module") {
		return false, fmt.Errorf("probing for FTS5: %w", err)
	}
	return err == nil, nil
})

// HasFTS says whether this program can search the full-text index.
func (s *Sidecar) HasFTS() bool { return s.fts }

// ensureFTS (re)builds the full-text index when it is missing or stale and
// this build can: one INSERT … SELECT over all tapes.
func (t *Tx) ensureFTS() error {
	if !t.fts {
		return nil
	}
	var built int64
	if err := t.queryRow(`SELECT value FROM counters WHERE name = 'fts'`).Scan(&built); err != nil {
		return fmt.Errorf("full-text index: %w", err)
	}
	if built == 1 {
		return nil
	}
	for _, q := range []string{
		`DROP TABLE IF EXISTS tapes_fts`,
		ftsCreate,
		ftsInsert + ftsRows + `1`,
		`UPDATE counters SET value = 1 WHERE name = 'fts'`,
	} {
		if _, err := t.exec(q); err != nil {
			return fmt.Errorf("full-text index: %w", err)
		}
	}
	return nil
}

// markFTSStale records that this transaction may have changed tapes
// without updating the full-text index (a build without FTS5).
func (t *Tx) markFTSStale() error {
	_, err := t.exec(`UPDATE counters SET value = 0 WHERE name = 'fts' AND value != 0`)
	return err
}

// ftsRefresh rewrites the index rows of the tapes that cond (on tapes t and
// objects o) picks, after their rows or keys changed.
func (t *Tx) ftsRefresh(cond string, args ...any) error {
	if !t.fts {
		return nil
	}
	if _, err := t.exec(`DELETE FROM tapes_fts WHERE rowid IN (
		SELECT t.object FROM tapes t JOIN objects o ON o.id = t.object WHERE `+cond+`)`, args...); err != nil {
		return fmt.Errorf("full-text index: %w", err)
	}
	if _, err := t.exec(ftsInsert+ftsRows+cond, args...); err != nil {
		return fmt.Errorf("full-text index: %w", err)
	}
	return nil
}

// ftsPut adds the index row of the tape r just stored for object id, from
// r itself: the same text as ftsRows selects (checkFTS in the tests holds
// the two together), without reading it back.
func (t *Tx) ftsPut(id int64, r *tape.Record) error {
	if !t.fts || r.Format == "" {
		return nil
	}
	tags := slices.Clone(uniq(r.Tags))
	slices.Sort(tags) // as ftsRows orders them
	join := func(ss []string) any {
		if len(ss) == 0 {
			return nil
		}
		return strings.Join(ss, " ")
	}
	trim := func(a, b string) string { return strings.Trim(a+" "+b, " ") }
	_, err := t.exec(ftsInsert+` VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, id, r.Name, r.Description,
		join(tags), join(slices.Sorted(maps.Keys(r.Tools))), join(slices.Sorted(maps.Keys(r.Methods))),
		join(r.ErrorMessages), trim(r.ClientName, r.ClientVersion), trim(r.ServerName, r.ServerVersion),
		r.Key, trim(r.TapeID, r.SessionID))
	if err != nil {
		return fmt.Errorf("full-text index: %w", err)
	}
	return nil
}

// ftsDelete drops the index row of object id (before its tape row goes).
func (t *Tx) ftsDelete(id int64) error {
	if !t.fts {
		return nil
	}
	if _, err := t.exec(`DELETE FROM tapes_fts WHERE rowid = ?`, id); err != nil {
		return fmt.Errorf("full-text index: %w", err)
	}
	return nil
}

// ftsReady says whether the full-text index can be searched.
func (s *Sidecar) ftsReady(ctx context.Context) error {
	if !s.fts {
		return ErrNoFTS
	}
	var built int64
	err := s.read.QueryRowContext(ctx, `SELECT coalesce((SELECT value FROM counters WHERE name = 'fts'), 0)`).Scan(&built)
	if err != nil {
		return err
	}
	if built != 1 {
		return ErrFTSStale
	}
	return nil
}

// Hit is one search result: a tape and how well it matches, higher is
// better (the negated bm25 score).
type Hit struct {
	TapeRow
	Score float64
}

// Search returns the tapes that match query and that f selects, best match
// first unless f.Sort asks for another order (SortRank is the default).
//
// The query language: words, all of which must occur (in any column);
// "quoted phrases"; a word ending in * matches as a prefix; OR, AND, NOT and
// parentheses combine; COLUMN:word or COLUMN:"a phrase" limits a term to
// one of FTSColumns. Case and accents are ignored. Errors in a query wrap
// ErrBadQuery and say what is wrong.
func (s *Sidecar) Search(ctx context.Context, query string, f TapeFilter) ([]Hit, error) {
	if err := s.ftsReady(ctx); err != nil {
		return nil, err
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	match, err := FTSQuery(query)
	if err != nil {
		return nil, err
	}
	if f.Sort == "" {
		f.Sort = SortRank
	}
	var hits []Hit
	err = s.view(ctx, func(db querier) error {
		unmap, err := s.mapForBulk(ctx, db, f)
		if err != nil {
			return err
		}
		defer unmap()
		ids, scores, err := searchIDs(ctx, db, match, f)
		if err != nil {
			return err
		}
		rows, err := tapesByID(ctx, db, ids, f.Brief)
		if err != nil {
			return err
		}
		score := make(map[int64]float64, len(ids))
		for i, id := range ids {
			score[id] = scores[i]
		}
		hits = make([]Hit, len(rows))
		for i, r := range rows {
			hits[i] = Hit{TapeRow: r, Score: score[r.ObjectID]}
		}
		return nil
	})
	if err != nil {
		if msg, ok := ftsSyntaxError(err); ok {
			return nil, fmt.Errorf("%w %q: %s", ErrBadQuery, query, msg)
		}
		return nil, fmt.Errorf("sidecar: search: %w", err)
	}
	return hits, nil
}

// searchIDs returns the ids and scores of the tapes a search picks, in
// order. The best few of many matches are found cheaply: FTS5 ranks its
// top K matches by itself (no sort of every match with its row), then the
// filter and the tie-breaks are applied to those K in Go. That is exact when
// the last one kept scores strictly better than the K-th: no match below
// the top K can then come before it. Otherwise the full query runs.
func searchIDs(ctx context.Context, db querier, match string, f TapeFilter) ([]int64, []float64, error) {
	if f.Sort == SortRank && f.Limit > 0 {
		k := 2*f.Limit + 50
		ids, scores, err := selectIDs(ctx, db, `SELECT rowid, -bm25(tapes_fts, `+ftsWeightArgs()+`) AS score
			FROM tapes_fts WHERE tapes_fts MATCH ? ORDER BY score DESC LIMIT ?`, []any{match, k})
		if err != nil {
			return nil, nil, err
		}
		if len(ids) == 0 {
			return nil, nil, nil
		}
		type cand struct {
			id      int64
			score   float64
			created int64
			key     string
		}
		score := make(map[int64]float64, len(ids))
		for i, id := range ids {
			score[id] = scores[i]
		}
		cond, args := f.where(false)
		list, _ := json.Marshal(ids)
		rows, err := db.QueryContext(ctx, `SELECT t.object, t.created_at, o.key
			FROM tapes t JOIN objects o ON o.id = t.object
			WHERE t.object IN (SELECT value FROM json_each(?)) AND `+cond, append([]any{string(list)}, args...)...)
		if err != nil {
			return nil, nil, err
		}
		var cs []cand
		for rows.Next() {
			var c cand
			if err := rows.Scan(&c.id, &c.created, &c.key); err != nil {
				rows.Close()
				return nil, nil, err
			}
			c.score = score[c.id]
			cs = append(cs, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, err
		}
		slices.SortFunc(cs, func(a, b cand) int {
			if a.score != b.score {
				return cmp.Compare(b.score, a.score)
			}
			if a.created != b.created {
				return cmp.Compare(b.created, a.created)
			}
			return strings.Compare(a.key, b.key)
		})
		if len(cs) > f.Limit {
			cs = cs[:f.Limit]
		}
		if len(ids) < k || (len(cs) == f.Limit && cs[len(cs)-1].score > scores[len(scores)-1]) {
			outIDs, outScores := make([]int64, len(cs)), make([]float64, len(cs))
			for i, c := range cs {
				outIDs[i], outScores[i] = c.id, c.score
			}
			return outIDs, outScores, nil
		}
	}
	q, args := f.selectIDs(match, false)
	return selectIDs(ctx, db, q, args)
}

// ftsSyntaxError picks FTS5's own words out of a query error ("fts5:
// syntax error near …", "no such column: x").
func ftsSyntaxError(err error) (string, bool) {
	msg := err.Error()
	for _, p := range []string{"fts5: ", "no such column: "} {
		if i := strings.Index(msg, p); i >= 0 {
			m := msg[i:]
			m = strings.TrimPrefix(m, "fts5: ")
			if strings.HasPrefix(m, `syntax error near ""`) {
				m = "incomplete query (an operator or parenthesis with nothing after it?)"
			}
			return m + `; the syntax: words, "quoted phrases", prefix*, OR, AND, NOT, ( ), COLUMN:word with COLUMN one of ` +
				strings.Join(FTSColumns, ", "), true
		}
	}
	return "", false
}

// FTSQuery turns a search as a person types it into an FTS5 MATCH
// expression: every word and phrase is quoted, so punctuation in it
// (tools/call, read_file, an error text) is never taken for syntax; only
// OR, AND, NOT, parentheses, a trailing * and COLUMN: are operators.
func FTSQuery(query string) (string, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s", ErrBadQuery, query, fmt.Sprintf(format, args...))
	}
	var out []string
	depth := 0
	rs := []rune(query)
	for i := 0; i < len(rs); {
		c := rs[i]
		switch {
		case unicode.IsSpace(c):
			i++
			continue
		case c == '(':
			out = append(out, "(")
			depth++
			i++
			continue
		case c == ')':
			if depth == 0 {
				return "", bad("unbalanced parentheses")
			}
			out = append(out, ")")
			depth--
			i++
			continue
		}
		// A term: [COLUMN:] (WORD | "PHRASE") [*]
		column := ""
		j := i
		for j < len(rs) && (unicode.IsLetter(rs[j]) || rs[j] == '_') {
			j++
		}
		if j < len(rs) && rs[j] == ':' && j > i {
			if col := strings.ToLower(string(rs[i:j])); isFTSColumn(col) && j+1 < len(rs) &&
				!unicode.IsSpace(rs[j+1]) && rs[j+1] != ')' {
				column, i = col, j+1
			}
		}
		var text string
		quoted := false
		if rs[i] == '"' {
			end := i + 1
			for end < len(rs) && rs[end] != '"' {
				end++
			}
			if end == len(rs) {
				return "", bad("unterminated quote")
			}
			text, i, quoted = string(rs[i+1:end]), end+1, true
		} else {
			end := i
			for end < len(rs) && !unicode.IsSpace(rs[end]) && rs[end] != '(' && rs[end] != ')' && rs[end] != '"' {
				end++
			}
			text, i = string(rs[i:end]), end
		}
		prefix := false
		if i < len(rs) && rs[i] == '*' { // "phrase"*
			prefix, i = true, i+1
		} else if !quoted && strings.HasSuffix(text, "*") {
			prefix, text = true, strings.TrimRight(text, "*")
		}
		if !quoted && column == "" && !prefix && (text == "OR" || text == "AND" || text == "NOT") {
			out = append(out, text)
			continue
		}
		if !hasWordChar(text) {
			if column != "" || prefix || quoted {
				return "", bad("%q has no word to search for", text)
			}
			continue // stray punctuation: "-", "/"
		}
		term := `"` + strings.ReplaceAll(text, `"`, `""`) + `"`
		if prefix {
			term += "*"
		}
		if column != "" {
			term = column + " : " + term
		}
		out = append(out, term)
	}
	if depth != 0 {
		return "", bad("unbalanced parentheses")
	}
	if len(out) == 0 {
		return "", bad("nothing to search for")
	}
	return strings.Join(out, " "), nil
}

func isFTSColumn(s string) bool {
	for _, c := range FTSColumns {
		if c == s {
			return true
		}
	}
	return false
}

func hasWordChar(s string) bool {
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return true
		}
	}
	return false
}

// ftsWeightArgs renders ftsWeights for bm25().
func ftsWeightArgs() string {
	b, _ := json.Marshal(ftsWeights)
	return strings.Trim(string(b), "[]")
}
