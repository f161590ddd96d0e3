// Package meta is the SQLite sidecar: the local copy of what the store holds
// (objects, the directory tree they make, and the tape index) that lookups,
// listings and queries read instead of the remote store.
//
// One file, WAL mode. Writes go through a single connection (database/sql
// pool of one, BEGIN IMMEDIATE), so writers in this process queue in Go and
// never meet SQLite's lock; reads use their own pool and, thanks to WAL, never
// wait for a writer. A CLI process may open the same file with OpenReadOnly
// while a daemon writes to it; the busy timeout covers the rare moments
// SQLite itself must wait (checkpoints, recovery).
package meta

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/mattn/go-sqlite3"
)

// Sentinel errors, for errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrNotEmpty = errors.New("directory not empty")
	ErrExists   = errors.New("already exists")
	ErrInvalid  = errors.New("invalid argument")
	ErrCorrupt  = errors.New("sidecar database is corrupt")
	ErrReadOnly = errors.New("sidecar opened read-only")
	// ErrOldSchema: OpenReadOnly met a sidecar that a read-write Open must
	// migrate first.
	ErrOldSchema = errors.New("sidecar schema is older than this program's")
	// ErrFull: a write found the sidecar's disk full.
	ErrFull = errors.New("the sidecar's disk is full")
)

// readDriver is go-sqlite3 with the tuning of the read connections: a query
// over a large sidecar touches many pages, and reading them through a memory
// map of the file saves a system call and a copy for each (on 100,000 tapes,
// a listing of every tape took 1.5 s instead of 2.5 s). A new process pays
// a page fault for each part of the file it first touches instead: cheap on
// a host, up to ~15 ms more for a one-shot query in a Firecracker VM.
const readDriver = "sqlite3_tapefs_read"

// queryDriver is go-sqlite3 for a one-shot query (OpenReadOnly, the CLI).
// A new process pays a page fault for every page of memory it first
// touches, about 30 µs each in a Firecracker VM: more than a pread of a
// page of the file. A memory map of the file faults on every page a query
// reads, and so does SQLite's page cache while it grows to its default
// 2 MiB. A small page cache instead recycles the same few buffers. A query
// that reads thousands of tapes maps the file after all (see mapForBulk).
const queryDriver = "sqlite3_tapefs_query"

// queryCacheKiB is the page cache of a one-shot query connection.
const queryCacheKiB = 256

// mmapSize is the memory map of the sidecar file for the daemon's read
// connections and for a bulk one-shot query.
const mmapSize = 1 << 30

func init() {
	sql.Register(readDriver, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		_, err := c.Exec(fmt.Sprintf(`PRAGMA mmap_size = %d`, mmapSize), nil)
		return err
	}})
	sql.Register(queryDriver, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		_, err := c.Exec(fmt.Sprintf(`PRAGMA cache_size = -%d`, queryCacheKiB), nil)
		return err
	}})
}

// busyTimeout bounds how long SQLite waits for another process's lock
// before giving up; long enough that callers never see "database is locked".
const busyTimeout = 10 * time.Second

// Sidecar is an open sidecar database. It is safe for concurrent use.
type Sidecar struct {
	path  string
	read  *sql.DB // pool of query-only connections
	write *sql.DB // one connection; nil when opened read-only
	now   func() time.Time
	fts   bool // this build's SQLite has FTS5 (see fts.go)
	// oneShot: opened by OpenReadOnly, whose connections have a small page
	// cache and no memory map (see queryDriver).
	oneShot bool
}

// Open opens (creating if needed) the sidecar at path and brings its schema
// up to date. A file that is not a healthy SQLite database yields an error
// wrapping ErrCorrupt; the caller can MoveAside it and start afresh.
func Open(path string) (*Sidecar, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sidecar: %w", err)
	}
	// Create the file ourselves so it is 0600; SQLite gives the -wal and
	// -shm files the same mode as the database file.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sidecar: %w", err)
	}
	f.Close()

	s := &Sidecar{path: path, now: time.Now}
	s.write, err = sql.Open("sqlite3", dsn(path, "_txlock=immediate", "_journal_mode=WAL",
		"_synchronous=NORMAL", "_foreign_keys=1"))
	if err != nil {
		return nil, fmt.Errorf("sidecar %s: %w", path, err)
	}
	s.write.SetMaxOpenConns(1)
	s.write.SetMaxIdleConns(1)
	s.write.SetConnMaxLifetime(0)
	s.write.SetConnMaxIdleTime(0)

	ctx := context.Background()
	if err := s.check(ctx); err != nil {
		s.write.Close()
		return nil, err
	}
	if s.fts, err = hasFTS5(); err != nil {
		s.write.Close()
		return nil, fmt.Errorf("sidecar %s: %w", path, err)
	}
	if err := s.migrate(ctx); err != nil {
		s.write.Close()
		return nil, corruptErr(path, err)
	}
	s.read, err = sql.Open(readDriver, dsn(path, "_query_only=1"))
	if err != nil {
		s.write.Close()
		return nil, fmt.Errorf("sidecar %s: %w", path, err)
	}
	s.sizeReadPool()
	return s, nil
}

