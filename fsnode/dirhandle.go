package fsnode

import (
	"context"
	"encoding/binary"
	"hash/fnv"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/tapefs/tapefs/meta"
)

// dirHandle is an open directory. It reads the listing from the sidecar
// once, at open, and answers the lookups of READDIRPLUS (ls -l) from that
// listing, so a directory of N entries costs one query, not N+1.
type dirHandle struct {
	node   *dirNode
	ents   []meta.Entry
	byName map[string]int
	pos    int
	fp     uint64 // fingerprint of ents (see listingFP)
}

var (
	_ fs.NodeOpendirHandler = (*dirNode)(nil)
	_ fs.FileReaddirenter   = (*dirHandle)(nil)
	_ fs.FileLookuper       = (*dirHandle)(nil)
	_ fs.FileSeekdirer      = (*dirHandle)(nil)
	_ fs.FileReleasedirer   = (*dirHandle)(nil)
)

// dirCache decides when the kernel may keep a directory's listing in its
// readdir cache (FOPEN_CACHE_DIR): then a warm ls or glob reads the
// listing without a READDIRPLUS round trip per ~150 entries (and without
// the daemon making an inode for every entry again).
//
// The kernel's cache of a directory is used only when it can hold nothing
// but the listing the sidecar gives now, filled less than half an entry
// timeout ago: READDIRPLUS is what renews the kernel's entries and
// attributes of the children; a listing served from the cache renews
// nothing, and ls -l of a cache older than the entry timeout would send a
// LOOKUP for every file. Otherwise the open drops the kernel's cache (an
// inode notification) and fills it afresh, or, while handles of another
// listing are open (any of them may be filling the cache), gets no
// caching at all. go-fuse turns either of FOPEN_CACHE_DIR and
// FOPEN_KEEP_CACHE into both.
//
// A read the daemon serves makes the kernel mark that file's atime stale,
// and its next stat is a GETATTR round trip, which READDIRPLUS spares: a
// warm grep after a cold one made 2,000 of them. So the cache is filled
// afresh after any read the daemon served since the last fill (reads
// counts them, see FS.daemonReads).
type dirCache struct {
	mu      sync.Mutex
	trusted bool           // the kernel's cache holds at most the listing fp
	fp      uint64         // fingerprint of the listing the cache may hold
	filled  time.Time      // when the cache was last filled
	reads   int64          // FS.daemonReads when it was filled
	open    map[uint64]int // open handles by the fingerprint of their listing
}

// Ways to open a directory handle.
const (
	dirNoCache = iota // no caching: the kernel drops its cache
	dirCached         // use the kernel's cache (or fill it)
	dirRefill         // drop the kernel's cache, then fill it
)

// opened records a handle of listing fp and says how it uses the
// kernel's cache. A dirRefill the caller could not carry out (the
// notification failed) must be followed by failed.
func (c *dirCache) opened(fp uint64, ttl time.Duration, reads int64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open == nil {
		c.open = map[uint64]int{}
	}
	mixed := false
	for k := range c.open {
		if k != fp {
			mixed = true
		}
	}
	c.open[fp]++
	now := time.Now()
	switch {
	case ttl <= 0:
		return dirNoCache
	case mixed:
		c.trusted = false
		return dirNoCache
	case c.trusted && c.fp == fp && now.Sub(c.filled) < ttl/2 && reads == c.reads:
		return dirCached
	}
	// The cache is dropped now; only the handles open now, which all read
	// fp, can fill it again.
	c.trusted, c.fp, c.filled, c.reads = true, fp, now, reads
	return dirRefill
}

// failed says that the kernel's cache could not be dropped.
func (c *dirCache) failed() {
	c.mu.Lock()
	c.trusted = false
	c.mu.Unlock()
}

func (c *dirCache) released(fp uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[fp]--; c.open[fp] <= 0 {
		delete(c.open, fp)
	}
}

// listingFP is a fingerprint of everything a listing gives the kernel:
// names, inode numbers, types, and the sizes and times READDIRPLUS sends
// with them (a changed file is listed afresh, as before the cache).
func listingFP(ents []meta.Entry) uint64 {
	h := fnv.New64a()
	var b [8 * 4]byte
	for _, e := range ents {
		kind := uint64(e.Size) << 1
		if e.IsDir {
			kind |= 1
		}
		binary.LittleEndian.PutUint64(b[0:], uint64(e.ID))
		binary.LittleEndian.PutUint64(b[8:], kind)
		binary.LittleEndian.PutUint64(b[16:], uint64(e.ModTime.UnixNano()))
		binary.LittleEndian.PutUint64(b[24:], uint64(len(e.Name))) // no two names run together
		h.Write([]byte(e.Name))
		h.Write(b[:])
	}
	return h.Sum64()
}

