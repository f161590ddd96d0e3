package fsnode

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// StagedWrite is the local copy of a file being written. Writes land here;
// an upload sends the whole file to the store in one writer, so the store
// never holds a partial object (a large file written in order is sent while
// it is written, see stream.go, and appears only when that writer closes).
// A journal entry beside the data names the key, so a staged file that was
// not uploaded (crash, store down) is found and uploaded at the next mount —
// if a close or fsync asked for its bytes: the journal says "partial" from a
// write until the next close or fsync, and staged bytes that no close or
// fsync covered are dropped after a crash rather than replace the store's
// last version with half a write.
type StagedWrite struct {
	mu        sync.Mutex
	file      *os.File
	dataPath  string
	jrnlPath  string
	key       string
	dirty     bool      // holds bytes the store does not have yet
	committed bool      // a close or fsync asked for the staged bytes (the journal is not partial)
	exclusive bool      // first upload must not replace an existing object (O_EXCL)
	deleted   bool      // unlinked while open: never upload
	refs      int       // open handles using it
	gen       int64     // bumped by every change, to tell if an upload is current
	lastErr   error     // the last failed upload of these bytes, at errGen
	errGen    int64     // the gen lastErr's upload sent
	errKey    string    // the key it sent them to
	errAt     time.Time // when it failed
	broken    error     // a write or truncate of the staged copy failed (see fail)
	staging   *Staging  // where it was made (nil for a recovered one)

	end        int64         // the staged size, once sized
	sized      bool          // end is known (else it is read from the file)
	outOfOrder bool          // a write landed elsewhere than the end: no streamed upload
	stream     *streamUpload // the upload running while the file is written, if any
}

// journalEntry is what the journal file records for recovery.
type journalEntry struct {
	Key       string `json:"key"`
	Data      string `json:"data"`
	Exclusive bool   `json:"exclusive,omitempty"`
	// Partial: written since the last close or fsync. Such bytes are not
	// uploaded by the next mount. (Absent in journals of older versions,
	// which were all uploaded.)
	Partial bool      `json:"partial,omitempty"`
	Staged  time.Time `json:"staged"`
}

// Staging owns the staging directory.
type Staging struct {
	dir string
	seq atomic.Int64
	log *slog.Logger // may be nil

	mu    sync.Mutex // guards lock and owner, and serializes recreate
	lock  *os.File   // held for the life of the process, see Lock
	owner string     // who holds it, as Lock was told
}

// SetLogger gives s a logger for what it does on its own (recreate).
func (s *Staging) SetLogger(l *slog.Logger) { s.log = l }

// ErrStagingBusy is what Lock returns when another process holds the
// staging directory.
var ErrStagingBusy = errors.New("the staging directory is in use by another tapefs mount")

// lockWait is how long Lock waits for another process to let go.
const lockWait = 3 * time.Second

// Lock makes this process the only user of the staging directory until it
// exits, and records owner (who holds it) for the error another process
// then gets. Two mounts sharing one would take each other's staged files
// for leftovers of a crash: upload them, or drop their data.
func (s *Staging) Lock(owner string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.takeLock(owner, lockWait)
	if err != nil {
		return err
	}
	s.lock, s.owner = f, owner
	return nil
}

// takeLock opens the staging directory's lock file and locks it, waiting up
// to wait for another process to let go, and writes owner into it.
func (s *Staging) takeLock(owner string, wait time.Duration) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(s.dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot lock the staging directory %s: %w", s.dir, err)
	}
	// A mount of the same store just unmounted may still be closing.
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	for deadline := time.Now().Add(wait); errors.Is(err, syscall.EWOULDBLOCK) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	}
	if err != nil {
		holder, _ := io.ReadAll(io.LimitReader(f, 4096))
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s (held by %s); give each mount of one store its own sidecar (--meta) or state directory (--state-dir)",
				ErrStagingBusy, s.dir, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("cannot lock the staging directory %s: %w", s.dir, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(owner+"\n"), 0)
	}
	return f, nil
}

// recreate makes the staging directory again after it was removed under
// the mount (rm -rf of the state directory, a cleaner of old files), and
// takes its lock again: the old lock file went with it, and a mount started
// now would otherwise share the new directory with this one. New files and
// the journals of open ones need the directory; the data of open ones stays
// in their open files.
func (s *Staging) recreate() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// What another New or journal write made again already: the directory,
	// and the lock file if this process holds a lock.
	probe := s.dir
	if s.lock != nil {
		probe = filepath.Join(s.dir, "lock")
	}
	if _, err := os.Stat(probe); err == nil {
		return nil
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("the staging directory %s was removed and cannot be made again: %w", s.dir, err)
	}
	if s.log != nil {
		s.log.Warn("the staging directory was removed while mounted; made it again", "dir", s.dir)
	}
	if s.lock == nil {
		return nil
	}
	f, err := s.takeLock(s.owner, 0)
	if err != nil {
		return err
	}
	s.lock.Close()
	s.lock = f
	return nil
}

