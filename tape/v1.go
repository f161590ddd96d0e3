package tape

import (
	"encoding/json"
	"errors"
	"io"
	"time"
	"unicode/utf8"
)

// ParseV1 reads a v1 tape document. index is the index.json of the tape's
// directory, or nil. It streams the frames one at a time, never fails and
// never panics.
//
// A document that is valid JSON but not a v1 tape (not an object, or an
// object with neither a "frames" array nor a "format" object) yields a
// Record with Format "" (see Record.IsTape): the caller should serve it as
// a plain file. A document that is not valid JSON, or is empty, is an
// invalid v1 tape.
//
// Field sources, first non-empty wins (the tape file before the index):
//
//	TapeID       index entry id, the key's base name without ".json"
//	SessionID, Name, Description, Tags, Transport  session (name and tags: then the index)
//	CreatedAt    timeline.started_at, the earliest frame timestamp, index created_at
//	FinalizedAt  timeline.ended_at
//	DurationMS   timeline.duration_ms, last-first frame timestamp, index duration_ms
//	FrameCount   len(frames), timeline.frame_count, index frame_count
//	Status       always StatusFinalized: a v1 tape is a complete document
func ParseV1(data io.Reader, key string, index *V1Index) *Record {
	rec := &Record{Key: key, Format: FormatV1, Status: StatusFinalized, TapeID: stem(key)}
	p := &v1parser{a: newAnalyzer(rec), dec: json.NewDecoder(data)}
	if !p.read() {
		return &Record{Key: key, TapeID: rec.TapeID, Problems: []string{"not a tape"}}
	}
	p.settle(index.Lookup(stem(key), baseName(key)))
	p.a.finish()
	return rec
}

// IsTape reports whether the object is a tape at all (valid or not).
func (r *Record) IsTape() bool { return r.Format != "" }

type v1parser struct {
	a   *analyzer
	dec *json.Decoder
	s   jscan

	session  v1Session
	timeline v1Timeline

	hasFrames  bool  // a frames array was read
	nFrames    int64 // frames read
	minTS      int64 // frame timestamps
	maxTS      int64
	sawTS      bool
	fatal      bool // JSON syntax error: stop
	isTapeLike bool // has a frames array or a format object
}

type v1Session struct {
	ID            string   `json:"id"`
	Name          string   `json:"name"`
	Description   string   `json:"description"`
	Tags          []string `json:"tags"`
	TransportType string   `json:"transport_type"`
}

type v1Timeline struct {
	StartedAt  json.RawMessage `json:"started_at"`
	EndedAt    json.RawMessage `json:"ended_at"`
	DurationMS *int64          `json:"duration_ms"`
	FrameCount *int64          `json:"frame_count"`
}

// read walks the document and reports whether it is (or may be) a tape.
func (p *v1parser) read() bool {
	tok, err := p.dec.Token()
	if err == io.EOF {
		p.a.problem("empty tape")
		return true
	}
	if err != nil {
		p.a.problem("invalid JSON")
		return true
	}
	if tok != json.Delim('{') {
		p.skipRest(tok, 0)
		p.end()
		return p.fatal
	}
	for !p.fatal && p.dec.More() {
		tok, err := p.dec.Token()
		if err != nil {
			p.syntax()
			break
		}
		name, _ := tok.(string)
		switch name {
		case "format":
			var raw json.RawMessage
			if p.decode(&raw, "format") && len(raw) > 0 && raw[0] == '{' {
				p.isTapeLike = true
			}
		case "session":
			p.decode(&p.session, "session")
		case "timeline":
			p.decode(&p.timeline, "timeline")
		case "frames":
			p.frames()
		default:
			p.skipValue()
		}
	}
	if !p.fatal {
		if _, err := p.dec.Token(); err != nil { // the closing '}'
			p.syntax()
		}
		p.end()
	}
	return p.fatal || p.isTapeLike
}

// end checks that nothing follows the document.
func (p *v1parser) end() {
	if p.fatal {
		return
	}
	if _, err := p.dec.Token(); err != io.EOF {
		p.syntax()
	}
}

func (p *v1parser) syntax() {
	if !p.fatal {
		p.fatal = true
		p.a.problem("invalid JSON")
	}
}

// decode reads one member value of the top object into v; a type error is
// reported and skipped.
func (p *v1parser) decode(v any, field string) bool {
	var raw json.RawMessage
	if err := p.dec.Decode(&raw); err != nil || !p.nestingOK(raw, 1) {
		p.syntax()
		return false
	}
	err := json.Unmarshal(raw, v)
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
	case errors.As(err, &te):
		if te.Field != "" {
			field += "." + te.Field
		}
		p.a.problem("wrong type for %s", field)
	default:
		p.syntax()
		return false
	}
	return true
}

// nestingOK checks that a value found at depth base stays within the
// nesting limit of the whole document (json.Decoder counts from the value).
func (p *v1parser) nestingOK(raw []byte, base int) bool {
	p.s.reset(raw)
	p.s.depth = base
	p.s.skip()
	return !p.s.bad
}

