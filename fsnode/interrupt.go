package fsnode

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
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
// killed (see callerKilled) or the connection is gone, then or later. The
// caller must call the cancel function.
func killable(ctx context.Context, conn *Connection) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		if untilKilled(ctx, c.Done(), conn) != nil {
			cancel()
		}
	})
	return c, func() { stop(); cancel() }
}

// Connection tells whether the kernel's FUSE connection of the mount still
// stands. go-fuse cancels every running request when it ends (umount -f,
// an abort through /sys/fs/fuse/connections), the same way as an
// interrupt; their callers already have ENOTCONN, so work for them must
// stop too, not run on (a truncate would still change the store) and keep
// the daemon from exiting.
type Connection struct {
	mountpoint atomic.Pointer[string]
	asking     atomic.Bool  // a statfs is on its way
	checked    atomic.Int64 // when one last answered (unix ns); it holds for connCheck
	ended      atomic.Bool  // statfs said ENOTCONN
}

// connCheck is how long one answer of statfs is taken to hold: each is a
// request to this daemon that counts the sidecar's rows, and interrupted
// requests ask ten times a second.
const connCheck = time.Second

// Serving records the mountpoint once the mount is up.
func (c *Connection) Serving(mountpoint string) { c.mountpoint.Store(&mountpoint) }

// gone says whether the connection has ended: the kernel then answers
// statfs of the mount with ENOTCONN itself. While it stands, statfs is an
// ordinary request to this daemon (go-fuse starts another reader whenever
// the last one takes a request, so it is answered); one is asked at a time.
func (c *Connection) gone() bool {
	if c == nil || c.ended.Load() {
		return c != nil
	}
	mp := c.mountpoint.Load()
	if mp == nil || time.Now().UnixNano()-c.checked.Load() < int64(connCheck) || !c.asking.CompareAndSwap(false, true) {
		return false
	}
	defer c.asking.Store(false)
	var st syscall.Statfs_t
	if errors.Is(syscall.Statfs(*mp, &st), syscall.ENOTCONN) {
		c.ended.Store(true) // a connection does not come back
	}
	c.checked.Store(time.Now().UnixNano())
	return c.ended.Load()
}

// killPoll is how often a request that was interrupted looks again whether
// its caller is being killed: the kernel interrupts a request once, so a
// kill that comes after a harmless signal sends nothing more.
const killPoll = 100 * time.Millisecond

// untilKilled, for a request whose interrupt came, waits for done; it
// returns ctx's error instead as soon as the caller is being killed or the
// connection is gone.
func untilKilled(ctx context.Context, done <-chan struct{}, conn *Connection) error {
	t := time.NewTicker(killPoll)
	defer t.Stop()
	for {
		if callerKilled(ctx) || conn.gone() {
			return ctx.Err()
		}
		select {
		case <-done:
			return nil
		case <-t.C:
		}
	}
}

// sigkill is SIGKILL's bit in the signal masks of /proc/<pid>/status.
const sigkill = 1 << (9 - 1)

// coreDumping are the signals whose default action dumps core (SIGQUIT,
// SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGXCPU, SIGXFSZ,
// SIGSYS): fatal, but the kernel does not mark them as a pending SIGKILL.
const coreDumping = 1<<(3-1) | 1<<(4-1) | 1<<(5-1) | 1<<(6-1) | 1<<(7-1) | 1<<(8-1) |
	1<<(11-1) | 1<<(24-1) | 1<<(25-1) | 1<<(31-1)

// callerKilled says whether the process behind a FUSE request is being
// killed: the kernel marks a fatal signal (a SIGINT without a handler, a
// kill -9) as a pending SIGKILL of each of the process's threads before it
// wakes them, so that is what the interrupt it then sends comes from; a
// core-dumping signal (Ctrl-\, SIGABRT) that the thread neither handles,
// ignores nor blocks is left pending as itself. A caller that is gone, or
// a context of no FUSE request, counts as killed. A caller the daemon
// cannot see (pid 0: another pid namespace) or whose status it cannot read
// does not: its work goes on, bounded as always, rather than fail a call
// on a harmless signal.
func callerKilled(ctx context.Context) bool {
	c, ok := fuse.FromContext(ctx)
	if !ok {
		return true
	}
	if c.Pid == 0 {
		return false
	}
	st, err := readSigState(c.Pid)
	if err != nil {
		return errors.Is(err, fs.ErrNotExist)
	}
	return st.fatal()
}

// sigState is a thread's signal masks, as /proc/<pid>/status gives them.
type sigState struct {
	pending uint64 // SigPnd | ShdPnd: the thread's own and its process's
	blocked uint64 // SigBlk
	ignored uint64 // SigIgn
	caught  uint64 // SigCgt: signals with a handler
}

// fatal says whether a pending signal is about to end the process.
func (s sigState) fatal() bool {
	if s.pending&sigkill != 0 {
		return true
	}
	return s.pending&coreDumping&^s.blocked&^s.ignored&^s.caught != 0
}

// readSigState reads the signal masks of thread pid (the id the kernel
// gives in a FUSE request).
func readSigState(pid uint32) (sigState, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return sigState{}, err
	}
	defer f.Close()
	st, err := parseSigState(f)
	if err != nil {
		return st, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	return st, nil
}

// parseSigState reads the Sig*/ShdPnd lines of a /proc/<pid>/status text.
func parseSigState(r io.Reader) (sigState, error) {
	var st sigState
	fields := map[string]*uint64{"SigPnd": &st.pending, "ShdPnd": new(uint64),
		"SigBlk": &st.blocked, "SigIgn": &st.ignored, "SigCgt": &st.caught}
	found := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		dst := fields[name]
		if !ok || dst == nil {
			continue
		}
		m, err := strconv.ParseUint(strings.TrimSpace(val), 16, 64)
		if err != nil {
			return st, fmt.Errorf("%s: %w", name, err)
		}
		*dst = m
		found++
	}
	if err := sc.Err(); err != nil {
		return st, err
	}
	if found != len(fields) {
		return st, fmt.Errorf("not all of SigPnd, ShdPnd, SigBlk, SigIgn and SigCgt")
	}
	st.pending |= *fields["ShdPnd"]
	return st, nil
}
