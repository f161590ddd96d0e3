// Package fsnode is the FUSE tree of a tapefs mount, on go-fuse's fs
// package. Directory structure, sizes and times come from the sidecar; file
// contents are range reads of the store; writes are staged locally and
// uploaded whole on fsync and close; rename and unlink become copy and
// delete in the store. Errors become errno values in one place (toErrno).
package fsnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/tapefs/tapefs/indexer"
	"github.com/tapefs/tapefs/keypath"
	"github.com/tapefs/tapefs/meta"
	"github.com/tapefs/tapefs/tape"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
)

// Options configure a tree.
type Options struct {
	Bucket        *blob.Bucket
	Sidecar       *meta.Sidecar
	Indexer       *indexer.Indexer
	Staging       *Staging
	Logger        *slog.Logger
	ReadOnly      bool
	Read          ReadOptions
	UploadTimeout time.Duration // bound on one upload (default 10 min)
	// StoreChanged is told of a key a read found replaced in the store
	// (ErrChanged), so that the sidecar catches up before the next
	// refresh; nil: it waits for that refresh.
	StoreChanged func(key string)
	// Owner is the user and group every file and directory shows; nil:
	// the daemon's.
	Owner *Owner
	// FileMode and DirMode are the permission bits every file and
	// directory shows (0: 0644 and 0755); the read-only views show them
	// without the write bits. The store keeps no modes, so chmod changes
	// nothing; with default_permissions the kernel checks access by them.
	FileMode, DirMode uint32
	// Indexed is closed once the store's tapes are indexed, for a mount
	// that serves while its first indexing runs (the listing is in the
	// sidecar, so the tree, stat and reads need nothing more). What comes
	// from the tape index (the views, xattrs, synthesized companions)
	// waits for it, so that it is never partial. nil: already indexed.
	Indexed <-chan struct{}
}

// Owner is a user and group id.
type Owner struct{ UID, GID uint32 }

// The modes files and directories show unless Options says otherwise.
const (
	defaultFileMode = 0o644
	defaultDirMode  = 0o755
)

// dirInoBase keeps directory inode numbers apart from object row ids.
const dirInoBase = 1 << 48

// rootIno is the root directory's inode number: directory ID 0, which the
// sidecar never gives out.
const rootIno = dirInoBase

// FS is one mounted tree.
type FS struct {
	opts    Options
	conn    Connection // the mount's, once Serving is called
	log     *slog.Logger
	bucket  *blob.Bucket
	sc      *meta.Sidecar
	stats   Stats
	root    *dirNode
	views   *viewNode // the root of .by
	ahead   *dirAhead // read-ahead across the files of a directory
	started time.Time
	uid     uint32 // the daemon's, see owner
	gid     uint32

	// entryTTL is how long the kernel keeps entries and attributes (the
	// shorter of the mount's two timeouts); see dirCache and openEntry.
	entryTTL time.Duration
	epoch    atomic.Uint64 // changes to the sidecar's tree; see openEntry
	listing  listingCache  // the last directory listing read (dirhandle.go)
	streams  chan struct{} // slots of streamed uploads (stream.go)

	mu      sync.Mutex
	staged  map[*fileNode]struct{} // nodes holding a staged write
	failed  []*failedUpload        // staged data waiting for the store
	created map[string]time.Time   // directory → last file created in it here
	removed map[string]bool        // .meta.json keys removed here: none is synthesized there

	upMu      sync.Mutex                 // innermost: taken under mu and under a fileNode's mu
	uploading map[*StagedWrite]time.Time // staged data of closed files whose upload is running
	retryMu   sync.Mutex                 // one RetryFailed at a time
}

// synthQuiet is how long after the last file created in a directory the
// directory offers no synthesized .meta.json: cp -r writes a tape's .jsonl
// and then creates its real companion with O_EXCL, which a synthesized
// one in its place would refuse (EEXIST).
const synthQuiet = 10 * time.Second

// noteCreate records that the file key was created in dir through this
// mount.
func (f *FS) noteCreate(dir, key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.removed, key)
	now := time.Now()
	if len(f.created) > 1024 {
		for d, at := range f.created {
			if now.Sub(at) >= synthQuiet {
				delete(f.created, d)
			}
		}
	}
	f.created[dir] = now
}

