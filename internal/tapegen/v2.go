package tapegen

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
	"unicode/utf8"

	"github.com/tapefs/tapefs/tape"
)

// V2Options shape a generated v2 tape. The zero value gives a small clean
// tape with meta, recording or finalized as the seed decides.
type V2Options struct {
	Key            string // the store key: Truth.Key and the tape id fallback
	Frames         int    // at least this many frames; 0: 6 to 45, by seed
	Size           int64  // > 0: pad tool results until the .jsonl has at least Size bytes (Frames is ignored)
	NoMeta         bool   // no .meta.json
	Status         string // tape.StatusRecording or tape.StatusFinalized; "": by seed
	NoCorrelations bool   // no correlation lines: pairs come from JSON-RPC ids
	UnknownTypes   bool   // add lines of types the parser must skip
	NoInit         bool   // leave out the init line (an invalid tape)
	Truncate       bool   // cut one frame line in the middle short (an invalid tape)
}

// V2 generates a v2 tape in memory: the .jsonl, the .meta.json (nil with
// NoMeta) and the record a parser must produce for them.
func V2(seed int64, opts V2Options) (jsonl, meta []byte, truth tape.Record) {
	var buf bytes.Buffer
	meta, truth, err := WriteV2(&buf, seed, opts)
	if err != nil {
		panic(err) // writes to a bytes.Buffer do not fail
	}
	return buf.Bytes(), meta, truth
}

// WriteLargeV2 streams a clean v2 tape of at least size bytes (a few KiB
// more at most) to w, holding only one line in memory.
func WriteLargeV2(w io.Writer, seed int64, size int64) error {
	_, _, err := WriteV2(w, seed, V2Options{Size: size, Status: tape.StatusFinalized})
	return err
}

// WriteV2 streams a v2 tape to w and returns its .meta.json (nil with
// NoMeta) and expected record.
func WriteV2(w io.Writer, seed int64, opts V2Options) (meta []byte, truth tape.Record, err error) {
	r := newRand(seed)
	g := &v2writer{r: r, opts: opts, w: bufio.NewWriterSize(w, 64<<10),
		t: newTruth(opts.Key, tape.FormatV2), truncSeq: -1}
	g.enc = json.NewEncoder(&g.line)
	g.enc.SetEscapeHTML(false)
	g.plan()
	if err := g.write(); err != nil {
		return nil, tape.Record{}, err
	}
	if err := g.w.Flush(); err != nil {
		return nil, tape.Record{}, err
	}
	if !opts.NoMeta {
		meta = g.meta()
	}
	return meta, g.truth(), nil
}

// v2writer holds the state of one WriteV2 call.
type v2writer struct {
	r    *rand.Rand
	opts V2Options
	w    *bufio.Writer
	line bytes.Buffer
	enc  *json.Encoder
	t    *truth
	s    *session

	n        int64 // bytes written
	lines    int   // lines written
	frames   int   // frames emitted (whole or cut)
	target   int   // frames wanted
	truncSeq int64 // seq of the frame to cut short, or -1
	nCorr    int
	nErr     int
	nC2S     int
	lastSeq  int64
	lastTS   int64

	tapeID, sessionID, transport, status, name, desc string
	tags                                             []string
	created                                          time.Time
}

// plan draws everything about the tape that is not a frame.
func (g *v2writer) plan() {
	r := g.r
	g.tapeID, g.sessionID = uuid(r), uuid(r)
	g.created = epoch.Add(time.Duration(r.Int64N(60*24*3600*1000)) * time.Millisecond)
	g.status = g.opts.Status
	if g.status == "" {
		g.status = pick(r, []string{tape.StatusRecording, tape.StatusFinalized})
	}
	g.transport = "stdio"
	if r.IntN(5) == 0 {
		g.transport = "http"
	}
	g.s = newSession(r)
	g.s.emit, g.s.more, g.s.padLen = g.frame, g.more, g.padLen
	g.name = fmt.Sprintf("%s %s session %d", g.s.server, g.s.tools[0], r.IntN(1000))
	g.desc = words(r, 3+r.IntN(4))
	if r.IntN(8) == 0 {
		g.desc += " " + pick(r, spice)
	}
	g.tags = tags(r)
	g.target = g.opts.Frames
	if g.target <= 0 {
		g.target = 6 + r.IntN(40)
	}
	if g.opts.Truncate {
		g.truncSeq = 5 + r.Int64N(int64(max(1, g.target-6)))
	}
}

