package meta

import (
	"context"
	"fmt"
)

// schemaVersion is the PRAGMA user_version this code reads and writes.
var schemaVersion = len(migrations)

// rootID is the id of the root directory, also the FUSE root inode number.
const rootID = 1

// migrations[i] brings a database from user_version i to i+1.
//
// Objects and directories draw their ids from one counter, so an id names
// exactly one inode and is never reused. Times are Unix nanoseconds (0 for
// unknown). Text compares as bytes (BINARY), which the prefix range queries
// (key >= 'p/' AND key < 'p0') rely on.
var migrations = []string{`
CREATE TABLE counters (
	name  TEXT PRIMARY KEY,
	value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters (name, value) VALUES ('id', 1);

-- The directory tree. Root is id 1 with path ''. A directory is explicit
-- when made by MakeDir or a marker key ('a/b/'); an implicit one exists
-- only while something is below it.
CREATE TABLE dirs (
	id       INTEGER PRIMARY KEY,
	path     TEXT NOT NULL UNIQUE,
	parent   INTEGER REFERENCES dirs (id),
	name     TEXT NOT NULL,
	explicit INTEGER NOT NULL DEFAULT 0,
	mtime    INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX dirs_children ON dirs (parent, name);
INSERT INTO dirs (id, path, parent, name) VALUES (1, '', NULL, '');

-- One row per store key. Served keys have a place (dir, name); a marker
-- key's place is the directory it makes. Unserved keys have no place and
-- a skip_reason. A file whose place is also a directory is shadowed.
CREATE TABLE objects (
	id          INTEGER PRIMARY KEY,
	key         TEXT NOT NULL UNIQUE,
	size        INTEGER NOT NULL,
	mtime       INTEGER NOT NULL,
	etag        TEXT NOT NULL DEFAULT '',
	md5         BLOB,
	dir         INTEGER REFERENCES dirs (id),
	name        TEXT,
	marker      INTEGER NOT NULL DEFAULT 0,
	shadowed    INTEGER NOT NULL DEFAULT 0,
	skip_reason TEXT,
	CHECK ((dir IS NULL) = (skip_reason IS NOT NULL))
);
CREATE INDEX objects_place ON objects (dir, name);
CREATE INDEX objects_skipped ON objects (key) WHERE skip_reason IS NOT NULL OR shadowed = 1;

-- One row per indexed tape, keyed by its data object: it follows the
-- object through renames and goes when the object goes. src_* and comp_*
-- record the data object and companion (.meta.json or index.json) as they
-- were when indexed, so a reconcile can tell when to index again.
CREATE TABLE tapes (
	object           INTEGER PRIMARY KEY REFERENCES objects (id) ON DELETE CASCADE,
	format           TEXT NOT NULL,
	tape_id          TEXT NOT NULL DEFAULT '',
	session_id       TEXT NOT NULL DEFAULT '',
	name             TEXT NOT NULL DEFAULT '',
	description      TEXT NOT NULL DEFAULT '',
	created_at       INTEGER NOT NULL DEFAULT 0,
	updated_at       INTEGER NOT NULL DEFAULT 0,
	finalized_at     INTEGER NOT NULL DEFAULT 0,
	status           TEXT NOT NULL DEFAULT '',
	duration_ms      INTEGER NOT NULL DEFAULT 0,
	frame_count      INTEGER NOT NULL DEFAULT 0,
	error_count      INTEGER NOT NULL DEFAULT 0,
	client_to_server INTEGER NOT NULL DEFAULT 0,
	server_to_client INTEGER NOT NULL DEFAULT 0,
	protocol_version TEXT NOT NULL DEFAULT '',
	client_name      TEXT NOT NULL DEFAULT '',
	client_version   TEXT NOT NULL DEFAULT '',
	server_name      TEXT NOT NULL DEFAULT '',
	server_version   TEXT NOT NULL DEFAULT '',
	transport        TEXT NOT NULL DEFAULT '',
	error_messages   TEXT NOT NULL DEFAULT 'null', -- JSON
	slowest          TEXT NOT NULL DEFAULT 'null', -- JSON
	problems         TEXT NOT NULL DEFAULT 'null', -- JSON
	has_meta         INTEGER NOT NULL DEFAULT 0,
	valid            INTEGER NOT NULL DEFAULT 0,
	src_size         INTEGER NOT NULL,
	src_mtime        INTEGER NOT NULL,
	src_etag         TEXT NOT NULL,
	src_md5          BLOB,
	comp_key         TEXT NOT NULL DEFAULT '',
	comp_size        INTEGER NOT NULL DEFAULT 0,
	comp_mtime       INTEGER NOT NULL DEFAULT 0,
	comp_etag        TEXT NOT NULL DEFAULT '',
	comp_md5         BLOB,
	indexed_at       INTEGER NOT NULL
);
CREATE INDEX tapes_session ON tapes (session_id);
CREATE INDEX tapes_tape_id ON tapes (tape_id);
CREATE INDEX tapes_created ON tapes (created_at);
CREATE INDEX tapes_status ON tapes (status);
CREATE INDEX tapes_invalid ON tapes (object) WHERE valid = 0;

CREATE TABLE tape_tags (
	tape INTEGER NOT NULL REFERENCES tapes (object) ON DELETE CASCADE,
	tag  TEXT NOT NULL,
	pos  INTEGER NOT NULL,
	PRIMARY KEY (tape, tag)
) WITHOUT ROWID;
CREATE INDEX tape_tags_tag ON tape_tags (tag);

CREATE TABLE tape_methods (
	tape   INTEGER NOT NULL REFERENCES tapes (object) ON DELETE CASCADE,
	method TEXT NOT NULL,
	count  INTEGER NOT NULL,
	PRIMARY KEY (tape, method)
) WITHOUT ROWID;
CREATE INDEX tape_methods_method ON tape_methods (method);

CREATE TABLE tape_tools (
	tape  INTEGER NOT NULL REFERENCES tapes (object) ON DELETE CASCADE,
	tool  TEXT NOT NULL,
	count INTEGER NOT NULL,
	PRIMARY KEY (tape, tool)
) WITHOUT ROWID;
CREATE INDEX tape_tools_tool ON tape_tools (tool);
`, `
-- Version 2: queries. The full-text index (tapes_fts, see fts.go) is made
-- in Go, not here, because only a build with FTS5 can make it; the 'fts'
-- counter says whether it is complete (1) or must be (re)built (0).
INSERT INTO counters (name, value) VALUES ('fts', 0);
CREATE INDEX tapes_errors ON tapes (created_at) WHERE error_count > 0;

-- Copies of a tape's tags, methods and tools as JSON in its row, so that a
-- listing reads one row per tape; the tape_* tables stay for filtering.
ALTER TABLE tapes ADD COLUMN tags    TEXT NOT NULL DEFAULT 'null';
ALTER TABLE tapes ADD COLUMN methods TEXT NOT NULL DEFAULT 'null';
ALTER TABLE tapes ADD COLUMN tools   TEXT NOT NULL DEFAULT 'null';
UPDATE tapes SET
	tags = coalesce((SELECT json_group_array(tag ORDER BY pos) FROM tape_tags WHERE tape = tapes.object), 'null'),
	methods = coalesce((SELECT json_group_object(method, count) FROM tape_methods WHERE tape = tapes.object), 'null'),
	tools = coalesce((SELECT json_group_object(tool, count) FROM tape_tools WHERE tape = tapes.object), 'null');
`}

// migrate applies the migrations the database has not seen, then builds
// the full-text index if it is missing or stale (and this build has FTS5).
// The version is read inside the write transaction, so two processes opening
// a new file at once do not both create the schema.
func (s *Sidecar) migrate(ctx context.Context) error {
	return s.Update(ctx, func(tx *Tx) error {
		var v int
		if err := tx.queryRow("PRAGMA user_version").Scan(&v); err != nil {
			return err
		}
		if v > len(migrations) {
			return fmt.Errorf("schema version %d is newer than this program's (%d)", v, len(migrations))
		}
		for ; v < len(migrations); v++ {
			if _, err := tx.exec(migrations[v]); err != nil {
				return fmt.Errorf("migrate to schema version %d: %w", v+1, err)
			}
		}
		if _, err := tx.exec(fmt.Sprintf("PRAGMA user_version = %d", v)); err != nil {
			return err
		}
		return tx.ensureFTS()
	})
}