// noteRemoved records that the .meta.json at key was removed (or renamed
// away) through this mount: rm must leave nothing there, so no companion
// is synthesized in its place while the mount runs.
func (f *FS) noteRemoved(key string) {
	if !strings.HasSuffix(key, metaSuffix) {
		return
	}
	f.mu.Lock()
	f.removed[key] = true
	f.mu.Unlock()
}

// wasRemoved reports whether noteRemoved was called for key.
func (f *FS) wasRemoved(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.removed[key]
}

// beingWritten reports whether a file was created in dir within synthQuiet.
func (f *FS) beingWritten(dir string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	at, ok := f.created[dir]
	return ok && time.Since(at) < synthQuiet
}

// failedUpload is staged data whose upload failed after its last handle
// closed; it is retried until the store takes it.
type failedUpload struct {
	sw   *StagedWrite
	key  string
	err  error
	at   time.Time
	busy chan struct{} // holds a token while RetryFailed uploads it
}

// New builds a tree over the store and sidecar in opts.
func New(opts Options) *FS {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.UploadTimeout <= 0 {
		opts.UploadTimeout = 10 * time.Minute
	}
	opts.Read.fill()
	if opts.FileMode == 0 {
		opts.FileMode = defaultFileMode
	}
	if opts.DirMode == 0 {
		opts.DirMode = defaultDirMode
	}
	opts.FileMode &= 0o777
	opts.DirMode &= 0o777
	f := &FS{opts: opts, log: opts.Logger, bucket: opts.Bucket, sc: opts.Sidecar,
		staged: map[*fileNode]struct{}{}, created: map[string]time.Time{}, removed: map[string]bool{}, started: time.Now(),
		uploading: map[*StagedWrite]time.Time{}, uid: uint32(os.Getuid()), gid: uint32(os.Getgid()),
		streams: make(chan struct{}, maxStreams)}
	if opts.Owner != nil {
		f.uid, f.gid = opts.Owner.UID, opts.Owner.GID
	}
	f.root = &dirNode{fsys: f}
	f.views = f.newViewsRoot()
	f.ahead = newDirAhead(f)
	f.opts.Read.ahead = f.ahead
	f.opts.Read.changed = opts.StoreChanged
	f.opts.Read.conn = &f.conn
	return f
}

// Root is the root node to mount.
func (f *FS) Root() fs.InodeEmbedder { return f.root }

// Stats returns the store counters.
func (f *FS) Stats() *Stats { return &f.stats }

// ioBlock is the largest write the kernel sends, and the st_blksize every
// node reports: cp, cat and others size their buffers by st_blksize, so a
// 200 MiB copy in is 200 writes (each a FUSE round trip) instead of 1,600.
const ioBlock = 1 << 20

// MountOptions returns go-fuse options for this tree.
func (f *FS) MountOptions(entryTimeout, attrTimeout time.Duration, allowOther bool) *fs.Options {
	neg := time.Second
	f.entryTTL = min(entryTimeout, attrTimeout)
	o := &fs.Options{
		EntryTimeout:    &entryTimeout,
		AttrTimeout:     &attrTimeout,
		NegativeTimeout: &neg,
		UID:             f.uid,
		GID:             f.gid,
		// The root's inode number is one no object or directory has (their
		// IDs start at 1): stat showed 0, which ls -i prints as "?", and
		// tools that tell files apart by inode number need it unique.
		RootStableAttr: &fs.StableAttr{Ino: rootIno},
	}
	o.MountOptions = fuse.MountOptions{
		FsName:       "tapefs",
		Name:         "tapefs",
		DirectMount:  true,
		AllowOther:   allowOther,
		MaxWrite:     ioBlock,
		MaxReadAhead: 1 << 20,
		Options:      []string{"default_permissions"},
		// open(O_TRUNC) of an existing file truncates in OPEN, i.e. only
		// the staged copy. Without it the kernel sends a truncate without
		// a file handle first, which is truncate(2) by path: an upload of
		// an empty object that replaces the file's last version in the
		// store before anything is written (and stays if the daemon dies).
		//
		// HANDLE_KILLPRIV_V2 tells the kernel that this FS clears setuid
		// bits and capabilities itself on write (it has none to clear: no
		// file has setuid bits and security.* is not supported). Without it the
		// kernel asks GETXATTR security.capability before every write,
		// one more round trip for each.
		ExtraCapabilities: fuse.CAP_ATOMIC_O_TRUNC | fuse.CAP_HANDLE_KILLPRIV_V2,
	}
	if f.opts.ReadOnly {
		o.MountOptions.Options = append(o.MountOptions.Options, "ro")
	}
	return o
}