// NewStaging prepares dir (mode 0700) for staged files.
func NewStaging(dir string) (*Staging, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create the staging directory %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	s := &Staging{dir: dir}
	s.seq.Store(time.Now().UnixNano())
	return s, nil
}

// New creates an empty staged file for key.
func (s *Staging) New(key string) (*StagedWrite, error) {
	n := s.seq.Add(1)
	data := filepath.Join(s.dir, fmt.Sprintf("%d.data", n))
	f, err := os.OpenFile(data, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		if err = s.recreate(); err == nil {
			f, err = os.OpenFile(data, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		}
	}
	if err != nil {
		return nil, err
	}
	return &StagedWrite{file: f, dataPath: data, jrnlPath: strings.TrimSuffix(data, ".data") + ".json", key: key, staging: s}, nil
}

// Fill copies r into the staged file (copy-on-open of an existing object).
func (w *StagedWrite) Fill(r io.Reader) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := io.Copy(w.file, r)
	w.end, w.sized = n, err == nil
	return err
}

// endLocked is the staged size.
func (w *StagedWrite) endLocked() int64 {
	if !w.sized {
		if st, err := w.file.Stat(); err == nil {
			w.end, w.sized = st.Size(), true
		}
	}
	return w.end
}

// stopStreamLocked aborts the streamed upload, if one runs: the staged
// bytes are no longer the ones it sends.
func (w *StagedWrite) stopStreamLocked() {
	if w.stream != nil {
		w.stream.abort()
		w.stream = nil
	}
}

// WriteAt writes p at off and marks the file dirty.
func (w *StagedWrite) WriteAt(p []byte, off int64) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.markDirtyLocked(); err != nil {
		w.failLocked(err)
		return 0, err
	}
	w.gen++
	if off != w.endLocked() {
		w.outOfOrder = true
		w.stopStreamLocked()
	}
	n, err := w.file.WriteAt(p, off)
	if e := off + int64(n); w.sized && e > w.end {
		w.end = e
	}
	if err != nil {
		w.failLocked(err)
	} else if w.stream != nil {
		w.stream.grow(w.end)
	}
	return n, err
}

// ReadAt reads staged bytes.
func (w *StagedWrite) ReadAt(p []byte, off int64) (int, error) {
	return w.file.ReadAt(p, off)
}

// Truncate sets the staged size and marks the file dirty.
func (w *StagedWrite) Truncate(size int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.markDirtyLocked(); err != nil {
		w.failLocked(err)
		return err
	}
	w.gen++
	w.stopStreamLocked()
	err := w.file.Truncate(size)
	w.end, w.sized = size, err == nil
	if err != nil {
		w.failLocked(err)
	}
	return err
}

// failLocked records that a write or truncate of the staged copy failed
// (a full disk, most often): the staged bytes are then not what was
// written, so they must never replace the store's last version. Every
// later close and fsync reports err, and the last close drops the copy.
// The journal goes too, so a later mount does not upload the copy either;
// the streamed upload, if one runs, is aborted before anything appears.
func (w *StagedWrite) failLocked(err error) {
	if w.broken == nil {
		w.broken = err
	}
	w.stopStreamLocked()
	os.Remove(w.jrnlPath)
}

// failure is the error that broke the staged copy, or nil.
func (w *StagedWrite) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.broken
}

// MarkDirty forces an upload at the next flush (a new, empty file).
func (w *StagedWrite) MarkDirty() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.markDirtyLocked()
}

func (w *StagedWrite) markDirtyLocked() error {
	w.gen++
	if w.dirty && !w.committed {
		return nil
	}
	w.dirty, w.committed = true, false
	return w.writeJournalLocked()
}

// commit records in the journal that a close or fsync asks for the staged
// bytes, so that the next mount uploads them if this run cannot. It runs
// before every upload.
func (w *StagedWrite) commit() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.broken != nil {
		return w.broken
	}
	if !w.dirty || w.committed || w.deleted {
		return nil
	}
	// Committed only once the journal says so: a journal that could not be
	// written fails this upload and every later one, not just the first.
	w.committed = true
	if err := w.writeJournalLocked(); err != nil {
		w.committed = false
		return err
	}
	return nil
}

// writeJournalLocked writes the journal entry. If the staging directory was
// removed under the mount, it is made again first (see Staging.recreate):
// the staged file, still open, keeps its bytes and goes up at close; only
// a crash before that loses them, as the removal did.
func (w *StagedWrite) writeJournalLocked() error {
	e := journalEntry{Key: w.key, Data: filepath.Base(w.dataPath), Exclusive: w.exclusive, Partial: !w.committed, Staged: time.Now().UTC()}
	b, _ := json.Marshal(e)
	tmp := w.jrnlPath + ".tmp"
	err := os.WriteFile(tmp, b, 0o600)
	if errors.Is(err, os.ErrNotExist) && w.staging != nil {
		if err = w.staging.recreate(); err == nil {
			err = os.WriteFile(tmp, b, 0o600)
		}
	}
	if err == nil {
		err = os.Rename(tmp, w.jrnlPath)
	}
	if err != nil {
		os.Remove(tmp) // a full disk leaves it empty
	}
	return err
}

