// Package sqlitestore is tapefs's sqlite:// store: every tape is a blob in
// one SQLite file, as a gocloud blob driver.
//
// An object is a row of the objects table (its attributes) pointing at an
// upload (a row of blobs) whose content is kept in chunks of ChunkSize
// bytes, so that a range read fetches only the chunks it covers and never
// the whole object. A writer stores its chunks under a fresh upload id as
// it goes, each chunk in its own short transaction, and makes the object
// visible only in Close, in one transaction that points the key at the new
// upload (and drops the old one); a writer whose context is canceled, or
// whose Close fails, leaves nothing visible and deletes its chunks. Upload
// ids are never reused (AUTOINCREMENT), so a reader that finds a chunk
// missing knows the object was replaced or deleted under it and fails
// instead of mixing two versions. Chunks of uploads that a crashed process
// left behind are removed when the store is next opened, once they have
// not been touched for an hour.
//
// The database runs in WAL mode with a busy timeout; writes go through one
// connection, so they are serialized, and reads use their own pool.
package sqlitestore

import (
	"context"
	"crypto/md5"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/gcerrors"
)

// Scheme is the URL scheme of the store.
const Scheme = "sqlite"

// ChunkSize is the size of the chunks an object's content is stored in.
const ChunkSize = 1 << 20

// staleUpload is how long an unreferenced upload must have been idle before
// Open removes it as abandoned.
const staleUpload = time.Hour

const defaultPageSize = 1000

var (
	errNotFound = errors.New("sqlitestore: object not found")
	errExists   = errors.New("sqlitestore: object exists")
	errChanged  = errors.New("sqlitestore: object replaced or deleted during the read")
	errUnsigned = errors.New("sqlitestore: signed URLs are not supported")
	errEmptyKey = errors.New("sqlitestore: empty key")
)

const schema = `
CREATE TABLE IF NOT EXISTS blobs (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	chunk_size INTEGER NOT NULL,
	touched INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
	blob INTEGER NOT NULL,
	n INTEGER NOT NULL,
	data BLOB NOT NULL,
	PRIMARY KEY (blob, n)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS objects (
	key TEXT PRIMARY KEY,
	blob INTEGER NOT NULL UNIQUE,
	size INTEGER NOT NULL,
	md5 BLOB,
	mod_time INTEGER NOT NULL,
	create_time INTEGER NOT NULL,
	content_type TEXT NOT NULL,
	cache_control TEXT NOT NULL,
	content_disposition TEXT NOT NULL,
	content_encoding TEXT NOT NULL,
	content_language TEXT NOT NULL,
	metadata TEXT NOT NULL
);
`

// URLOpener opens sqlite://PATH URLs. PATH is absolute (sqlite:///srv/tapes.db),
// relative to the working directory (sqlite://tapes.db, sqlite://./dir/tapes.db)
// or under the home directory (sqlite://~/tapes.db). Missing parent
// directories are created 0700 and a new file 0600. No query parameters.
type URLOpener struct{}

// OpenBucketURL implements blob.BucketURLOpener.
func (URLOpener) OpenBucketURL(ctx context.Context, u *url.URL) (*blob.Bucket, error) {
	if u.RawQuery != "" {
		return nil, fmt.Errorf("open bucket %s: sqlite:// takes no query parameters", u.Redacted())
	}
	p, err := PathOf(u)
	if err != nil {
		return nil, err
	}
	drv, err := Open(ctx, p)
	if err != nil {
		return nil, err
	}
	return blob.NewBucket(drv), nil
}

// PathOf is the file a sqlite:// URL names, absolute.
func PathOf(u *url.URL) (string, error) {
	p := u.Opaque
	if p == "" {
		p = u.Host + u.Path
	}
	if p == "" {
		return "", fmt.Errorf("sqlite:// URL %q names no file (e.g. sqlite:///srv/tapes.db)", u.Redacted())
	}
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("sqlite:// URL %q: cannot expand ~: %w", u.Redacted(), err)
		}
		p = filepath.Join(home, p[1:])
	}
	p, err := filepath.Abs(filepath.FromSlash(p))
	if err != nil {
		return "", err
	}
	if strings.HasSuffix(u.Path, "/") {
		return "", fmt.Errorf("sqlite:// URL %q names a directory, not a file", u.Redacted())
	}
	return p, nil
}

// Bucket is the driver over one SQLite file.
type Bucket struct {
	path string
	w    *sql.DB // one connection: writes are serialized
	r    *sql.DB
}

