package tape

import (
	"bufio"
	"io"
	"sync"
)

// MaxLineSize is the longest v2 line the parser reads; a longer line is
// skipped (streamed past, never held whole) and reported as a problem.
const MaxLineSize = 16 << 20

// lineReader yields the lines of a stream one at a time, with bounded memory.
type lineReader struct {
	br  *bufio.Reader
	buf []byte // a line that did not fit in br's buffer, reused
	max int
	n   int // number of the line last returned, from 1
}

// readBuffers keeps the 64 KiB read buffers of finished parses for the
// next: a first mount parses thousands of tapes of some 50 KB each, and a
// new buffer for each was a third of all the bytes it allocated.
var readBuffers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

func newLineReader(r io.Reader, max int) *lineReader {
	br := readBuffers.Get().(*bufio.Reader)
	br.Reset(r)
	return &lineReader{br: br, max: max}
}

// release gives the read buffer back: the lines returned are no longer
// valid, and lr must not be used again.
func (lr *lineReader) release() {
	lr.br.Reset(nil)
	readBuffers.Put(lr.br)
	lr.br = nil
}

// line is one line of input, without its '\n'.
type line struct {
	text    []byte // valid until the next call to next
	tooLong bool   // longer than max: text is nil
	noEOL   bool   // the stream ended without a final '\n'
}

// next returns the next line. It returns io.EOF when there are no more
// lines, or the read error that cut the stream short.
func (lr *lineReader) next() (line, error) {
	var l line
	lr.buf = lr.buf[:0]
	size := 0
	for {
		s, err := lr.br.ReadSlice('\n')
		size += len(s)
		if err == bufio.ErrBufferFull {
			if size > lr.max {
				l.tooLong = true
				lr.buf = lr.buf[:0]
			} else {
				lr.buf = append(lr.buf, s...)
			}
			continue
		}
		if err != nil && err != io.EOF {
			return line{}, err
		}
		if size == 0 {
			return line{}, io.EOF
		}
		lr.n++
		if n := len(s); n > 0 && s[n-1] == '\n' {
			s = s[:n-1]
			size--
		} else {
			l.noEOL = true
		}
		switch {
		case l.tooLong || size > lr.max:
			l.tooLong = true
		case len(lr.buf) == 0:
			l.text = s
		default:
			lr.buf = append(lr.buf, s...)
			l.text = lr.buf
		}
		return l, nil
	}
}