// pathOf is the tree path of n, or false if n has been unlinked.
func (f *FS) pathOf(n *fs.Inode) (string, bool) {
	root := f.root.EmbeddedInode()
	var segs []string
	for p := n; p != root; {
		name, parent := p.Parent()
		if parent == nil {
			return "", false
		}
		segs = append(segs, name)
		p = parent
	}
	for i, j := 0, len(segs)-1; i < j; i, j = i+1, j-1 {
		segs[i], segs[j] = segs[j], segs[i]
	}
	return strings.Join(segs, "/"), true
}

func (f *FS) errno(op, p string, err error) syscall.Errno {
	return toErrno(f.log, op, p, err)
}

// fillAttr sets attributes of a sidecar entry.
func (f *FS) fillAttr(e meta.Entry, a *fuse.Attr) {
	mt := e.ModTime
	if mt.IsZero() {
		mt = f.started
	}
	if e.IsDir {
		a.Mode = fuse.S_IFDIR | f.opts.DirMode
		a.Nlink = 2
		a.Ino = dirInoBase + uint64(e.ID)
		a.Size = 4096
	} else {
		a.Mode = fuse.S_IFREG | f.opts.FileMode
		a.Nlink = 1
		a.Ino = uint64(e.ID)
		a.Size = uint64(e.Size)
		a.Blocks = (a.Size + 511) / 512
	}
	a.Blksize = ioBlock
	a.SetTimes(&mt, &mt, &mt)
	a.Uid, a.Gid = f.owner()
}

// owner is the uid and gid every file of the mount has: Options.Owner or
// the daemon's, read once (os.Getuid is a system call, and fillAttr runs
// for every entry of every listing).
func (f *FS) owner() (uint32, uint32) { return f.uid, f.gid }

// changed records a change to the sidecar's tree, after it is made: the
// entries read-only opens reuse (openEntry) are read afresh. Every write
// of object or directory rows in the mount's process comes through here:
// fsnode's (the FUSE operations that change the tree, uploads), and the
// refreshes, which end in Invalidate.
func (f *FS) changed() { f.epoch.Add(1) }

// openEntry is what a read-only open of a fileNode last read from the
// sidecar, and when.
type openEntry struct {
	e     meta.Entry
	epoch uint64 // FS.epoch before it was read
	at    time.Time
}

// openEntry is the node's entry for a read-only open. grep over a
// directory of tapes opens every file; the sidecar query was a fifth of
// a warm grep. The entry the node's last open read is used again while
// nothing has changed the sidecar's tree since (FS.epoch), the node has
// no staged data, is not unlinked and has the same key, and for at most
// the entry timeout: the kernel's own bound on stale names and
// attributes, and so on what another mount sharing the sidecar file may
// have changed unseen. Views and synthesized companions always ask.
func (n *fileNode) openEntry(ctx context.Context) (meta.Entry, syscall.Errno) {
	ttl := n.fsys.entryTTL
	cacheable := ttl > 0 && n.inView == 0 && n.synth == ""
	epoch := n.fsys.epoch.Load() // before the query: a change after it makes the entry stale
	if cacheable {
		n.mu.Lock()
		c := n.opened
		ok := !c.at.IsZero() && c.epoch == epoch && time.Since(c.at) < ttl &&
			n.staged == nil && !n.deleted && c.e.Key == n.key
		n.mu.Unlock()
		if ok {
			return c.e, 0
		}
	}
	at := time.Now()
	e, errno := n.entry(ctx)
	if errno == 0 && cacheable && e.ID&synthInoBase == 0 {
		n.mu.Lock()
		n.opened = openEntry{e: e, epoch: epoch, at: at}
		n.mu.Unlock()
	}
	return e, errno
}

