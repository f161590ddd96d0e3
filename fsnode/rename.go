package fsnode

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"time"

	"github.com/tapefs/tapefs/keypath"
	"github.com/tapefs/tapefs/meta"
	"gocloud.dev/gcerrors"
)

func nowUTC() time.Time { return time.Now().UTC() }

// rename moves a file or a whole directory: every key is copied to its new
// name and then deleted, and the sidecar follows in one transaction. Staged
// writes below the source are uploaded first, so nothing in flight is lost.
func (f *FS) rename(ctx context.Context, sdir, sname, ddir, dname string, noReplace bool) error {
	src, dst := keypath.Join(sdir, sname), keypath.Join(ddir, dname)
	se, ok, err := f.sc.Lookup(local(ctx), sdir, sname)
	if err != nil {
		return err
	}
	if !ok {
		return syscall.ENOENT
	}
	if src == dst {
		return nil
	}
	if se.IsDir && strings.HasPrefix(dst+"/", src+"/") {
		return syscall.EINVAL // into itself
	}
	de, exists, err := f.sc.Lookup(local(ctx), ddir, dname)
	if err != nil {
		return err
	}
	if exists {
		if noReplace {
			return fs.ErrExist
		}
		switch {
		case se.IsDir && !de.IsDir:
			return syscall.ENOTDIR
		case !se.IsDir && de.IsDir:
			return syscall.EISDIR
		case de.IsDir:
			empty, err := f.sc.DirIsEmpty(local(ctx), dst)
			if err != nil {
				return err
			}
			if !empty {
				return syscall.ENOTEMPTY
			}
		}
	}
	// What closed files below src are still uploading goes up (or into
	// the retry queue) first; flushUnder then uploads that and open files.
	if err := f.awaitUploads(ctx, src); err != nil {
		return err
	}
	if err := f.flushUnder(src); err != nil {
		return err
	}
	var replaced *StagedWrite // the replaced file's data queued for retry
	if exists && !de.IsDir {
		if replaced, err = f.claimUnstored(ctx, dst); err != nil {
			return err
		}
	}
	if err := f.renameOver(ctx, se, src, dst, exists); err != nil {
		if replaced != nil {
			f.addFailed(replaced, dst, err) // still the replaced file's
		}
		return err
	}
	if replaced != nil {
		replaced.Discard() // renamed over: a retry must not bring it back
	}
	return f.keepDir(ctx, sdir)
}

// renameOver moves src to dst in the store and the sidecar, replacing dst
// if it exists.
func (f *FS) renameOver(ctx context.Context, se meta.Entry, src, dst string, exists bool) error {
	if se.IsDir {
		if exists {
			if err := f.removeEmptyDir(ctx, dst); err != nil {
				return err
			}
		}
		return f.renameDir(ctx, src, dst)
	}
	return f.renameFile(ctx, src, dst, exists)
}

// checkRenamedKeys refuses a rename of src to dst that would make a key
// longer than the stores allow (for a directory: any key below it).
func (f *FS) checkRenamedKeys(ctx context.Context, src, dst string) error {
	if err := keypath.CheckNewKey(dst); err != nil || len(dst) <= len(src) {
		return err
	}
	objs, err := f.sc.ObjectsUnder(local(ctx), src)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if strings.HasPrefix(o.Key, src+"/") {
			if err := keypath.CheckNewKey(dst + o.Key[len(src):]); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *FS) removeEmptyDir(ctx context.Context, p string) error {
	if err := f.bucket.Delete(ctx, keypath.DirMarkerKey(p)); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return err
	}
	return f.sc.RemoveDir(local(ctx), p)
}

