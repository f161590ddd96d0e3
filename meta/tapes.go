package meta

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tapefs/tapefs/tape"
)

// Stamp identifies one version of an object: what a tape was indexed from.
// The zero Stamp means "no object".
type Stamp struct {
	Key     string
	Size    int64
	ModTime time.Time
	ETag    string
	MD5     []byte // some stores' ETags do not follow the content; MD5 does
}

// StampOf returns the stamp of an object row.
func StampOf(o Object) Stamp {
	return Stamp{Key: o.Key, Size: o.Size, ModTime: o.ModTime, ETag: o.ETag, MD5: o.MD5}
}

// Same says whether two stamps name the same version of the same object.
func (s Stamp) Same(o Stamp) bool {
	return s.Key == o.Key && s.Size == o.Size && s.ModTime.Equal(o.ModTime) && s.ETag == o.ETag &&
		bytes.Equal(s.MD5, o.MD5)
}

// TapeSource is what a tape's index row was built from: its data object and
// its companion (the .meta.json of a v2 tape, the index.json beside a v1
// tape; zero when there was none).
type TapeSource struct {
	Data      Stamp
	Companion Stamp
}

// TapeRow is a tape's index record with the attributes of its data object.
type TapeRow struct {
	tape.Record
	ObjectID  int64
	Size      int64
	ModTime   time.Time
	ETag      string
	Source    TapeSource
	IndexedAt time.Time
}

const tapeCols = `
	SELECT o.id, o.key, o.size, o.mtime, o.etag,
		t.format, t.tape_id, t.session_id, t.name, t.description,
		t.created_at, t.updated_at, t.finalized_at, t.status, t.duration_ms,
		t.frame_count, t.error_count, t.client_to_server, t.server_to_client,
		t.protocol_version, t.client_name, t.client_version, t.server_name, t.server_version, t.transport,
		t.error_messages, t.slowest, t.problems, t.has_meta, t.valid,
		t.src_size, t.src_mtime, t.src_etag, t.src_md5,
		t.comp_key, t.comp_size, t.comp_mtime, t.comp_etag, t.comp_md5, t.indexed_at,
		t.tags, t.methods, t.tools`

const tapeSelect = tapeCols + `
	FROM tapes t JOIN objects o ON o.id = t.object`

func scanTape(sc interface{ Scan(...any) error }) (TapeRow, error) {
	var r TapeRow
	var mtime, created, updated, finalized, srcMtime, compMtime, indexed int64
	var format, errMsgs, slowest, problems, tags, methods, tools string
	err := sc.Scan(&r.ObjectID, &r.Key, &r.Size, &mtime, &r.ETag,
		&format, &r.TapeID, &r.SessionID, &r.Name, &r.Description,
		&created, &updated, &finalized, &r.Status, &r.DurationMS,
		&r.FrameCount, &r.ErrorCount, &r.ClientToServer, &r.ServerToClient,
		&r.ProtocolVersion, &r.ClientName, &r.ClientVersion, &r.ServerName, &r.ServerVersion, &r.Transport,
		&errMsgs, &slowest, &problems, &r.HasMeta, &r.Valid,
		&r.Source.Data.Size, &srcMtime, &r.Source.Data.ETag, &r.Source.Data.MD5,
		&r.Source.Companion.Key, &r.Source.Companion.Size, &compMtime, &r.Source.Companion.ETag,
		&r.Source.Companion.MD5, &indexed,
		&tags, &methods, &tools)
	if err != nil {
		return r, err
	}
	r.ModTime = fromNsec(mtime)
	r.Format = tape.Format(format)
	r.CreatedAt, r.UpdatedAt, r.FinalizedAt = fromNsec(created), fromNsec(updated), fromNsec(finalized)
	r.Source.Data.Key, r.Source.Data.ModTime = r.Key, fromNsec(srcMtime)
	r.Source.Companion.ModTime = fromNsec(compMtime)
	r.IndexedAt = fromNsec(indexed)
	for _, err := range []error{
		decodeStrings(errMsgs, &r.ErrorMessages), decodePairs(slowest, &r.Slowest),
		decodeStrings(problems, &r.Problems), decodeStrings(tags, &r.Tags),
		decodeCounts(methods, &r.Methods), decodeCounts(tools, &r.Tools),
	} {
		if err != nil {
			return r, fmt.Errorf("tape %q: %w", r.Key, err)
		}
	}
	// Empty lists and maps read back as nil, as a parser leaves them.
	if len(r.Tags) == 0 {
		r.Tags = nil
	}
	if len(r.Methods) == 0 {
		r.Methods = nil
	}
	if len(r.Tools) == 0 {
		r.Tools = nil
	}
	return r, nil
}