// OpenReadOnly opens an existing sidecar for queries only, e.g. for a CLI
// command while a daemon has it open for writing. Write methods return
// ErrReadOnly.
func OpenReadOnly(path string) (*Sidecar, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("sidecar: %w", err)
	}
	s := &Sidecar{path: path, now: time.Now, oneShot: true}
	var err error
	s.read, err = sql.Open(queryDriver, dsn(path, "mode=ro", "_query_only=1"))
	if err != nil {
		return nil, fmt.Errorf("sidecar %s: %w", path, err)
	}
	s.sizeReadPool()
	var v int
	if err := s.read.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		s.read.Close()
		return nil, corruptErr(path, err)
	}
	if v < schemaVersion {
		s.read.Close()
		return nil, fmt.Errorf("sidecar %s: %w: version %d, want %d (open it read-write once to migrate)",
			path, ErrOldSchema, v, schemaVersion)
	}
	if v > schemaVersion {
		s.read.Close()
		return nil, fmt.Errorf("sidecar %s: schema version %d is newer than this program's (%d)", path, v, schemaVersion)
	}
	if s.fts, err = hasFTS5(); err != nil {
		s.read.Close()
		return nil, fmt.Errorf("sidecar %s: %w", path, err)
	}
	return s, nil
}

// dsn builds a go-sqlite3 URI for path. The path is escaped so that '?',
// '#' and '%' in a directory name survive.
func dsn(path string, params ...string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	q := fmt.Sprintf("_busy_timeout=%d&_stmt_cache_size=64", busyTimeout.Milliseconds())
	for _, p := range params {
		q += "&" + p
	}
	return "file:" + (&url.URL{Path: abs}).EscapedPath() + "?" + q
}

// sizeReadPool keeps enough idle read connections that the FUSE threads do
// not reopen the database (and lose their statement caches) under load.
func (s *Sidecar) sizeReadPool() {
	n := max(4, 2*runtime.GOMAXPROCS(0))
	s.read.SetMaxOpenConns(n)
	s.read.SetMaxIdleConns(n)
	s.read.SetConnMaxLifetime(0)
	s.read.SetConnMaxIdleTime(0)
}

// check runs SQLite's integrity check. Not the quick check: a damaged
// index page can keep a well-formed b-tree (so quick_check passes) and
// still miss rows, which would make files vanish from listings or fail them
// with EIO for as long as the sidecar lives. The full check costs about
// three times as much (0.3 s instead of 0.1 s on 100,000 objects), once per
// mount.
func (s *Sidecar) check(ctx context.Context) error {
	rows, err := s.write.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return corruptErr(s.path, err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return corruptErr(s.path, err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return corruptErr(s.path, err)
	}
	if len(problems) > 0 {
		if len(problems) > 3 {
			problems = append(problems[:3], "...")
		}
		return fmt.Errorf("sidecar %s: %w: %q", s.path, ErrCorrupt, problems)
	}
	return nil
}

// corruptErr wraps err with ErrCorrupt when SQLite says the file is damaged
// or not a database at all.
func corruptErr(path string, err error) error {
	var se sqlite3.Error
	if errors.As(err, &se) && (se.Code == sqlite3.ErrCorrupt || se.Code == sqlite3.ErrNotADB) {
		return fmt.Errorf("sidecar %s: %w: %v", path, ErrCorrupt, err)
	}
	return fmt.Errorf("sidecar %s: %w", path, err)
}

// Path returns the database file's path.
func (s *Sidecar) Path() string { return s.path }

// Close checkpoints the WAL and closes the database.
func (s *Sidecar) Close() error {
	var errs []error
	if s.write != nil {
		ctx := context.Background()
		s.write.ExecContext(ctx, "PRAGMA optimize")
		s.write.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
		errs = append(errs, s.write.Close())
	}
	errs = append(errs, s.read.Close())
	return errors.Join(errs...)
}

// MoveAside renames a (corrupt) sidecar and its -wal and -shm files to
// path.corrupt-<timestamp>, so a fresh one can be built in its place, and
// returns the new name of the database file.
func MoveAside(path string) (string, error) {
	to := path + ".corrupt-" + time.Now().UTC().Format("20060102T150405.000Z")
	if err := os.Rename(path, to); err != nil {
		return "", err
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Rename(path+suffix, to+suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return to, err
		}
	}
	return to, nil
}

// Update runs fn in one write transaction: everything fn does is applied
// together or not at all. Writes from all goroutines are serialized.
func (s *Sidecar) Update(ctx context.Context, fn func(*Tx) error) error {
	if s.write == nil {
		return ErrReadOnly
	}
	sqlTx, err := s.write.BeginTx(ctx, nil) // BEGIN IMMEDIATE (_txlock)
	if err != nil {
		return s.fullErr(fmt.Errorf("sidecar: begin: %w", err))
	}
	tx := &Tx{ctx: ctx, tx: sqlTx, now: s.now, fts: s.fts}
	err = fn(tx)
	if err == nil {
		err = tx.flushIDs()
	}
	if err == nil && !s.fts {
		err = tx.markFTSStale()
	}
	if err != nil {
		sqlTx.Rollback()
		return s.fullErr(err)
	}
	if err := sqlTx.Commit(); err != nil {
		return s.fullErr(fmt.Errorf("sidecar: commit: %w", err))
	}
	return nil
}

// fullErr adds ErrFull and the sidecar's path to an error that SQLite gave
// because the disk is full, so that callers can say where space is lacking.
func (s *Sidecar) fullErr(err error) error {
	var se sqlite3.Error
	if errors.As(err, &se) && se.Code == sqlite3.ErrFull || errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("sidecar %s: %w: %w", s.path, ErrFull, err)
	}
	return err
}

// Tx is a write transaction, handed to the function given to Update. Its
// methods are the Sidecar's write methods; it must not be used after that
// function returns.
type Tx struct {
	ctx context.Context
	tx  *sql.Tx
	now func() time.Time
	fts bool // keep the full-text index in step

	firstID, lastID int64 // the id counter as read, and as advanced
}

func (t *Tx) exec(query string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(t.ctx, query, args...)
}

func (t *Tx) queryRow(query string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(t.ctx, query, args...)
}

// nsec and fromNsec store times as Unix nanoseconds; the zero time is 0.
func nsec(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNsec(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
