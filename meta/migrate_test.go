package meta

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/tapefs/tapefs/tape"
)

// TestMigrateFromV1 builds a sidecar as schema version 1 left it and opens
// it: it must be migrated in place, keeping every row and id, with the
// tape rows' new columns filled from the tag, method and tool tables.
func TestMigrateFromV1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v1.db")
	db, err := sql.Open("sqlite3", dsn(path, "_foreign_keys=1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		migrations[0],
		`PRAGMA user_version = 1`,
		`UPDATE counters SET value = 12 WHERE name = 'id'`,
		`INSERT INTO dirs (id, path, parent, name, explicit) VALUES (5, 'team', 1, 'team', 0)`,
		`INSERT INTO objects (id, key, size, mtime, etag, dir, name) VALUES
			(7, 'team/a.jsonl', 120, 1754000000000000000, 'e1', 5, 'a.jsonl'),
			(8, 'team/a.meta.json', 30, 1754000000000000000, 'e2', 5, 'a.meta.json'),
			(9, 'b.json', 60, 1754000000000000000, '', 1, 'b.json'),
			(10, 'notes.txt', 5, 1754000000000000000, '', 1, 'notes.txt')`,
		`INSERT INTO tapes (object, format, tape_id, session_id, name, description, created_at, status,
			frame_count, error_count, error_messages, slowest, problems, has_meta, valid,
			src_size, src_mtime, src_etag, comp_key, indexed_at)
		VALUES
			(7, 'v2', 'tape-a', 'sess-1', 'login replay', 'desc', 1754000000000000000, 'finalized',
			 4, 1, '["timeout after 3s"]', '[{"Method":"tools/call","RequestSeq":2,"ResponseSeq":3,"RTTMS":40,"Status":"success"}]', 'null', 1, 1,
			 120, 1754000000000000000, 'e1', 'team/a.meta.json', 1754000000000000001),
			(9, 'v1', 'tape-b', 'sess-2', 'old one', '', 0, 'finalized',
			 1, 0, 'null', 'null', '["invalid JSON"]', 0, 0,
			 60, 1754000000000000000, '', '', 1754000000000000001)`,
		`INSERT INTO tape_tags (tape, tag, pos) VALUES (7, 'zeta', 0), (7, 'alpha', 1)`,
		`INSERT INTO tape_methods (tape, method, count) VALUES (7, 'initialize', 1), (7, 'tools/call', 2)`,
		`INSERT INTO tape_tools (tape, tool, count) VALUES (7, 'read_file', 2)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	if _, err := OpenReadOnly(path); !errors.Is(err, ErrOldSchema) {
		t.Fatalf("OpenReadOnly of a v1 sidecar: %v, want ErrOldSchema", err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var v int
	s.read.QueryRow(`PRAGMA user_version`).Scan(&v)
	if v != schemaVersion || schemaVersion != 2 {
		t.Errorf("user_version = %d (schema %d), want 2", v, schemaVersion)
	}
	a, ok, err := s.GetTape(ctx, "team/a.jsonl")
	if err != nil || !ok {
		t.Fatalf("GetTape: %v %v", ok, err)
	}
	want := tape.Record{Key: "team/a.jsonl", Format: tape.FormatV2, TapeID: "tape-a", SessionID: "sess-1",
		Name: "login replay", Description: "desc", Tags: []string{"zeta", "alpha"},
		CreatedAt: fromNsec(1754000000000000000), Status: "finalized", FrameCount: 4, ErrorCount: 1,
		Methods: map[string]int64{"initialize": 1, "tools/call": 2}, Tools: map[string]int64{"read_file": 2},
		ErrorMessages: []string{"timeout after 3s"},
		Slowest:       []tape.Pair{{Method: "tools/call", RequestSeq: 2, ResponseSeq: 3, RTTMS: 40, Status: "success"}},
		HasMeta:       true, Valid: true}
	if !reflect.DeepEqual(a.Record, want) {
		t.Errorf("migrated tape:\n got %+v\nwant %+v", a.Record, want)
	}
	if a.ObjectID != 7 || a.Source.Companion.Key != "team/a.meta.json" {
		t.Errorf("migrated row: %+v", a)
	}
	b, _, _ := s.GetTape(ctx, "b.json")
	if b.Tags != nil || b.Methods != nil || b.Tools != nil || b.Valid || !reflect.DeepEqual(b.Problems, []string{"invalid JSON"}) {
		t.Errorf("migrated v1 tape: %+v", b.Record)
	}
	if rows, err := s.ListTapes(ctx, TapeFilter{Tags: []string{"alpha"}, Tools: []string{"read_file"}}); err != nil || len(rows) != 1 {
		t.Errorf("filters after the migration: %v, %v", keysOf(rows), err)
	}
	if e, ok, err := s.Lookup(ctx, "team", "a.jsonl"); err != nil || !ok || e.ID != 7 {
		t.Errorf("tree after the migration: %+v %v %v", e, ok, err)
	}
	// New ids continue after the old ones.
	if o := put(t, s, "c.txt")[0]; o.ID != 13 {
		t.Errorf("next id = %d, want 13", o.ID)
	}
	var built int64
	s.read.QueryRow(`SELECT value FROM counters WHERE name = 'fts'`).Scan(&built)
	if s.HasFTS() {
		if built != 1 {
			t.Errorf("fts counter = %d after the migration", built)
		}
		hits, err := s.Search(ctx, "timeout", TapeFilter{})
		if err != nil || len(hits) != 1 || hits[0].Key != "team/a.jsonl" {
			t.Errorf("Search after the migration: %v, %v", hits, err)
		}
		if hits, _ := s.Search(ctx, "tags:zeta", TapeFilter{}); len(hits) != 1 {
			t.Errorf("Search by tag after the migration: %v", hits)
		}
	} else if built != 0 {
		t.Errorf("fts counter = %d in a build without FTS5", built)
	}
	s.Close()
	// Now a read-only open works.
	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	ro.Close()
}

func TestOpenNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.write.Exec(`PRAGMA user_version = 99`)
	s.Close()
	if _, err := OpenReadOnly(path); err == nil || errors.Is(err, ErrOldSchema) {
		t.Errorf("OpenReadOnly of a newer schema: %v", err)
	}
	if _, err := Open(path); err == nil {
		t.Error("Open of a newer schema succeeded")
	}
}