// briefCols are the columns of a TapeFilter.Brief listing.
const briefCols = `
	SELECT o.id, o.key, o.size, t.format, t.tape_id, t.name, t.created_at, t.status,
		t.frame_count, t.error_count, t.valid, t.tags`

// scanBrief reads a row of briefCols.
func scanBrief(sc interface{ Scan(...any) error }) (TapeRow, error) {
	var r TapeRow
	var created int64
	var format, tags string
	err := sc.Scan(&r.ObjectID, &r.Key, &r.Size, &format, &r.TapeID, &r.Name, &created, &r.Status,
		&r.FrameCount, &r.ErrorCount, &r.Valid, &tags)
	if err != nil {
		return r, err
	}
	r.Format, r.CreatedAt = tape.Format(format), fromNsec(created)
	if err := decodeStrings(tags, &r.Tags); err != nil {
		return r, fmt.Errorf("tape %q: %w", r.Key, err)
	}
	if len(r.Tags) == 0 {
		r.Tags = nil
	}
	return r, nil
}

// GetTape returns the index row of the tape whose data object is key (not
// the row recording that a .json file is not a tape).
func (s *Sidecar) GetTape(ctx context.Context, key string) (TapeRow, bool, error) {
	r, err := scanTape(s.read.QueryRowContext(ctx, tapeSelect+` WHERE o.key = ? AND t.format != ''`, key))
	if errors.Is(err, sql.ErrNoRows) {
		return TapeRow{}, false, nil
	}
	if err != nil {
		return TapeRow{}, false, fmt.Errorf("sidecar: get tape %q: %w", key, err)
	}
	return r, true, nil
}

// IndexedAt returns what the tape at key was indexed from; false if it has
// no index row.
func (s *Sidecar) IndexedAt(ctx context.Context, key string) (TapeSource, bool, error) {
	m, err := s.indexedSources(ctx, `WHERE o.key = ?`, key)
	src, ok := m[key]
	return src, ok, err
}

// IndexedSources returns what every indexed tape was indexed from, by key:
// one query, for a reconcile to decide what to index again.
func (s *Sidecar) IndexedSources(ctx context.Context) (map[string]TapeSource, error) {
	return s.indexedSources(ctx, "")
}

func (s *Sidecar) indexedSources(ctx context.Context, where string, args ...any) (map[string]TapeSource, error) {
	rows, err := s.read.QueryContext(ctx, `
		SELECT o.key, t.src_size, t.src_mtime, t.src_etag, t.src_md5,
			t.comp_key, t.comp_size, t.comp_mtime, t.comp_etag, t.comp_md5
		FROM tapes t JOIN objects o ON o.id = t.object `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("sidecar: indexed sources: %w", err)
	}
	defer rows.Close()
	out := make(map[string]TapeSource)
	for rows.Next() {
		var src TapeSource
		var dm, cm int64
		if err := rows.Scan(&src.Data.Key, &src.Data.Size, &dm, &src.Data.ETag, &src.Data.MD5,
			&src.Companion.Key, &src.Companion.Size, &cm, &src.Companion.ETag, &src.Companion.MD5); err != nil {
			return nil, fmt.Errorf("sidecar: indexed sources: %w", err)
		}
		src.Data.ModTime, src.Companion.ModTime = fromNsec(dm), fromNsec(cm)
		out[src.Data.Key] = src
	}
	return out, rows.Err()
}

// PutTape stores the index record of the tape at rec.Key, built from src,
// replacing any earlier one. The data object must have a row (ErrNotFound).
// A record with an empty Format (a .json file that turned out not to be a
// tape) is stored too, so that the file is not read again until it changes,
// but ListTapes, GetTape and Stats leave it out.
func (s *Sidecar) PutTape(ctx context.Context, rec *tape.Record, src TapeSource) error {
	return s.Update(ctx, func(tx *Tx) error { return tx.PutTape(rec, src) })
}