// newChild makes (or finds) the inode for a sidecar entry.
func (f *FS) newChild(ctx context.Context, parent *fs.Inode, e meta.Entry) *fs.Inode {
	if e.IsDir {
		return parent.NewInode(ctx, &dirNode{fsys: f}, fs.StableAttr{Mode: fuse.S_IFDIR, Ino: dirInoBase + uint64(e.ID)})
	}
	ch := parent.NewInode(ctx, &fileNode{fsys: f, key: e.Key}, fs.StableAttr{Mode: fuse.S_IFREG, Ino: uint64(e.ID)})
	if fn, ok := ch.Operations().(*fileNode); ok {
		fn.setKey(e.Key) // a known node found at its real path: the path is its key
	}
	return ch
}

// rekey moves the keys of the file nodes the kernel knows below a renamed
// path, so open files keep reading and writing the right objects.
func rekey(n *fs.Inode, src, dst string) {
	switch op := n.Operations().(type) {
	case *fileNode:
		if k, ok := op.currentKey(); ok {
			if k == src {
				op.setKey(dst)
			} else if strings.HasPrefix(k, src+"/") {
				op.setKey(dst + k[len(src):])
			}
		}
	case *dirNode:
		for _, ch := range n.Children() {
			rekey(ch, src, dst)
		}
	}
}

func (f *FS) checkWritable() error {
	if f.opts.ReadOnly {
		return errReadOnly
	}
	return nil
}

// uploadPart and uploadParallel shape the upload of a large staged file:
// 16 MiB parts, four in flight (at most 64 MiB of buffers per upload).
const (
	uploadPart     = 16 << 20
	uploadParallel = 4
)

// upload sends the staged file to key in one writer, then records the new
// object in the sidecar and re-indexes the tape it belongs to.
func (f *FS) upload(sw *StagedWrite, key string, exclusive bool, gen int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), f.opts.UploadTimeout)
	defer cancel()
	if err := sw.commit(); err != nil {
		return err
	}
	size, err := sw.Size()
	if err != nil {
		return err
	}
	wo := &blob.WriterOptions{IfNotExist: exclusive, ContentType: tape.ContentType(key)}
	if size > uploadPart {
		// A large file goes up in parts, several at once (S3 multipart;
		// ignored by stores that write in one piece).
		wo.BufferSize, wo.MaxConcurrency = uploadPart, uploadParallel
	}
	w, err := f.bucket.NewWriter(ctx, key, wo)
	if err != nil {
		return err
	}
	pre := f.prepareIndex(ctx, sw, key, size)
	if _, err := io.Copy(w, io.NewSectionReader(sw.file, 0, size)); err != nil {
		cancel() // abandon the writer: nothing becomes visible
		w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		if lostCreate(exclusive, err) {
			f.createLost(ctx, sw, key, gen)
		}
		return err
	}
	f.stats.Uploads.Add(1)
	f.stats.UploadBytes.Add(size)
	sw.uploaded(gen)
	row, err := f.recordObject(ctx, key)
	if err != nil {
		return err
	}
	f.indexUploaded(ctx, sw, key, gen, pre, row)
	return nil
}

// prepareIndex starts parsing the tape being uploaded from sw to key (see
// indexer.Prepare), so that the parse overlaps the upload; ctx is the
// upload's, whose end stops it.
func (f *FS) prepareIndex(ctx context.Context, sw *StagedWrite, key string, size int64) *indexer.Parse {
	if f.opts.Indexer == nil {
		return nil
	}
	return f.opts.Indexer.Prepare(ctx, key, io.NewSectionReader(sw.file, 0, size))
}

// indexUploaded re-indexes key after the staged bytes of sw at gen went up
// as it, with pre, their parse. A write since (also one during the parse)
// means the staged file no longer holds them: the tape is read back from
// the store.
func (f *FS) indexUploaded(ctx context.Context, sw *StagedWrite, key string, gen int64, pre *indexer.Parse, row meta.Object) {
	ix := f.opts.Indexer
	if ix == nil {
		return
	}
	var err error
	if sw.unchangedSince(gen) {
		err = ix.IndexUploaded(ctx, key, pre, row)
	}
	if err == nil && !sw.unchangedSince(gen) {
		err = ix.IndexKey(ctx, key)
	}
	if err != nil {
		f.log.Warn("indexing after upload failed", "key", key, "err", err)
	}
}

