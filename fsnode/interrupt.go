package fsnode

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// The kernel interrupts a FUSE request whenever its caller gets a signal,
// and go-fuse then cancels the request's context. Most signals are not the
// end of the caller: Go programs get SIGURG from their own runtime all the
// time, shells SIGCHLD, editors SIGWINCH. Work ended by those would turn
// read, open, truncate or close of a regular file into EINTR, which no
// program expects of a file (and syscall.Truncate, for one, does not
// retry). So store work goes on through an interrupt unless the caller is
// being killed; then it stops, and the dying process is not held up until
// a slow store answers.

// local is ctx for sidecar work: a query of the local index is short and
// bounded, so no interrupt ends it.
func local(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

// mutating is ctx for a change to the store (mkdir, rmdir, unlink, rename):
// once it has started it runs to the end, bounded like an upload, so that
// an interrupt (even of a caller being killed) never leaves it half done,
// with the store, the sidecar and the kernel's dentries disagreeing.
func (f *FS) mutating(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), f.opts.UploadTimeout)
}

// killable is ctx for store work that changes nothing yet (the copy of an
// object for writing): an interrupt ends it only when the caller is being
// killed (see callerKilled), then or later. The caller must call the
// cancel function.
func killable(ctx context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		if untilKilled(ctx, c.Done()) != nil {
			cancel()
		}
	})
	return c, func() { stop(); cancel() }
}

// killPoll is how often a request that was interrupted looks again whether
// its caller is being killed: the kernel interrupts a request once, so a
// kill that comes after a harmless signal sends nothing more.
const killPoll = 100 * time.Millisecond

// untilKilled, for a request whose interrupt came, waits for done; it
// returns ctx's error instead as soon as the caller is being killed.
func untilKilled(ctx context.Context, done <-chan struct{}) error {
	t := time.NewTicker(killPoll)
	defer t.Stop()
	for {
		if callerKilled(ctx) {
			return ctx.Err()
		}
		select {
		case <-done:
			return nil
		case <-t.C:
		}
	}
}

// sigkill is SIGKILL's bit in the pending masks of /proc/<pid>/status.
const sigkill = 1 << (9 - 1)

// callerKilled says whether the process behind a FUSE request is being
// killed: the kernel marks a fatal signal (a SIGINT without a handler, a
// kill -9) as a pending SIGKILL of each of the process's threads before it
// wakes them, so that is what the interrupt it then sends comes from. A
// caller that is gone, or a context of no FUSE request, counts as killed.
func callerKilled(ctx context.Context) bool {
	c, ok := fuse.FromContext(ctx)
	if !ok || c.Pid == 0 {
		return true
	}
	pending, err := pendingSignals(c.Pid)
	if err != nil {
		return true
	}
	return pending&sigkill != 0
}

// pendingSignals is the union of the thread's own and its process's shared
// pending signals (SigPnd and ShdPnd in /proc/<pid>/status; pid is the
// thread's id, which the kernel gives in a FUSE request).
func pendingSignals(pid uint32) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var mask uint64
	found := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "SigPnd" && name != "ShdPnd") {
			continue
		}
		m, err := strconv.ParseUint(strings.TrimSpace(val), 16, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/status: %s: %w", pid, name, err)
		}
		mask |= m
		found++
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if found != 2 {
		return 0, fmt.Errorf("/proc/%d/status: no SigPnd and ShdPnd", pid)
	}
	return mask, nil
}
