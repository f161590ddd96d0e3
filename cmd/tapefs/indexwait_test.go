package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAwaitMountIndex: a query waits while the mount serving its sidecar
// says it is indexing, and says so once; it does not wait for another
// sidecar's mount, for a mount that has finished, or for a daemon that is
// gone.
func TestAwaitMountIndex(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	sidecar := filepath.Join(t.TempDir(), "index.db")
	mi := mountInfo{Mountpoint: "/mnt/a", PID: os.Getpid(), Meta: sidecar, Indexing: true}
	if err := writeMountInfo(mi); err != nil {
		t.Fatal(err)
	}

	returned := func(path string) (string, bool) {
		var note strings.Builder
		done := make(chan struct{})
		go func() { awaitMountIndex(path, &note); close(done) }()
		select {
		case <-done:
			return note.String(), true
		case <-time.After(300 * time.Millisecond):
			return "", false
		}
	}
	if note, ok := returned(filepath.Join(t.TempDir(), "other.db")); !ok || note != "" {
		t.Errorf("waited for the mount of another sidecar (returned %v, said %q)", ok, note)
	}

	var note strings.Builder
	done := make(chan struct{})
	go func() { awaitMountIndex(sidecar, &note); close(done) }()
	select {
	case <-done:
		t.Fatal("returned while the mount of its sidecar is indexing")
	case <-time.After(300 * time.Millisecond):
	}
	mi.Indexing = false
	if err := writeMountInfo(mi); err != nil {
		t.Fatal(err)
	}
	<-done
	if !strings.Contains(note.String(), "still indexing") || strings.Count(note.String(), "\n") != 1 {
		t.Errorf("said %q, want one line that the mount is still indexing", note.String())
	}

	// A daemon that is gone, with its info left behind.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	mi.PID, mi.Indexing = dead.Process.Pid, true
	if err := writeMountInfo(mi); err != nil {
		t.Fatal(err)
	}
	if _, ok := returned(sidecar); !ok {
		t.Error("waited for a daemon that is gone")
	}
}
