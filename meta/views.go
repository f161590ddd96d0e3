package meta

import (
	"context"
	"fmt"
	"time"
)

// View names a derived grouping of tapes: the directories of the mount's
// .by/ tree. Each view has values (a tag, a session id, a day, …), and each
// value has the tapes that carry it.
type View string

const (
	ViewTag     View = "tag"     // each tag of the tape
	ViewSession View = "session" // the session id
	ViewDay     View = "day"     // YYYY-MM-DD (UTC) of created_at
	ViewStatus  View = "status"  // recording or finalized
	ViewTool    View = "tool"    // tools called (tools/call params.name)
	ViewName    View = "name"    // no values: the tapes with a name, flat
)

// Views lists every view, in the order the mount shows them.
var Views = []View{ViewTag, ViewSession, ViewDay, ViewStatus, ViewTool, ViewName}

// DayLayout is how ViewDay writes a day.
const DayLayout = "2006-01-02"

// ViewTape is one tape in a view: its data object and the tape's name.
type ViewTape struct {
	Entry            // the data object, as the tree has it (Name is its base name)
	TapeName  string // the name from the tape's metadata, "" if none
	Format    string
	CreatedAt time.Time
}

// servedTape restricts tapes t / objects o to tapes with a place in the tree.
const servedTape = `t.format != '' AND o.dir IS NOT NULL AND o.marker = 0 AND o.shadowed = 0`

// ViewValues returns the values of v that some served tape has, sorted
// bytewise. ViewName has none.
func (s *Sidecar) ViewValues(ctx context.Context, v View) ([]string, error) {
	var q string
	switch v {
	case ViewTag, ViewTool:
		tc := facetTables[Facet(v)]
		q = fmt.Sprintf(`SELECT DISTINCT f.%[2]s FROM %[1]s f JOIN tapes t ON t.object = f.tape
			JOIN objects o ON o.id = t.object WHERE %[3]s ORDER BY 1`, tc[0], tc[1], servedTape)
	case ViewSession:
		q = `SELECT DISTINCT t.session_id FROM tapes t JOIN objects o ON o.id = t.object
			WHERE t.session_id != '' AND ` + servedTape + ` ORDER BY 1`
	case ViewStatus:
		q = `SELECT DISTINCT t.status FROM tapes t JOIN objects o ON o.id = t.object
			WHERE t.status != '' AND ` + servedTape + ` ORDER BY 1`
	case ViewDay:
		q = `SELECT DISTINCT strftime('%Y-%m-%d', t.created_at / 1000000000, 'unixepoch')
			FROM tapes t JOIN objects o ON o.id = t.object
			WHERE t.created_at > 0 AND ` + servedTape + ` ORDER BY 1`
	case ViewName:
		return nil, nil
	default:
		return nil, fmt.Errorf("sidecar: %w: view %q", ErrInvalid, v)
	}
	rows, err := s.read.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("sidecar: %s values: %w", v, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var val string
		if err := rows.Scan(&val); err != nil {
			return nil, err
		}
		out = append(out, val)
	}
	return out, rows.Err()
}

// ViewTapes returns the served tapes that have value in view v, ordered
// by key; for ViewName (value ignored), every served tape with a name.
func (s *Sidecar) ViewTapes(ctx context.Context, v View, value string) ([]ViewTape, error) {
	cond, args := "", []any{value}
	switch v {
	case ViewTag, ViewTool:
		tc := facetTables[Facet(v)]
		cond = fmt.Sprintf(`t.object IN (SELECT tape FROM %s WHERE %s = ?)`, tc[0], tc[1])
	case ViewSession:
		cond = `t.session_id = ?`
	case ViewStatus:
		cond = `t.status = ?`
	case ViewDay:
		day, err := time.Parse(DayLayout, value)
		if err != nil {
			return nil, nil // not a day: no tapes
		}
		cond, args = `t.created_at >= ? AND t.created_at < ?`, []any{day.UnixNano(), day.AddDate(0, 0, 1).UnixNano()}
	case ViewName:
		cond, args = `t.name != ''`, nil
	default:
		return nil, fmt.Errorf("sidecar: %w: view %q", ErrInvalid, v)
	}
	rows, err := s.read.QueryContext(ctx, `SELECT o.name, o.id, o.size, o.mtime, o.etag, o.key,
		t.name, t.format, t.created_at
		FROM tapes t JOIN objects o ON o.id = t.object
		WHERE `+servedTape+` AND `+cond+` ORDER BY o.key`, args...)
	if err != nil {
		return nil, fmt.Errorf("sidecar: %s %q: %w", v, value, err)
	}
	defer rows.Close()
	var out []ViewTape
	for rows.Next() {
		var t ViewTape
		var mtime, created int64
		if err := rows.Scan(&t.Name, &t.ID, &t.Size, &mtime, &t.ETag, &t.Key,
			&t.TapeName, &t.Format, &created); err != nil {
			return nil, err
		}
		t.ModTime, t.CreatedAt = fromNsec(mtime), fromNsec(created)
		out = append(out, t)
	}
	return out, rows.Err()
}