func (g *v2writer) more() bool {
	if g.opts.Size > 0 {
		return g.n < g.opts.Size
	}
	return g.frames < g.target
}

// padLen sizes tool results when there is a size target: log-uniform from
// 1 KiB to 1.5 MiB, cut to what is left.
func (g *v2writer) padLen() int {
	if g.opts.Size <= 0 {
		return 0
	}
	e := g.r.IntN(11)
	n := int64(1024<<e + g.r.IntN(512<<e))
	return int(max(64, min(n, g.opts.Size-g.n-700)))
}

func (g *v2writer) write() error {
	if g.opts.NoInit {
		g.t.problem("line 1: first line is not init")
	} else if err := g.emitLine(initLine{Type: "init", Version: "2.0", TapeID: g.tapeID,
		SessionID: g.sessionID, CreatedAt: rfc3339ms(g.created), ProtocolVersion: g.s.proto}); err != nil {
		return err
	}
	if err := g.s.run(); err != nil {
		return err
	}
	if g.status == tape.StatusRecording && g.r.IntN(2) == 0 {
		g.s.call() // still waiting for the answer
	}
	if g.s.err != nil {
		return g.s.err
	}
	return g.checkpoint()
}

// frame writes one frame and what follows it.
func (g *v2writer) frame(f *frame) error {
	g.frames++
	g.lastSeq, g.lastTS = f.seq, f.ts
	if f.c2s {
		g.nC2S++
	}
	if f.isError {
		g.nErr++
	}
	if err := g.frameLine(f); err != nil {
		return err
	}
	if f.answers != nil && !g.opts.NoCorrelations {
		g.nCorr++
		if err := g.emitLine(corrLine{Type: "correlation", ID: fmt.Sprintf("corr-%d", g.nCorr),
			RequestSeq: f.answers.seq, ResponseSeq: f.seq, RequestTS: f.answers.ts,
			ResponseTS: f.ts, RTTMS: f.ts - f.answers.ts, Status: f.status}); err != nil {
			return err
		}
		g.t.correlation(f)
	}
	if g.opts.UnknownTypes && g.r.IntN(6) == 0 {
		if err := g.emitLine(obj{"type": pick(g.r, []string{"annotation", "x-vendor"}),
			"seq": f.seq, "note": words(g.r, 4), "data": obj{"nested": []any{1, "two", nil}}}); err != nil {
			return err
		}
	}
	if g.r.IntN(10) == 0 {
		return g.checkpoint()
	}
	return nil
}

func (g *v2writer) frameLine(f *frame) error {
	dir := "server_to_client"
	if f.c2s {
		dir = "client_to_server"
	}
	var corrID *string
	if f.msg.ID != nil {
		prefix := "req"
		if f.c2s == (f.answers != nil) {
			prefix = "srv"
		}
		id := fmt.Sprintf("%s-%v", prefix, f.msg.ID)
		corrID = &id
	}
	transport := obj{"stdio": obj{"process_id": 4000 + f.seq, "command": g.s.server}}
	if g.transport == "http" {
		transport = obj{"http": obj{"url": "http://127.0.0.1:8931/mcp", "session_id": g.sessionID}}
	}
	l := frameLine{Type: "frame", Seq: f.seq, TS: f.ts, Dir: dir,
		Env: envelope{Message: f.msg, Direction: dir,
			Timestamp: rfc3339ms(g.created.Add(time.Duration(f.ts) * time.Millisecond)),
			SessionID: g.sessionID},
		Transport: transport, CorrelationID: corrID,
		Flags: flags{IsError: f.isError, IsNotification: f.msg.ID == nil,
			RequiresResponse: f.isRequest()}}
	if f.seq != g.truncSeq {
		g.t.frame(f)
		return g.emitLine(l)
	}
	// Cut the line short on a rune boundary: a proper prefix of an object
	// is never valid JSON.
	g.line.Reset()
	if err := g.enc.Encode(l); err != nil {
		return err
	}
	b := g.line.Bytes()
	cut := len(b) / 2
	for cut > 1 && !utf8.RuneStart(b[cut]) {
		cut--
	}
	g.lines++
	g.t.problem("line %d: invalid JSON", g.lines)
	return g.put(append(b[:cut:cut], '\n'))
}