// lostCreate says whether err is the store refusing an O_EXCL upload
// because the key exists (someone else created it first).
func lostCreate(exclusive bool, err error) bool {
	c := gcerrors.Code(err)
	return exclusive && (c == gcerrors.FailedPrecondition || c == gcerrors.AlreadyExists)
}

// createLost handles an O_EXCL upload the store refused: the staged bytes
// are never uploaded or retried, and the sidecar takes the object that
// won in place of the placeholder row of the create.
func (f *FS) createLost(ctx context.Context, sw *StagedWrite, key string, gen int64) {
	sw.refused(gen)
	f.log.Warn("exclusive create lost: the store already has the key; the staged data is dropped", "key", key)
	if _, err := f.recordObject(ctx, key); err != nil {
		f.log.Warn("cannot record the existing object after a lost exclusive create", "key", key, "err", err)
		return
	}
	if f.opts.Indexer != nil {
		if err := f.opts.Indexer.IndexKey(ctx, key); err != nil {
			f.log.Warn("indexing after a lost exclusive create failed", "key", key, "err", err)
		}
	}
}

// dropBroken handles, at its last close, a staged copy whose writes failed
// (see failLocked): it sets the sidecar back to what the store holds for
// key, its last version or nothing for a file created through the mount.
// The caller then discards the copy.
func (f *FS) dropBroken(sw *StagedWrite, key string, cause error) {
	f.log.Error("a write to the staged copy failed, so nothing was uploaded; the store keeps its last version",
		"key", key, "staging", f.opts.Staging.dir, "err", cause)
	ctx, cancel := context.WithTimeout(context.Background(), f.opts.UploadTimeout)
	defer cancel()
	_, err := f.recordObject(ctx, key)
	created := gcerrors.Code(err) == gcerrors.NotFound // here, and never in the store
	if created {
		defer f.changed()
		err = f.sc.DeleteObject(ctx, key)
	}
	switch {
	case err != nil || f.opts.Indexer == nil:
	case created:
		err = f.opts.Indexer.ForgetKey(ctx, key)
	default:
		err = f.opts.Indexer.IndexKey(ctx, key)
	}
	if err != nil {
		f.log.Warn("cannot read back the store's version after a failed write; the next refresh corrects the listing", "key", key, "err", err)
	}
}

// recordObject stores the store's current attributes of key in the
// sidecar, and returns the row it put.
func (f *FS) recordObject(ctx context.Context, key string) (meta.Object, error) {
	defer f.changed()
	a, err := f.bucket.Attributes(ctx, key)
	if err != nil {
		return meta.Object{}, err
	}
	return f.sc.PutObject(ctx, meta.Object{Key: key, Size: a.Size, ModTime: a.ModTime, ETag: a.ETag, MD5: a.MD5})
}

// deleteKey removes key from the store (a missing object is fine) and from
// the sidecar and index.
func (f *FS) deleteKey(ctx context.Context, key string) error {
	defer f.changed()
	if err := f.bucket.Delete(ctx, key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return err
	}
	f.stats.Deletes.Add(1)
	if err := f.sc.DeleteObject(ctx, key); err != nil {
		return err
	}
	if f.opts.Indexer != nil {
		if err := f.opts.Indexer.ForgetKey(ctx, key); err != nil {
			f.log.Warn("index update after delete failed", "key", key, "err", err)
		}
	}
	return nil
}

// keepDir makes sure directory p still exists after something below it was
// removed: an object store drops a prefix with its last key, a file system
// does not drop a directory with its last file.
func (f *FS) keepDir(ctx context.Context, p string) error {
	if p == "" {
		return nil
	}
	if _, ok, err := f.sc.StatDir(ctx, p); err != nil || ok {
		return err
	}
	return f.makeDir(ctx, p)
}

// makeDir writes the marker object that keeps an empty directory.
func (f *FS) makeDir(ctx context.Context, p string) error {
	key := keypath.DirMarkerKey(p)
	if err := f.bucket.WriteAll(ctx, key, nil, nil); err != nil {
		return err
	}
	// The marker's row makes the directory explicit in the sidecar, and
	// moves with it on rename.
	_, err := f.recordObject(ctx, key)
	return err
}

