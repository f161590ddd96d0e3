package fsnode

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/tapefs/tapefs/meta"
)

// dirHandle is an open directory. It reads the listing from the sidecar
// once, and answers the lookups of READDIRPLUS (ls -l) from that listing,
// so a directory of N entries costs one query, not N+1.
type dirHandle struct {
	node   *dirNode
	ents   []meta.Entry
	byName map[string]int
	loaded bool
	pos    int
}

var (
	_ fs.NodeOpendirHandler = (*dirNode)(nil)
	_ fs.FileReaddirenter   = (*dirHandle)(nil)
	_ fs.FileLookuper       = (*dirHandle)(nil)
	_ fs.FileSeekdirer      = (*dirHandle)(nil)
)

func (n *dirNode) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{node: n}, 0, 0
}

func (h *dirHandle) load(ctx context.Context) syscall.Errno {
	if h.loaded {
		return 0
	}
	dir, errno := h.node.path()
	if errno != 0 {
		return errno
	}
	ents, err := h.node.fsys.sc.ReadDir(local(ctx), dir)
	if err != nil {
		return h.node.fsys.errno("readdir", dir, err)
	}
	h.ents, h.loaded = ents, true
	h.byName = make(map[string]int, len(ents))
	for i, e := range ents {
		h.byName[e.Name] = i
	}
	return 0
}

func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if errno := h.load(ctx); errno != 0 {
		return nil, errno
	}
	if h.pos >= len(h.ents) {
		return nil, 0
	}
	e := h.ents[h.pos]
	h.pos++
	de := &fuse.DirEntry{Name: e.Name, Mode: fuse.S_IFREG, Ino: uint64(e.ID), Off: uint64(h.pos)}
	if e.IsDir {
		de.Mode, de.Ino = fuse.S_IFDIR, dirInoBase+uint64(e.ID)
	}
	return de, 0
}

func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if errno := h.load(ctx); errno != 0 {
		return errno
	}
	h.pos = int(min(off, uint64(len(h.ents))))
	return 0
}

func (h *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	i, ok := h.byName[name]
	if !ok {
		return h.node.Lookup(ctx, name, out)
	}
	e := h.ents[i]
	ch := h.node.fsys.newChild(ctx, &h.node.Inode, e)
	if fn, ok := ch.Operations().(*fileNode); ok {
		if s, ok := fn.stagedAttr(); ok {
			e.Size = s
		}
	}
	h.node.fsys.fillAttr(e, &out.Attr)
	return ch, 0
}
