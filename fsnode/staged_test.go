package fsnode

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestStagingJournalAndRecovery(t *testing.T) {
	dir := t.TempDir()
	s, err := NewStaging(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("staging dir mode %v, want 0700", fi.Mode().Perm())
	}
	clean, _ := s.New("clean.txt") // opened, never written: no journal
	clean.file.Close()
	w, err := s.New("tapes/a.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(w.dataPath); fi.Mode().Perm() != 0o600 {
		t.Errorf("staged file mode %v, want 0600", fi.Mode().Perm())
	}
	w.SetKey("tapes/b.jsonl")
	w.file.Close() // a crash: the journal stays

	left, err := s.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0].Key != "tapes/b.jsonl" {
		t.Fatalf("leftovers = %+v, want the renamed dirty file only", left)
	}
	if b, _ := os.ReadFile(left[0].DataPath); string(b) != "hello" {
		t.Errorf("staged bytes = %q", b)
	}
	if _, err := os.Stat(clean.dataPath); !os.IsNotExist(err) {
		t.Error("a staged file with no journal was not cleaned up")
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(matches) != 1 {
		t.Errorf("journal files: %v", matches)
	}
}

func TestUploadedClearsDirtyOnlyIfUnchanged(t *testing.T) {
	s, _ := NewStaging(t.TempDir())
	w, _ := s.New("k")
	w.WriteAt([]byte("a"), 0)
	_, _, _, _, gen := w.snapshot()
	w.WriteAt([]byte("b"), 1) // written while the upload ran
	w.uploaded(gen)
	if _, dirty, _, _, _ := w.snapshot(); !dirty {
		t.Fatal("a write during the upload was considered uploaded")
	}
	_, _, _, _, gen = w.snapshot()
	w.uploaded(gen)
	if _, dirty, _, _, _ := w.snapshot(); dirty {
		t.Fatal("still dirty after a current upload")
	}
	if _, err := os.Stat(w.jrnlPath); !os.IsNotExist(err) {
		t.Error("journal kept after the upload")
	}
}

// TestJournalPartialUntilCommit: a staged file's journal says partial from
// a write until a close or fsync (commit) asks for its bytes, and again
// after the next write; the next mount uploads only committed ones.
func TestJournalPartialUntilCommit(t *testing.T) {
	s, _ := NewStaging(t.TempDir())
	w, _ := s.New("k.jsonl")
	partial := func() bool {
		t.Helper()
		left, err := s.Leftovers()
		if err != nil || len(left) != 1 {
			t.Fatalf("leftovers = %+v, %v; want one", left, err)
		}
		return left[0].Partial
	}
	w.WriteAt([]byte("half a wri"), 0)
	if !partial() {
		t.Error("journal of bytes no close or fsync asked for is not partial")
	}
	if err := w.commit(); err != nil {
		t.Fatal(err)
	}
	if partial() {
		t.Error("journal still partial after a commit")
	}
	w.WriteAt([]byte("te"), 10)
	if !partial() {
		t.Error("journal not partial again after a write that followed the commit")
	}
	w.Truncate(0)
	w.commit()
	if partial() {
		t.Error("journal partial after a commit of a truncation")
	}
	w.file.Close()
}