// skipValue consumes one value token by token, with bounded memory.
func (p *v1parser) skipValue() {
	tok, err := p.dec.Token()
	if err != nil {
		p.syntax()
		return
	}
	p.skipRest(tok, 1)
}

// skipRest consumes the rest of a value whose first token was tok. base
// is the depth of the value's container, for the nesting limit.
func (p *v1parser) skipRest(tok json.Token, base int) {
	depth := 0
	for {
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return
		}
		if base+depth > maxDepth {
			p.syntax() // as encoding/json would
			return
		}
		var err error
		if tok, err = p.dec.Token(); err != nil {
			p.syntax()
			return
		}
	}
}

// frames reads the frames array one frame at a time.
func (p *v1parser) frames() {
	tok, err := p.dec.Token()
	if err != nil {
		p.syntax()
		return
	}
	if tok != json.Delim('[') {
		p.a.problem("wrong type for frames")
		p.skipRest(tok, 1)
		return
	}
	p.hasFrames, p.isTapeLike = true, true
	var raw json.RawMessage
	for i := 0; !p.fatal && p.dec.More(); i++ {
		raw = raw[:0]
		if err := p.dec.Decode(&raw); err != nil {
			p.syntax()
			return
		}
		p.frame(i, raw)
	}
	if _, err := p.dec.Token(); err != nil {
		p.syntax()
	}
}

// frame reads one element of frames.
func (p *v1parser) frame(i int, raw []byte) {
	var (
		m         message
		seq, ts   int64
		hasSeq    bool
		hasTS     bool
		direction []byte
		wrong     string
	)
	note := func(g got, field string) bool {
		if g == gotWrong && wrong == "" {
			wrong = field
		}
		return g == gotOK
	}
	if !utf8.Valid(raw) {
		p.a.problem("frames[%d]: invalid UTF-8", i)
	}
	s := &p.s
	s.reset(raw)
	s.depth = 2 // inside the top object and the frames array
	ok := s.object(func(k []byte) {
		switch string(k) {
		case "sequence":
			var g got
			seq, g = s.int()
			hasSeq = note(g, "sequence")
		case "timestamp":
			var g got
			ts, g = s.int()
			hasTS = note(g, "timestamp")
		case "direction":
			var g got
			direction, g = s.str()
			note(g, "direction")
		case "message":
			if !readMessage(s, &m) {
				note(gotWrong, "message")
			}
			if m.wrong != "" {
				note(gotWrong, "message."+m.wrong)
			}
		}
	})
	switch {
	case s.bad: // json.Decoder validated it: only too deep for the document
		p.syntax()
		return
	case !ok:
		p.a.problem("frames[%d]: not a JSON object", i)
		return
	}
	if wrong != "" {
		p.a.problem("frames[%d]: wrong type for %s", i, wrong)
	}
	p.nFrames++
	f := frameInfo{seq: seq, ts: ts, msg: &m}
	if !hasSeq {
		f.seq = int64(i)
	}
	switch string(direction) {
	case "ClientToServer":
		f.dir = dirC2S
	case "ServerToClient":
		f.dir = dirS2C
	default:
		p.a.problem("frames[%d]: unknown direction", i)
	}
	if hasTS {
		if !p.sawTS || ts < p.minTS {
			p.minTS = ts
		}
		if !p.sawTS || ts > p.maxTS {
			p.maxTS = ts
		}
		p.sawTS = true
	}
	p.a.frame(f)
}

// settle fills the record from session, timeline and the index entry.
func (p *v1parser) settle(e *V1IndexEntry) {
	r, ss, tl := p.a.rec, p.session, p.timeline
	r.SessionID, r.Name, r.Description = ss.ID, ss.Name, ss.Description
	r.Transport = ss.TransportType
	if len(ss.Tags) > 0 {
		r.Tags = ss.Tags
	}
	r.CreatedAt = p.timelineTime(tl.StartedAt, "started_at")
	r.FinalizedAt = p.timelineTime(tl.EndedAt, "ended_at")
	if r.CreatedAt.IsZero() && p.sawTS {
		r.CreatedAt = time.UnixMilli(p.minTS).UTC()
	}
	switch {
	case tl.DurationMS != nil:
		r.DurationMS = *tl.DurationMS
	case p.sawTS:
		r.DurationMS = p.maxTS - p.minTS
	case e != nil:
		r.DurationMS = e.DurationMS
	}
	switch {
	case p.hasFrames:
		r.FrameCount = p.nFrames
	case tl.FrameCount != nil:
		r.FrameCount = *tl.FrameCount
	case e != nil:
		r.FrameCount = e.FrameCount
	}
	if !p.hasFrames && p.isTapeLike && !p.fatal {
		p.a.problem("no frames") // recognised by its format object alone
	}
	if e == nil {
		return
	}
	r.HasMeta = true
	r.TapeID = first(e.ID, r.TapeID)
	r.Name = first(r.Name, e.Name)
	if r.Tags == nil {
		r.Tags = e.Tags
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = e.CreatedAt
	}
}

func (p *v1parser) timelineTime(raw json.RawMessage, field string) time.Time {
	t, ok := epochOrRFC3339(raw)
	if !ok {
		p.a.problem("wrong type for timeline.%s", field)
	}
	return t
}
