package tape

import (
	"bytes"
	"io"
	"time"
	"unicode/utf8"
)

// ParseV2 reads a v2 tape: the .jsonl stream and, if present, the content
// of its .meta.json (nil when absent). It never fails and never panics:
// what it cannot read is listed in Problems, in this order: meta.json
// problems, then line problems by line number, then "empty tape".
//
// Field sources, first non-empty wins:
//
//	TapeID          init.tape_id, meta tape_id, the key's base name without ".jsonl"
//	SessionID       init.session_id
//	CreatedAt       init.created_at, meta created_at
//	ProtocolVersion init.protocol_version, the initialize request's params.protocolVersion
//	Name, Description, Tags, UpdatedAt, FinalizedAt  meta
//	Status          meta status, else StatusRecording (a tape without meta is taken as still recording)
//	Transport       meta transport.type, else the first key of the first frame's transport object
//	DurationMS      the largest frame ts, else (no frame) meta stats.duration_ms
//
// Counting: FrameCount is every frame line read (ClientToServer and
// ServerToClient count those with a known dir). ErrorCount: frames whose
// message has a non-null "error" or whose flags.is_error is true. Slowest
// comes from correlation lines if there is any, else from requests and
// responses matched by JSON-RPC id and opposite direction (RTT: ts
// difference; Status: PairError if the response counts as an error).
//
// Lines of unknown type are skipped without a problem. Blank lines are
// ignored. A line longer than MaxLineSize is skipped unread. The problems
// are short lines such as "line 5: invalid JSON", "line 1: first line is
// not init", "line 9: wrong type for seq" (the line is still used),
// "line 7: invalid UTF-8" (still used, bytes replaced by U+FFFD),
// "line 3: longer than 16 MiB, skipped", "empty tape",
// "meta.json: invalid JSON" (meta ignored, HasMeta false) or
// "meta.json: wrong type for tags" (the rest of the meta used); the first
// line is the first non-blank one. JSON nested deeper than 10000 levels is
// invalid, as for encoding/json and jq.
func ParseV2(data io.Reader, meta []byte, key string) *Record {
	rec := &Record{Key: key, Format: FormatV2, Status: StatusRecording}
	p := &v2parser{a: newAnalyzer(rec)}
	m := p.readMeta(meta)
	p.readLines(data)

	rec.TapeID = first(p.tapeID, m.tapeID, stem(key))
	if rec.CreatedAt.IsZero() {
		rec.CreatedAt = m.created
	}
	rec.Name, rec.Description, rec.Tags = m.name, m.description, m.tags
	rec.UpdatedAt, rec.FinalizedAt = m.updated, m.finalized
	rec.Status = first(m.status, rec.Status)
	rec.Transport = first(m.transport, p.transport)
	if !p.sawTS && m.durationMS != nil {
		rec.DurationMS = *m.durationMS
	}
	if p.nonBlank == 0 {
		p.a.problem("empty tape")
	}
	p.a.finish()
	return rec
}

// v2parser holds the state of one ParseV2 call.
type v2parser struct {
	a         *analyzer
	s         jscan
	l         v2line
	nonBlank  int  // non-blank lines seen
	sawInit   bool // an init line was used
	sawTS     bool // some frame had a ts
	tapeID    string
	transport string // from the first frame that names one
}

// v2line is the union of the fields of all line types. Byte slices alias
// the line.
type v2line struct {
	typ                          []byte
	tapeID, sessionID, createdAt []byte
	protocol                     []byte
	seq, ts                      int64
	hasSeq, hasTS                bool
	dir                          []byte
	msg                          message
	isError                      bool
	transport                    []byte
	reqSeq, respSeq, rtt         int64
	hasReq, hasResp              bool
	status                       []byte
	wrong                        string // first field with a wrong type
}

func (l *v2line) note(g got, field string) bool {
	if g == gotWrong && l.wrong == "" {
		l.wrong = field
	}
	return g == gotOK
}

func (p *v2parser) readLines(data io.Reader) {
	lr := newLineReader(data, MaxLineSize)
	defer lr.release()
	for {
		ln, err := lr.next()
		if err == io.EOF {
			return
		}
		if err != nil {
			p.a.problem("read error: %v", err)
			return
		}
		if !ln.tooLong && len(bytes.TrimSpace(ln.text)) == 0 {
			continue
		}
		p.nonBlank++
		isInit := p.line(lr.n, ln)
		if p.nonBlank == 1 && !isInit {
			p.a.problem("line %d: first line is not init", lr.n)
		}
	}
}