// registerStaged notes that n holds a staged write.
func (f *FS) registerStaged(n *fileNode, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if on {
		f.staged[n] = struct{}{}
	} else {
		delete(f.staged, n)
	}
}

// flushUnder uploads every dirty staged file at or below path p.
func (f *FS) flushUnder(p string) error {
	f.mu.Lock()
	nodes := make([]*fileNode, 0, len(f.staged))
	for n := range f.staged {
		nodes = append(nodes, n)
	}
	f.mu.Unlock()
	for _, n := range nodes {
		np, ok := n.currentKey()
		if !ok || (p != "" && np != p && !strings.HasPrefix(np, p+"/")) {
			continue
		}
		if err := n.flush(); err != nil {
			return fmt.Errorf("upload of %s: %w", np, err)
		}
	}
	if p == "" {
		return nil // FlushAll retries the queue itself
	}
	// Data queued for retry below p goes up first too: a rename copies
	// what the store holds, and a retry would later write the old name.
	f.mu.Lock()
	var queued []*failedUpload
	for _, fu := range f.failed {
		if fu.key == p || strings.HasPrefix(fu.key, p+"/") {
			queued = append(queued, fu)
		}
	}
	f.mu.Unlock()
	for _, fu := range queued {
		if err := f.retry(fu); err != nil {
			return fmt.Errorf("upload of %s (kept, and retried): %w", fu.key, err)
		}
	}
	return nil
}

// FlushAll uploads every pending write: open dirty files, then failed
// uploads. It is called before unmount.
func (f *FS) FlushAll() error {
	err := f.flushUnder("")
	if rerr := f.RetryFailed(); err == nil {
		err = rerr
	}
	return err
}

// addFailed queues staged data whose last handle closed before it reached
// the store.
func (f *FS) addFailed(sw *StagedWrite, key string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = append(f.failed, &failedUpload{sw: sw, key: key, err: err, at: time.Now(), busy: make(chan struct{}, 1)})
}

// setUploading marks (or unmarks) staged data of a closed file whose upload
// is running, so that it stays pending until it is in the store or queued.
func (f *FS) setUploading(sw *StagedWrite, on bool) {
	f.upMu.Lock()
	defer f.upMu.Unlock()
	if on {
		f.uploading[sw] = time.Now()
	} else {
		delete(f.uploading, sw)
	}
}

// dropFailed removes fu from the retry queue, and says whether it was
// there (claimUnstored may have given it back to its file meanwhile).
func (f *FS) dropFailed(fu *failedUpload) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, q := range f.failed {
		if q == fu {
			f.failed = append(f.failed[:i], f.failed[i+1:]...)
			return true
		}
	}
	return false
}

// queuedLocked is key's entry in the retry queue and its index, or nil;
// f.mu is held.
func (f *FS) queuedLocked(key string) (*failedUpload, int) {
	i := slices.IndexFunc(f.failed, func(fu *failedUpload) bool { return fu.key == key })
	if i < 0 {
		return nil, -1
	}
	return f.failed[i], i
}

// uploadingUnder is the staged data of a closed file at key, or with
// prefix below it too, that a RELEASE is uploading, or nil.
func (f *FS) uploadingUnder(key string, prefix bool) *StagedWrite {
	f.upMu.Lock()
	defer f.upMu.Unlock()
	for sw := range f.uploading {
		k, dirty, _, deleted, _ := sw.snapshot()
		if dirty && !deleted && (k == key || prefix && (key == "" || strings.HasPrefix(k, key+"/"))) {
			return sw
		}
	}
	return nil
}

