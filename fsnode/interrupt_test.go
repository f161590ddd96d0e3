package fsnode

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
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
		{"a caller the daemon cannot see (pid 0)", &fuse.Context{Cancel: interrupted}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := callerKilled(tt.ctx); got != tt.want {
				t.Errorf("callerKilled = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestReadSigState(t *testing.T) {
	st, err := readSigState(uint32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	if st.fatal() {
		t.Errorf("%+v: a fatal signal pending in a live test", st)
	}
	if st.caught == 0 {
		t.Errorf("%+v: no handled signal in a Go program (it handles SIGURG)", st)
	}
	if _, err := readSigState(exitedPid(t)); err == nil {
		t.Error("no error for a process that is gone")
	}
}

// statusText is the signal part of a /proc/<pid>/status with the given
// masks.
func statusText(pnd, shd, blk, ign, cgt uint64) string {
	return fmt.Sprintf("Name:\tcat\nState:\tS (sleeping)\nSigQ:\t0/95232\nSigPnd:\t%016x\nShdPnd:\t%016x\n"+
		"SigBlk:\t%016x\nSigIgn:\t%016x\nSigCgt:\t%016x\nCapInh:\t0000000000000000\n", pnd, shd, blk, ign, cgt)
}

func TestSigStateFatal(t *testing.T) {
	bit := func(sig syscall.Signal) uint64 { return 1 << (sig - 1) }
	tests := []struct {
		name   string
		status string
		want   bool
	}{
		{"nothing pending", statusText(0, 0, 0, 0, 0), false},
		{"SIGKILL pending on the thread (kill -9, or SIGINT unhandled)", statusText(bit(syscall.SIGKILL), 0, 0, 0, 0), true},
		{"SIGKILL pending on the process", statusText(0, bit(syscall.SIGKILL), 0, 0, 0), true},
		{"a handled SIGINT", statusText(bit(syscall.SIGINT), 0, 0, 0, bit(syscall.SIGINT)), false},
		{"SIGCHLD, SIGWINCH, SIGURG with default actions", statusText(bit(syscall.SIGCHLD)|bit(syscall.SIGWINCH), bit(syscall.SIGURG), 0, 0, 0), false},
		{"Ctrl-\\ (SIGQUIT) unhandled", statusText(bit(syscall.SIGQUIT), 0, 0, 0, 0), true},
		{"SIGABRT unhandled, on the process", statusText(0, bit(syscall.SIGABRT), 0, 0, 0), true},
		{"SIGQUIT handled", statusText(bit(syscall.SIGQUIT), 0, 0, 0, bit(syscall.SIGQUIT)), false},
		{"SIGQUIT ignored", statusText(bit(syscall.SIGQUIT), 0, 0, bit(syscall.SIGQUIT), 0), false},
		{"SIGQUIT blocked by the thread", statusText(0, bit(syscall.SIGQUIT), bit(syscall.SIGQUIT), 0, 0), false},
		{"SIGSEGV unhandled", statusText(bit(syscall.SIGSEGV), 0, 0, 0, 0), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := parseSigState(strings.NewReader(tt.status))
			if err != nil {
				t.Fatal(err)
			}
			if got := st.fatal(); got != tt.want {
				t.Errorf("fatal() = %v for %+v, want %v", got, st, tt.want)
			}
		})
	}
	for _, bad := range []string{"Name:\tcat\n", strings.Replace(statusText(0, 0, 0, 0, 0), "SigCgt:\t0", "SigCgt:\tz", 1)} {
		if _, err := parseSigState(strings.NewReader(bad)); err == nil {
			t.Errorf("no error for the status %q", bad)
		}
	}
}

// TestKillable: an interrupt of a live caller leaves the work's context
// alive; one of a caller being killed (here: gone) ends it; the cancel
// function ends it in any case.
func TestKillable(t *testing.T) {
	t.Run("live caller", func(t *testing.T) {
		cancelCh := make(chan struct{})
		ctx, cancel := killable(&fuse.Context{Caller: fuse.Caller{Pid: uint32(os.Getpid())}, Cancel: cancelCh}, nil)
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
		ctx, cancel := killable(&fuse.Context{Caller: fuse.Caller{Pid: exitedPid(t)}, Cancel: cancelCh}, nil)
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
	go func() { got <- untilKilled(ctx, never, nil) }()
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
	if err := untilKilled(&fuse.Context{Caller: fuse.Caller{Pid: uint32(os.Getpid())}, Cancel: interrupted}, done, nil); err != nil {
		t.Errorf("untilKilled of a live caller whose work is done = %v", err)
	}
}

// TestConnectionGone: a connection not yet serving, or one whose mountpoint
// answers statfs, stands (the e2e suite aborts a real one).
func TestConnectionGone(t *testing.T) {
	var nilConn *Connection
	var c Connection
	if nilConn.gone() || c.gone() {
		t.Error("a connection without a mountpoint is gone")
	}
	c.Serving(t.TempDir())
	if c.gone() {
		t.Error("a directory that answers statfs is a gone connection")
	}
}