// line handles one non-blank line and reports whether it was a usable init.
func (p *v2parser) line(n int, ln line) bool {
	if ln.tooLong {
		p.a.problem("line %d: longer than %d MiB, skipped", n, MaxLineSize>>20)
		return false
	}
	if !utf8.Valid(ln.text) {
		p.a.problem("line %d: invalid UTF-8", n)
	}
	l := &p.l
	*l = v2line{}
	p.s.reset(ln.text)
	isObject := p.readLine(l)
	switch {
	case p.s.bad || !p.s.atEnd():
		if ln.noEOL {
			p.a.problem("line %d: invalid JSON (incomplete last line)", n)
		} else {
			p.a.problem("line %d: invalid JSON", n)
		}
		return false
	case !isObject:
		p.a.problem("line %d: not a JSON object", n)
		return false
	case l.wrong != "":
		p.a.problem("line %d: wrong type for %s", n, l.wrong)
	}
	switch string(l.typ) {
	case "init":
		return p.init(n, l)
	case "frame":
		p.frame(n, l)
	case "correlation":
		p.correlation(n, l)
	case "":
		if l.wrong != "type" {
			p.a.problem("line %d: no type", n)
		}
	}
	return false
}

// readLine reads a line object into l.
func (p *v2parser) readLine(l *v2line) bool {
	s := &p.s
	return s.object(func(k []byte) {
		var g got
		switch string(k) {
		case "type":
			l.typ, g = s.str()
		case "tape_id":
			l.tapeID, g = s.str()
		case "session_id":
			l.sessionID, g = s.str()
		case "created_at":
			l.createdAt, g = s.str()
		case "protocol_version":
			l.protocol, g = s.str()
		case "seq":
			l.seq, g = s.int()
			l.hasSeq = g == gotOK
		case "ts":
			l.ts, g = s.int()
			l.hasTS = g == gotOK
		case "dir":
			l.dir, g = s.str()
		case "env":
			if !s.object(func(k []byte) {
				if string(k) == "message" && !readMessage(s, &l.msg) {
					l.note(gotWrong, "env.message")
				}
			}) {
				g = gotWrong
			}
			if l.msg.wrong != "" {
				l.note(gotWrong, "env.message."+l.msg.wrong)
			}
		case "flags":
			if !s.object(func(k []byte) {
				if string(k) == "is_error" {
					var fg got
					l.isError, fg = s.bool()
					l.note(fg, "flags.is_error")
				}
			}) {
				g = gotWrong
			}
		case "transport":
			l.transport = s.raw()
		case "request_seq":
			l.reqSeq, g = s.int()
			l.hasReq = g == gotOK
		case "response_seq":
			l.respSeq, g = s.int()
			l.hasResp = g == gotOK
		case "rtt_ms":
			l.rtt, g = s.int()
		case "status":
			l.status, g = s.str()
		default:
			return
		}
		l.note(g, string(k))
	})
}

func (p *v2parser) init(n int, l *v2line) bool {
	if p.sawInit {
		p.a.problem("line %d: duplicate init", n)
		return false
	}
	p.sawInit = true
	r := p.a.rec
	p.tapeID = validUTF8(string(l.tapeID))
	r.SessionID = validUTF8(string(l.sessionID))
	r.ProtocolVersion = validUTF8(string(l.protocol))
	if len(l.createdAt) > 0 {
		t, err := parseTime(string(l.createdAt))
		if err != nil {
			p.a.problem("line %d: invalid created_at", n)
		}
		r.CreatedAt = t
	}
	return true
}

func (p *v2parser) frame(n int, l *v2line) {
	f := frameInfo{seq: l.seq, ts: l.ts, msg: &l.msg, isError: l.isError}
	if !l.hasSeq {
		f.seq = p.a.rec.FrameCount
	}
	switch string(l.dir) {
	case "client_to_server":
		f.dir = dirC2S
	case "server_to_client":
		f.dir = dirS2C
	default:
		p.a.problem("line %d: unknown dir", n)
	}
	if l.hasTS && (!p.sawTS || l.ts > p.a.rec.DurationMS) {
		p.a.rec.DurationMS = l.ts
	}
	p.sawTS = p.sawTS || l.hasTS
	if p.transport == "" && l.transport != nil {
		p.transport = firstKey(&p.s, l.transport)
	}
	p.a.frame(f)
}

func (p *v2parser) correlation(n int, l *v2line) {
	if !l.hasReq || !l.hasResp {
		p.a.problem("line %d: incomplete correlation", n)
		return
	}
	p.a.correlation(l.reqSeq, l.respSeq, l.rtt, l.status)
}

// firstKey returns the first member name of a JSON object, or "".
func firstKey(s *jscan, obj []byte) string {
	var name string
	s.reset(obj)
	s.object(func(k []byte) {
		if name == "" {
			name = validUTF8(TruncateUTF8(string(k), MaxNameLen))
		}
	})
	return name
}

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

func first(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
