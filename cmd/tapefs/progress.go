package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// ProgressFlag chooses how long-running commands show their progress.
type ProgressFlag struct {
	Progress string `help:"How to show progress on stderr: auto (a bar on a terminal, a plain line every 10s otherwise), bar, plain or off." enum:"auto,bar,plain,off" default:"auto" env:"TAPEFS_PROGRESS"`
}

// reconcileProgress shows an indexer's Reconcile from the counters its
// Progress option updates: keys listed so far while total is 0, then tapes
// read of total.
func reconcileProgress(mode, label string, done, total *atomic.Int64) *progress {
	return newProgress(mode, label, func() progressState {
		if total.Load() == 0 {
			return progressState{Phase: "listing the store", Done: done.Load(), Unit: "keys"}
		}
		return progressState{Phase: "indexing", Done: done.Load(), Total: total.Load(), Unit: "tapes"}
	})
}

// progressState is one reading of a running job.
type progressState struct {
	Phase      string // what is going on: "scanning", "copying", "listing", "indexing"
	Done       int64
	Total      int64  // 0: not known yet (a spinner and a count)
	Unit       string // of Done and Total: "files", "keys", "tapes"
	Bytes      int64  // optional: bytes done of TotalBytes;
	TotalBytes int64  // when > 0 the bar and the rate follow bytes
	Extra      string // e.g. "3 skipped"
}

// progress draws a job's state on stderr: a bar redrawn in place ten
// times a second on a terminal, a plain line every plainEvery otherwise
// (so CI logs get a heartbeat, not a stream of carriage returns).
type progress struct {
	w     io.Writer
	bar   bool
	width int
	label string
	state func() progressState
	every time.Duration

	mu       sync.Mutex
	start    time.Time
	onLine   bool // a bar is drawn and not yet cleared
	spin     int
	started  bool
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

const (
	barEvery   = 100 * time.Millisecond
	plainEvery = 10 * time.Second
)

// newProgress prepares to show state under label, as mode says: Start
// starts, Stop ends it.
func newProgress(mode, label string, state func() progressState) *progress {
	return startProgress(os.Stderr, mode, isTerminal(os.Stderr), termWidth(os.Stderr), label, state)
}

func startProgress(w io.Writer, mode string, tty bool, width int, label string, state func() progressState) *progress {
	p := &progress{w: w, width: width, label: label, state: state, start: time.Now(),
		stop: make(chan struct{}), done: make(chan struct{})}
	switch mode {
	case "off":
		close(p.done)
		p.started = true // nothing to wait for
		return p
	case "bar":
		p.bar = true
	case "plain":
	default: // auto
		p.bar = tty && os.Getenv("TERM") != "dumb"
	}
	p.every = plainEvery
	if p.bar {
		p.every = barEvery
	}
	return p
}

// Start starts drawing (state is called from now on).
func (p *progress) Start() {
	select {
	case <-p.done: // off
		return
	default:
	}
	p.mu.Lock()
	p.start = time.Now()
	p.started = true
	p.mu.Unlock()
	go p.loop()
}

func (p *progress) loop() {
	defer close(p.done)
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.draw()
		}
	}
}

func (p *progress) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.state()
	if p.bar {
		line := p.barLine(s)
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
		p.onLine = true
		return
	}
	fmt.Fprintln(p.w, p.plainLine(s))
}

// clear removes the bar from the screen; the caller holds mu.
func (p *progress) clear() {
	if p.onLine {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.onLine = false
	}
}

// Printf writes a line to out without garbling the bar (redrawn at the
// next tick).
func (p *progress) Printf(out io.Writer, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	fmt.Fprintf(out, format, args...)
}

// Writer returns a writer for log lines: each write clears the bar first.
func (p *progress) Writer() io.Writer { return progressWriter{p} }

type progressWriter struct{ p *progress }

func (w progressWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	w.p.clear()
	return w.p.w.Write(b)
}

