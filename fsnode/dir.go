package fsnode

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/tapefs/tapefs/keypath"
	"github.com/tapefs/tapefs/meta"
	"gocloud.dev/gcerrors"
)

// dirNode is a directory: a key prefix in the store, listed from the sidecar.
type dirNode struct {
	fs.Inode
	fsys  *FS
	cache dirCache // when the kernel may keep its listing (dirhandle.go)
}

var (
	_ fs.NodeLookuper      = (*dirNode)(nil)
	_ fs.NodeGetattrer     = (*dirNode)(nil)
	_ fs.NodeSetattrer     = (*dirNode)(nil)
	_ fs.NodeMkdirer       = (*dirNode)(nil)
	_ fs.NodeRmdirer       = (*dirNode)(nil)
	_ fs.NodeUnlinker      = (*dirNode)(nil)
	_ fs.NodeRenamer       = (*dirNode)(nil)
	_ fs.NodeCreater       = (*dirNode)(nil)
	_ fs.NodeStatfser      = (*dirNode)(nil)
	_ fs.NodeGetxattrer    = (*dirNode)(nil)
	_ fs.NodeSetxattrer    = (*dirNode)(nil)
	_ fs.NodeRemovexattrer = (*dirNode)(nil)
)

// Getxattr: a directory has no attributes (see otherXattr).
func (n *dirNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return 0, otherXattr(attr)
}

// Setxattr and Removexattr: the store keeps no attributes of a directory.
// ENOTSUP, as for files, tells cp -a, tar and rsync that there is nothing
// to keep here; go-fuse's default for a node without them is ENODATA,
// which made `cp -a` of a directory exit 1 ("preserving permissions").
func (n *dirNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return n.noXattrs()
}

func (n *dirNode) Removexattr(ctx context.Context, attr string) syscall.Errno { return n.noXattrs() }

// noXattrs is the answer to a change of a directory's attributes.
func (n *dirNode) noXattrs() syscall.Errno {
	if n.fsys.checkWritable() != nil {
		return syscall.EROFS
	}
	return syscall.ENOTSUP
}

func (n *dirNode) path() (string, syscall.Errno) {
	p, ok := n.fsys.pathOf(&n.Inode)
	if !ok {
		return "", syscall.ENOENT
	}
	return p, 0
}

// reserved says whether name is the views directory (only in the root):
// it hides a store key of the same name, and nothing is written there.
func (n *dirNode) reserved(name string) bool { return name == ViewsDir && n.IsRoot() }

func (n *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if n.reserved(name) {
		v := n.fsys.views
		v.fillAttr(&out.Attr)
		return n.NewInode(ctx, v, fs.StableAttr{Mode: fuse.S_IFDIR, Ino: v.ino()}), 0
	}
	dir, errno := n.path()
	if errno != 0 {
		return nil, errno
	}
	e, ok, err := n.fsys.sc.Lookup(local(ctx), dir, name)
	if err != nil {
		return nil, n.fsys.errno("lookup", keypath.Join(dir, name), err)
	}
	if !ok {
		if ch, ok := n.lookupSynthesized(ctx, dir, name, out); ok {
			return ch, 0
		}
		return nil, syscall.ENOENT
	}
	ch := n.fsys.newChild(ctx, &n.Inode, e)
	if fn, ok := ch.Operations().(*fileNode); ok {
		if a, ok := fn.unstoredSize(e.Key); ok {
			e.Size = a
		}
	}
	n.fsys.fillAttr(e, &out.Attr)
	return ch, 0
}

func (n *dirNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	p, errno := n.path()
	if errno != 0 {
		return errno
	}
	e := meta.Entry{IsDir: true}
	if p != "" {
		de, ok, err := n.fsys.sc.StatDir(local(ctx), p)
		if err != nil {
			return n.fsys.errno("getattr", p, err)
		}
		if !ok {
			return syscall.ENOENT
		}
		e = de
	}
	n.fsys.fillAttr(e, &out.Attr)
	return 0
}

// Setattr accepts mode, owner and time changes and keeps nothing of them:
// modes are the mount's (Options.DirMode, FileMode) and times the store's.
func (n *dirNode) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if err := n.fsys.checkWritable(); err != nil {
		return n.fsys.errno("setattr", "", err)
	}
	return n.Getattr(ctx, fh, out)
}

