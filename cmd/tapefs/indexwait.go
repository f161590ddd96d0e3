package main

import (
	"fmt"
	"io"
	"time"

	"github.com/tapefs/tapefs/internal/proc"
)

// awaitMountIndex waits while a running mount whose sidecar is path still
// indexes its store's tapes (a mount serves from the end of the first
// listing on; see mountInfo.Indexing), so that a query right after a first
// mount answers from every tape, not from the ones read so far. It says on
// w, once, what it waits for. A mount whose daemon is gone is not waited
// for.
func awaitMountIndex(path string, w io.Writer) {
	noted := false
	for {
		mi, ok := mountServing(path)
		if !ok || !mi.Indexing || proc.Exited(mi.PID) {
			return
		}
		if !noted {
			fmt.Fprintf(w, "tapefs: the mount at %s is still indexing its store's tapes; waiting for it (tapefs status shows how far it got)\n", mi.Mountpoint)
			noted = true
		}
		time.Sleep(50 * time.Millisecond)
	}
}