// claimUnstored takes what a closed file left of key that the store does
// not have, for an open, a rename over it or an unlink to build on: it
// waits until a RELEASE's upload of key has ended (stored, or queued for
// retry), then takes key's staged data out of the retry queue. A retry of
// it that is running ends first, so two uploads of it never run at once
// (if that retry succeeded, the data comes back clean). nil: nothing is
// left. If ctx ends first, the data stays queued and ctx's error returns.
func (f *FS) claimUnstored(ctx context.Context, key string) (*StagedWrite, error) {
	if err := f.awaitUploads(ctx, key); err != nil {
		return nil, err
	}
	f.mu.Lock()
	fu, i := f.queuedLocked(key)
	if fu != nil {
		f.failed = slices.Delete(f.failed, i, i+1)
	}
	f.mu.Unlock()
	if fu == nil {
		return nil, nil
	}
	select {
	case fu.busy <- struct{}{}:
		<-fu.busy
		return fu.sw, nil
	case <-ctx.Done():
		f.mu.Lock()
		f.failed = append(f.failed, fu)
		f.mu.Unlock()
		return nil, ctx.Err()
	}
}

// isQueued says whether key has staged data in the retry queue.
func (f *FS) isQueued(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	fu, _ := f.queuedLocked(key)
	return fu != nil
}