func (g *v2writer) checkpoint() error {
	return g.emitLine(checkpointLine{Type: "checkpoint",
		CheckpointAt: rfc3339ms(g.created.Add(time.Duration(g.lastTS) * time.Millisecond)),
		Seq:          g.lastSeq, Stats: g.stats()})
}

// emitLine writes v as one line.
func (g *v2writer) emitLine(v any) error {
	g.line.Reset()
	if err := g.enc.Encode(v); err != nil {
		return err
	}
	g.lines++
	return g.put(g.line.Bytes())
}

func (g *v2writer) put(b []byte) error {
	n, err := g.w.Write(b)
	g.n += int64(n)
	return err
}

func (g *v2writer) stats() stats {
	return stats{FrameCount: g.frames, DurationMS: g.lastTS, LastSequence: g.lastSeq,
		MessageCounts: counts{ClientToServer: g.nC2S, ServerToClient: g.frames - g.nC2S},
		ErrorCount:    g.nErr, CorrelationCount: g.nCorr}
}

func (g *v2writer) meta() []byte {
	updated := rfc3339ms(g.created.Add(time.Duration(g.lastTS) * time.Millisecond))
	m := metaDoc{TapeID: g.tapeID, Name: g.name, Description: g.desc, Tags: g.tags,
		CreatedAt: rfc3339ms(g.created), UpdatedAt: updated, Status: g.status,
		Transport:   obj{"type": g.transport, "command": g.s.server, "args": []string{"--" + g.transport}},
		Environment: obj{"platform": "linux", "shadowcat_version": "0.1.0", "hostname": fmt.Sprintf("host-%d", g.r.IntN(8))},
		Stats:       g.stats()}
	if m.Tags == nil {
		m.Tags = []string{}
	}
	if g.status == tape.StatusFinalized {
		m.FinalizedAt = &updated
	}
	m.Stats.FileSizeBytes = g.n
	return encodeIndent(m)
}

// truth completes the expected record with the tape-level fields.
func (g *v2writer) truth() tape.Record {
	t := g.t
	r := &t.rec
	hasMeta := !g.opts.NoMeta
	r.Status = tape.StatusRecording
	if !g.opts.NoInit {
		r.TapeID, r.SessionID, r.CreatedAt = g.tapeID, g.sessionID, g.created
		r.ProtocolVersion = g.s.proto
	}
	if hasMeta {
		r.HasMeta = true
		r.TapeID = firstOf(r.TapeID, g.tapeID)
		if r.CreatedAt.IsZero() {
			r.CreatedAt = g.created
		}
		r.Name, r.Description, r.Tags, r.Status = g.name, g.desc, g.tags, g.status
		r.UpdatedAt = g.created.Add(time.Duration(g.lastTS) * time.Millisecond)
		if g.status == tape.StatusFinalized {
			r.FinalizedAt = r.UpdatedAt
		}
	}
	r.TapeID = firstOf(r.TapeID, stem(g.opts.Key))
	if t.sawFrame || hasMeta {
		r.Transport = g.transport
	}
	switch {
	case t.sawFrame:
		r.DurationMS = t.maxTS
	case hasMeta:
		r.DurationMS = g.lastTS
	}
	return t.finish()
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
