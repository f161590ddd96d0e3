package fsnode

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"strings"
	"syscall"

	"github.com/tapefs/tapefs/keypath"
	"github.com/tapefs/tapefs/meta"
	"gocloud.dev/gcerrors"
)

// errReadOnly is returned by every write operation of a read-only mount.
var errReadOnly = errors.New("read-only mount")

// uploadFailed is an upload that did not reach the store, for whatever
// reason the store gave (refused credentials, a 5xx, a timeout), with its
// staged data kept and retried: close and fsync report every such failure
// as EIO, the contract a program can rely on; the log names the cause. A
// lost O_EXCL create (EEXIST) and a full local disk (ENOSPC) are not
// wrapped: their data is not retried, or the fix is local.
type uploadFailed struct{ err error }

func (e *uploadFailed) Error() string { return e.err.Error() }
func (e *uploadFailed) Unwrap() error { return e.err }

// toErrno is the one place where errors become errno values. Errors it does
// not recognise are logged and reported as EIO.
func toErrno(log *slog.Logger, op, path string, err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	var netErr *net.OpError
	var upload *uploadFailed
	switch {
	case errors.As(err, &netErr):
		// The store's connection failed (refused, reset, unreachable): the
		// errno inside (ECONNREFUSED, ...) means nothing for a file.
		log.Error("store unreachable", "op", op, "path", path, "err", err)
		return syscall.EIO
	case errors.Is(err, meta.ErrFull):
		log.Error("the sidecar's disk is full: free space there, or move the sidecar (--meta)", "op", op, "path", path, "err", err)
		return syscall.ENOSPC
	case errors.Is(err, syscall.ENOSPC):
		log.Error("local disk full: free space there, or move the staging and cache directories (--state-dir, --cache-dir)", "op", op, "path", path, "err", err)
		return syscall.ENOSPC
	case errors.As(err, &errno):
		return errno
	case errors.As(err, &upload):
		log.Warn("upload failed; the staged data is kept and retried", "op", op, "path", path, "err", upload.err)
		return syscall.EIO
	case errors.Is(err, errReadOnly):
		return syscall.EROFS
	case errors.Is(err, keypath.ErrTooLong), errors.Is(err, keypath.ErrKeyLong):
		return syscall.ENAMETOOLONG
	case errors.Is(err, keypath.ErrEmpty), errors.Is(err, keypath.ErrDot),
		errors.Is(err, keypath.ErrControl), errors.Is(err, keypath.ErrBadUTF8),
		errors.Is(err, keypath.ErrSlash), errors.Is(err, keypath.ErrEmptySeg):
		return syscall.EINVAL
	case errors.Is(err, meta.ErrNotEmpty):
		return syscall.ENOTEMPTY
	case errors.Is(err, meta.ErrExists):
		return syscall.EEXIST
	case errors.Is(err, meta.ErrInvalid):
		return syscall.EINVAL
	case errors.Is(err, meta.ErrReadOnly):
		return syscall.EROFS
	case errors.Is(err, meta.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, fs.ErrExist):
		return syscall.EEXIST
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, ErrChanged):
		log.Warn("file replaced in the store while it was open; open it again to read the new version", "op", op, "path", path, "err", err)
		return syscall.EIO
	}
	switch gcerrors.Code(err) {
	case gcerrors.NotFound:
		return syscall.ENOENT
	case gcerrors.FailedPrecondition, gcerrors.AlreadyExists:
		return syscall.EEXIST
	case gcerrors.PermissionDenied:
		log.Warn("store refused access", "op", op, "path", path, "err", err)
		return syscall.EACCES
	case gcerrors.InvalidArgument:
		log.Warn("store refused the name or request", "op", op, "path", path, "err", err)
		return syscall.EINVAL
	}
	// fileblob refuses keys that end in ".attrs" (its own attribute files).
	if strings.Contains(err.Error(), "\".attrs\"") || strings.Contains(err.Error(), "is reserved") {
		return syscall.EINVAL
	}
	log.Error("I/O error", "op", op, "path", path, "err", err)
	return syscall.EIO
}