// awaitUploads waits until no closed file at or below p is being uploaded
// (the upload a RELEASE runs). It returns ctx's error if ctx ends first.
func (f *FS) awaitUploads(ctx context.Context, p string) error {
	for f.uploadingUnder(p, true) != nil {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// pendingSize is the size of key's staged data that no file holds: queued
// for retry, or being uploaded after its last close. Until the store has
// it, that is the file's size.
func (f *FS) pendingSize(key string) (int64, bool) {
	f.mu.Lock()
	fu, _ := f.queuedLocked(key)
	f.mu.Unlock()
	var sw *StagedWrite
	if fu != nil {
		sw = fu.sw
	} else {
		sw = f.uploadingUnder(key, false)
	}
	if sw == nil {
		return 0, false
	}
	size, err := sw.Size()
	return size, err == nil
}

// RetryFailed tries every queued upload again; it returns the first error.
// An upload stays in the queue (and pending) while it is tried.
func (f *FS) RetryFailed() error {
	f.retryMu.Lock()
	defer f.retryMu.Unlock()
	f.mu.Lock()
	queue := append([]*failedUpload(nil), f.failed...)
	f.mu.Unlock()
	var first error
	for _, fu := range queue {
		if err := f.retry(fu); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// retry uploads one queued staged file. Taken back by its file meanwhile
// (claimUnstored), it is the file's to discard.
func (f *FS) retry(fu *failedUpload) error {
	fu.busy <- struct{}{}
	defer func() { <-fu.busy }()
	f.mu.Lock()
	queued := slices.Contains(f.failed, fu)
	f.mu.Unlock()
	if !queued {
		return nil
	}
	key, dirty, excl, deleted, gen := fu.sw.snapshot()
	if deleted || !dirty {
		if f.dropFailed(fu) {
			fu.sw.Discard()
		}
		return nil
	}
	if err := f.upload(fu.sw, key, excl, gen); err != nil {
		f.stats.UploadErrors.Add(1)
		if lostCreate(excl, err) {
			if f.dropFailed(fu) {
				fu.sw.Discard()
			}
			return nil
		}
		f.mu.Lock()
		fu.err, fu.at = err, time.Now()
		f.mu.Unlock()
		return err
	}
	if f.dropFailed(fu) {
		fu.sw.Discard()
	}
	return nil
}

// PendingUpload describes staged data not yet in the store.
type PendingUpload struct {
	Key   string    `json:"key"`
	Error string    `json:"error,omitempty"`
	Since time.Time `json:"since"`
}

// Pending lists staged data not yet in the store (failed uploads, open
// dirty files, and closed ones whose upload is running).
func (f *FS) Pending() []PendingUpload {
	f.mu.Lock()
	var out []PendingUpload
	seen := map[*StagedWrite]bool{}
	for _, fu := range f.failed {
		seen[fu.sw] = true
		out = append(out, PendingUpload{Key: fu.key, Error: fu.err.Error(), Since: fu.at})
	}
	nodes := make([]*fileNode, 0, len(f.staged))
	for n := range f.staged {
		nodes = append(nodes, n)
	}
	f.mu.Unlock() // node locks are taken before f.mu, never after
	for _, n := range nodes {
		if sw := n.stagedWrite(); sw != nil && !seen[sw] {
			if key, dirty, _, _, _ := sw.snapshot(); dirty {
				seen[sw] = true
				out = append(out, PendingUpload{Key: key, Since: time.Now()})
			}
		}
	}
	f.upMu.Lock()
	defer f.upMu.Unlock()
	for sw, since := range f.uploading {
		if key, dirty, _, deleted, _ := sw.snapshot(); dirty && !deleted && !seen[sw] {
			out = append(out, PendingUpload{Key: key, Since: since})
		}
	}
	return out
}

// Recover uploads staged files an earlier run left behind. Those that still
// fail are queued for retry, never dropped. Staged bytes that no close or
// fsync asked for (the run died in the middle of writing them) are dropped:
// the store keeps its last version rather than half a write.
func (f *FS) Recover(ctx context.Context) (int, error) {
	left, err := f.opts.Staging.Leftovers()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range left {
		if r.Partial {
			var size int64 = -1
			if fi, err := os.Stat(r.DataPath); err == nil {
				size = fi.Size()
			}
			f.log.Warn("staged data of an earlier run that no close or fsync asked for is dropped; the store keeps its last version", "key", r.Key, "bytes", size, "staged", r.Staged)
			os.Remove(r.JrnlPath)
			os.Remove(r.DataPath)
			continue
		}
		fh, err := os.OpenFile(r.DataPath, os.O_RDWR, 0o600)
		if errors.Is(err, os.ErrNotExist) {
			// Its staging directory was removed while it was open (see
			// Staging.recreate), and the run ended before its upload.
			f.log.Warn("staged data of an earlier run is gone (its staging directory was removed while mounted); the store keeps its last version", "key", r.Key, "path", r.DataPath)
			os.Remove(r.JrnlPath)
			continue
		}
		if err != nil {
			f.log.Error("staged data of an earlier run is unreadable", "key", r.Key, "path", r.DataPath, "err", err)
			continue
		}
		sw := &StagedWrite{file: fh, dataPath: r.DataPath, jrnlPath: r.JrnlPath, key: r.Key, dirty: true, exclusive: r.Exclusive}
		if err := f.upload(sw, r.Key, r.Exclusive, sw.gen); err != nil {
			if lostCreate(r.Exclusive, err) {
				sw.Discard()
				continue
			}
			f.log.Warn("upload of staged data from an earlier run failed; will retry", "key", r.Key, "err", err)
			f.addFailed(sw, r.Key, err)
			continue
		}
		sw.Discard()
		n++
	}
	return n, nil
}

// Invalidate tells the kernel that the given keys changed in the store, so
// it drops cached entries, attributes and pages for them.
func (f *FS) Invalidate(keys []string) {
	f.changed() // a refresh has changed the sidecar
	for _, key := range keys {
		pl, err := keypath.Split(key)
		if err != nil {
			continue
		}
		parent := f.knownInode(pl.Dir)
		if parent == nil {
			continue
		}
		if ch := parent.GetChild(pl.Name); ch != nil && !ch.IsDir() {
			ch.NotifyContent(0, 0)
		}
		parent.NotifyEntry(pl.Name)
	}
}

// Serving tells the tree where it is mounted, once it is: a request the
// kernel's end of the connection has given up on stops its store work.
func (f *FS) Serving(mountpoint string) { f.conn.Serving(mountpoint) }

// knownInode is the inode of path p if the kernel knows it (has looked it
// up and not forgotten it), else nil.
func (f *FS) knownInode(p string) *fs.Inode {
	n := f.root.EmbeddedInode()
	if p == "" {
		return n
	}
	for _, seg := range strings.Split(p, "/") {
		if n = n.GetChild(seg); n == nil {
			return nil
		}
	}
	return n
}

// IsPending reports whether key has staged data the store does not hold
// yet; a refresh must not drop such a file from the sidecar.
func (f *FS) IsPending(key string) bool {
	f.mu.Lock()
	nodes := make([]*fileNode, 0, len(f.staged))
	for n := range f.staged {
		nodes = append(nodes, n)
	}
	fu, _ := f.queuedLocked(key)
	f.mu.Unlock()
	if fu != nil || f.uploadingUnder(key, false) != nil {
		return true
	}
	for _, n := range nodes {
		if sw := n.stagedWrite(); sw != nil {
			if k, dirty, _, deleted, _ := sw.snapshot(); dirty && !deleted && k == key {
				return true
			}
		}
	}
	return false
}
