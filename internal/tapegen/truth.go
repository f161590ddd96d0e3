package tapegen

import (
	"fmt"
	"sort"

	"github.com/tapefs/tapefs/tape"
)

// truth computes the expected record from what the generator writes, using
// its own knowledge of each frame (not by reading the bytes back).
type truth struct {
	rec       tape.Record
	requests  map[int64]*frame // intact requests by seq
	byCorr    []tape.Pair
	byID      []tape.Pair
	sawCorr   bool
	errSeen   map[string]bool
	gotClient bool
	gotServer bool
	protoAlt  string // params.protocolVersion of the first initialize
	maxTS     int64
	sawFrame  bool
}

func newTruth(key string, format tape.Format) *truth {
	return &truth{
		rec: tape.Record{Key: key, Format: format, Methods: map[string]int64{},
			Tools: map[string]int64{}},
		requests: map[int64]*frame{},
		errSeen:  map[string]bool{},
	}
}

// frame records a frame the parser will read whole.
func (t *truth) frame(f *frame) {
	r := &t.rec
	r.FrameCount++
	if f.c2s {
		r.ClientToServer++
	} else {
		r.ServerToClient++
	}
	if !t.sawFrame || f.ts > t.maxTS {
		t.maxTS = f.ts
	}
	t.sawFrame = true
	// v1 frames carry no flags: there only an error member counts.
	isErr := f.msg.Error != nil || (f.isError && r.Format == tape.FormatV2)
	if isErr {
		r.ErrorCount++
	}
	if f.errMsg != "" && !t.errSeen[f.errMsg] && len(r.ErrorMessages) < tape.MaxErrorMessages {
		t.errSeen[f.errMsg] = true
		r.ErrorMessages = append(r.ErrorMessages, f.errMsg)
	}
	if m := f.msg.Method; m != "" {
		r.Methods[m]++
		if m == "tools/call" {
			r.Tools[f.tool]++
		}
		if m == "initialize" && !t.gotClient {
			t.gotClient = true
			p := f.msg.Params.(obj)
			info := p["clientInfo"].(obj)
			r.ClientName, r.ClientVersion = info["name"].(string), info["version"].(string)
			t.protoAlt = p["protocolVersion"].(string)
		}
	}
	if f.isRequest() {
		t.requests[f.seq] = f
	}
	req := f.answers
	if req == nil || t.requests[req.seq] != req {
		return
	}
	status := tape.PairSuccess
	if isErr {
		status = tape.PairError
	}
	t.byID = append(t.byID, tape.Pair{Method: req.msg.Method, RequestSeq: req.seq,
		ResponseSeq: f.seq, RTTMS: f.ts - req.ts, Status: status})
	if req.msg.Method == "initialize" && !t.gotServer {
		t.gotServer = true
		info := f.msg.Result.(obj)["serverInfo"].(obj)
		r.ServerName, r.ServerVersion = info["name"].(string), info["version"].(string)
	}
}

// correlation records a correlation line for response f.
func (t *truth) correlation(f *frame) {
	t.sawCorr = true
	p := tape.Pair{RequestSeq: f.answers.seq, ResponseSeq: f.seq,
		RTTMS: f.ts - f.answers.ts, Status: f.status}
	if t.requests[p.RequestSeq] == f.answers {
		p.Method = f.answers.msg.Method
	}
	t.byCorr = append(t.byCorr, p)
}

func (t *truth) problem(format string, args ...any) {
	t.rec.Problems = append(t.rec.Problems, fmt.Sprintf(format, args...))
}

// finish settles the derived fields.
func (t *truth) finish() tape.Record {
	r := t.rec
	if r.ProtocolVersion == "" {
		r.ProtocolVersion = t.protoAlt
	}
	pairs := t.byID
	if t.sawCorr {
		pairs = t.byCorr
	}
	sort.SliceStable(pairs, func(i, j int) bool {
		if pairs[i].RTTMS != pairs[j].RTTMS {
			return pairs[i].RTTMS > pairs[j].RTTMS
		}
		return pairs[i].RequestSeq < pairs[j].RequestSeq
	})
	if len(pairs) > tape.MaxSlowest {
		pairs = pairs[:tape.MaxSlowest]
	}
	if len(pairs) > 0 {
		r.Slowest = append([]tape.Pair(nil), pairs...)
	}
	r.Valid = len(r.Problems) == 0
	return r
}
