package fsnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"syscall"
	"testing"

	"github.com/tapefs/tapefs/backend/layer"
	"github.com/tapefs/tapefs/meta"
	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/blob/memblob"
	"gocloud.dev/gcerrors"
)

// refusing is a store whose Attributes fails with the error code it is
// given, as gocloud reports a store's refusal.
type refusing struct {
	layer.Base
	code gcerrors.ErrorCode
}

var errRefused = errors.New("refused by the store")

func (r *refusing) ErrorCode(err error) gcerrors.ErrorCode {
	if errors.Is(err, errRefused) {
		return r.code
	}
	return r.Base.ErrorCode(err)
}

func (r *refusing) Attributes(context.Context, string) (*driver.Attributes, error) {
	return nil, errRefused
}

// storeErr is the error a gocloud bucket returns for a store that fails
// with code.
func storeErr(t *testing.T, code gcerrors.ErrorCode) error {
	t.Helper()
	b := blob.NewBucket(&refusing{Base: layer.Base{Inner: memblob.OpenBucket(nil)}, code: code})
	defer b.Close()
	_, err := b.Attributes(context.Background(), "k")
	if gcerrors.Code(err) != code {
		t.Fatalf("the test store's error has code %v, want %v", gcerrors.Code(err), code)
	}
	return err
}

// TestToErrnoUploads: close and fsync report an upload that failed in the
// store, and whose data is kept, as EIO whatever the store's reason, while
// the same errors elsewhere keep their own errno.
func TestToErrnoUploads(t *testing.T) {
	denied := storeErr(t, gcerrors.PermissionDenied)
	tests := []struct {
		name string
		err  error
		want syscall.Errno
	}{
		{"read refused by the store", denied, syscall.EACCES},
		{"upload refused by the store", &uploadFailed{denied}, syscall.EIO},
		{"upload with a bad request", &uploadFailed{storeErr(t, gcerrors.InvalidArgument)}, syscall.EIO},
		{"upload failed in the store", &uploadFailed{storeErr(t, gcerrors.Internal)}, syscall.EIO},
		{"upload throttled", &uploadFailed{storeErr(t, gcerrors.ResourceExhausted)}, syscall.EIO},
		{"upload with the staging disk full", &uploadFailed{fmt.Errorf("commit: %w", syscall.ENOSPC)}, syscall.ENOSPC},
		{"upload with the sidecar's disk full", &uploadFailed{fmt.Errorf("record: %w", meta.ErrFull)}, syscall.ENOSPC},
		{"lost exclusive create", storeErr(t, gcerrors.FailedPrecondition), syscall.EEXIST},
	}
	log := slog.New(slog.DiscardHandler)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := toErrno(log, "close", "t.jsonl", tc.err); got != tc.want {
				t.Errorf("toErrno = %v, want %v", got, tc.want)
			}
		})
	}
}
