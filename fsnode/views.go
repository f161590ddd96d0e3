package fsnode

import (
	"context"
	"fmt"
	"hash/fnv"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/tapefs/tapefs/keypath"
	"github.com/tapefs/tapefs/meta"
	"github.com/tapefs/tapefs/tape"
)

// ViewsDir is the hidden directory at the root that holds the views:
//
//	.by/tag/TAG/FILE          tapes with the tag
//	.by/session/SESSION/FILE  tapes of the session
//	.by/day/YYYY-MM-DD/FILE   tapes created that day (UTC)
//	.by/status/STATUS/FILE    recording or finalized
//	.by/tool/TOOL/FILE        tapes that call the tool (tools/call)
//	.by/name/NAME.jsonl       every named tape, under its name
//
// FILE is the tape's own file name (NAME~2.jsonl, … when two tapes in one
// directory share it). A file in a view is a read-only regular file of its
// own (an inode number apart from the tape's, so that nothing writes to a
// tape through a view) that reads the tape's bytes; its user.tape.key
// attribute names the tape's real path. Regular files, not symlinks, so
// grep -r and find follow them. Everything under .by is read-only (EROFS).
// .by is not listed in the root, so find, grep -r and du over the mount do
// not see every tape twice.
const ViewsDir = ".by"

// viewTimeout is how long the kernel may keep entries of a view: views
// change whenever a tape does, so they are held briefly.
const viewTimeout = time.Second

// viewNode is a directory of the views: the views root (view ""), one
// view (value unset), or the tapes of one value of a view.
type viewNode struct {
	fs.Inode
	fsys     *FS
	view     meta.View
	value    string
	hasValue bool

	mu     sync.Mutex
	cached []viewEntry
	at     time.Time
}

var (
	_ fs.NodeLookuper      = (*viewNode)(nil)
	_ fs.NodeReaddirer     = (*viewNode)(nil)
	_ fs.NodeGetattrer     = (*viewNode)(nil)
	_ fs.NodeCreater       = (*viewNode)(nil)
	_ fs.NodeMkdirer       = (*viewNode)(nil)
	_ fs.NodeUnlinker      = (*viewNode)(nil)
	_ fs.NodeRmdirer       = (*viewNode)(nil)
	_ fs.NodeRenamer       = (*viewNode)(nil)
	_ fs.NodeSetattrer     = (*viewNode)(nil)
	_ fs.NodeGetxattrer    = (*viewNode)(nil)
	_ fs.NodeSetxattrer    = (*viewNode)(nil)
	_ fs.NodeRemovexattrer = (*viewNode)(nil)
)

// viewEntry is one name in a view directory: a subdirectory (a view or a
// value) or a tape.
type viewEntry struct {
	name  string
	dir   *viewNode // for directories: the node to make
	tape  meta.ViewTape
	isDir bool
}

func (f *FS) newViewsRoot() *viewNode { return &viewNode{fsys: f} }

// ino gives a view directory a stable inode number apart from the tree's.
func (n *viewNode) ino() uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%s\x00%v", n.view, n.value, n.hasValue)
	return viewInoBase | h.Sum64()&(viewInoBase-1)
}

// viewInoBase keeps view directory inodes apart from objects and dirs.
const viewInoBase = 1 << 62

// entries lists the directory, from a listing at most viewTimeout old.
func (n *viewNode) entries(ctx context.Context) ([]viewEntry, syscall.Errno) {
	// Below .by itself every listing comes from the tape index. The wait is
	// outside n.mu, so that each waiting call can be interrupted.
	if n.view != "" {
		if errno := n.fsys.awaitIndex(ctx); errno != 0 {
			return nil, errno
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cached != nil && time.Since(n.at) < viewTimeout {
		return n.cached, 0
	}
	var out []viewEntry
	switch {
	case n.view == "":
		for _, v := range meta.Views {
			out = append(out, viewEntry{name: string(v), isDir: true, dir: &viewNode{fsys: n.fsys, view: v}})
		}
	case n.view != meta.ViewName && !n.hasValue:
		vals, err := n.fsys.sc.ViewValues(local(ctx), n.view)
		if err != nil {
			return nil, n.fsys.errno("readdir", ViewsDir+"/"+string(n.view), err)
		}
		seen := map[string]bool{}
		for _, v := range vals {
			name := safeName(v)
			if name == "" || seen[name] {
				continue // two values that read the same: the first wins
			}
			seen[name] = true
			out = append(out, viewEntry{name: name, isDir: true,
				dir: &viewNode{fsys: n.fsys, view: n.view, value: v, hasValue: true}})
		}
	default:
		tapes, err := n.fsys.sc.ViewTapes(local(ctx), n.view, n.value)
		if err != nil {
			return nil, n.fsys.errno("readdir", ViewsDir+"/"+string(n.view)+"/"+n.value, err)
		}
		out = tapeEntries(tapes, n.view == meta.ViewName)
	}
	n.cached, n.at = out, time.Now()
	return out, 0
}

// tapeEntries names the tapes of a view directory: by file name, or by
// tape name (byName); a name already taken gets ~2, ~3, … before its
// extension, in key order, so the names are stable while the set is.
func tapeEntries(tapes []meta.ViewTape, byName bool) []viewEntry {
	taken := map[string]bool{}
	out := make([]viewEntry, 0, len(tapes))
	for _, t := range tapes {
		name := t.Name
		if byName {
			ext := path.Ext(t.Key)
			name = safeName(t.TapeName)
			if name == "" {
				continue
			}
			if len(name)+len(ext) > keypath.MaxName-8 {
				name = tape.TruncateUTF8(name, keypath.MaxName-8-len(ext))
			}
			name += ext
		}
		if taken[name] {
			ext := path.Ext(name)
			stem := strings.TrimSuffix(name, ext)
			for i := 2; ; i++ {
				alt := fmt.Sprintf("%s~%d%s", stem, i, ext)
				if !taken[alt] {
					name = alt
					break
				}
			}
		}
		taken[name] = true
		out = append(out, viewEntry{name: name, tape: t})
	}
	return out
}

// safeName makes a tag, session id or tape name usable as one file name:
// '/' becomes '_', control characters and invalid UTF-8 are dropped, and
// "." and ".." are refused ("").
func safeName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == utf8.RuneError, r < 0x20, r == 0x7f:
		case r == '/':
			b.WriteByte('_')
		default:
			b.WriteRune(r)
		}
	}
	name := tape.TruncateUTF8(strings.TrimSpace(b.String()), keypath.MaxName)
	if keypath.ValidName(name) != nil {
		return ""
	}
	return name
}

