package meta

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tapefs/tapefs/keypath"
)

// Object is one store key as the sidecar knows it. ID is stable for the
// life of the key (and across renames): it is the file's inode number.
type Object struct {
	ID      int64
	Key     string
	Size    int64
	ModTime time.Time
	ETag    string // "" when unknown (listings do not carry it)
	MD5     []byte // nil when unknown
}

// Entry is one name in a directory of the tree. ID is an object id or a
// directory id; the two share one sequence, so it is a unique inode number.
// A directory's ModTime is the newest ModTime of anything ever placed below
// it, or the time it was made by MakeDir; it never goes back when something
// is removed (kept cheap: one update per level, stopping early).
type Entry struct {
	Name    string
	IsDir   bool
	ID      int64
	Size    int64
	ModTime time.Time
	ETag    string
	Key     string // the object's key; "" for a directory
}

// SkippedKey is a store key that is not in the tree, and why.
type SkippedKey struct {
	Key    string
	Reason string
}

// ShadowedReason is the Reason of a file hidden by a directory of the same name.
const ShadowedReason = "a directory has the same name"

// Stats are the sidecar's totals, for statfs and `tapefs status`.
type Stats struct {
	Objects      int64 // store keys, served or not
	Bytes        int64 // their total size
	Dirs         int64 // directories in the tree, the root included
	Tapes        int64
	InvalidTapes int64
	Skipped      int64 // keys not in the tree: unservable or shadowed
}

// ---- reads ----

const entryCols = `name, isdir, id, size, mtime, etag, key`

func scanEntry(sc interface{ Scan(...any) error }) (Entry, error) {
	var e Entry
	var mtime int64
	err := sc.Scan(&e.Name, &e.IsDir, &e.ID, &e.Size, &mtime, &e.ETag, &e.Key)
	e.ModTime = fromNsec(mtime)
	return e, err
}

// Lookup finds name in the directory at path dir. A directory wins over a
// file of the same name.
func (s *Sidecar) Lookup(ctx context.Context, dir, name string) (Entry, bool, error) {
	p := keypath.Join(dir, name)
	row := s.read.QueryRowContext(ctx, `
		SELECT `+entryCols+` FROM (
			SELECT name, 1 AS isdir, id, 0 AS size, mtime, '' AS etag, '' AS key FROM dirs WHERE path = ?1
			UNION ALL
			SELECT name, 0, id, size, mtime, etag, key FROM objects
			WHERE key = ?1 AND dir IS NOT NULL AND marker = 0 AND shadowed = 0
		) ORDER BY isdir DESC LIMIT 1`, p)
	e, err := scanEntry(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("sidecar: lookup %q: %w", p, err)
	}
	return e, true, nil
}