// Stop ends the display and clears the bar; a plain display says nothing
// more (the command prints its summary). Stop without Start is allowed.
func (p *progress) Stop() {
	p.stopOnce.Do(func() { close(p.stop) })
	p.mu.Lock()
	started := p.started
	p.mu.Unlock()
	if started {
		<-p.done
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
}

func (p *progress) barLine(s progressState) string {
	elapsed := time.Since(p.start)
	var b strings.Builder
	b.WriteString(p.label)
	if s.Total <= 0 {
		if s.Phase != "" {
			b.WriteString(" " + s.Phase)
		}
		p.spin++
		fmt.Fprintf(&b, " %c %d %s  %s", `|/-\`[p.spin%4], s.Done, s.Unit, clock(elapsed))
		if s.Extra != "" {
			b.WriteString("  " + s.Extra)
		}
		return p.fit(b.String())
	}
	frac := float64(s.Done) / float64(s.Total)
	if s.TotalBytes > 0 {
		frac = float64(s.Bytes) / float64(s.TotalBytes)
	}
	frac = min(max(frac, 0), 1)
	// Most important first: a line too long for the terminal loses its end.
	var tail strings.Builder
	fmt.Fprintf(&tail, " %3.0f%% %d/%d %s", frac*100, s.Done, s.Total, s.Unit)
	if s.TotalBytes > 0 {
		fmt.Fprintf(&tail, " %s/%s", humanSize(s.Bytes), humanSize(s.TotalBytes))
	}
	if frac > 0.01 && elapsed > time.Second {
		left := time.Duration(float64(elapsed) * (1 - frac) / frac)
		fmt.Fprintf(&tail, " ETA %s", clock(left))
	} else {
		fmt.Fprintf(&tail, " %s", clock(elapsed))
	}
	if s.TotalBytes > 0 && elapsed >= time.Second {
		fmt.Fprintf(&tail, " %s/s", humanSize(int64(float64(s.Bytes)/elapsed.Seconds())))
	}
	if s.Extra != "" {
		tail.WriteString("  " + s.Extra)
	}
	// The bar takes what the text leaves of the line, between 10 and 30.
	n := min(max(p.width-1-b.Len()-tail.Len()-3, 10), 30)
	fill := int(frac * float64(n))
	b.WriteString(" [")
	b.WriteString(strings.Repeat("=", fill))
	if fill < n {
		b.WriteString(">")
		b.WriteString(strings.Repeat(" ", n-fill-1))
	}
	b.WriteString("]")
	b.WriteString(tail.String())
	return p.fit(b.String())
}

// fit cuts a line to the terminal's width, so it never wraps (a wrapped
// line cannot be redrawn in place).
func (p *progress) fit(s string) string {
	if p.width > 1 && len(s) > p.width-1 {
		return s[:p.width-1]
	}
	return s
}

func (p *progress) plainLine(s progressState) string {
	var b strings.Builder
	b.WriteString(p.label + ":")
	if s.Phase != "" {
		b.WriteString(" " + s.Phase)
	}
	if s.Total > 0 {
		fmt.Fprintf(&b, " %d/%d %s", s.Done, s.Total, s.Unit)
		if s.TotalBytes > 0 {
			fmt.Fprintf(&b, ", %s/%s", humanSize(s.Bytes), humanSize(s.TotalBytes))
		}
	} else {
		fmt.Fprintf(&b, " %d %s", s.Done, s.Unit)
	}
	if s.Extra != "" {
		b.WriteString(", " + s.Extra)
	}
	fmt.Fprintf(&b, ", %s elapsed", clock(time.Since(p.start)))
	return b.String()
}

// clock formats a duration as m:ss or h:mm:ss.
func clock(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// termWidth is f's width in columns, 80 when it cannot be told.
func termWidth(f *os.File) int {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 {
		return 80
	}
	return int(ws.Col)
}
