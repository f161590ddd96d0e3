package fsnode

import "sync/atomic"

// Stats counts what the mount asked of the store; `tapefs status` shows it.
type Stats struct {
	StoreReads     atomic.Int64 // range reads sent to the store
	StoreReadBytes atomic.Int64 // bytes received from range reads
	CacheHitBytes  atomic.Int64 // bytes served from chunks already fetched
	Uploads        atomic.Int64 // completed uploads
	UploadBytes    atomic.Int64
	UploadErrors   atomic.Int64
	Deletes        atomic.Int64
	Copies         atomic.Int64
}

// Snapshot is a plain copy of the counters, for JSON.
type Snapshot struct {
	StoreReads     int64 `json:"store_reads"`
	StoreReadBytes int64 `json:"bytes_read_from_store"`
	CacheHitBytes  int64 `json:"bytes_read_from_cache"`
	Uploads        int64 `json:"uploads"`
	UploadBytes    int64 `json:"bytes_uploaded"`
	UploadErrors   int64 `json:"upload_errors"`
	Deletes        int64 `json:"deletes"`
	Copies         int64 `json:"copies"`
}

// Snapshot copies the counters.
func (s *Stats) Snapshot() Snapshot {
	return Snapshot{
		StoreReads: s.StoreReads.Load(), StoreReadBytes: s.StoreReadBytes.Load(),
		CacheHitBytes: s.CacheHitBytes.Load(), Uploads: s.Uploads.Load(),
		UploadBytes: s.UploadBytes.Load(), UploadErrors: s.UploadErrors.Load(),
		Deletes: s.Deletes.Load(), Copies: s.Copies.Load(),
	}
}

// daemonReads grows with every read of a store object the daemon serves
// (each fetch of a chunk, from the store or the disk cache); see dirCache.
func (f *FS) daemonReads() int64 {
	return f.stats.StoreReads.Load() + f.stats.CacheHitBytes.Load()
}
