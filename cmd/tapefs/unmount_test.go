//go:build !tapefs_lite

package main

import (
	"errors"
	"io"
	"net"
	"net/url"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestDaemonDied: unmount takes a reset or cut control connection for a
// dead daemon only if the daemon's process is gone; an answer of a daemon,
// or a live one, is not a dead mount to clean up.
func TestDaemonDied(t *testing.T) {
	done := exec.Command("true")
	if err := done.Run(); err != nil {
		t.Fatal(err)
	}
	live := exec.Command("sleep", "30")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { live.Process.Kill(); live.Wait() })
	reset := &url.Error{Op: "Post", URL: "http://tapefs/unmount",
		Err: &net.OpError{Op: "read", Net: "unix", Err: syscall.ECONNRESET}}
	cut := &url.Error{Op: "Post", URL: "http://tapefs/unmount", Err: io.EOF}
	answer := errors.New("daemon answered 500 Internal Server Error")
	for _, tc := range []struct {
		name string
		pid  int
		err  error
		want bool
	}{
		{"reset, process gone", done.Process.Pid, reset, true},
		{"cut, process gone", done.Process.Pid, cut, true},
		{"reset, process alive", live.Process.Pid, reset, false},
		{"an answer, process gone", done.Process.Pid, answer, false},
		{"no pid known", 0, reset, false},
	} {
		if got := daemonDied(tc.pid, tc.err, 100*time.Millisecond); got != tc.want {
			t.Errorf("%s: daemonDied = %v, want %v", tc.name, got, tc.want)
		}
	}
}
