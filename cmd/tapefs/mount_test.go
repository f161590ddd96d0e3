//go:build !tapefs_lite

package main

import (
	"errors"
	"strings"
	"testing"
)

// nopCloser is a readyPipe's end that records what it is sent.
type nopCloser struct {
	strings.Builder
	closed bool
}

func (n *nopCloser) Close() error { n.closed = true; return nil }

// TestReadyProtocol: what a --daemon child says about its start-up is what
// its parent reads: the progress lines, then one verdict, then nothing.
func TestReadyProtocol(t *testing.T) {
	for _, c := range []struct {
		name    string
		err     error
		verdict string
	}{
		{"mounted", nil, "ok"},
		{"failed", errors.New("cannot list the store s3://b:\n  no such bucket"), "error: cannot list the store s3://b: no such bucket"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := &nopCloser{}
			rp := &readyPipe{w: w}
			rp.progress(500, 0)
			rp.progress(1000, 0)
			rp.progress(10, 400)
			rp.ready(c.err)
			rp.progress(20, 400) // after the verdict: dropped
			rp.ready(nil)        // a second verdict: dropped
			if !w.closed {
				t.Error("the pipe is not closed after the verdict")
			}
			var seen [][2]int64
			got := readReady(strings.NewReader(w.String()), func(d, tot int64) { seen = append(seen, [2]int64{d, tot}) })
			if got != c.verdict {
				t.Errorf("verdict %q, want %q (sent %q)", got, c.verdict, w.String())
			}
			if want := [][2]int64{{500, 0}, {1000, 0}, {10, 400}}; len(seen) != len(want) || seen[0] != want[0] || seen[1] != want[1] || seen[2] != want[2] {
				t.Errorf("progress %v, want %v", seen, want)
			}
		})
	}
	// A daemon that dies before its verdict leaves an empty one; a nil
	// readyPipe (a mount in the foreground) says nothing and does not panic.
	if got := readReady(strings.NewReader("progress 1 0\n"), func(int64, int64) {}); got != "" {
		t.Errorf("verdict of a daemon that died: %q", got)
	}
	var rp *readyPipe
	rp.progress(1, 2)
	rp.ready(nil)
}