// SetKey moves the staged file to another key (rename while open).
func (w *StagedWrite) SetKey(key string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if key != w.key {
		w.stopStreamLocked()
	}
	w.key = key
	if w.dirty {
		return w.writeJournalLocked()
	}
	return nil
}

// Size is the staged file's current size.
func (w *StagedWrite) Size() (int64, error) {
	st, err := w.file.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// snapshot returns what an upload needs, under the lock.
func (w *StagedWrite) snapshot() (key string, dirty, exclusive, deleted bool, gen int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.key, w.dirty, w.exclusive, w.deleted, w.gen
}

// unchangedSince says whether no write or truncate came after gen.
func (w *StagedWrite) unchangedSince(gen int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gen == gen
}

// uploaded clears dirty if no write happened since the upload began, and
// drops the journal: the store now holds these bytes.
func (w *StagedWrite) uploaded(gen int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.exclusive = false
	w.lastErr = nil
	if w.gen == gen {
		w.dirty, w.committed = false, false
		os.Remove(w.jrnlPath)
	}
}

// refused clears dirty (if no write happened since the upload began) and
// drops the journal after the store refused an O_EXCL upload because the
// key exists: those bytes must never replace the object, so there is
// nothing to retry. It stays exclusive, so later writes are refused too.
func (w *StagedWrite) refused(gen int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gen == gen {
		w.dirty, w.committed = false, false
		os.Remove(w.jrnlPath)
	}
}

// Discard removes the staged data and journal.
func (w *StagedWrite) Discard() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopStreamLocked()
	w.file.Close()
	os.Remove(w.jrnlPath)
	os.Remove(w.dataPath)
}

// Recovered is a staged file left behind by an earlier run.
type Recovered struct {
	Key       string
	DataPath  string
	JrnlPath  string
	Exclusive bool
	Partial   bool // written since the last close or fsync: not to be uploaded
	Staged    time.Time
}

// Leftovers lists staged files from earlier runs that still need uploading,
// oldest first, and removes stray data files that have no journal (they
// were never written to, so the store holds their content already) and
// journals a crash cut short. It runs before the mount serves anything.
func (s *Staging) Leftovers() ([]Recovered, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var out []Recovered
	journaled := map[string]bool{}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		p := filepath.Join(s.dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var j journalEntry
		if json.Unmarshal(b, &j) != nil || j.Key == "" || strings.ContainsAny(j.Data, "/\\") {
			continue
		}
		journaled[j.Data] = true
		out = append(out, Recovered{Key: j.Key, DataPath: filepath.Join(s.dir, j.Data), JrnlPath: p, Exclusive: j.Exclusive, Partial: j.Partial, Staged: j.Staged})
	}
	for _, e := range ents {
		stray := strings.HasSuffix(e.Name(), ".data") && !journaled[e.Name()] ||
			strings.HasSuffix(e.Name(), ".json.tmp") // a journal a crash cut short
		if stray {
			os.Remove(filepath.Join(s.dir, e.Name()))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Staged.Before(out[j].Staged) })
	return out, nil
}

// uploadRetryGap is how soon after a slow failed upload the same bytes are
// sent again by a close or fsync. A program that calls fsync and then close
// (dd conv=fsync, editors) would otherwise wait out a server that does not
// answer twice, and the release after it a third time; within the gap they
// get the failure at once, and the retry queue sends the bytes later. A
// failure that came fast (a refused connection, a 503) is not kept: trying
// again costs little and may succeed.
const uploadRetryGap = 5 * time.Second

// slowFailure is how long a failed upload must have taken to be kept.
const slowFailure = time.Second

// failedUpload records that the upload of the bytes at gen to key, begun
// at start, failed with err.
func (w *StagedWrite) failedUpload(gen int64, key string, start time.Time, err error) {
	if time.Since(start) < slowFailure {
		return
	}
	w.mu.Lock()
	w.lastErr, w.errGen, w.errKey, w.errAt = err, gen, key, time.Now()
	w.mu.Unlock()
}

// recentFailure is the failure of an upload of exactly the bytes at gen to
// key that ended less than uploadRetryGap ago, or nil.
func (w *StagedWrite) recentFailure(gen int64, key string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lastErr != nil && w.errGen == gen && w.errKey == key && time.Since(w.errAt) < uploadRetryGap {
		return w.lastErr
	}
	return nil
}