var _ driver.Bucket = (*Bucket)(nil)

// Open opens (creating if needed) the store in the SQLite file at path.
func Open(ctx context.Context, path string) (*Bucket, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	f.Close()
	dsn := func(extra string) string {
		u := url.URL{Scheme: "file", Opaque: (&url.URL{Path: path}).EscapedPath()}
		return u.String() + "?_busy_timeout=10000" + extra
	}
	w, err := sql.Open("sqlite3", dsn("&_journal_mode=WAL&_synchronous=NORMAL&_txlock=immediate"))
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	r, err := sql.Open("sqlite3", dsn("&mode=ro"))
	if err != nil {
		w.Close()
		return nil, err
	}
	b := &Bucket{path: path, w: w, r: r}
	if err := b.init(ctx); err != nil {
		b.Close()
		return nil, fmt.Errorf("sqlitestore: %s: %w", path, err)
	}
	return b, nil
}

func (b *Bucket) init(ctx context.Context) error {
	if _, err := b.w.ExecContext(ctx, schema); err != nil {
		return err
	}
	return b.sweep(ctx, time.Now().Add(-staleUpload))
}

// sweep removes uploads no object points at that were last touched before
// cutoff.
func (b *Bucket) sweep(ctx context.Context, cutoff time.Time) error {
	tx, err := b.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	const orphans = `SELECT id FROM blobs WHERE touched < ? AND id NOT IN (SELECT blob FROM objects)`
	if _, err := tx.ExecContext(ctx, `DELETE FROM chunks WHERE blob IN (`+orphans+`)`, cutoff.UnixNano()); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM blobs WHERE id IN (`+orphans+`)`, cutoff.UnixNano()); err != nil {
		return err
	}
	return tx.Commit()
}

// Close closes the database.
func (b *Bucket) Close() error {
	return errors.Join(b.r.Close(), b.w.Close())
}

// ErrorCode implements driver.Bucket.
func (b *Bucket) ErrorCode(err error) gcerrors.ErrorCode {
	var se sqlite3.Error
	switch {
	case errors.Is(err, errNotFound), errors.Is(err, errChanged):
		return gcerrors.NotFound
	case errors.Is(err, errExists):
		return gcerrors.FailedPrecondition
	case errors.Is(err, errUnsigned):
		return gcerrors.Unimplemented
	case errors.Is(err, errEmptyKey):
		return gcerrors.InvalidArgument
	case errors.Is(err, context.Canceled):
		return gcerrors.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return gcerrors.DeadlineExceeded
	case errors.As(err, &se) && (se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked):
		return gcerrors.ResourceExhausted
	}
	return gcerrors.Unknown
}

// As exposes the write *sql.DB (**sql.DB).
func (b *Bucket) As(i any) bool {
	p, ok := i.(**sql.DB)
	if ok {
		*p = b.w
	}
	return ok
}

// ErrorAs exposes sqlite3.Error.
func (b *Bucket) ErrorAs(err error, i any) bool {
	p, ok := i.(*sqlite3.Error)
	if !ok {
		return false
	}
	return errors.As(err, p)
}

type row struct {
	blob  int64
	attrs driver.Attributes
}

const attrCols = `blob, size, md5, mod_time, create_time, content_type, cache_control, content_disposition, content_encoding, content_language, metadata`

func (b *Bucket) get(ctx context.Context, key string) (*row, error) {
	var r row
	var mod, created int64
	var md string
	a := &r.attrs
	err := b.r.QueryRowContext(ctx, `SELECT `+attrCols+` FROM objects WHERE key = ?`, key).Scan(
		&r.blob, &a.Size, &a.MD5, &mod, &created, &a.ContentType, &a.CacheControl,
		&a.ContentDisposition, &a.ContentEncoding, &a.ContentLanguage, &md)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	a.ModTime = time.Unix(0, mod)
	a.CreateTime = time.Unix(0, created)
	a.ETag = etag(r.blob, a.Size)
	if err := json.Unmarshal([]byte(md), &a.Metadata); err != nil {
		return nil, fmt.Errorf("sqlitestore: metadata of %q: %w", key, err)
	}
	if len(a.Metadata) == 0 {
		a.Metadata = nil
	}
	return &r, nil
}

// etag names one upload: upload ids are never reused.
func etag(id, size int64) string { return fmt.Sprintf("\"%x-%x\"", id, size) }

// Attributes implements driver.Bucket.
func (b *Bucket) Attributes(ctx context.Context, key string) (*driver.Attributes, error) {
	r, err := b.get(ctx, key)
	if err != nil {
		return nil, err
	}
	return &r.attrs, nil
}

// successor is the least string greater than every string with prefix p
// ("" when there is none).
func successor(p string) string {
	s := []byte(p)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] < 0xff {
			s[i]++
			return string(s[:i+1])
		}
	}
	return ""
}

// ListPaged implements driver.Bucket. Keys sort by their bytes; a
// "directory" is skipped over in one query rather than row by row.
func (b *Bucket) ListPaged(ctx context.Context, opts *driver.ListOptions) (*driver.ListPage, error) {
	if opts.BeforeList != nil {
		if err := opts.BeforeList(func(any) bool { return false }); err != nil {
			return nil, err
		}
	}
	pageSize := opts.PageSize
	if pageSize <= 0 {
		pageSize = defaultPageSize
	}
	token := string(opts.PageToken)
	end := successor(opts.Prefix) // "" = no upper bound
	// from is where the scan starts; incl says whether from itself counts.
	from, incl := opts.Prefix, true
	if token != "" {
		from, incl = token, false
		if opts.Delimiter != "" && strings.HasSuffix(token, opts.Delimiter) && len(token) > len(opts.Prefix) {
			// The last page ended with a directory: skip all of it.
			if from = successor(token); from == "" {
				return &driver.ListPage{}, nil
			}
			incl = true
		}
	}
	page := &driver.ListPage{}
	for {
		q := `SELECT key, size, md5, mod_time FROM objects WHERE key > ?`
		if incl {
			q = `SELECT key, size, md5, mod_time FROM objects WHERE key >= ?`
		}
		args := []any{from}
		if end != "" {
			q += ` AND key < ?`
			args = append(args, end)
		}
		q += ` ORDER BY key LIMIT ?`
		args = append(args, pageSize+1-len(page.Objects))
		rows, err := b.r.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, err
		}
		n, skipTo := 0, ""
		for rows.Next() {
			n++
			var o driver.ListObject
			var mod int64
			if err := rows.Scan(&o.Key, &o.Size, &o.MD5, &mod); err != nil {
				rows.Close()
				return nil, err
			}
			o.ModTime = time.Unix(0, mod)
			from, incl = o.Key, false
			if opts.Delimiter != "" {
				if i := strings.Index(o.Key[len(opts.Prefix):], opts.Delimiter); i >= 0 {
					dir := o.Key[:len(opts.Prefix)+i+len(opts.Delimiter)]
					o = driver.ListObject{Key: dir, IsDir: true}
					skipTo = successor(dir)
				}
			}
			if token != "" && o.Key <= token {
				if skipTo != "" {
					break
				}
				continue
			}
			if len(page.Objects) == pageSize {
				rows.Close()
				page.NextPageToken = []byte(page.Objects[pageSize-1].Key)
				return page, nil
			}
			page.Objects = append(page.Objects, &o)
			if skipTo != "" {
				break
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, err
		}
		switch {
		case skipTo != "":
			// Continue after the directory.
			from, incl = skipTo, true
			if end != "" && skipTo >= end {
				return page, nil
			}
		case n == 0:
			return page, nil
		}
		if skipTo == "" && n < pageSize+1 {
			// The query returned fewer rows than asked: nothing is left.
			return page, nil
		}
	}
}

// NewRangeReader implements driver.Bucket: it reads the chunks the range
// covers, one at a time, as they are consumed.
func (b *Bucket) NewRangeReader(ctx context.Context, key string, offset, length int64, opts *driver.ReaderOptions) (driver.Reader, error) {
	r, err := b.get(ctx, key)
	if err != nil {
		return nil, err
	}
	if opts.BeforeRead != nil {
		if err := opts.BeforeRead(func(any) bool { return false }); err != nil {
			return nil, err
		}
	}
	var cs int64 = ChunkSize
	if err := b.r.QueryRowContext(ctx, `SELECT chunk_size FROM blobs WHERE id = ?`, r.blob).Scan(&cs); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errChanged
		}
		return nil, err
	}
	end := r.attrs.Size
	if length >= 0 && offset+length < end {
		end = offset + length
	}
	if offset > end {
		offset = end
	}
	return &reader{ctx: ctx, b: b, blob: r.blob, cs: cs, pos: offset, end: end,
		attrs: driver.ReaderAttributes{ContentType: r.attrs.ContentType, ModTime: r.attrs.ModTime, Size: r.attrs.Size}}, nil
}

type reader struct {
	ctx      context.Context
	b        *Bucket
	blob, cs int64
	pos, end int64
	chunk    []byte // the chunk holding pos, from chunkOff
	chunkOff int64
	attrs    driver.ReaderAttributes
}

func (r *reader) Read(p []byte) (int, error) {
	if r.pos >= r.end {
		return 0, io.EOF
	}
	if r.chunk == nil || r.pos < r.chunkOff || r.pos >= r.chunkOff+int64(len(r.chunk)) {
		n := r.pos / r.cs
		var data []byte
		err := r.b.r.QueryRowContext(r.ctx, `SELECT data FROM chunks WHERE blob = ? AND n = ?`, r.blob, n).Scan(&data)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, errChanged
		}
		if err != nil {
			return 0, err
		}
		if len(data) == 0 {
			return 0, errChanged
		}
		r.chunk, r.chunkOff = data, n*r.cs
	}
	c := r.chunk[r.pos-r.chunkOff:]
	if rest := r.end - r.pos; int64(len(c)) > rest {
		c = c[:rest]
	}
	n := copy(p, c)
	r.pos += int64(n)
	return n, nil
}

func (r *reader) Close() error                         { r.chunk = nil; return nil }
func (r *reader) Attributes() *driver.ReaderAttributes { return &r.attrs }
func (r *reader) As(i any) bool                        { return false }

// NewTypedWriter implements driver.Bucket.
func (b *Bucket) NewTypedWriter(ctx context.Context, key, contentType string, opts *driver.WriterOptions) (driver.Writer, error) {
	if key == "" {
		return nil, errEmptyKey
	}
	if opts.BeforeWrite != nil {
		if err := opts.BeforeWrite(func(any) bool { return false }); err != nil {
			return nil, err
		}
	}
	md, err := json.Marshal(opts.Metadata)
	if err != nil {
		return nil, err
	}
	return &writer{ctx: ctx, b: b, key: key, contentType: contentType, opts: opts, metadata: string(md), md5: md5.New()}, nil
}

type writer struct {
	ctx         context.Context
	b           *Bucket
	key         string
	contentType string
	opts        *driver.WriterOptions
	metadata    string
	md5         hash.Hash
	buf         []byte
	size        int64
	blob        int64 // 0 until the first chunk is stored
	chunks      int64
	err         error
}

func (w *writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	w.md5.Write(p)
	n := len(p)
	for len(p) > 0 {
		if w.buf == nil {
			w.buf = make([]byte, 0, ChunkSize)
		}
		k := min(len(p), ChunkSize-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == ChunkSize {
			if err := w.flush(); err != nil {
				w.err = err
				w.abort()
				return 0, err
			}
		}
	}
	w.size += int64(n)
	return n, nil
}

// newBlob gives the writer the row of its upload, whose chunks it writes.
func (w *writer) newBlob(tx *sql.Tx, now int64) error {
	res, err := tx.ExecContext(w.ctx, `INSERT INTO blobs (chunk_size, touched) VALUES (?, ?)`, ChunkSize, now)
	if err != nil {
		return err
	}
	w.blob, err = res.LastInsertId()
	return err
}

// flush stores the buffered chunk under the writer's upload.
func (w *writer) flush() error {
	tx, _, err := w.chunkTx()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := tx.Commit(); err != nil {
		return err
	}
	w.chunks++
	w.buf = w.buf[:0]
	return nil
}

// chunkTx begins the transaction that stores the buffered chunk, if any,
// under the writer's upload: it makes the upload's blob row the first time
// and marks it touched after. now is the transaction's time.
func (w *writer) chunkTx() (tx *sql.Tx, now int64, err error) {
	if err := w.ctx.Err(); err != nil {
		return nil, 0, err
	}
	if tx, err = w.b.w.BeginTx(w.ctx, nil); err != nil {
		return nil, 0, err
	}
	now = time.Now().UnixNano()
	if w.blob == 0 {
		err = w.newBlob(tx, now)
	} else {
		_, err = tx.ExecContext(w.ctx, `UPDATE blobs SET touched = ? WHERE id = ?`, now, w.blob)
	}
	if err == nil && len(w.buf) > 0 {
		_, err = tx.ExecContext(w.ctx, `INSERT INTO chunks (blob, n, data) VALUES (?, ?, ?)`, w.blob, w.chunks, w.buf)
	}
	if err != nil {
		tx.Rollback()
		return nil, 0, err
	}
	return tx, now, nil
}

// abort deletes the chunks stored so far (nothing points at them).
func (w *writer) abort() {
	if w.blob == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), 30*time.Second)
	defer cancel()
	tx, err := w.b.w.BeginTx(ctx, nil)
	if err != nil {
		return // left for the sweep at the next Open
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM chunks WHERE blob = ?`, w.blob); err != nil {
		return
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM blobs WHERE id = ?`, w.blob); err != nil {
		return
	}
	tx.Commit()
	w.blob = 0
}

// Close commits the object unless the context was canceled or a write
// failed; then nothing of it is visible and its chunks are deleted.
func (w *writer) Close() (err error) {
	if w.err != nil {
		return w.err
	}
	w.err = errors.New("sqlitestore: writer closed")
	defer func() {
		if err != nil {
			w.abort()
		}
	}()
	tx, now, err := w.chunkTx()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	created := now
	var old int64
	switch err := tx.QueryRowContext(w.ctx, `SELECT blob, create_time FROM objects WHERE key = ?`, w.key).Scan(&old, &created); {
	case errors.Is(err, sql.ErrNoRows):
		old = 0
	case err != nil:
		return err
	case w.opts.IfNotExist:
		return fmt.Errorf("%w: %q", errExists, w.key)
	}
	if old != 0 {
		if _, err := tx.ExecContext(w.ctx, `DELETE FROM chunks WHERE blob = ?`, old); err != nil {
			return err
		}
		if _, err := tx.ExecContext(w.ctx, `DELETE FROM blobs WHERE id = ?`, old); err != nil {
			return err
		}
	}
	o := w.opts
	if _, err := tx.ExecContext(w.ctx, `INSERT OR REPLACE INTO objects (key, `+attrCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		w.key, w.blob, w.size, w.md5.Sum(nil), now, created, w.contentType, o.CacheControl,
		o.ContentDisposition, o.ContentEncoding, o.ContentLanguage, w.metadata); err != nil {
		return err
	}
	if err := w.ctx.Err(); err != nil {
		return err
	}
	return tx.Commit()
}

// Copy implements driver.Bucket: the destination gets its own copy of the
// chunks, in one transaction.
func (b *Bucket) Copy(ctx context.Context, dstKey, srcKey string, opts *driver.CopyOptions) error {
	if opts.BeforeCopy != nil {
		if err := opts.BeforeCopy(func(any) bool { return false }); err != nil {
			return err
		}
	}
	tx, err := b.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var src int64
	if err := tx.QueryRowContext(ctx, `SELECT blob FROM objects WHERE key = ?`, srcKey).Scan(&src); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return errNotFound
		}
		return err
	}
	if dstKey == srcKey {
		return tx.Commit()
	}
	now := time.Now().UnixNano()
	res, err := tx.ExecContext(ctx, `INSERT INTO blobs (chunk_size, touched) SELECT chunk_size, ? FROM blobs WHERE id = ?`, now, src)
	if err != nil {
		return err
	}
	dst, err := res.LastInsertId()
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO chunks (blob, n, data) SELECT ?, n, data FROM chunks WHERE blob = ?`, dst, src); err != nil {
		return err
	}
	if err := deleteObject(ctx, tx, dstKey); err != nil && !errors.Is(err, errNotFound) {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO objects (key, `+attrCols+`) SELECT ?, ?, size, md5, mod_time, create_time, content_type, cache_control, content_disposition, content_encoding, content_language, metadata FROM objects WHERE key = ?`,
		dstKey, dst, srcKey); err != nil {
		return err
	}
	return tx.Commit()
}

func deleteObject(ctx context.Context, tx *sql.Tx, key string) error {
	var id int64
	if err := tx.QueryRowContext(ctx, `DELETE FROM objects WHERE key = ? RETURNING blob`, key).Scan(&id); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return errNotFound
		}
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM chunks WHERE blob = ?`, id); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM blobs WHERE id = ?`, id)
	return err
}

// Delete implements driver.Bucket.
func (b *Bucket) Delete(ctx context.Context, key string, opts *driver.DeleteOptions) error {
	if opts.BeforeDelete != nil {
		if err := opts.BeforeDelete(func(any) bool { return false }); err != nil {
			return err
		}
	}
	tx, err := b.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := deleteObject(ctx, tx, key); err != nil {
		return err
	}
	return tx.Commit()
}

// SignedURL implements driver.Bucket: not supported.
func (b *Bucket) SignedURL(ctx context.Context, key string, opts *driver.SignedURLOptions) (string, error) {
	return "", errUnsigned
}