// ReadDir lists the directory at path dir, sorted by name (bytewise). It
// returns ErrNotFound if there is no such directory.
func (s *Sidecar) ReadDir(ctx context.Context, dir string) ([]Entry, error) {
	// One query: both arms walk an index in (parent, name) order, so SQLite
	// merges them instead of sorting.
	rows, err := s.read.QueryContext(ctx, `
		WITH d AS (SELECT id FROM dirs WHERE path = ?1)
		SELECT name, 1 AS isdir, id, 0, mtime, '', '' FROM dirs WHERE parent = (SELECT id FROM d)
		UNION ALL
		SELECT name, 0, id, size, mtime, etag, key FROM objects
		WHERE dir = (SELECT id FROM d) AND marker = 0 AND shadowed = 0
		ORDER BY 1`, dir)
	if err != nil {
		return nil, fmt.Errorf("sidecar: readdir %q: %w", dir, err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, fmt.Errorf("sidecar: readdir %q: %w", dir, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sidecar: readdir %q: %w", dir, err)
	}
	if len(out) == 0 {
		if _, ok, err := s.StatDir(ctx, dir); err != nil {
			return nil, err
		} else if !ok {
			return nil, fmt.Errorf("sidecar: readdir %q: %w", dir, ErrNotFound)
		}
	}
	return out, nil
}

// StatDir returns the directory at path ("" is the root).
func (s *Sidecar) StatDir(ctx context.Context, path string) (Entry, bool, error) {
	var e Entry
	var mtime int64
	err := s.read.QueryRowContext(ctx, `SELECT id, name, mtime FROM dirs WHERE path = ?`, path).
		Scan(&e.ID, &e.Name, &mtime)
	if errors.Is(err, sql.ErrNoRows) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("sidecar: stat dir %q: %w", path, err)
	}
	e.IsDir, e.ModTime = true, fromNsec(mtime)
	return e, true, nil
}

// DirIsEmpty says whether the directory at path has nothing in it
// (ErrNotFound if it does not exist).
func (s *Sidecar) DirIsEmpty(ctx context.Context, path string) (bool, error) {
	var empty sql.NullBool
	err := s.read.QueryRowContext(ctx, `
		SELECT NOT EXISTS (SELECT 1 FROM dirs WHERE parent = d.id)
		   AND NOT EXISTS (SELECT 1 FROM objects WHERE dir = d.id)
		FROM dirs d WHERE d.path = ?`, path).Scan(&empty)
	if errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("sidecar: dir %q: %w", path, ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("sidecar: dir %q: %w", path, err)
	}
	return empty.Bool, nil
}

const objectCols = `id, key, size, mtime, etag, md5`

func scanObject(sc interface{ Scan(...any) error }) (Object, error) {
	var o Object
	var mtime int64
	err := sc.Scan(&o.ID, &o.Key, &o.Size, &mtime, &o.ETag, &o.MD5)
	o.ModTime = fromNsec(mtime)
	return o, err
}

// GetObject returns the row of a store key, served or not.
// (Tx.GetObject reads it inside a write transaction.)
func (s *Sidecar) GetObject(ctx context.Context, key string) (Object, bool, error) {
	o, err := scanObject(s.read.QueryRowContext(ctx, `SELECT `+objectCols+` FROM objects WHERE key = ?`, key))
	if errors.Is(err, sql.ErrNoRows) {
		return Object{}, false, nil
	}
	if err != nil {
		return Object{}, false, fmt.Errorf("sidecar: get %q: %w", key, err)
	}
	return o, true, nil
}

// ObjectKey returns the current key of the object with row id id (ids
// survive renames, keys do not).
func (s *Sidecar) ObjectKey(ctx context.Context, id int64) (string, bool, error) {
	var key string
	err := s.read.QueryRowContext(ctx, `SELECT key FROM objects WHERE id = ?`, id).Scan(&key)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("sidecar: object %d: %w", id, err)
	}
	return key, true, nil
}

