package importer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"gocloud.dev/blob"

	"github.com/tapefs/tapefs/indexer"
	"github.com/tapefs/tapefs/meta"
)

// ReindexOptions tune Reindex. The zero value is usable.
type ReindexOptions struct {
	Workers  int          // objects read at once; default 8
	Logger   *slog.Logger // default slog.Default()
	Name     string       // how errors name the store (redacted URL)
	Progress func(done, total int)
	// Restart discards the work of an interrupted rebuild instead of
	// resuming it.
	Restart bool
}

// BuildSuffix names the file a rebuild is built in, beside the sidecar.
const BuildSuffix = ".reindex"

// Reindex rebuilds the sidecar at path from a full listing of bucket. It
// builds a fresh sidecar in path+BuildSuffix with the indexer's Reconcile
// and, once that succeeded, replaces path with it in one rename. The old
// sidecar serves until then. If ctx ends (or anything fails) midway, the
// partial build is kept, and the next Reindex resumes it: Reconcile is
// incremental, so tapes already indexed are not read again.
//
// Nothing else may have path open for writing (a mount's daemon does):
// the caller checks that.
func Reindex(ctx context.Context, bucket *blob.Bucket, path string, opts ReindexOptions) (indexer.Result, error) {
	tmp := path + BuildSuffix
	if opts.Restart {
		if err := removeDB(tmp); err != nil {
			return indexer.Result{}, err
		}
	}
	sc, err := meta.Open(tmp)
	if errors.Is(err, meta.ErrCorrupt) {
		// Only a cache of a cache: start it again.
		if err := removeDB(tmp); err != nil {
			return indexer.Result{}, err
		}
		sc, err = meta.Open(tmp)
	}
	if err != nil {
		return indexer.Result{}, fmt.Errorf("cannot create the new sidecar %s: %w", tmp, err)
	}
	ix := indexer.New(bucket, sc, indexer.Options{
		Workers: opts.Workers, Logger: opts.Logger, Name: opts.Name, Progress: opts.Progress,
	})
	res, err := ix.Reconcile(ctx)
	// Close checkpoints the WAL into the file, so that what is renamed
	// below is the whole database.
	if cerr := sc.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("cannot close the new sidecar %s: %w", tmp, cerr)
	}
	if err != nil {
		return res, err
	}
	if err := replaceDB(tmp, path); err != nil {
		return res, err
	}
	return res, nil
}

// walSuffixes are the files SQLite keeps beside a WAL-mode database.
var walSuffixes = []string{"-wal", "-shm"}

// removeDB removes a database file and its WAL and shared-memory files.
func removeDB(path string) error {
	for _, p := range []string{path + "-wal", path + "-shm", path} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// replaceDB renames the closed database from over to. A WAL file left
// beside to belongs to the old database and must never be replayed into
// the new one, so it goes first; the new one has none after a clean close
// (an empty one left by SQLite is removed).
func replaceDB(from, to string) error {
	for _, suf := range walSuffixes {
		st, err := os.Stat(from + suf)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return err
		case suf == "-wal" && st.Size() > 0:
			return fmt.Errorf("the new sidecar %s was not checkpointed (%s is not empty); run reindex again", from, from+suf)
		}
		if err := os.Remove(from + suf); err != nil {
			return err
		}
	}
	for _, suf := range walSuffixes {
		if err := os.Remove(to + suf); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("cannot remove %s: %w", to+suf, err)
		}
	}
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("cannot put the new sidecar in place: %w", err)
	}
	// Make the rename durable.
	if d, err := os.Open(filepath.Dir(to)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