func (n *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	defer n.fsys.changed() // see openEntry
	if n.reserved(name) {
		return nil, syscall.EROFS
	}
	dir, errno := n.path()
	if errno != 0 {
		return nil, errno
	}
	p := keypath.Join(dir, name)
	if err := n.fsys.checkWritable(); err != nil {
		return nil, n.fsys.errno("mkdir", p, err)
	}
	if err := keypath.ValidName(name); err != nil {
		return nil, n.fsys.errno("mkdir", p, err)
	}
	if err := keypath.CheckNewKey(keypath.DirMarkerKey(p)); err != nil {
		return nil, n.fsys.errno("mkdir", p, err)
	}
	ctx, cancel := n.fsys.mutating(ctx)
	defer cancel()
	if _, ok, err := n.fsys.sc.Lookup(local(ctx), dir, name); err != nil {
		return nil, n.fsys.errno("mkdir", p, err)
	} else if ok {
		return nil, syscall.EEXIST
	}
	if err := n.fsys.makeDir(ctx, p); err != nil {
		return nil, n.fsys.errno("mkdir", p, err)
	}
	e, ok, err := n.fsys.sc.StatDir(local(ctx), p)
	if err != nil || !ok {
		return nil, n.fsys.errno("mkdir", p, err)
	}
	n.fsys.fillAttr(e, &out.Attr)
	return n.fsys.newChild(ctx, &n.Inode, e), 0
}

func (n *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	defer n.fsys.changed() // see openEntry
	if n.reserved(name) {
		return syscall.EROFS
	}
	dir, errno := n.path()
	if errno != 0 {
		return errno
	}
	p := keypath.Join(dir, name)
	if err := n.fsys.checkWritable(); err != nil {
		return n.fsys.errno("rmdir", p, err)
	}
	ctx, cancel := n.fsys.mutating(ctx)
	defer cancel()
	e, ok, err := n.fsys.sc.Lookup(local(ctx), dir, name)
	if err != nil {
		return n.fsys.errno("rmdir", p, err)
	}
	if !ok {
		return syscall.ENOENT
	}
	if !e.IsDir {
		return syscall.ENOTDIR
	}
	empty, err := n.fsys.sc.DirIsEmpty(local(ctx), p)
	if err != nil {
		return n.fsys.errno("rmdir", p, err)
	}
	if !empty {
		return syscall.ENOTEMPTY
	}
	if err := n.fsys.bucket.Delete(ctx, keypath.DirMarkerKey(p)); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return n.fsys.errno("rmdir", p, err)
	}
	if err := n.fsys.sc.RemoveDir(local(ctx), p); err != nil {
		return n.fsys.errno("rmdir", p, err)
	}
	return n.fsys.errno("rmdir", p, n.fsys.keepDir(ctx, dir))
}

func (n *dirNode) Unlink(ctx context.Context, name string) syscall.Errno {
	defer n.fsys.changed() // see openEntry
	if n.reserved(name) {
		return syscall.EROFS
	}
	dir, errno := n.path()
	if errno != 0 {
		return errno
	}
	p := keypath.Join(dir, name)
	if err := n.fsys.checkWritable(); err != nil {
		return n.fsys.errno("unlink", p, err)
	}
	ctx, cancel := n.fsys.mutating(ctx)
	defer cancel()
	e, ok, err := n.fsys.sc.Lookup(local(ctx), dir, name)
	if err != nil {
		return n.fsys.errno("unlink", p, err)
	}
	if !ok {
		if ch := n.GetChild(name); ch != nil {
			if fn, ok := ch.Operations().(*fileNode); ok && fn.synth != "" {
				n.fsys.noteRemoved(p) // rm of a synthesized companion: it goes
				return 0
			}
		}
		return syscall.ENOENT
	}
	if e.IsDir {
		return syscall.EISDIR
	}
	if ch := n.GetChild(name); ch != nil {
		if fn, ok := ch.Operations().(*fileNode); ok {
			fn.remember(e)
			fn.markDeleted()
		}
	}
	// Data of the file being uploaded or queued for retry must not bring
	// it back later; kept while the delete may still fail.
	queued, err := n.fsys.claimUnstored(ctx, e.Key)
	if err != nil {
		return n.fsys.errno("unlink", p, err)
	}
	if err := n.fsys.deleteKey(ctx, e.Key); err != nil {
		if queued != nil {
			n.fsys.addFailed(queued, e.Key, err)
		}
		return n.fsys.errno("unlink", p, err)
	}
	if queued != nil {
		queued.Discard()
	}
	n.fsys.noteRemoved(p)
	return n.fsys.errno("unlink", p, n.fsys.keepDir(ctx, dir))
}

