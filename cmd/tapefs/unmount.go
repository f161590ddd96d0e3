//go:build !tapefs_lite

package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tapefs/tapefs/internal/proc"
)

// UnmountCmd unmounts a tapefs mount.
type UnmountCmd struct {
	Mountpoint string        `arg:"" help:"The mounted directory."`
	Lazy       bool          `help:"Detach even if files are open (they keep working until closed)."`
	Timeout    time.Duration `help:"How long to wait for pending uploads." default:"10m"`
}

func (c *UnmountCmd) Run(g *Globals, log *slog.Logger) error {
	mp, err := filepath.Abs(c.Mountpoint)
	if err != nil {
		return err
	}
	if real, err := filepath.EvalSymlinks(mp); err == nil {
		mp = real
	}
	q := ""
	if c.Lazy {
		q = "?lazy=1"
	}
	mi, _ := readMountInfo(mp)
	pid := mi.PID
	var ans unmountAnswer
	cerr := callControl(mp, "POST", "/unmount"+q, c.Timeout, &ans)
	if cerr == nil {
		deadline := time.Now().Add(10 * time.Second)
		for isMounted(mp) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		// The daemon closes the sidecar after the mount is gone: wait for it
		// to exit, so that a mount of the same store right after finds the
		// sidecar and the staging directory free.
		// After a lazy unmount it goes on serving the files still open.
		if ans.StillOpen {
			log.Info("detached; it is still in use (files still open, a working directory, or a call in progress): the daemon serves them until they are closed, then exits (until then this store's sidecar cannot be mounted again)", "mountpoint", mp, "pid", pid)
			return nil
		}
		for pid > 0 && pid != os.Getpid() && !proc.Exited(pid) && time.Now().Before(deadline.Add(20*time.Second)) {
			time.Sleep(20 * time.Millisecond)
		}
		return nil
	}
	if !isDialErr(cerr) && !daemonDied(pid, cerr, 5*time.Second) {
		return fmt.Errorf("unmount of %s: %v", mp, cerr)
	}
	// No daemon answers: the mount (if any) is dead. Clean it up.
	if !isMounted(mp) {
		removeMountInfo(mp)
		return fmt.Errorf("%s is not mounted", mp)
	}
	if err := syscall.Unmount(mp, 0); err != nil {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("cannot unmount the dead mount at %s: %w", mp, err)
		}
	}
	removeMountInfo(mp)
	log.Info("cleaned up a mount whose daemon was gone; staged writes, if any, are uploaded at the next mount", "mountpoint", mp)
	return nil
}

// daemonDied says whether err, a failed control request, is the daemon
// pid dying under it rather than its answer: the connection was reset or
// cut, and the process is gone within wait. A daemon killed a moment ago
// (SIGKILL) whose other threads are still exiting keeps its control
// socket listening: the connection is accepted, then reset, where a dial
// would have been refused.
func daemonDied(pid int, err error, wait time.Duration) bool {
	if pid <= 0 || pid == os.Getpid() ||
		!errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return false
	}
	for deadline := time.Now().Add(wait); ; time.Sleep(20 * time.Millisecond) {
		if proc.Exited(pid) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// isDialErr tells "no daemon listens" from "the daemon said no".
func isDialErr(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
