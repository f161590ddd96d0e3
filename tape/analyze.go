package tape

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits on what a Record keeps.
const (
	MaxErrorMessages = 50   // distinct error messages kept, first seen first
	MaxErrorMsgLen   = 512  // bytes kept of one error message
	MaxSlowest       = 10   // pairs kept in Slowest
	MaxProblems      = 20   // problems kept; then one "N more problems" line
	MaxNames         = 1000 // distinct methods (and tools) counted
	MaxNameLen       = 256  // bytes kept of a method or tool name
)

// Pair status values derived by the parser when it matches ids itself.
const (
	PairSuccess = "success"
	PairError   = "error"
)

// dir is the direction of a frame.
type dir uint8

const (
	dirUnknown dir = iota
	dirC2S
	dirS2C
)

// message is the part of a JSON-RPC message the index needs. The byte
// slices alias the line being parsed.
type message struct {
	method []byte
	id     []byte // raw JSON of the id; nil when absent or null
	params []byte // raw JSON values; nil when absent or null
	result []byte
	errv   []byte
	wrong  string // first member with a wrong type
}

// readMessage reads a JSON-RPC message object from s into m.
func readMessage(s *jscan, m *message) bool {
	return s.object(func(k []byte) {
		switch string(k) {
		case "method":
			v, g := s.str()
			m.method = v
			m.noteWrong(g, "method")
		case "id":
			m.id = s.raw()
		case "params":
			m.params = s.raw()
		case "result":
			m.result = s.raw()
		case "error":
			m.errv = s.raw()
		}
	})
}

func (m *message) noteWrong(g got, field string) {
	if g == gotWrong && m.wrong == "" {
		m.wrong = field
	}
}

// frameInfo is one frame as the analyzer sees it, from either format.
type frameInfo struct {
	seq     int64
	ts      int64 // ms: since tape start (v2) or the epoch (v1)
	dir     dir
	msg     *message
	isError bool // flags.is_error (v2)
}

// request remembers a request until its response arrives.
type request struct {
	method string
	seq    int64
	ts     int64
}

// analyzer accumulates what frames say about a session into a Record.
// It is shared by the v1 and v2 parsers.
type analyzer struct {
	rec       *Record
	s         jscan             // for the small nested reads
	names     map[string]string // interned method and tool names
	errSeen   map[string]bool
	pending   map[string]request // direction+id → unanswered request
	bySeq     map[int64]string   // request seq → method, for correlation lines
	gotInit   bool               // the first initialize request was seen
	gotServer bool               // and its response
	protoAlt  string             // protocolVersion from initialize, if the tape has no other

	byID     topPairs // pairs matched by JSON-RPC id
	byCorr   topPairs // pairs from correlation lines
	sawCorr  bool
	problems int // problems met, kept or not
}

func newAnalyzer(rec *Record) *analyzer {
	rec.Methods = map[string]int64{}
	rec.Tools = map[string]int64{}
	return &analyzer{
		rec:     rec,
		names:   map[string]string{},
		errSeen: map[string]bool{},
		pending: map[string]request{},
		bySeq:   map[int64]string{},
	}
}

// problem records one problem, keeping at most MaxProblems.
func (a *analyzer) problem(format string, args ...any) {
	a.problems++
	if a.problems <= MaxProblems {
		a.rec.Problems = append(a.rec.Problems, fmt.Sprintf(format, args...))
	}
}

// intern returns b as a string, allocating once per distinct name.
func (a *analyzer) intern(b []byte) string {
	if s, ok := a.names[string(b)]; ok {
		return s
	}
	s := validUTF8(TruncateUTF8(string(b), MaxNameLen))
	if len(a.names) < 10000 {
		a.names[s] = s
	}
	return s
}

// frame counts one frame.
func (a *analyzer) frame(f frameInfo) {
	r := a.rec
	r.FrameCount++
	switch f.dir {
	case dirC2S:
		r.ClientToServer++
	case dirS2C:
		r.ServerToClient++
	}
	m := f.msg
	isErr := f.isError || m.errv != nil
	if isErr {
		r.ErrorCount++
	}
	if m.errv != nil {
		a.errorMessage(m.errv)
	}
	var method string
	if m.method != nil {
		method = a.intern(m.method)
		count(r.Methods, method)
	}
	switch method {
	case "tools/call":
		a.toolCall(m.params)
	case "initialize":
		if m.id != nil && !a.gotInit && f.dir != dirUnknown {
			a.gotInit = true
			a.initialize(m.params)
		}
	}
	if f.dir == dirUnknown || m.id == nil {
		return
	}
	if m.method != nil {
		a.pending[pendingKey(f.dir, m.id)] = request{method: method, seq: f.seq, ts: f.ts}
		a.bySeq[f.seq] = method
		return
	}
	if m.result == nil && m.errv == nil {
		return
	}
	key := pendingKey(opposite(f.dir), m.id)
	req, ok := a.pending[key]
	if !ok {
		return
	}
	delete(a.pending, key)
	status := PairSuccess
	if isErr {
		status = PairError
	}
	a.byID.add(Pair{Method: req.method, RequestSeq: req.seq, ResponseSeq: f.seq,
		RTTMS: f.ts - req.ts, Status: status})
	if req.method == "initialize" && !a.gotServer && m.result != nil {
		a.gotServer = true
		a.serverInfo(m.result)
	}
}

