// Package importer brings tapes into a store from outside tapefs, and
// rebuilds a store's sidecar from scratch. It knows nothing of FUSE: the
// `tapefs import` and `tapefs reindex` commands are thin wrappers around
// Import and Reindex.
//
// Import copies a local directory (a Shadowcat tape directory, or any tree
// of files) into a bucket. The key of a file is the prefix followed by its
// path below the directory, with '/' separators, so running it again maps
// every file to the same key, and a file whose object is already identical
// is not sent again.
//
// Whether an object is identical is decided as cheaply as is correct:
//
//  1. no object: copy; a different size: copy;
//  2. the store reports an MD5 (memblob, fileblob with its .attrs files,
//     S3 single-part uploads, GCS, Azure when set): compare it with the
//     local file's MD5;
//  3. otherwise the object's "md5chksum" metadata, which Import writes
//     with every object (the convention rclone and Hugo use for S3
//     multipart uploads, whose ETag is not an MD5);
//  4. otherwise (fileblob with ?metadata=skip, or objects written by other
//     tools) the object is read and compared with the file byte for byte,
//     stopping at the first difference: for a file:// store that is a local
//     read, for a remote store it costs a download of the object but never
//     a needless upload.
//
// Modification times are never trusted: a store sets its own.
package importer

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/tapefs/tapefs/backend/retry"
	"github.com/tapefs/tapefs/keypath"
	"github.com/tapefs/tapefs/tape"
)

// MD5Metadata is the metadata key under which Import stores the base64 MD5
// of what it uploads (rclone's convention; hex, as Hugo writes it, is read
// too).
const MD5Metadata = "md5chksum"

// Action is what Import did with one file.
type Action int

const (
	Copied Action = iota + 1 // uploaded (or, in a dry run, would be)
	Skipped
	Failed
)

func (a Action) String() string {
	switch a {
	case Copied:
		return "copied"
	case Skipped:
		return "skipped"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Reason says why a file was copied or skipped.
type Reason string

const (
	Added   Reason = "new"     // copied: no object at its key
	Changed Reason = "changed" // copied: the object differs

	Identical  Reason = "identical"          // skipped: the object already holds these bytes
	Unservable Reason = "unservable name"    // skipped: the key could not be a file name in the mount
	Unreadable Reason = "unreadable"         // skipped: the file or directory cannot be read
	Symlink    Reason = "symlink"            // skipped: links are not followed
	Special    Reason = "not a regular file" // skipped: device, FIFO, socket
	StoreAttrs Reason = "attributes file"    // skipped: a NAME.attrs beside NAME, kept by a file:// store
	Excluded   Reason = "excluded"           // skipped: the destination store's own files

	Error Reason = "error" // failed: see Item.Err
)

// Item is one file (or an unreadable or excluded directory) and what
// became of it.
type Item struct {
	Path   string // below the imported directory, '/'-separated; a directory ends in '/'
	Key    string // its store key ("" when it has none)
	Size   int64
	Action Action
	Reason Reason
	Detail string // what exactly: the name's fault, the read error, what differs
	Err    error  // why it failed (Failed only)
}

// Options tune Import. The zero value copies with 8 workers and no prefix.
type Options struct {
	// Prefix is put before every key. A prefix that does not end in '/'
	// gets one ("archive" puts DIR/a.jsonl at archive/a.jsonl).
	Prefix  string
	DryRun  bool // decide everything, write nothing
	Workers int  // files compared and uploaded at once; default 8
	// Exclude lists local paths not to import, with everything below
	// them: the destination store's directory and its sidecar, when they
	// lie inside the imported directory.
	Exclude []string
	Logger  *slog.Logger
	// OnItem, when set, is called once for every item as soon as it is
	// decided, one call at a time.
	OnItem func(Item)
	// Retry bounds how often one upload is tried on transient store
	// errors (the input, a local file, can be replayed); default 3.
	Retry int
}

// Report is the outcome of an Import.
type Report struct {
	Items       []Item // sorted by Path
	Files       int    // regular files found
	Copied      int
	CopiedBytes int64
	Skipped     int
	Failed      int
	ByReason    map[Reason]int
	DryRun      bool
	Duration    time.Duration
}

// Progress is a snapshot of a running Import.
type Progress struct {
	Scanning  bool  // still walking the directory: the totals grow
	Files     int64 // regular files found
	Bytes     int64 // their total size
	Done      int64 // files decided (copied, skipped or failed)
	DoneBytes int64
	Copied    int64
	Skipped   int64
	Failed    int64
}

// AbortError ends an Import early: a failure that concerns the whole store
// (full disk, access denied, read-only store, or many uploads failing in a
// row), so that trying the remaining files would be pointless.
type AbortError struct {
	Key string // the upload that met it
	Err error
}

func (e *AbortError) Error() string { return fmt.Sprintf("writing %q: %s", e.Key, ErrText(e.Err)) }
func (e *AbortError) Unwrap() error { return e.Err }

// NoSpace reports whether err says a disk or quota is full.
func NoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		strings.Contains(err.Error(), "no space left on device")
}

// storeWide reports whether an upload error will recur for every key.
// EXDEV is fileblob writing its temporary file in os.TempDir, on another
// file system than the store.
func storeWide(err error) bool {
	return NoSpace(err) || errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EXDEV) ||
		gcerrors.Code(err) == gcerrors.PermissionDenied
}