func (n *dirNode) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	h := &dirHandle{node: n}
	if errno := h.load(ctx); errno != 0 {
		return nil, 0, errno
	}
	switch n.cache.opened(h.fp, n.fsys.entryTTL, n.fsys.daemonReads()) {
	case dirRefill:
		if n.NotifyContent(0, 0) != 0 {
			n.cache.failed()
			return h, 0, 0
		}
		fallthrough
	case dirCached:
		return h, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
	}
	return h, 0, 0
}

func (h *dirHandle) load(ctx context.Context) syscall.Errno {
	dir, errno := h.node.path()
	if errno != 0 {
		return errno
	}
	l, err := h.node.fsys.readDir(local(ctx), dir)
	if err != nil {
		return h.node.fsys.errno("readdir", dir, err)
	}
	h.ents, h.byName, h.fp = l.ents, l.byName, l.fp
	return 0
}

// dirListing is a directory's listing as read from the sidecar, with what
// opening the directory needs of it. It is shared, and never changed.
type dirListing struct {
	ents   []meta.Entry
	byName map[string]int // index in ents
	fp     uint64         // see listingFP
}

// listingCache is the last listing FS.readDir read. Every warm grep or ls
// opens the directory and starts a read-ahead run in it, and reading the
// sidecar's 2,000 rows, their fingerprint and name index took 6.5 ms of a
// 0.15 s warm grep. It is used again under the bounds of openEntry: while
// nothing has changed the sidecar's tree (FS.epoch), for the same
// directory, and for at most the entry timeout (the bound on what another
// mount sharing the sidecar file changed unseen).
type listingCache struct {
	mu    sync.Mutex
	dir   string
	epoch uint64 // FS.epoch before it was read
	at    time.Time
	l     *dirListing
}

// readDir is the sidecar's listing of dir (see listingCache).
func (f *FS) readDir(ctx context.Context, dir string) (*dirListing, error) {
	c := &f.listing
	epoch := f.epoch.Load() // before the query: a change after it makes the listing stale
	c.mu.Lock()
	if c.l != nil && c.dir == dir && c.epoch == epoch && time.Since(c.at) < f.entryTTL {
		l := c.l
		c.mu.Unlock()
		return l, nil
	}
	c.mu.Unlock()
	at := time.Now()
	ents, err := f.sc.ReadDir(ctx, dir)
	if err != nil {
		return nil, err
	}
	l := &dirListing{ents: ents, byName: make(map[string]int, len(ents)), fp: listingFP(ents)}
	for i, e := range ents {
		l.byName[e.Name] = i
	}
	if ents == nil {
		return l, nil // an empty listing costs nothing to read again
	}
	c.mu.Lock()
	c.dir, c.epoch, c.at, c.l = dir, epoch, at, l
	c.mu.Unlock()
	return l, nil
}

// Readdirent gives "." and ".." first (positions 0 and 1), then the
// listing.
func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if h.pos < len(dotNames) {
		de := dotEntries(h.node.EmbeddedInode())[h.pos]
		h.pos++
		de.Off = uint64(h.pos)
		return &de, 0
	}
	i := h.pos - len(dotNames)
	if i >= len(h.ents) {
		return nil, 0
	}
	e := h.ents[i]
	h.pos++
	de := &fuse.DirEntry{Name: e.Name, Mode: fuse.S_IFREG, Ino: uint64(e.ID), Off: uint64(h.pos)}
	if e.IsDir {
		de.Mode, de.Ino = fuse.S_IFDIR, dirInoBase+uint64(e.ID)
	}
	return de, 0
}

func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	h.pos = int(min(off, uint64(len(h.ents)+len(dotNames))))
	return 0
}

// dotNames are the entries every directory listing starts with, as on a
// local disk (ls -a shows them; the kernel does not add them itself).
var dotNames = [...]string{".", ".."}

// dotEntries are the "." and ".." entries of the directory n: n itself and
// its parent (n again for the root).
func dotEntries(n *fs.Inode) []fuse.DirEntry {
	parent := n
	if _, p := n.Parent(); p != nil {
		parent = p
	}
	return []fuse.DirEntry{
		{Name: dotNames[0], Mode: fuse.S_IFDIR, Ino: n.StableAttr().Ino},
		{Name: dotNames[1], Mode: fuse.S_IFDIR, Ino: parent.StableAttr().Ino},
	}
}

func (h *dirHandle) Releasedir(ctx context.Context, releaseFlags uint32) {
	h.node.cache.released(h.fp)
}

func (h *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	i, ok := h.byName[name]
	if !ok {
		return h.node.Lookup(ctx, name, out)
	}
	e := h.ents[i]
	ch := h.node.fsys.newChild(ctx, &h.node.Inode, e)
	if fn, ok := ch.Operations().(*fileNode); ok {
		if s, ok := fn.unstoredSize(e.Key); ok {
			e.Size = s
		}
	}
	h.node.fsys.fillAttr(e, &out.Attr)
	return ch, 0
}
