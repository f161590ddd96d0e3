package fsnode

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/tapefs/tapefs/keypath"
	"github.com/tapefs/tapefs/meta"
	"gocloud.dev/gcerrors"
)

// fileNode is one store object. While any handle writes to it, it holds a
// StagedWrite that every handle reads from and writes to.
type fileNode struct {
	fs.Inode
	fsys *FS

	mu       sync.Mutex
	key      string // the store key; kept current by rename, and by lookups in a view
	synth    string // for a synthesized .meta.json: the key of its tape's .jsonl
	inView   int64  // for a tape as a view shows it (read-only): its object's row id
	staged   *StagedWrite
	deleted  bool
	keepETag string     // ETag at the last open, for FOPEN_KEEP_CACHE
	last     meta.Entry // the attributes last served, for fstat after unlink
	opened   openEntry  // the entry the last read-only open read (see openEntry)
	uploadMu sync.Mutex // one upload of this file at a time
	// acquireMu: one copy-on-open at a time (made without holding mu).
	acquireMu sync.Mutex
}

var (
	_ fs.NodeOpener    = (*fileNode)(nil)
	_ fs.NodeGetattrer = (*fileNode)(nil)
	_ fs.NodeSetattrer = (*fileNode)(nil)
)

// path is the node's store key (also its path in the tree), or ENOENT once
// it has been unlinked. A view's file asks the sidecar where its tape is
// now.
func (n *fileNode) path() (string, syscall.Errno) {
	if n.inView != 0 {
		key, ok, err := n.fsys.sc.ObjectKey(context.Background(), n.inView)
		if err != nil {
			return "", n.fsys.errno("lookup", ViewsDir, err)
		}
		if !ok {
			return "", syscall.ENOENT
		}
		return key, 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.deleted {
		return "", syscall.ENOENT
	}
	return n.key, 0
}

// remember keeps e as the attributes to serve once the node is gone.
func (n *fileNode) remember(e meta.Entry) {
	n.mu.Lock()
	n.last = e
	n.mu.Unlock()
}

// gone reports whether the node was unlinked or renamed over.
func (n *fileNode) gone() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.deleted
}

// currentKey is the key, and whether the file still exists.
func (n *fileNode) currentKey() (string, bool) {
	p, errno := n.path()
	return p, errno == 0
}

func (n *fileNode) setKey(key string) {
	n.mu.Lock()
	n.key = key
	n.mu.Unlock()
}

func (n *fileNode) stagedWrite() *StagedWrite {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.staged
}

// stagedAttr is the size of the staged copy, when there is one.
func (n *fileNode) stagedAttr() (int64, bool) {
	sw := n.stagedWrite()
	if sw == nil {
		return 0, false
	}
	s, err := sw.Size()
	return s, err == nil
}

// unstoredSize is the size of what was written to the file (at key) and is
// not in the store yet: its staged copy, or data of a closed file being
// uploaded or queued for retry. Reads give those bytes, so stat says so.
func (n *fileNode) unstoredSize(key string) (int64, bool) {
	if s, ok := n.stagedAttr(); ok {
		return s, true
	}
	if n.inView != 0 {
		return 0, false
	}
	return n.fsys.pendingSize(key)
}

func (n *fileNode) adoptStaged(sw *StagedWrite) {
	n.mu.Lock()
	n.staged = sw
	sw.refs++
	n.mu.Unlock()
	n.fsys.registerStaged(n, true)
}

func (n *fileNode) markDeleted() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.deleted = true
	if n.staged != nil {
		n.staged.mu.Lock()
		n.staged.deleted = true
		n.staged.mu.Unlock()
	}
}

// entry reads the node's sidecar row.
func (n *fileNode) entry(ctx context.Context) (meta.Entry, syscall.Errno) {
	p, errno := n.path()
	if errno != 0 {
		return meta.Entry{}, errno
	}
	e, ok, err := n.fsys.sc.Lookup(local(ctx), keypath.Parent(p), keypath.Base(p))
	if err != nil {
		return e, n.fsys.errno("getattr", p, err)
	}
	if !ok {
		if se, _, ok := n.synthesized(ctx); ok {
			return se, 0
		}
	}
	if !ok || e.IsDir {
		return e, syscall.ENOENT
	}
	return e, 0
}

