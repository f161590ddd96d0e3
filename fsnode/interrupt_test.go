package fsnode

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// exitedPid is the id of a process that has been and gone.
func exitedPid(t *testing.T) uint32 {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return uint32(cmd.Process.Pid)
}

func TestCallerKilled(t *testing.T) {
	interrupted := make(chan struct{})
	close(interrupted)
	tests := []struct {
		name string
		ctx  context.Context
		want bool
	}{
		{"a live caller with no fatal signal", &fuse.Context{Caller: fuse.Caller{Pid: uint32(os.Getpid())}, Cancel: interrupted}, false},
		{"a caller that is gone", &fuse.Context{Caller: fuse.Caller{Pid: exitedPid(t)}, Cancel: interrupted}, true},
		{"no FUSE request", context.Background(), true},
		{"pid 0", &fuse.Context{Cancel: interrupted}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := callerKilled(tt.ctx); got != tt.want {
				t.Errorf("callerKilled = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPendingSignals(t *testing.T) {
	mask, err := pendingSignals(uint32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	if mask&sigkill != 0 {
		t.Errorf("pending %x: SIGKILL pending in a live test", mask)
	}
	if _, err := pendingSignals(exitedPid(t)); err == nil {
		t.Error("no error for a process that is gone")
	}
}

// TestKillable: an interrupt of a live caller leaves the work's context
// alive; one of a caller being killed (here: gone) ends it; the cancel
// function ends it in any case.
func TestKillable(t *testing.T) {
	t.Run("live caller", func(t *testing.T) {
		cancelCh := make(chan struct{})
		ctx, cancel := killable(&fuse.Context{Caller: fuse.Caller{Pid: uint32(os.Getpid())}, Cancel: cancelCh})
		defer cancel()
		close(cancelCh)
		select {
		case <-ctx.Done():
			t.Fatal("an interrupt of a live caller ended the work")
		case <-time.After(100 * time.Millisecond):
		}
		cancel()
		if ctx.Err() == nil {
			t.Error("cancel did not end the work")
		}
	})
	t.Run("killed caller", func(t *testing.T) {
		cancelCh := make(chan struct{})
		ctx, cancel := killable(&fuse.Context{Caller: fuse.Caller{Pid: exitedPid(t)}, Cancel: cancelCh})
		defer cancel()
		if ctx.Err() != nil {
			t.Fatal("ended before any interrupt")
		}
		close(cancelCh)
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("an interrupt of a killed caller did not end the work")
		}
	})
}

// TestUntilKilledLater: a request interrupted by a harmless signal goes on
// waiting, and stops when its caller is killed afterwards (the kernel sends
// no second interrupt).
func TestUntilKilledLater(t *testing.T) {
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	interrupted := make(chan struct{})
	close(interrupted)
	ctx := &fuse.Context{Caller: fuse.Caller{Pid: uint32(child.Process.Pid)}, Cancel: interrupted}
	never := make(chan struct{})
	got := make(chan error, 1)
	go func() { got <- untilKilled(ctx, never) }()
	select {
	case err := <-got:
		t.Fatalf("untilKilled returned %v while its caller lives", err)
	case <-time.After(3 * killPoll):
	}
	child.Process.Kill()
	child.Wait()
	select {
	case err := <-got:
		if err == nil {
			t.Error("untilKilled returned nil for a killed caller")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("untilKilled did not notice its caller was killed")
	}
	done := make(chan struct{})
	close(done)
	if err := untilKilled(&fuse.Context{Caller: fuse.Caller{Pid: uint32(os.Getpid())}, Cancel: interrupted}, done); err != nil {
		t.Errorf("untilKilled of a live caller whose work is done = %v", err)
	}
}