// gocloudPrefix is what gocloud's portable type puts before a driver's
// error, once per layer.
var gocloudPrefix = regexp.MustCompile(`blob \(key "(?:[^"\\]|\\.)*"\) \(code=\w+\): `)

// ErrText is err without gocloud's repeated "blob (key …) (code=…)"
// prefixes: the key is shown beside it anyway.
func ErrText(err error) string {
	return gocloudPrefix.ReplaceAllString(err.Error(), "")
}

// retryWait is the first pause before an upload is tried again.
var retryWait = 200 * time.Millisecond

// failuresInARow ends an import whose uploads all fail, e.g. because the
// store went away.
const failuresInARow = 10

// Importer copies one directory into one bucket. Use New, then Run once;
// Progress may be called from any goroutine meanwhile.
type Importer struct {
	bucket *blob.Bucket
	opts   Options
	log    *slog.Logger

	scanning                            atomic.Bool
	files, bytes, done, doneBytes       atomic.Int64
	copied, skipped, failed, failStreak atomic.Int64

	mu    sync.Mutex // serializes OnItem and items
	items []Item
}

// New returns an Importer into bucket.
func New(bucket *blob.Bucket, opts Options) *Importer {
	if opts.Workers <= 0 {
		opts.Workers = 8
	}
	if opts.Retry <= 0 {
		opts.Retry = 3
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	im := &Importer{bucket: bucket, opts: opts, log: opts.Logger}
	im.scanning.Store(true)
	return im
}

// Import copies dir into bucket; see Importer.Run.
func Import(ctx context.Context, bucket *blob.Bucket, dir string, opts Options) (*Report, error) {
	return New(bucket, opts).Run(ctx, dir)
}

// Progress returns how far Run has come.
func (im *Importer) Progress() Progress {
	return Progress{
		Scanning: im.scanning.Load(),
		Files:    im.files.Load(), Bytes: im.bytes.Load(),
		Done: im.done.Load(), DoneBytes: im.doneBytes.Load(),
		Copied: im.copied.Load(), Skipped: im.skipped.Load(), Failed: im.failed.Load(),
	}
}

// NormalizePrefix checks a key prefix and gives it its trailing '/'.
func NormalizePrefix(prefix string) (string, error) {
	if prefix == "" {
		return "", nil
	}
	if strings.HasPrefix(prefix, "/") {
		return "", fmt.Errorf("prefix %q: must not begin with '/' (keys are relative: e.g. archive/2025)", prefix)
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if _, err := keypath.Split(prefix); err != nil {
		return "", fmt.Errorf("prefix %q: %v: no file below it could be served", prefix, err)
	}
	return prefix, nil
}

// file is a regular file to compare and perhaps upload.
type file struct {
	path string // local
	rel  string // '/'-separated
	key  string
	size int64
}

// Run walks dir, then compares and uploads its files on Workers
// goroutines. Files that cannot be imported are skipped, and uploads that
// fail are reported, in the Report; the error is for what stops the whole
// import: a bad directory or prefix, a store-wide failure (*AbortError), or
// ctx ending. The Report is valid (as far as it got) in every case. Every
// object is written whole or not at all, so an interrupted import is
// finished by running it again.
func (im *Importer) Run(ctx context.Context, dir string) (*Report, error) {
	start := time.Now()
	rep := &Report{DryRun: im.opts.DryRun, ByReason: map[Reason]int{}}
	finish := func(err error) (*Report, error) {
		im.scanning.Store(false)
		im.summarize(rep)
		rep.Duration = time.Since(start)
		return rep, err
	}
	prefix, err := NormalizePrefix(im.opts.Prefix)
	if err != nil {
		return finish(err)
	}
	root, err := CheckDir(dir)
	if err != nil {
		return finish(err)
	}
	files, err := im.walk(ctx, root, prefix)
	im.scanning.Store(false)
	if err != nil {
		return finish(err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var abortOnce sync.Once
	var abortErr error
	abort := func(err error) {
		abortOnce.Do(func() { abortErr = err; cancel() })
	}
	next := make(chan file)
	var wg sync.WaitGroup
	for range min(im.opts.Workers, max(len(files), 1)) {
		wg.Go(func() {
			for f := range next {
				im.one(ctx, f, abort)
			}
		})
	}
feed:
	for _, f := range files {
		select {
		case next <- f:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if abortErr != nil {
		return finish(abortErr)
	}
	return finish(ctx.Err())
}

// CheckDir returns dir as a clean absolute path without symbolic links,
// or an error that says what is wrong with it.
func CheckDir(dir string) (string, error) {
	if dir == "" {
		return "", errors.New("no directory to import given")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("%s does not exist: give the directory that holds the tapes", abs)
	case errors.Is(err, fs.ErrPermission):
		return "", fmt.Errorf("%s cannot be read: permission denied (run as a user who can read it)", abs)
	case err != nil:
		return "", fmt.Errorf("%s: %w", abs, err)
	case !st.IsDir():
		return "", fmt.Errorf("%s is not a directory: give the directory that holds it (import copies whole directories)", abs)
	}
	// A symbolic link to the directory is followed (only there: links
	// below it are not).
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	d, err := os.Open(abs)
	if err == nil {
		_, err = d.ReadDir(1)
		d.Close()
	}
	if err != nil && !errors.Is(err, io.EOF) {
		if errors.Is(err, fs.ErrPermission) {
			return "", fmt.Errorf("%s cannot be read: permission denied (run as a user who can read it)", abs)
		}
		return "", fmt.Errorf("%s cannot be read: %w", abs, err)
	}
	return abs, nil
}

// walk lists what is below root: regular files to compare, and items for
// everything skipped on the way.
func (im *Importer) walk(ctx context.Context, root, prefix string) ([]file, error) {
	excluded := map[string]bool{}
	for _, p := range im.opts.Exclude {
		if abs, err := filepath.Abs(p); err == nil {
			excluded[abs] = true
		}
	}
	var files []file
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if p == root {
			if err != nil {
				return fmt.Errorf("%s cannot be read: %w", root, err)
			}
			return nil
		}
		rel, rerr := filepath.Rel(root, p)
		if rerr != nil {
			return rerr
		}
		rel = filepath.ToSlash(rel)
		isDir := d != nil && d.IsDir()
		if isDir {
			rel += "/"
		}
		if err != nil {
			// A directory that cannot be listed (WalkDir calls again with
			// the error), or an entry that vanished.
			im.skip(Item{Path: rel, Reason: Unreadable, Detail: errText(err)})
			if isDir {
				return fs.SkipDir
			}
			return nil
		}
		if excluded[p] {
			im.skip(Item{Path: rel, Reason: Excluded, Detail: "the destination store's own files"})
			if isDir {
				return fs.SkipDir
			}
			return nil
		}
		switch t := d.Type(); {
		case t&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			im.skip(Item{Path: rel, Reason: Symlink, Detail: "-> " + target + "; links are not followed"})
			return nil
		case isDir:
			return nil
		case !t.IsRegular():
			im.skip(Item{Path: rel, Reason: Special, Detail: fileType(t)})
			return nil
		}
		info, err := d.Info()
		if err != nil {
			im.skip(Item{Path: rel, Reason: Unreadable, Detail: errText(err)})
			return nil
		}
		key := prefix + rel
		size := info.Size()
		if _, err := keypath.Split(key); err != nil {
			im.skip(Item{Path: rel, Key: key, Size: size, Reason: Unservable, Detail: err.Error()})
			return nil
		}
		if isStoreAttrs(p) {
			im.skip(Item{Path: rel, Key: key, Size: size, Reason: StoreAttrs,
				Detail: "metadata that a file:// store keeps beside " + strings.TrimSuffix(path.Base(rel), ".attrs") + ", not data"})
			return nil
		}
		files = append(files, file{path: p, rel: rel, key: key, size: size})
		im.files.Add(1)
		im.bytes.Add(size)
		return nil
	})
	return files, err
}

// fileType names the kind of a file that is not regular.
func fileType(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "mode " + m.String()
}

// isStoreAttrs says whether p is a NAME.attrs file that gocloud's fileblob
// keeps beside NAME: importing a directory that is itself a file:// store
// must not turn its attributes into objects (fileblob even refuses such
// keys).
func isStoreAttrs(p string) bool {
	data, ok := strings.CutSuffix(p, ".attrs")
	if !ok {
		return false
	}
	if st, err := os.Lstat(data); err != nil || !st.Mode().IsRegular() {
		return false
	}
	b, err := os.ReadFile(p)
	if err != nil || len(b) > 1<<20 {
		return false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return false
	}
	_, ok = m["user.content_type"]
	return ok
}

// localError marks an error reading the local file, as opposed to the store.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// one decides about f and uploads it if needed. When the whole import
// must stop it calls abort before anything else (recording the item may
// take a while, and the other workers must not start new uploads
// meanwhile).
func (im *Importer) one(ctx context.Context, f file, abort func(error)) {
	it := Item{Path: f.rel, Key: f.key, Size: f.size}
	sum, reason, detail, err := im.compare(ctx, f)
	var moved int64 // bytes of f already counted in doneBytes
	if err == nil && reason != Identical && !im.opts.DryRun {
		err = im.upload(ctx, f, sum, &moved)
	}
	im.doneBytes.Add(-moved) // record counts the whole file
	var le *localError
	switch {
	case err != nil && ctx.Err() != nil:
		return // interrupted: the file is simply not done
	case errors.As(err, &le):
		it.Action, it.Reason, it.Detail = Skipped, Unreadable, errText(le.err)
	case err != nil:
		it.Action, it.Reason, it.Err, it.Detail = Failed, Error, err, ErrText(err)
	case reason == Identical:
		it.Action, it.Reason, it.Detail = Skipped, Identical, detail
	default:
		it.Action, it.Reason, it.Detail = Copied, reason, detail
	}
	switch {
	case it.Action != Failed:
		im.failStreak.Store(0)
	case storeWide(err):
		abort(&AbortError{Key: f.key, Err: err})
	case im.failStreak.Add(1) >= failuresInARow:
		abort(&AbortError{Key: f.key, Err: fmt.Errorf("%d uploads in a row failed; the last: %w", failuresInARow, err)})
	}
	im.record(it, true)
}

// compare decides whether f must be copied, and why. sum is the local
// file's MD5 when computing it was part of the decision (nil otherwise:
// upload computes it).
func (im *Importer) compare(ctx context.Context, f file) (sum []byte, reason Reason, detail string, err error) {
	attrs, err := im.bucket.Attributes(ctx, f.key)
	if gcerrors.Code(err) == gcerrors.NotFound {
		return nil, Added, "", nil
	}
	if err != nil {
		return nil, "", "", fmt.Errorf("cannot read the object's attributes: %w", err)
	}
	if attrs.Size != f.size {
		return nil, Changed, fmt.Sprintf("size %d in the store, %d here", attrs.Size, f.size), nil
	}
	remote, how := attrs.MD5, "MD5"
	if len(remote) != md5.Size {
		remote, how = metadataMD5(attrs.Metadata), "MD5 in metadata"
	}
	if len(remote) == md5.Size {
		sum, err := fileMD5(f)
		if err != nil {
			return nil, "", "", err
		}
		if bytes.Equal(sum, remote) {
			return sum, Identical, "same size and " + how, nil
		}
		return sum, Changed, "same size, different " + how, nil
	}
	same, err := im.sameContent(ctx, f)
	if err != nil {
		return nil, "", "", err
	}
	if same {
		return nil, Identical, "same size and bytes; the store keeps no MD5", nil
	}
	return nil, Changed, "same size, different bytes", nil
}

// metadataMD5 decodes the MD5 an uploader left in the object's metadata.
func metadataMD5(md map[string]string) []byte {
	for k, v := range md {
		if !strings.EqualFold(k, MD5Metadata) {
			continue
		}
		if b, err := base64.StdEncoding.DecodeString(v); err == nil && len(b) == md5.Size {
			return b
		}
		if b, err := hex.DecodeString(v); err == nil && len(b) == md5.Size {
			return b
		}
	}
	return nil
}

// fileMD5 hashes the first f.size bytes of the file: the bytes an upload
// would send, even if the file grows meanwhile.
func fileMD5(f file) ([]byte, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return nil, &localError{err}
	}
	defer fh.Close()
	h := md5.New()
	n, err := io.Copy(h, io.LimitReader(fh, f.size))
	if err != nil {
		return nil, &localError{err}
	}
	if n != f.size {
		return nil, &localError{fmt.Errorf("shrank while being read (%d of %d bytes)", n, f.size)}
	}
	return h.Sum(nil), nil
}

// sameContent reads the object and the file side by side and says whether
// they hold the same bytes (their sizes are known to be equal).
func (im *Importer) sameContent(ctx context.Context, f file) (bool, error) {
	if f.size == 0 {
		return true, nil
	}
	fh, err := os.Open(f.path)
	if err != nil {
		return false, &localError{err}
	}
	defer fh.Close()
	r, err := im.bucket.NewReader(ctx, f.key, nil)
	if err != nil {
		return false, fmt.Errorf("cannot read the object to compare: %w", err)
	}
	defer r.Close()
	const chunk = 256 << 10
	a, b := make([]byte, chunk), make([]byte, chunk)
	for left := f.size; left > 0; {
		n := int(min(int64(chunk), left))
		if _, err := io.ReadFull(fh, a[:n]); err != nil {
			return false, &localError{err}
		}
		if _, err := io.ReadFull(r, b[:n]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return false, nil // the object shrank meanwhile
			}
			return false, fmt.Errorf("cannot read the object to compare: %w", err)
		}
		if !bytes.Equal(a[:n], b[:n]) {
			return false, nil
		}
		left -= int64(n)
	}
	return true, nil
}

// upload writes f to its key in one writer, trying again on transient
// errors. The writer is given the MD5, so the store (or gocloud) refuses
// an object that does not hold exactly the bytes hashed: a file rewritten
// during the import fails rather than landing half old, half new.
func (im *Importer) upload(ctx context.Context, f file, sum []byte, moved *int64) error {
	if sum == nil {
		var err error
		if sum, err = fileMD5(f); err != nil {
			return err
		}
	}
	var err error
	wait := retryWait
	for attempt := 1; ; attempt++ {
		err = im.put(ctx, f, sum, moved)
		var le *localError
		if err == nil || errors.As(err, &le) || !retry.Transient(err) || storeWide(err) ||
			attempt >= im.opts.Retry || ctx.Err() != nil {
			break
		}
		im.log.Debug("upload failed; trying again", "key", f.key, "attempt", attempt, "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
		wait *= 2
	}
	return err
}

// put makes one attempt at the upload, adding the bytes it sends to the
// progress (and to *moved, which it first takes back from the progress).
func (im *Importer) put(ctx context.Context, f file, sum []byte, moved *int64) error {
	im.doneBytes.Add(-*moved)
	*moved = 0
	fh, err := os.Open(f.path)
	if err != nil {
		return &localError{err}
	}
	defer fh.Close()
	if err := ctx.Err(); err != nil {
		return err // aborted while this file was being compared
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := im.bucket.NewWriter(wctx, f.key, &blob.WriterOptions{
		ContentType: tape.ContentType(f.key),
		ContentMD5:  sum,
		Metadata:    map[string]string{MD5Metadata: base64.StdEncoding.EncodeToString(sum)},
	})
	if err != nil {
		return err
	}
	n, err := io.Copy(w, &errSide{r: io.LimitReader(fh, f.size), count: func(n int) {
		*moved += int64(n)
		im.doneBytes.Add(int64(n))
	}})
	if err == nil && n != f.size {
		err = &localError{fmt.Errorf("shrank while being copied (%d of %d bytes)", n, f.size)}
	}
	if err != nil {
		cancel() // abort: never commit a partial object
		w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		if gcerrors.Code(err) == gcerrors.FailedPrecondition && ctx.Err() == nil {
			return fmt.Errorf("changed while being copied; run the import again: %w", err)
		}
		return err
	}
	return nil
}

// errSide marks the local reader's errors as local, and counts what it
// reads.
type errSide struct {
	r     io.Reader
	count func(int)
}

func (e *errSide) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.count(n)
	if err != nil && err != io.EOF {
		err = &localError{err}
	}
	return n, err
}

// skip records an item the walk left out (it is not among the files
// Progress counts).
func (im *Importer) skip(it Item) {
	it.Action = Skipped
	im.record(it, false)
}

// record keeps it and tells OnItem; counted says it is one of the files
// found by the walk, now done.
func (im *Importer) record(it Item, counted bool) {
	if counted {
		im.done.Add(1)
		im.doneBytes.Add(it.Size)
	}
	switch it.Action {
	case Copied:
		im.copied.Add(1)
	case Skipped:
		im.skipped.Add(1)
	case Failed:
		im.failed.Add(1)
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	im.items = append(im.items, it)
	if im.opts.OnItem != nil {
		im.opts.OnItem(it)
	}
}

func (im *Importer) summarize(rep *Report) {
	im.mu.Lock()
	defer im.mu.Unlock()
	rep.Items = append([]Item(nil), im.items...)
	sort.Slice(rep.Items, func(i, j int) bool { return rep.Items[i].Path < rep.Items[j].Path })
	rep.Files = int(im.files.Load())
	for _, it := range rep.Items {
		rep.ByReason[it.Reason]++
		switch it.Action {
		case Copied:
			rep.Copied++
			rep.CopiedBytes += it.Size
		case Skipped:
			rep.Skipped++
		case Failed:
			rep.Failed++
		}
	}
}

// errText is an error without the path the caller already shows.
func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	return err.Error()
}
