package tapegen

import (
	"fmt"
	"math/rand/v2"
)

// rpc is a JSON-RPC message as written (field order as Shadowcat's).
type rpc struct {
	JSONRPC string    `json:"jsonrpc"`
	ID      any       `json:"id,omitempty"`
	Method  string    `json:"method,omitempty"`
	Params  any       `json:"params,omitempty"`
	Result  any       `json:"result,omitempty"`
	Error   *rpcError `json:"error,omitempty"`
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type obj = map[string]any

// frame is one generated message with what the expected record needs.
type frame struct {
	seq     int64
	ts      int64 // ms since the session start
	c2s     bool
	msg     rpc
	tool    string // tools/call params.name
	isError bool   // an error response or a tool result flagged isError
	errMsg  string // error.message
	answers *frame // the request this frame answers
	status  string // of a response: success or error
}

func (f *frame) isRequest() bool { return f.msg.Method != "" && f.msg.ID != nil }

// session writes the frames of one MCP session to emit, in order.
type session struct {
	r                                       *rand.Rand
	emit                                    func(*frame) error
	more                                    func() bool // whether to go on with another exchange
	padLen                                  func() int  // bytes of padding for a tool result, 0 for none
	seq                                     int64       // next frame seq
	ts                                      int64       // clock, ms
	ids                                     [2]int      // next JSON-RPC id per direction (client, server)
	client, clientV, server, serverV, proto string
	tools                                   []string
	err                                     error
}

func newSession(r *rand.Rand) *session {
	s := &session{r: r,
		client: pick(r, clients), clientV: fmt.Sprintf("1.0.%d", r.IntN(90)),
		server: pick(r, servers), serverV: fmt.Sprintf("0.%d.0", r.IntN(10)),
		proto: pick(r, protocols)}
	for _, i := range r.Perm(len(tools))[:2+r.IntN(4)] {
		s.tools = append(s.tools, tools[i])
	}
	return s
}

// send emits a new frame and returns it.
func (s *session) send(c2s bool, m rpc, gap int, tool string) *frame {
	s.ts += int64(gap)
	m.JSONRPC = "2.0"
	f := &frame{seq: s.seq, ts: s.ts, c2s: c2s, msg: m, tool: tool}
	s.seq++
	if s.err == nil {
		s.err = s.emit(f)
	}
	return f
}

// request sends a request with the next id of its direction (a tools/call
// of tool, if tool is set).
func (s *session) request(c2s bool, method string, params any, tool string) *frame {
	d := 1
	if c2s {
		d = 0
	}
	s.ids[d]++
	gap := s.r.IntN(2500)
	if s.seq == 0 {
		gap = 0 // the session starts with its first frame
	}
	return s.send(c2s, rpc{ID: s.ids[d], Method: method, Params: params}, gap, tool)
}

// reply answers req after rtt ms with a result or an error. A result can
// be flagged as an error too (a tool that failed).
func (s *session) reply(req *frame, rtt int, result any, e *rpcError, flagged ...bool) *frame {
	gap := req.ts + int64(rtt) - s.ts
	if gap < 0 {
		gap = 0
	}
	f := &frame{answers: req, status: "success"}
	m := rpc{ID: req.msg.ID, Result: result, Error: e}
	if e != nil {
		f.isError, f.errMsg, f.status = true, e.Message, "error"
	}
	if len(flagged) > 0 && flagged[0] {
		f.isError, f.status = true, "error"
	}
	s.ts += gap
	m.JSONRPC = "2.0"
	f.seq, f.ts, f.c2s, f.msg = s.seq, s.ts, !req.c2s, m
	s.seq++
	if s.err == nil {
		s.err = s.emit(f)
	}
	return f
}

func (s *session) rtt() int { return 5 + s.r.IntN(900) }

func (s *session) notify(c2s bool, method string, params any) {
	s.send(c2s, rpc{Method: method, Params: params}, s.r.IntN(300), "")
}

// run plays the session: the handshake, then exchanges while more() says so.
func (s *session) run() error {
	hello := s.request(true, "initialize", obj{"protocolVersion": s.proto,
		"capabilities": obj{"roots": obj{"listChanged": true}},
		"clientInfo":   obj{"name": s.client, "version": s.clientV}}, "")
	s.reply(hello, 5+s.r.IntN(80), obj{"protocolVersion": s.proto,
		"capabilities": obj{"tools": obj{"listChanged": false}},
		"serverInfo":   obj{"name": s.server, "version": s.serverV}}, nil)
	s.notify(true, "notifications/initialized", nil)
	list := s.request(true, "tools/list", obj{}, "")
	var defs []obj
	for _, t := range s.tools {
		defs = append(defs, obj{"name": t, "description": words(s.r, 8),
			"inputSchema": obj{"type": "object", "properties": obj{"arg": obj{"type": "string"}}}})
	}
	s.reply(list, 5+s.r.IntN(60), obj{"tools": defs}, nil)
	for s.err == nil && s.more() {
		s.exchange()
	}
	return s.err
}

// exchange plays one randomly chosen interaction.
func (s *session) exchange() {
	switch n := s.r.IntN(100); {
	case n < 55:
		s.reply(s.call(), s.rtt(), s.result(), nil)
	case n < 63:
		s.reply(s.call(), s.rtt(), nil, &rpcError{Code: -32603,
			Message: fmt.Sprintf(pick(s.r, errorFmts), words(s.r, 1+s.r.IntN(3)))})
	case n < 68:
		req := s.call()
		s.reply(req, s.rtt(), obj{"content": []obj{{"type": "text", "text": words(s.r, 6)}}, "isError": true}, nil, true)
	case n < 75:
		req := s.call()
		s.notify(false, "notifications/progress", obj{"progressToken": req.msg.ID, "progress": s.r.IntN(100), "total": 100})
		if s.r.IntN(4) > 0 { // else: never answered
			s.reply(req, int(s.ts-req.ts)+s.rtt(), s.result(), nil)
		}
	case n < 80: // two calls in flight, answered in reverse order
		a, b := s.call(), s.call()
		s.reply(b, int(s.ts-b.ts)+s.rtt(), s.result(), nil)
		s.reply(a, int(s.ts-a.ts)+s.rtt(), s.result(), nil)
	case n < 85: // the server asks the client; its ids collide with the client's
		method := pick(s.r, []string{"roots/list", "sampling/createMessage"})
		req := s.request(false, method, obj{}, "")
		s.reply(req, s.rtt(), obj{"roots": []obj{{"uri": "file:///work", "name": "work"}}}, nil)
	case n < 89:
		s.reply(s.request(true, "ping", nil, ""), 1+s.r.IntN(20), obj{}, nil)
	case n < 94:
		s.notify(false, "notifications/message", obj{"level": "info", "data": words(s.r, 5)})
	default:
		method := pick(s.r, []string{"resources/list", "prompts/list"})
		s.reply(s.request(true, method, obj{}, ""), s.rtt(), obj{"resources": []obj{}}, nil)
	}
}

// call sends a tools/call request.
func (s *session) call() *frame {
	tool := pick(s.r, s.tools)
	return s.request(true, "tools/call", obj{"name": tool, "arguments": obj{"arg": words(s.r, 1+s.r.IntN(10))}}, tool)
}

// result is a tool result, padded when the tape has a size target.
func (s *session) result() any {
	n := 40 + s.r.IntN(400)
	if p := s.padLen(); p > 0 {
		n = p
	}
	return obj{"content": []obj{{"type": "text", "text": text(s.r, n)}}}
}