// ObjectsUnder returns every object whose key lies under the directory at
// dirPath ("" for all), sorted by key: served files, directory markers and
// unservable keys alike, as a directory rename or delete must move or remove
// them all in the store.
func (s *Sidecar) ObjectsUnder(ctx context.Context, dirPath string) ([]Object, error) {
	q, args := `SELECT `+objectCols+` FROM objects ORDER BY key`, []any(nil)
	if lo, hi := prefixRange(keypath.DirPrefix(dirPath)); hi != "" {
		q, args = `SELECT `+objectCols+` FROM objects WHERE key >= ? AND key < ? ORDER BY key`, []any{lo, hi}
	}
	rows, err := s.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sidecar: objects under %q: %w", dirPath, err)
	}
	defer rows.Close()
	var out []Object
	for rows.Next() {
		o, err := scanObject(rows)
		if err != nil {
			return nil, fmt.Errorf("sidecar: objects under %q: %w", dirPath, err)
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// prefixRange returns bounds lo <= key < hi that hold exactly the keys
// beginning with prefix, so the key index can be used (LIKE would need
// escaping and would not be). hi is "" when there is no upper bound.
func prefixRange(prefix string) (lo, hi string) {
	if prefix == "" {
		return "", ""
	}
	// Prefixes here end in '/', so incrementing the last byte never carries.
	return prefix, prefix[:len(prefix)-1] + string(prefix[len(prefix)-1]+1)
}

// Skipped lists the keys not in the tree (unservable, or a file shadowed by
// a directory of the same name), sorted by key.
func (s *Sidecar) Skipped(ctx context.Context) ([]SkippedKey, error) {
	rows, err := s.read.QueryContext(ctx, `
		SELECT key, coalesce(skip_reason, ?) FROM objects
		WHERE skip_reason IS NOT NULL OR shadowed = 1 ORDER BY key`, ShadowedReason)
	if err != nil {
		return nil, fmt.Errorf("sidecar: skipped: %w", err)
	}
	defer rows.Close()
	var out []SkippedKey
	for rows.Next() {
		var k SkippedKey
		if err := rows.Scan(&k.Key, &k.Reason); err != nil {
			return nil, fmt.Errorf("sidecar: skipped: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// Stats returns the sidecar's totals. It counts rows, so it costs about a
// millisecond per 10,000 objects.
func (s *Sidecar) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := s.read.QueryRowContext(ctx, `
		SELECT (SELECT count(*) FROM objects), (SELECT coalesce(sum(size), 0) FROM objects),
		       (SELECT count(*) FROM dirs), (SELECT count(*) FROM tapes WHERE format != ''),
		       (SELECT count(*) FROM tapes WHERE valid = 0 AND format != ''),
		       (SELECT count(*) FROM objects WHERE skip_reason IS NOT NULL OR shadowed = 1)`).
		Scan(&st.Objects, &st.Bytes, &st.Dirs, &st.Tapes, &st.InvalidTapes, &st.Skipped)
	if err != nil {
		return Stats{}, fmt.Errorf("sidecar: stats: %w", err)
	}
	return st, nil
}

// ---- writes: Sidecar methods, each its own transaction ----

// PutObject inserts or updates the row of o.Key (keeping its id) and
// returns it with its id.
func (s *Sidecar) PutObject(ctx context.Context, o Object) (out Object, err error) {
	err = s.Update(ctx, func(tx *Tx) error { out, err = tx.PutObject(o); return err })
	return out, err
}

// DeleteObject removes the row of key (and its tape), pruning directories
// it leaves empty. ErrNotFound if there is none.
func (s *Sidecar) DeleteObject(ctx context.Context, key string) error {
	return s.Update(ctx, func(tx *Tx) error { return tx.DeleteObject(key) })
}

// RenameObject gives the object at oldKey the key newKey, keeping its id
// and tape row; an object already at newKey is replaced.
func (s *Sidecar) RenameObject(ctx context.Context, oldKey, newKey string) error {
	return s.Update(ctx, func(tx *Tx) error { return tx.RenameObject(oldKey, newKey) })
}

// RenamePrefix moves the directory at oldPath, with everything below it,
// to newPath, keeping every id.
func (s *Sidecar) RenamePrefix(ctx context.Context, oldPath, newPath string) error {
	return s.Update(ctx, func(tx *Tx) error { return tx.RenamePrefix(oldPath, newPath) })
}

// MakeDir makes an explicit directory at path (and any missing parents).
func (s *Sidecar) MakeDir(ctx context.Context, path string) (e Entry, err error) {
	err = s.Update(ctx, func(tx *Tx) error { e, err = tx.MakeDir(path); return err })
	return e, err
}

// RemoveDir removes the empty directory at path, and its marker row.
func (s *Sidecar) RemoveDir(ctx context.Context, path string) error {
	return s.Update(ctx, func(tx *Tx) error { return tx.RemoveDir(path) })
}

// ---- writes: the transaction's methods ----

// nextID hands out the next id of the shared object/directory sequence.
// The counter is read once per transaction and written back by Update.
// (Statements with RETURNING are avoided: through go-sqlite3 they cost
// time in proportion to the database's size.)
func (t *Tx) nextID() (int64, error) {
	if t.lastID == 0 {
		if err := t.queryRow(`SELECT value FROM counters WHERE name = 'id'`).Scan(&t.lastID); err != nil {
			return 0, err
		}
		t.firstID = t.lastID
	}
	t.lastID++
	return t.lastID, nil
}

// flushIDs stores the counter nextID advanced.
func (t *Tx) flushIDs() error {
	if t.lastID == t.firstID {
		return nil
	}
	_, err := t.exec(`UPDATE counters SET value = ? WHERE name = 'id'`, t.lastID)
	return err
}

// objectRow returns the id and place of the row of key.
func (t *Tx) objectRow(key string) (id int64, dir sql.NullInt64, marker, ok bool, err error) {
	err = t.queryRow(`SELECT id, dir, marker FROM objects WHERE key = ?`, key).Scan(&id, &dir, &marker)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, dir, false, false, nil
	}
	return id, dir, marker, err == nil, err
}

// dirID returns the id of the directory at path.
func (t *Tx) dirID(path string) (int64, bool, error) {
	var id int64
	err := t.queryRow(`SELECT id FROM dirs WHERE path = ?`, path).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return id, err == nil, err
}

// ensureDir returns the id of the directory at path, making it and its
// missing ancestors (implicit) if needed. A new directory shadows a file of
// the same name.
func (t *Tx) ensureDir(path string) (int64, error) {
	if path == "" {
		return rootID, nil
	}
	if id, ok, err := t.dirID(path); ok || err != nil {
		return id, err
	}
	parent, err := t.ensureDir(keypath.Parent(path))
	if err != nil {
		return 0, err
	}
	id, err := t.nextID()
	if err != nil {
		return 0, err
	}
	name := keypath.Base(path)
	if _, err := t.exec(`INSERT INTO dirs (id, path, parent, name) VALUES (?, ?, ?, ?)`,
		id, path, parent, name); err != nil {
		return 0, err
	}
	if err := t.setShadowed(parent, name, true); err != nil {
		return 0, err
	}
	return id, nil
}

// setShadowed marks the file at (dir, name), if any, hidden or not.
func (t *Tx) setShadowed(dir int64, name string, on bool) error {
	_, err := t.exec(`UPDATE objects SET shadowed = ? WHERE dir = ? AND name = ? AND marker = 0`, on, dir, name)
	return err
}

// touchDir raises the ModTime of dir and its ancestors to at least mtime.
// Ancestors are never older than their children, so it stops at the first
// directory already new enough.
func (t *Tx) touchDir(id int64, mtime int64) error {
	for id != 0 {
		var parent sql.NullInt64
		var old int64
		if err := t.queryRow(`SELECT parent, mtime FROM dirs WHERE id = ?`, id).Scan(&parent, &old); err != nil {
			return err
		}
		if old >= mtime {
			return nil
		}
		if _, err := t.exec(`UPDATE dirs SET mtime = ? WHERE id = ?`, mtime, id); err != nil {
			return err
		}
		id = parent.Int64
	}
	return nil
}

// prune removes the directory id and then its ancestors while each is
// implicit and empty. The root is never removed.
func (t *Tx) prune(id int64) error {
	for id != rootID {
		var parent int64
		var name string
		err := t.queryRow(`
			SELECT parent, name FROM dirs d WHERE id = ?1 AND explicit = 0
			AND NOT EXISTS (SELECT 1 FROM dirs WHERE parent = ?1)
			AND NOT EXISTS (SELECT 1 FROM objects WHERE dir = ?1)`, id).Scan(&parent, &name)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // kept: explicit, not empty, or already gone
		}
		if err != nil {
			return err
		}
		if err := t.deleteDir(id, parent, name); err != nil {
			return err
		}
		id = parent
	}
	return nil
}

func (t *Tx) deleteDir(id, parent int64, name string) error {
	if _, err := t.exec(`DELETE FROM dirs WHERE id = ?`, id); err != nil {
		return err
	}
	return t.setShadowed(parent, name, false)
}

// place is where a key goes in the tree, as stored in an objects row.
type place struct {
	dir      sql.NullInt64 // parent directory; NULL when unservable
	name     sql.NullString
	marker   bool
	shadowed bool
	skip     sql.NullString
	madeDir  int64 // for a marker: the directory it makes explicit
}

// placeKey makes the directories key needs and says where it goes.
func (t *Tx) placeKey(key string) (place, error) {
	var p place
	kp, err := keypath.Split(key)
	if err != nil {
		p.skip = sql.NullString{String: err.Error(), Valid: true}
		return p, nil
	}
	parent, err := t.ensureDir(kp.Dir)
	if err != nil {
		return p, err
	}
	p.dir = sql.NullInt64{Int64: parent, Valid: true}
	p.name = sql.NullString{String: kp.Name, Valid: true}
	if kp.IsDirMarker {
		p.marker = true
		if p.madeDir, err = t.ensureDir(kp.Path()); err != nil {
			return p, err
		}
		_, err = t.exec(`UPDATE dirs SET explicit = 1 WHERE id = ?`, p.madeDir)
		return p, err
	}
	_, p.shadowed, err = t.dirID(kp.Path())
	return p, err
}

// unplaceKey undoes what a key's place did to the tree other than holding
// the row (a marker's directory stops being explicit) and returns the
// directory to prune once the row is gone or moved.
func (t *Tx) unplaceKey(key string, dir sql.NullInt64, marker bool) (int64, error) {
	if !dir.Valid {
		return 0, nil
	}
	if !marker {
		return dir.Int64, nil
	}
	id, ok, err := t.dirID(strings.TrimSuffix(key, "/"))
	if !ok || err != nil {
		return dir.Int64, err
	}
	_, err = t.exec(`UPDATE dirs SET explicit = 0 WHERE id = ?`, id)
	return id, err
}

// GetObject returns the row of key as this transaction sees it.
func (t *Tx) GetObject(key string) (Object, bool, error) {
	o, err := scanObject(t.queryRow(`SELECT `+objectCols+` FROM objects WHERE key = ?`, key))
	if errors.Is(err, sql.ErrNoRows) {
		return Object{}, false, nil
	}
	if err != nil {
		return Object{}, false, fmt.Errorf("sidecar: get %q: %w", key, err)
	}
	return o, true, nil
}

// PutObject: see Sidecar.PutObject.
func (t *Tx) PutObject(o Object) (Object, error) {
	if o.Key == "" {
		return o, fmt.Errorf("sidecar: put: %w: empty key", ErrInvalid)
	}
	id, dir, marker, ok, err := t.objectRow(o.Key)
	switch {
	case err != nil:
	case !ok:
		err = t.insertObject(&o)
	default:
		o.ID = id
		_, err = t.exec(`UPDATE objects SET size = ?, mtime = ?, etag = ?, md5 = ? WHERE id = ?`,
			o.Size, nsec(o.ModTime), o.ETag, o.MD5, id)
		if err == nil && dir.Valid && !marker {
			err = t.touchDir(dir.Int64, nsec(o.ModTime))
		}
	}
	if err != nil {
		return o, fmt.Errorf("sidecar: put %q: %w", o.Key, err)
	}
	return o, nil
}

func (t *Tx) insertObject(o *Object) error {
	p, err := t.placeKey(o.Key)
	if err != nil {
		return err
	}
	if o.ID, err = t.nextID(); err != nil {
		return err
	}
	_, err = t.exec(`
		INSERT INTO objects (id, key, size, mtime, etag, md5, dir, name, marker, shadowed, skip_reason)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		o.ID, o.Key, o.Size, nsec(o.ModTime), o.ETag, o.MD5, p.dir, p.name, p.marker, p.shadowed, p.skip)
	if err != nil || !p.dir.Valid {
		return err
	}
	if p.marker {
		return t.touchDir(p.madeDir, nsec(o.ModTime))
	}
	return t.touchDir(p.dir.Int64, nsec(o.ModTime))
}

// DeleteObject: see Sidecar.DeleteObject.
func (t *Tx) DeleteObject(key string) error {
	id, dir, marker, ok, err := t.objectRow(key)
	if err == nil && !ok {
		return fmt.Errorf("sidecar: delete %q: %w", key, ErrNotFound)
	}
	if err == nil {
		err = t.ftsDelete(id)
	}
	if err == nil {
		_, err = t.exec(`DELETE FROM objects WHERE id = ?`, id)
	}
	if err == nil {
		var d int64
		if d, err = t.unplaceKey(key, dir, marker); err == nil && d != 0 {
			err = t.prune(d)
		}
	}
	if err != nil {
		return fmt.Errorf("sidecar: delete %q: %w", key, err)
	}
	return nil
}

// RenameObject: see Sidecar.RenameObject.
func (t *Tx) RenameObject(oldKey, newKey string) error {
	if err := t.renameObject(oldKey, newKey); err != nil {
		return fmt.Errorf("sidecar: rename %q to %q: %w", oldKey, newKey, err)
	}
	return nil
}

func (t *Tx) renameObject(oldKey, newKey string) error {
	if newKey == "" {
		return ErrInvalid
	}
	if oldKey == newKey {
		return nil
	}
	id, dir, marker, ok, err := t.objectRow(oldKey)
	if err != nil {
		return err
	}
	if !ok {
		return ErrNotFound
	}
	// Directories are pruned only at the end: pruning first could remove
	// the new key's parent and make it again under a new id.
	var prune []int64
	d, err := t.unplaceKey(oldKey, dir, marker)
	if err != nil {
		return err
	}
	prune = append(prune, d)
	tid, tdir, tmarker, ok, err := t.objectRow(newKey)
	if err != nil {
		return err
	}
	if ok {
		if err := t.ftsDelete(tid); err != nil {
			return err
		}
		if _, err := t.exec(`DELETE FROM objects WHERE id = ?`, tid); err != nil {
			return err
		}
		if d, err = t.unplaceKey(newKey, tdir, tmarker); err != nil {
			return err
		}
		prune = append(prune, d)
	}
	p, err := t.placeKey(newKey)
	if err != nil {
		return err
	}
	if _, err := t.exec(`
		UPDATE objects SET key = ?, dir = ?, name = ?, marker = ?, shadowed = ?, skip_reason = ?
		WHERE id = ?`, newKey, p.dir, p.name, p.marker, p.shadowed, p.skip, id); err != nil {
		return err
	}
	if p.dir.Valid && !p.marker {
		var mtime int64
		if err := t.queryRow(`SELECT mtime FROM objects WHERE id = ?`, id).Scan(&mtime); err != nil {
			return err
		}
		if err := t.touchDir(p.dir.Int64, mtime); err != nil {
			return err
		}
	}
	if err := t.ftsRefresh(`t.object = ?`, id); err != nil {
		return err
	}
	for _, d := range prune {
		if d != 0 {
			if err := t.prune(d); err != nil {
				return err
			}
		}
	}
	return nil
}

// validDirPath checks that path names a directory that can exist in the tree.
func validDirPath(path string) error {
	if path == "" {
		return nil
	}
	kp, err := keypath.Split(path)
	if err != nil || kp.IsDirMarker {
		return fmt.Errorf("%w: directory path %q", ErrInvalid, path)
	}
	return nil
}

// MakeDir: see Sidecar.MakeDir. ErrExists if something is already there.
func (t *Tx) MakeDir(path string) (Entry, error) {
	if err := validDirPath(path); err != nil || path == "" {
		return Entry{}, fmt.Errorf("sidecar: mkdir %q: %w", path, ErrInvalid)
	}
	var exists bool
	err := t.queryRow(`SELECT EXISTS (SELECT 1 FROM dirs WHERE path = ?1)
		OR EXISTS (SELECT 1 FROM objects WHERE key = ?1 AND dir IS NOT NULL)`, path).Scan(&exists)
	if err == nil && exists {
		err = ErrExists
	}
	var id int64
	now := nsec(t.now())
	if err == nil {
		id, err = t.ensureDir(path)
	}
	if err == nil {
		_, err = t.exec(`UPDATE dirs SET explicit = 1 WHERE id = ?`, id)
	}
	if err == nil {
		err = t.touchDir(id, now)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("sidecar: mkdir %q: %w", path, err)
	}
	return Entry{Name: keypath.Base(path), IsDir: true, ID: id, ModTime: fromNsec(now)}, nil
}

// RemoveDir: see Sidecar.RemoveDir. ErrNotEmpty if anything is below path.
func (t *Tx) RemoveDir(path string) error {
	if err := t.removeDir(path, true); err != nil {
		return fmt.Errorf("sidecar: rmdir %q: %w", path, err)
	}
	return nil
}

// removeDir removes the empty directory at path and its marker row, and
// prunes its parent if asked.
func (t *Tx) removeDir(path string, prune bool) error {
	if path == "" {
		return ErrInvalid
	}
	var id, parent int64
	var empty bool
	err := t.queryRow(`
		SELECT id, parent, NOT EXISTS (SELECT 1 FROM dirs WHERE parent = d.id)
			AND NOT EXISTS (SELECT 1 FROM objects WHERE dir = d.id)
		FROM dirs d WHERE path = ?`, path).Scan(&id, &parent, &empty)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	if !empty {
		return ErrNotEmpty
	}
	if _, err := t.exec(`DELETE FROM objects WHERE key = ?`, keypath.DirMarkerKey(path)); err != nil {
		return err
	}
	if err := t.deleteDir(id, parent, keypath.Base(path)); err != nil || !prune {
		return err
	}
	return t.prune(parent)
}

// RenamePrefix: see Sidecar.RenamePrefix. Every key below oldPath is
// rewritten, unservable ones too, as the store's copy moves them all. An
// empty directory at newPath is replaced; ErrNotEmpty if it has anything in
// it, ErrExists if a file is there.
func (t *Tx) RenamePrefix(oldPath, newPath string) error {
	if err := t.renamePrefix(oldPath, newPath); err != nil {
		return fmt.Errorf("sidecar: rename dir %q to %q: %w", oldPath, newPath, err)
	}
	return nil
}

func (t *Tx) renamePrefix(oldPath, newPath string) error {
	if oldPath == "" || newPath == "" || validDirPath(oldPath) != nil || validDirPath(newPath) != nil ||
		strings.HasPrefix(newPath+"/", oldPath+"/") {
		return ErrInvalid // includes moving a directory into itself
	}
	var id, oldParent, mtime int64
	err := t.queryRow(`SELECT id, parent, mtime FROM dirs WHERE path = ?`, oldPath).Scan(&id, &oldParent, &mtime)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	// Not pruned: that could remove newPath's parent, to be made again
	// under a new id.
	if err := t.removeDir(newPath, false); errors.Is(err, ErrNotFound) {
		var file bool
		if err := t.queryRow(`SELECT EXISTS (SELECT 1 FROM objects WHERE key = ? AND dir IS NOT NULL)`,
			newPath).Scan(&file); err != nil {
			return err
		}
		if file {
			return ErrExists
		}
	} else if err != nil {
		return err
	}
	newParent, err := t.ensureDir(keypath.Parent(newPath))
	if err != nil {
		return err
	}
	newName := keypath.Base(newPath)

	// Rewrite paths and keys below; prefixes are valid UTF-8, so substr's
	// character count is the prefix's rune count.
	oldPrefix, newPrefix := keypath.DirPrefix(oldPath), keypath.DirPrefix(newPath)
	lo, hi := prefixRange(oldPrefix)
	skip := utf8.RuneCountInString(oldPrefix) + 1
	for _, q := range []string{
		`UPDATE dirs SET path = ?1 || substr(path, ?2) WHERE path >= ?3 AND path < ?4`,
		`UPDATE objects SET key = ?1 || substr(key, ?2) WHERE key >= ?3 AND key < ?4`,
		`UPDATE tapes SET comp_key = ?1 || substr(comp_key, ?2) WHERE comp_key >= ?3 AND comp_key < ?4`,
	} {
		if _, err := t.exec(q, newPrefix, skip, lo, hi); err != nil {
			return err
		}
	}
	// The keys of the tapes below changed: so did their full-text rows.
	nlo, nhi := prefixRange(newPrefix)
	if err := t.ftsRefresh(`o.key >= ? AND o.key < ?`, nlo, nhi); err != nil {
		return err
	}
	if _, err := t.exec(`UPDATE dirs SET path = ?, parent = ?, name = ? WHERE id = ?`,
		newPath, newParent, newName, id); err != nil {
		return err
	}
	// The directory's own marker, if any, is placed in its parent.
	if _, err := t.exec(`UPDATE objects SET dir = ?, name = ? WHERE key = ? AND marker = 1`,
		newParent, newName, newPrefix); err != nil {
		return err
	}
	if err := t.setShadowed(oldParent, keypath.Base(oldPath), false); err != nil {
		return err
	}
	if err := t.setShadowed(newParent, newName, true); err != nil {
		return err
	}
	if err := t.touchDir(newParent, mtime); err != nil {
		return err
	}
	return t.prune(oldParent)
}
