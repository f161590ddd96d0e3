package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the progress goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestProgressModes(t *testing.T) {
	state := func() progressState {
		return progressState{Done: 5, Total: 10, Unit: "files", Bytes: 512, TotalBytes: 1024, Extra: "1 skipped"}
	}
	for _, c := range []struct {
		mode string
		tty  bool
		bar  bool
	}{
		{"auto", true, true}, {"auto", false, false}, {"bar", false, true}, {"plain", true, false}, {"off", true, false},
	} {
		t.Setenv("TERM", "xterm")
		var w syncBuffer
		p := startProgress(&w, c.mode, c.tty, 80, "import", state)
		p.every = 5 * time.Millisecond
		p.Start()
		time.Sleep(40 * time.Millisecond)
		var out bytes.Buffer
		p.Printf(&out, "a line\n")
		p.Stop()
		got := w.String()
		switch {
		case c.mode == "off":
			if got != "" {
				t.Errorf("off wrote %q", got)
			}
		case c.bar:
			if !strings.Contains(got, "\r") || strings.Contains(got, "\n") {
				t.Errorf("%s tty=%v: want a bar redrawn in place, got %q", c.mode, c.tty, got)
			}
			if !strings.HasSuffix(got, "\r\x1b[K") {
				t.Errorf("%s: the bar is not cleared at the end: %q", c.mode, got[max(0, len(got)-40):])
			}
			line := strings.Split(got, "\r")[1]
			bar := line[strings.Index(line, "[")+1 : strings.Index(line, "]")]
			if fill := strings.Count(bar, "="); fill != len(bar)/2 || !strings.Contains(line, "]  50% 5/10 files 512B/1.0K") {
				t.Errorf("bar %q (%d of %d filled) in %q", bar, fill, len(bar), line)
			}
		default:
			if strings.Contains(got, "\r") || !strings.Contains(got, "import: 5/10 files, 512B/1.0K, 1 skipped, 0:00 elapsed\n") {
				t.Errorf("%s tty=%v: want plain lines, got %q", c.mode, c.tty, got)
			}
		}
		if out.String() != "a line\n" {
			t.Errorf("Printf wrote %q", out.String())
		}
	}
	t.Setenv("TERM", "dumb")
	if p := startProgress(&bytes.Buffer{}, "auto", true, 80, "x", state); p.bar {
		t.Error("a dumb terminal gets a bar")
	}
}

func TestProgressLineFitsTerminal(t *testing.T) {
	p := &progress{width: 40, label: "reindex", start: time.Now().Add(-5 * time.Second)}
	for _, s := range []progressState{
		{Phase: "listing the store", Done: 123456, Unit: "keys", Extra: "a long extra text that does not fit"},
		{Done: 50000, Total: 100000, Unit: "tapes", Bytes: 1 << 30, TotalBytes: 2 << 30, Extra: "12 skipped, 3 failed"},
	} {
		if line := p.barLine(s); len(line) > 39 {
			t.Errorf("%d columns: %q", len(line), line)
		}
	}
	// A spinner while the total is unknown; an ETA once it is.
	p.width = 200
	a := p.barLine(progressState{Phase: "listing the store", Done: 7, Unit: "keys"})
	b := p.barLine(progressState{Phase: "listing the store", Done: 8, Unit: "keys"})
	if !strings.HasPrefix(a, "reindex listing the store ") || !strings.HasSuffix(a, " 7 keys  0:05") || a[26] == b[26] {
		t.Errorf("spinner: %q then %q", a, b)
	}
	if line := p.barLine(progressState{Done: 50, Total: 100, Unit: "tapes"}); !strings.Contains(line, "ETA 0:05") {
		t.Errorf("ETA: %q", line)
	}
}

func TestClock(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0:00", 61 * time.Second: "1:01", 3723 * time.Second: "1:02:03"} {
		if got := clock(d); got != want {
			t.Errorf("clock(%v) = %q, want %q", d, got, want)
		}
	}
}