func (n *dirNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	defer n.fsys.changed() // see openEntry
	if n.reserved(name) {
		return nil, nil, 0, syscall.EROFS
	}
	dir, errno := n.path()
	if errno != 0 {
		return nil, nil, 0, errno
	}
	p := keypath.Join(dir, name)
	if err := n.fsys.checkWritable(); err != nil {
		return nil, nil, 0, n.fsys.errno("create", p, err)
	}
	if err := keypath.ValidName(name); err != nil {
		return nil, nil, 0, n.fsys.errno("create", p, err)
	}
	if err := keypath.CheckNewKey(p); err != nil {
		return nil, nil, 0, n.fsys.errno("create", p, err)
	}
	if _, ok, err := n.fsys.sc.Lookup(local(ctx), dir, name); err != nil {
		return nil, nil, 0, n.fsys.errno("create", p, err)
	} else if ok {
		return nil, nil, 0, syscall.EEXIST
	}
	sw, err := n.fsys.opts.Staging.New(p)
	if err != nil {
		return nil, nil, 0, n.fsys.errno("create", p, err)
	}
	sw.exclusive = flags&syscall.O_EXCL != 0
	n.fsys.noteCreate(dir, p)
	if err := sw.MarkDirty(); err != nil {
		sw.Discard()
		return nil, nil, 0, n.fsys.errno("create", p, err)
	}
	// A placeholder row gives the new file its inode number and lets other
	// processes see it while it is written; the store sees it on close.
	obj, err := n.fsys.sc.PutObject(local(ctx), meta.Object{Key: p, ModTime: nowUTC()})
	if err != nil {
		sw.Discard()
		return nil, nil, 0, n.fsys.errno("create", p, err)
	}
	fn := &fileNode{fsys: n.fsys, key: p}
	ch := n.NewInode(ctx, fn, fs.StableAttr{Mode: fuse.S_IFREG, Ino: uint64(obj.ID)})
	fn = ch.Operations().(*fileNode)
	fn.adoptStaged(sw)
	e := meta.Entry{Name: name, ID: obj.ID, Size: 0, ModTime: obj.ModTime, Key: p}
	n.fsys.fillAttr(e, &out.Attr)
	return ch, &handle{node: fn, write: true}, 0, 0
}

func (n *dirNode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	defer n.fsys.changed() // see openEntry
	dir, errno := n.path()
	if errno != 0 {
		return errno
	}
	if _, ok := newParent.(*viewNode); ok {
		return syscall.EROFS
	}
	np, ok := newParent.(*dirNode)
	if !ok {
		return syscall.EXDEV
	}
	if n.reserved(name) || np.reserved(newName) {
		return syscall.EROFS
	}
	ndir, errno := np.path()
	if errno != 0 {
		return errno
	}
	src, dst := keypath.Join(dir, name), keypath.Join(ndir, newName)
	if err := n.fsys.checkWritable(); err != nil {
		return n.fsys.errno("rename", src, err)
	}
	if flags&fs.RENAME_EXCHANGE != 0 {
		return syscall.EINVAL
	}
	if err := keypath.ValidName(newName); err != nil {
		return n.fsys.errno("rename", dst, err)
	}
	if err := n.fsys.checkRenamedKeys(ctx, src, dst); err != nil {
		return n.fsys.errno("rename", dst, err)
	}
	ctx, cancel := n.fsys.mutating(ctx)
	defer cancel()
	over, _, _ := n.fsys.sc.Lookup(local(ctx), ndir, newName) // what a rename over replaces
	if err := n.fsys.rename(ctx, dir, name, ndir, newName, flags&RENAME_NOREPLACE != 0); err != nil {
		return n.fsys.errno("rename", src, err)
	}
	n.fsys.noteRemoved(src)
	if old := np.GetChild(newName); old != nil && old != n.GetChild(name) {
		if fn, ok := old.Operations().(*fileNode); ok {
			fn.remember(over)
			fn.markDeleted() // renamed over: its open handles see a file with no links
		}
	}
	if ch := n.GetChild(name); ch != nil {
		rekey(ch, src, dst)
	}
	return 0
}

// RENAME_NOREPLACE is renameat2's flag; go-fuse exports only EXCHANGE.
const RENAME_NOREPLACE = 0x1

func (n *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	if err := syscall.Statfs(n.fsys.opts.Staging.dir, &st); err != nil {
		return n.fsys.errno("statfs", "", err)
	}
	out.Bsize = uint32(st.Bsize)
	out.Frsize = uint32(st.Bsize)
	out.Blocks = st.Blocks
	out.Bfree = st.Bfree
	out.Bavail = st.Bavail
	out.NameLen = keypath.MaxName
	if s, err := n.fsys.sc.Stats(local(ctx)); err == nil {
		out.Files = uint64(s.Objects) + 1<<20
		out.Ffree = 1 << 20
	}
	return 0
}