// correlation counts one v2 correlation line.
func (a *analyzer) correlation(reqSeq, respSeq, rtt int64, status []byte) {
	a.sawCorr = true
	method := a.bySeq[reqSeq]
	delete(a.bySeq, reqSeq)
	a.byCorr.add(Pair{Method: method, RequestSeq: reqSeq, ResponseSeq: respSeq,
		RTTMS: rtt, Status: a.intern(status)})
}

// count adds one to m[name], counting at most MaxNames distinct names.
func count(m map[string]int64, name string) {
	if _, ok := m[name]; ok || len(m) < MaxNames {
		m[name]++
	}
}

func pendingKey(d dir, id []byte) string {
	return string(rune('0'+d)) + string(id)
}

func opposite(d dir) dir {
	if d == dirC2S {
		return dirS2C
	}
	return dirC2S
}

func (a *analyzer) errorMessage(errv []byte) {
	if len(a.rec.ErrorMessages) >= MaxErrorMessages {
		return
	}
	var msg []byte
	a.s.reset(errv)
	a.s.object(func(k []byte) {
		if string(k) == "message" {
			msg, _ = a.s.str()
		}
	})
	if len(msg) == 0 {
		return
	}
	text := validUTF8(TruncateUTF8(string(msg), MaxErrorMsgLen))
	if !a.errSeen[text] {
		a.errSeen[text] = true
		a.rec.ErrorMessages = append(a.rec.ErrorMessages, text)
	}
}

func (a *analyzer) toolCall(params []byte) {
	a.s.reset(params)
	a.s.object(func(k []byte) {
		if string(k) == "name" {
			if v, g := a.s.str(); g == gotOK {
				count(a.rec.Tools, a.intern(v))
			}
		}
	})
}

func (a *analyzer) initialize(params []byte) {
	a.s.reset(params)
	a.s.object(func(k []byte) {
		switch string(k) {
		case "clientInfo":
			a.rec.ClientName, a.rec.ClientVersion = a.nameVersion()
		case "protocolVersion":
			v, _ := a.s.str()
			a.protoAlt = validUTF8(string(v))
		}
	})
}

func (a *analyzer) serverInfo(result []byte) {
	a.s.reset(result)
	a.s.object(func(k []byte) {
		if string(k) == "serverInfo" {
			a.rec.ServerName, a.rec.ServerVersion = a.nameVersion()
		}
	})
}

// nameVersion reads an {name, version} object.
func (a *analyzer) nameVersion() (name, version string) {
	a.s.object(func(k []byte) {
		switch string(k) {
		case "name":
			v, _ := a.s.str()
			name = validUTF8(string(v))
		case "version":
			v, _ := a.s.str()
			version = validUTF8(string(v))
		}
	})
	return name, version
}

// finish settles the derived fields and validity.
func (a *analyzer) finish() {
	r := a.rec
	if r.ProtocolVersion == "" {
		r.ProtocolVersion = a.protoAlt
	}
	if a.sawCorr {
		r.Slowest = a.byCorr.pairs
	} else {
		r.Slowest = a.byID.pairs
	}
	if a.problems > MaxProblems {
		r.Problems = append(r.Problems, fmt.Sprintf("%d more problems", a.problems-MaxProblems))
	}
	r.Valid = a.problems == 0
}

// topPairs keeps the MaxSlowest slowest pairs: longest RTT first, then
// lowest request seq.
type topPairs struct{ pairs []Pair }

func slower(p, q Pair) bool {
	if p.RTTMS != q.RTTMS {
		return p.RTTMS > q.RTTMS
	}
	return p.RequestSeq < q.RequestSeq
}

func (t *topPairs) add(p Pair) {
	n := len(t.pairs)
	if n == MaxSlowest && !slower(p, t.pairs[n-1]) {
		return
	}
	i := n
	for i > 0 && slower(p, t.pairs[i-1]) {
		i--
	}
	if n < MaxSlowest {
		t.pairs = append(t.pairs, Pair{})
	}
	copy(t.pairs[i+1:], t.pairs[i:])
	t.pairs[i] = p
}

// validUTF8 replaces invalid bytes so strings can be stored and compared.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// TruncateUTF8 cuts s to at most n bytes without splitting a character.
func TruncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