func (n *fileNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	e, errno := n.entry(ctx)
	if errno == syscall.ENOENT && n.gone() {
		// Unlinked (or renamed over) while open: fstat still answers, with
		// the attributes last served and no links, as on a local disk.
		n.mu.Lock()
		e = n.last
		n.mu.Unlock()
		if s, ok := n.stagedAttr(); ok {
			e.Size = s
		}
		n.fsys.fillAttr(e, &out.Attr)
		out.Attr.Nlink = 0
		return 0
	}
	if errno != 0 {
		return errno
	}
	if s, ok := n.unstoredSize(e.Key); ok {
		e.Size = s
	}
	n.mu.Lock()
	n.last = e
	n.mu.Unlock()
	n.fsys.fillAttr(e, &out.Attr)
	if n.inView != 0 {
		out.Attr.Mode = fuse.S_IFREG | n.fsys.viewFileMode()
		out.Attr.Ino = uint64(viewFileIno(e.ID))
	}
	return 0
}

// writable says why nothing may be written to the node, if anything does.
func (n *fileNode) writable() error {
	if n.inView != 0 {
		return errReadOnly
	}
	return n.fsys.checkWritable()
}

// Setattr truncates (size); mode, owner and times are accepted and not
// kept, the same way every time.
func (n *fileNode) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if err := n.writable(); err != nil {
		return n.fsys.errno("setattr", "", err)
	}
	if size, ok := in.GetSize(); ok {
		if h, ok := fh.(*handle); ok && h.write {
			if err := h.node.stagedWrite().Truncate(int64(size)); err != nil {
				return n.fsys.errno("truncate", "", err)
			}
		} else {
			// truncate(2) by path: stage, truncate, upload, done.
			if errno := n.acquire(ctx, size == 0); errno != 0 {
				return errno
			}
			err := n.stagedWrite().Truncate(int64(size))
			if err == nil {
				err = n.flush()
			}
			n.release()
			if err != nil {
				return n.fsys.errno("truncate", "", err)
			}
		}
	}
	return n.Getattr(ctx, fh, out)
}

func (n *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0
	if write {
		if err := n.writable(); err != nil {
			return nil, 0, n.fsys.errno("open", "", err)
		}
		if errno := n.acquire(ctx, flags&syscall.O_TRUNC != 0); errno != 0 {
			return nil, 0, errno
		}
		return &handle{node: n, write: true}, 0, 0
	}
	e, errno := n.openEntry(ctx)
	if errno != 0 {
		return nil, 0, errno
	}
	held, errno := n.holdUnstored(ctx, e.Key)
	if errno != 0 {
		return nil, 0, errno
	}
	// A read-only handle has nothing to upload at close: FOPEN_NOFLUSH
	// spares the round trip, which matters for grep over many tapes.
	fuseFlags := uint32(fuse.FOPEN_NOFLUSH)
	n.mu.Lock()
	ver := version(e)
	if n.staged == nil && ver == n.keepETag {
		fuseFlags |= fuse.FOPEN_KEEP_CACHE // unchanged since the last open
	}
	n.keepETag = ver
	n.mu.Unlock()
	h := &handle{node: n, held: held}
	if _, doc, ok := n.synthesized(ctx); ok && e.ID&synthInoBase != 0 {
		h.data = doc
	} else if !held {
		h.reader = NewObjectReader(n.fsys.bucket, e.Key, ver, e.Size, n.fsys.opts.Read, &n.fsys.stats)
		h.reader.matchETag(e.ETag)
		n.fsys.ahead.opened(e)
	}
	return h, fuseFlags, 0
}

// holdUnstored makes a read-only open read what was written to the file
// and is not in the store yet: a writer's staged copy (held, so that it
// outlives the writer's close), or data queued for retry after its upload
// failed (taken back). It says whether the open holds a staged copy.
func (n *fileNode) holdUnstored(ctx context.Context, key string) (bool, syscall.Errno) {
	if n.inView != 0 {
		return false, 0
	}
	if n.stagedWrite() == nil {
		if !n.fsys.IsPending(key) {
			return false, 0
		}
		ctx, cancel := killable(ctx, &n.fsys.conn)
		defer cancel()
		if err := n.fsys.awaitUploads(ctx, key); err != nil {
			return false, n.fsys.errno("open", key, err)
		}
		if n.stagedWrite() == nil && !n.fsys.isQueued(key) {
			return false, 0 // uploaded meanwhile: read the store
		}
	}
	if errno := n.acquire(ctx, false); errno != 0 {
		return false, errno
	}
	return true, 0
}