func (n *viewNode) find(ctx context.Context, name string) (viewEntry, syscall.Errno) {
	ents, errno := n.entries(ctx)
	if errno != 0 {
		return viewEntry{}, errno
	}
	for _, e := range ents {
		if e.name == name {
			return e, 0
		}
	}
	return viewEntry{}, syscall.ENOENT
}

func (n *viewNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	e, errno := n.find(ctx, name)
	if errno != 0 {
		return nil, errno
	}
	out.SetEntryTimeout(viewTimeout)
	out.SetAttrTimeout(viewTimeout)
	if e.isDir {
		e.dir.fillAttr(&out.Attr)
		return n.NewInode(ctx, e.dir, fs.StableAttr{Mode: fuse.S_IFDIR, Ino: e.dir.ino()}), 0
	}
	ent := e.tape.Entry
	ent.ID = viewFileIno(ent.ID)
	ch := n.NewInode(ctx, &fileNode{fsys: n.fsys, inView: e.tape.ID},
		fs.StableAttr{Mode: fuse.S_IFREG, Ino: uint64(ent.ID)})
	n.fsys.fillAttr(ent, &out.Attr)
	out.Attr.Mode = fuse.S_IFREG | n.fsys.viewFileMode()
	return ch, 0
}

// viewFileMode is the mode of the views' files: the mount's, read-only.
func (f *FS) viewFileMode() uint32 { return f.opts.FileMode &^ 0o222 }

// viewFileInoBase keeps the inodes of the views' files apart.
const viewFileInoBase = 1 << 60

// viewFileIno is the inode number of a tape's file in the views.
func viewFileIno(objectID int64) int64 { return viewFileInoBase | objectID }

func (n *viewNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	ents, errno := n.entries(ctx)
	if errno != 0 {
		return nil, errno
	}
	list := make([]fuse.DirEntry, 0, len(ents)+2)
	list = append(list, dotEntries(n.EmbeddedInode())...)
	for _, e := range ents {
		if e.isDir {
			list = append(list, fuse.DirEntry{Name: e.name, Mode: fuse.S_IFDIR, Ino: e.dir.ino()})
		} else {
			list = append(list, fuse.DirEntry{Name: e.name, Mode: fuse.S_IFREG, Ino: uint64(viewFileIno(e.tape.ID))})
		}
	}
	return fs.NewListDirStream(list), 0
}

func (n *viewNode) fillAttr(a *fuse.Attr) {
	a.Mode = fuse.S_IFDIR | n.fsys.opts.DirMode&^0o222
	a.Nlink = 2
	a.Ino = n.ino()
	a.Size = 4096
	a.Blksize = ioBlock
	t := n.fsys.started
	a.SetTimes(&t, &t, &t)
	a.Uid, a.Gid = n.fsys.owner()
}

func (n *viewNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fillAttr(&out.Attr)
	out.SetTimeout(viewTimeout)
	return 0
}

// The views are read-only: nothing is made, removed or renamed in them.

func (n *viewNode) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

func (n *viewNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}

func (n *viewNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (n *viewNode) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EROFS }
func (n *viewNode) Rmdir(ctx context.Context, name string) syscall.Errno  { return syscall.EROFS }

func (n *viewNode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return syscall.EROFS
}

// Getxattr: a view's directory has no attributes (see otherXattr).
func (n *viewNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return 0, otherXattr(attr)
}

// Setxattr and Removexattr: the views are read-only.
func (n *viewNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.EROFS
}

func (n *viewNode) Removexattr(ctx context.Context, attr string) syscall.Errno { return syscall.EROFS }