func (f *FS) renameFile(ctx context.Context, src, dst string, replacing bool) error {
	if err := f.bucket.Copy(ctx, dst, src, nil); err != nil {
		return fmt.Errorf("copy to %q: %w", dst, err)
	}
	f.stats.Copies.Add(1)
	if err := f.bucket.Delete(ctx, src); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		if o, ok, lerr := f.sc.GetObject(local(ctx), src); lerr == nil && ok {
			f.settleRename(ctx, []meta.Object{{Key: dst, Size: o.Size}}, nil)
		}
		return fmt.Errorf("delete of %q after copy: %w", src, err)
	}
	f.stats.Deletes.Add(1)
	if replacing {
		if err := f.sc.DeleteObject(local(ctx), dst); err != nil {
			return err
		}
	}
	if err := f.sc.RenameObject(local(ctx), src, dst); err != nil {
		return err
	}
	if _, err := f.recordObject(ctx, dst); err != nil {
		return err
	}
	if ix := f.opts.Indexer; ix != nil {
		if err := ix.ForgetKey(ctx, src); err != nil {
			f.log.Warn("index update after rename failed", "key", src, "err", err)
		}
		if err := ix.IndexKey(ctx, dst); err != nil {
			f.log.Warn("index update after rename failed", "key", dst, "err", err)
		}
	}
	return nil
}

func (f *FS) renameDir(ctx context.Context, src, dst string) error {
	objs, err := f.sc.ObjectsUnder(local(ctx), src)
	if err != nil {
		return err
	}
	srcPrefix, dstPrefix := keypath.DirPrefix(src), keypath.DirPrefix(dst)
	var copied []meta.Object // what is at the new names so far
	var deleted []string     // the old names gone so far
	for _, o := range objs {
		if !strings.HasPrefix(o.Key, srcPrefix) {
			continue
		}
		nk := dstPrefix + strings.TrimPrefix(o.Key, srcPrefix)
		if strings.HasSuffix(o.Key, "/") {
			// A marker holds nothing: write a new one (some S3 servers,
			// versitygw among them, refuse to copy onto a key ending in /).
			if err := f.bucket.WriteAll(ctx, nk, nil, nil); err != nil {
				f.settleRename(ctx, copied, nil)
				return fmt.Errorf("directory marker %q: %w", nk, err)
			}
		} else if err := f.bucket.Copy(ctx, nk, o.Key, nil); err != nil {
			f.settleRename(ctx, copied, nil)
			return fmt.Errorf("copy of %q to %q: %w", o.Key, nk, err)
		} else {
			f.stats.Copies.Add(1)
		}
		copied = append(copied, meta.Object{Key: nk, Size: o.Size})
	}
	for _, o := range objs {
		if !strings.HasPrefix(o.Key, srcPrefix) {
			continue
		}
		if err := f.bucket.Delete(ctx, o.Key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
			f.settleRename(ctx, copied, deleted)
			return fmt.Errorf("delete of %q after copy: %w", o.Key, err)
		}
		deleted = append(deleted, o.Key)
		f.stats.Deletes.Add(1)
	}
	return f.sc.RenamePrefix(local(ctx), src, dst)
}

// settleRename makes the sidecar show what a rename that failed part way
// (the store gone, say) did in the store: the copies made so far are
// there, with their source's size, and the sources deleted so far are
// gone, so that no name is missing or points at nothing until the store
// is listed again; and it asks for that listing, which fills in the rest
// (times, ETags, the tapes' records).
func (f *FS) settleRename(ctx context.Context, copied []meta.Object, deleted []string) {
	if len(copied) == 0 && len(deleted) == 0 {
		return
	}
	for _, o := range copied {
		o.ModTime = nowUTC()
		if _, err := f.sc.PutObject(local(ctx), o); err != nil {
			f.log.Warn("recording a copy of a failed rename", "key", o.Key, "err", err)
		}
	}
	for _, k := range deleted {
		if err := f.sc.DeleteObject(local(ctx), k); err != nil && !errors.Is(err, meta.ErrNotFound) {
			f.log.Warn("recording a delete of a failed rename", "key", k, "err", err)
		}
		// The kernel keeps the old name and its attributes for the entry
		// timeout: drop the attributes (waits on no lock, so safe inside
		// the rename), and the next stat asks, and hears it is gone.
		if n := f.knownInode(k); n != nil && !n.IsDir() {
			n.NotifyContent(-1, 0)
		}
	}
	f.log.Warn("rename failed part way; the listing shows what reached the store", "copied", len(copied), "deleted", len(deleted))
	if f.opts.StoreChanged != nil {
		key := ""
		if len(copied) > 0 {
			key = copied[0].Key
		} else {
			key = deleted[0]
		}
		f.opts.StoreChanged(key)
	}
}