// acquire gives the node a staged copy for writing: empty when truncating,
// else a copy of the object (copy-on-open). The copy is made outside n.mu,
// so that stat and lookups of the file (which take it) answer from the
// sidecar meanwhile; acquireMu lets one copy be made at a time.
func (n *fileNode) acquire(ctx context.Context, trunc bool) syscall.Errno {
	ctx, cancel := killable(ctx, &n.fsys.conn)
	defer cancel()
	n.acquireMu.Lock()
	defer n.acquireMu.Unlock()
	n.mu.Lock()
	if n.staged != nil {
		defer n.mu.Unlock()
		n.staged.refs++
		if trunc {
			if err := n.staged.Truncate(0); err != nil {
				n.staged.refs--
				return n.fsys.errno("open", n.staged.key, err)
			}
		}
		return 0
	}
	deleted, p := n.deleted, n.key
	n.mu.Unlock()
	if deleted {
		return syscall.ENOENT
	}
	// What a closed file left unstored is newer than the store's version.
	sw, err := n.fsys.claimUnstored(ctx, p)
	if err != nil {
		return n.fsys.errno("open", p, err)
	}
	adopted := sw != nil
	// drop undoes the staged copy: data taken from the retry queue goes
	// back to it, never lost.
	drop := func(cause error) {
		if adopted {
			n.fsys.addFailed(sw, p, cause)
		} else {
			sw.Discard()
		}
	}
	if adopted {
		if trunc {
			err = sw.Truncate(0)
		}
	} else if sw, err = n.fsys.opts.Staging.New(p); err != nil {
		return n.fsys.errno("open", p, err)
	} else if trunc {
		err = sw.Truncate(0)
	} else if r, rerr := n.fsys.bucket.NewReader(ctx, p, nil); rerr != nil {
		err = rerr
		if _, doc, ok := n.synthesizedAt(ctx, p); ok && gcerrors.Code(rerr) == gcerrors.NotFound {
			err = sw.Fill(bytes.NewReader(doc)) // editing a synthesized companion
		}
	} else {
		n.fsys.stats.StoreReads.Add(1)
		err = sw.Fill(r)
		if sz, e := sw.Size(); e == nil {
			n.fsys.stats.StoreReadBytes.Add(sz)
		}
		r.Close()
	}
	if err != nil {
		drop(err)
		return n.fsys.errno("open", p, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.deleted { // unlinked or renamed over while the copy was made
		sw.Discard()
		return syscall.ENOENT
	}
	if n.staged != nil { // given a newer one meanwhile (adoptStaged): use that
		sw.Discard()
		n.staged.refs++
		return 0
	}
	if n.key != p { // renamed meanwhile: the bytes are the same object's
		sw.SetKey(n.key)
	}
	sw.refs = 1
	n.staged = sw
	n.fsys.registerStaged(n, true)
	return 0
}

// release drops one handle's hold on the staged copy. The last one uploads
// what is still dirty; staged data that cannot be uploaded is kept and
// queued for retry.
func (n *fileNode) release() {
	n.mu.Lock()
	sw := n.staged
	if sw == nil {
		n.mu.Unlock()
		return
	}
	sw.refs--
	if sw.refs > 0 {
		n.mu.Unlock()
		return
	}
	n.staged = nil
	n.fsys.setUploading(sw, true) // pending, without a gap, until uploaded or queued
	n.fsys.registerStaged(n, false)
	n.mu.Unlock()
	defer n.fsys.setUploading(sw, false) // what awaitUploads waits for

	key, dirty, excl, deleted, gen := sw.snapshot()
	if p, ok := n.currentKey(); ok && p != key {
		sw.SetKey(p)
		key = p
	}
	if deleted || !dirty {
		sw.Discard()
		return
	}
	if err := sw.failure(); err != nil {
		n.fsys.dropBroken(sw, key, err)
		n.uploaded() // stat shows the store's version again
		// Last: once the staged files are gone, the sidecar and the
		// kernel show the store's version (the files went first, and a
		// stat right after saw the failed copy's size for a moment).
		sw.Discard()
		return
	}
	err := sw.recentFailure(gen, key) // a close that just failed: queue the bytes
	if err == nil {
		err = n.fsys.uploadStaged(sw, key, excl, gen)
		if err != nil {
			n.fsys.stats.UploadErrors.Add(1)
		}
	}
	if err != nil {
		if lostCreate(excl, err) {
			sw.Discard() // another writer created the key first: never retried
			return
		}
		n.fsys.log.Warn("upload failed; the data is kept and will be retried", "key", key, "err", err)
		n.fsys.addFailed(sw, key, err)
		return
	}
	n.uploaded()
	sw.Discard()
}

// flush uploads the staged copy if it holds anything the store lacks.
func (n *fileNode) flush() error {
	n.uploadMu.Lock()
	defer n.uploadMu.Unlock()
	sw := n.stagedWrite()
	if sw == nil {
		return nil
	}
	key, dirty, excl, deleted, gen := sw.snapshot()
	if deleted || !dirty {
		return nil
	}
	if p, ok := n.currentKey(); ok && p != key {
		if err := sw.SetKey(p); err != nil {
			return err
		}
		key = p
	} else if !ok {
		return nil // unlinked while open
	}
	if err := sw.failure(); err != nil {
		return err // a write failed: those bytes never go up (see failLocked)
	}
	if err := sw.recentFailure(gen, key); err != nil {
		return err
	}
	start := time.Now()
	if err := n.fsys.uploadStaged(sw, key, excl, gen); err != nil {
		n.fsys.stats.UploadErrors.Add(1)
		if !lostCreate(excl, err) {
			err = &uploadFailed{err: err}
		}
		sw.failedUpload(gen, key, start, err)
		return err
	}
	n.uploaded()
	return nil
}

// uploaded drops the kernel's cached attributes of the node (not its
// pages): the store gave the object its own modification time, which stat
// must show from now on. An attribute-only invalidation waits on nothing,
// so it is safe inside a FUSE call.
func (n *fileNode) uploaded() {
	if n.EmbeddedInode().StableAttr().Ino != 0 {
		n.NotifyContent(-1, 0)
	}
}

// version identifies the content of an object: its ETag, or else its size
// and modification time (listings carry no ETag).
func version(e meta.Entry) string {
	if e.ETag != "" {
		return e.ETag
	}
	return fmt.Sprintf("%d-%d", e.Size, e.ModTime.UnixNano())
}

// handle is one open file.
type handle struct {
	node   *fileNode
	write  bool
	held   bool          // read-only, holding the staged copy of data not yet stored
	reader *ObjectReader // store reads when nothing is staged
	data   []byte        // the content of a synthesized file
}

var (
	_ fs.FileReader   = (*handle)(nil)
	_ fs.FileWriter   = (*handle)(nil)
	_ fs.FileFlusher  = (*handle)(nil)
	_ fs.FileFsyncer  = (*handle)(nil)
	_ fs.FileReleaser = (*handle)(nil)
)

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if sw := h.node.stagedWrite(); sw != nil {
		n, err := sw.ReadAt(dest, off)
		if err != nil && err != io.EOF {
			return nil, h.node.fsys.errno("read", sw.key, err)
		}
		return fuse.ReadResultData(dest[:n]), 0
	}
	if h.data != nil {
		if off >= int64(len(h.data)) {
			return fuse.ReadResultData(nil), 0
		}
		return fuse.ReadResultData(h.data[off:min(off+int64(len(dest)), int64(len(h.data)))]), 0
	}
	if h.reader == nil {
		return fuse.ReadResultData(nil), 0
	}
	n, err := h.reader.ReadAt(ctx, dest, off)
	if err != nil && err != io.EOF {
		return nil, h.node.fsys.errno("read", h.reader.key, err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	sw := h.node.stagedWrite()
	if !h.write || sw == nil {
		return 0, syscall.EBADF
	}
	n, err := sw.WriteAt(data, off)
	if err != nil {
		return uint32(n), h.node.fsys.errno("write", sw.key, err)
	}
	h.node.fsys.maybeStream(sw) // a large file written in order goes up while it is written
	return uint32(n), 0
}

// Flush runs at every close(2): the upload happens here, so close reports
// whether the data reached the store.
func (h *handle) Flush(ctx context.Context) syscall.Errno {
	if !h.write {
		return 0
	}
	if err := h.node.flush(); err != nil {
		p, _ := h.node.currentKey()
		return h.node.fsys.errno("close", p, err)
	}
	return 0
}

func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return h.Flush(ctx)
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	if h.reader != nil {
		h.reader.Close()
	}
	if h.write || h.held {
		h.node.release()
	}
	return 0
}