// DeleteTape drops the index row of the tape at key, if any.
func (s *Sidecar) DeleteTape(ctx context.Context, key string) error {
	return s.Update(ctx, func(tx *Tx) error { return tx.DeleteTape(key) })
}

// PutTape: see Sidecar.PutTape.
func (t *Tx) PutTape(rec *tape.Record, src TapeSource) error {
	if err := t.putTape(rec, src); err != nil {
		return fmt.Errorf("sidecar: put tape %q: %w", rec.Key, err)
	}
	return nil
}

func (t *Tx) putTape(r *tape.Record, src TapeSource) error {
	var id int64
	err := t.queryRow(`SELECT id FROM objects WHERE key = ?`, r.Key).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	// Delete then insert: the cascade clears the old tag, method and tool rows.
	res, err := t.exec(`DELETE FROM tapes WHERE object = ?`, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n > 0 {
		if err := t.ftsDelete(id); err != nil {
			return err
		}
	}
	errMsgs, _ := json.Marshal(r.ErrorMessages)
	slowest, _ := json.Marshal(r.Slowest)
	problems, _ := json.Marshal(r.Problems)
	tags, _ := json.Marshal(uniq(r.Tags)) // as tape_tags keeps them
	methods, _ := json.Marshal(r.Methods)
	tools, _ := json.Marshal(r.Tools)
	_, err = t.exec(`
		INSERT INTO tapes (object, format, tape_id, session_id, name, description,
			created_at, updated_at, finalized_at, status, duration_ms,
			frame_count, error_count, client_to_server, server_to_client,
			protocol_version, client_name, client_version, server_name, server_version, transport,
			error_messages, slowest, problems, has_meta, valid,
			src_size, src_mtime, src_etag, src_md5, comp_key, comp_size, comp_mtime, comp_etag, comp_md5,
			indexed_at, tags, methods, tools)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
			?, ?, ?)`,
		id, string(r.Format), r.TapeID, r.SessionID, r.Name, r.Description,
		nsec(r.CreatedAt), nsec(r.UpdatedAt), nsec(r.FinalizedAt), r.Status, r.DurationMS,
		r.FrameCount, r.ErrorCount, r.ClientToServer, r.ServerToClient,
		r.ProtocolVersion, r.ClientName, r.ClientVersion, r.ServerName, r.ServerVersion, r.Transport,
		string(errMsgs), string(slowest), string(problems), r.HasMeta, r.Valid,
		src.Data.Size, nsec(src.Data.ModTime), src.Data.ETag, src.Data.MD5,
		src.Companion.Key, src.Companion.Size, nsec(src.Companion.ModTime), src.Companion.ETag, src.Companion.MD5,
		nsec(t.now()), string(tags), string(methods), string(tools))
	if err != nil {
		return err
	}
	for i, tag := range r.Tags {
		if _, err := t.exec(`INSERT OR IGNORE INTO tape_tags (tape, tag, pos) VALUES (?, ?, ?)`, id, tag, i); err != nil {
			return err
		}
	}
	for m, n := range r.Methods {
		if _, err := t.exec(`INSERT INTO tape_methods (tape, method, count) VALUES (?, ?, ?)`, id, m, n); err != nil {
			return err
		}
	}
	for tool, n := range r.Tools {
		if _, err := t.exec(`INSERT INTO tape_tools (tape, tool, count) VALUES (?, ?, ?)`, id, tool, n); err != nil {
			return err
		}
	}
	return t.ftsPut(id, r)
}

// DeleteTape: see Sidecar.DeleteTape.
func (t *Tx) DeleteTape(key string) error {
	var id int64
	err := t.queryRow(`SELECT id FROM objects WHERE key = ?`, key).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err == nil {
		err = t.ftsDelete(id)
	}
	if err == nil {
		_, err = t.exec(`DELETE FROM tapes WHERE object = ?`, id)
	}
	if err != nil {
		return fmt.Errorf("sidecar: delete tape %q: %w", key, err)
	}
	return nil
}

// uniq returns xs without repeats, keeping the first of each.
func uniq(xs []string) []string {
	if len(xs) < 2 {
		return xs
	}
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}
