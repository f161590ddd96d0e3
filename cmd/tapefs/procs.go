//go:build !tapefs_lite

package main

import (
	"runtime"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// mountWithIdleProcs mounts root as fs.Mount does, then raises GOMAXPROCS
// by the number of go-fuse's readers of /dev/fuse.
//
// go-fuse starts up to one reader more than GOMAXPROCS (at least 2, at most
// 16) when it creates the server, and each is an OS thread blocked in
// read(2) between requests, holding its P in a syscall. With GOMAXPROCS at
// the number of CPUs, every P is held so; Go's sysmon then takes them back
// every 20 µs and starts threads that find nothing to run. In a warm grep -l
// over 2,000 tapes (two requests per file) that was a fifth of the daemon's
// CPU time. With a P free for each reader, sysmon leaves them alone; the
// readers stay as many (their number was fixed at the server's creation),
// and so does the work that can run at once, bounded by the CPUs.
func mountWithIdleProcs(mountpoint string, root fs.InodeEmbedder, opts *fs.Options) (*fuse.Server, error) {
	procs := runtime.GOMAXPROCS(0)
	server, err := fs.Mount(mountpoint, root, opts)
	if err == nil {
		runtime.GOMAXPROCS(procs + fuseReaders(procs))
	}
	return server, err
}

// fuseReaders is how many goroutines go-fuse's server, created at procs,
// reads /dev/fuse with at most (see fuse.Server's loop and readRequest).
func fuseReaders(procs int) int {
	return min(max(procs, 2), 16) + 1
}