// TestStagedRecentFailure: right after a slow upload of some bytes failed,
// a close or fsync of the same bytes to the same key gets that failure at
// once; a write since, another key, the end of uploadRetryGap, or a failure
// that came fast sends them again.
func TestStagedRecentFailure(t *testing.T) {
	_, w := newStaged(t, "a.jsonl")
	defer w.file.Close()
	w.WriteAt([]byte("one"), 0)
	_, _, _, _, gen := w.snapshot()
	if w.recentFailure(gen, "a.jsonl") != nil {
		t.Fatal("a failure before any upload")
	}
	boom := errors.New("store silent")
	slowStart := time.Now().Add(-2 * slowFailure)
	w.failedUpload(gen, "a.jsonl", time.Now(), boom)
	if got := w.recentFailure(gen, "a.jsonl"); got != nil {
		t.Errorf("a fast failure was kept: %v", got)
	}
	w.failedUpload(gen, "a.jsonl", slowStart, boom)
	if got := w.recentFailure(gen, "a.jsonl"); got != boom {
		t.Errorf("right after a slow failure: %v, want %v", got, boom)
	}
	if got := w.recentFailure(gen, "b.jsonl"); got != nil {
		t.Errorf("renamed since the failure: %v, want a new upload (nil)", got)
	}
	w.WriteAt([]byte("two"), 3)
	_, _, _, _, gen2 := w.snapshot()
	if got := w.recentFailure(gen2, "a.jsonl"); got != nil {
		t.Errorf("after a write: %v, want a new upload (nil)", got)
	}
	w.failedUpload(gen2, "a.jsonl", slowStart, boom)
	w.mu.Lock()
	w.errAt = time.Now().Add(-uploadRetryGap - time.Millisecond)
	w.mu.Unlock()
	if got := w.recentFailure(gen2, "a.jsonl"); got != nil {
		t.Errorf("after uploadRetryGap: %v, want a new upload (nil)", got)
	}
}

// A failed write breaks the staged copy for good: no commit, no journal, so
// neither this run nor a later mount uploads what it holds.
func TestStagedWriteFailureIsSticky(t *testing.T) {
	s, w := newStaged(t, "a.jsonl")
	if _, err := w.WriteAt([]byte("first\n"), 0); err != nil {
		t.Fatal(err)
	}
	if err := w.commit(); err != nil {
		t.Fatal(err)
	}
	w.file.Close() // the next write fails, as on a full disk
	if _, err := w.WriteAt([]byte("second\n"), 6); err == nil {
		t.Fatal("write to a closed staged file succeeded")
	}
	if w.failure() == nil {
		t.Error("failure() = nil after a failed write")
	}
	if err := w.commit(); err == nil {
		t.Error("commit after a failed write succeeded")
	}
	if _, err := os.Stat(w.jrnlPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("journal still there after a failed write (stat: %v)", err)
	}
	cut := filepath.Join(s.dir, "1.json.tmp") // a journal a crash (or a full disk) cut short
	if err := os.WriteFile(cut, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if left, err := s.Leftovers(); err != nil || len(left) != 0 {
		t.Errorf("leftovers = %+v, %v; want none", left, err)
	}
	if _, err := os.Stat(cut); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Leftovers left %s (stat: %v)", cut, err)
	}
}

// newStaged is a fresh staging directory with one staged file for key.
func newStaged(t *testing.T, key string) (*Staging, *StagedWrite) {
	t.Helper()
	s, err := NewStaging(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.New(key)
	if err != nil {
		t.Fatal(err)
	}
	return s, w
}

// TestStagingRemovedWhileMounted: a staging directory removed under the
// mount (rm -rf of the state directory) is made again by the next staged
// file, mode 0700, with its lock taken again, so that another mount still
// cannot share it; a file staged before keeps its data.
func TestStagingRemovedWhileMounted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "staging")
	s, err := NewStaging(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Lock("test mount"); err != nil {
		t.Fatal(err)
	}
	before, err := s.New("a.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := before.WriteAt([]byte("kept"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	// The close of a file staged before: its journal needs the directory.
	if err := before.commit(); err != nil {
		t.Fatalf("commit of a file staged before the directory was removed: %v", err)
	}
	w, err := s.New("b.jsonl")
	if err != nil {
		t.Fatalf("staging a file after the directory was removed: %v", err)
	}
	if _, err := w.WriteAt([]byte("new"), 0); err != nil {
		t.Fatal(err)
	}
	if err := w.commit(); err != nil {
		t.Fatalf("journal in the directory made again: %v", err)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("staging directory made again: %v, mode %v; want 0700", err, st.Mode().Perm())
	}
	p := make([]byte, 4)
	if _, err := before.ReadAt(p, 0); err != nil || string(p) != "kept" {
		t.Errorf("a file staged before the removal reads %q, %v", p, err)
	}
	other, err := NewStaging(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Lock("second mount"); !errors.Is(err, ErrStagingBusy) {
		t.Errorf("a second mount locked the staging directory made again: %v, want ErrStagingBusy", err)
	}
	before.Discard()
	w.Discard()
}
