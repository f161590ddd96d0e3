//go:build !tapefs_lite

package main

import (
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// TestFusermountUnmount: not root, the daemon unmounts with fusermount3 (or
// fusermount), passing -z for --lazy; a busy mount comes back as EBUSY
// (which unmountNow words with fuser and --lazy), any other refusal with the
// tool's own words, and no tool installed with what to install.
func TestFusermountUnmount(t *testing.T) {
	dir := t.TempDir()
	tool := func(name, script string) {
		t.Helper()
		os.Remove(filepath.Join(dir, "fusermount3"))
		os.Remove(filepath.Join(dir, "fusermount"))
		if name != "" {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Setenv("PATH", dir)
	argsFile := filepath.Join(dir, "args")
	for _, tc := range []struct {
		name, tool, script string
		lazy               bool
		wantArgs           string
		check              func(error) bool
	}{
		{"unmounted", "fusermount3", `echo "$@" > ` + argsFile, false, "-u /mnt/x",
			func(err error) bool { return err == nil }},
		{"lazy", "fusermount", `echo "$@" > ` + argsFile, true, "-u -z /mnt/x",
			func(err error) bool { return err == nil }},
		{"busy", "fusermount3", `echo "fusermount3: failed to unmount /mnt/x: Device or resource busy" >&2; exit 1`, false, "",
			func(err error) bool { return errors.Is(err, syscall.EBUSY) }},
		{"busy in the name only", "fusermount3", `echo "fusermount3: entry for /mnt/x not found in /etc/mtab (busybox)" >&2; exit 1`, false, "",
			func(err error) bool { return err != nil && !errors.Is(err, syscall.EBUSY) }},
		{"refused", "fusermount3", `echo "fusermount3: entry for /mnt/x not found in /etc/mtab" >&2; exit 1`, false, "",
			func(err error) bool {
				return err != nil && strings.Contains(err.Error(), "not found in /etc/mtab") && strings.Contains(err.Error(), "fusermount3 -u")
			}},
		{"no tool", "", "", false, "",
			func(err error) bool { return err != nil && strings.Contains(err.Error(), "install fuse3") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tool(tc.tool, tc.script)
			os.Remove(argsFile)
			err := fusermountUnmount("/mnt/x", tc.lazy)
			if !tc.check(err) {
				t.Errorf("fusermountUnmount: %v", err)
			}
			if tc.wantArgs != "" {
				if got, _ := os.ReadFile(argsFile); strings.TrimSpace(string(got)) != tc.wantArgs {
					t.Errorf("%s ran with %q, want %q", tc.tool, got, tc.wantArgs)
				}
			}
		})
	}
}
