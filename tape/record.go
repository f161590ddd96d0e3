// Package tape understands the Shadowcat tape formats (v2 JSON Lines with a
// .meta.json companion, v1 single-document JSON with an index.json catalogue)
// and turns a tape into a Record for the index. Parsing is tolerant: a bad
// tape still yields a Record, flagged invalid, with the problems it met.
package tape

import "time"

// Format names the recording format of a tape.
type Format string

const (
	FormatV2 Format = "v2" // <id>.jsonl (+ <id>.meta.json)
	FormatV1 Format = "v1" // <id>.json (+ index.json)
)

// Status values of a tape.
const (
	StatusRecording = "recording"
	StatusFinalized = "finalized"
)

// Record is everything the index keeps about one tape. Zero values mean
// "unknown" (a zero time, an empty string).
type Record struct {
	Key         string // the store key of the data object (.jsonl or .json)
	Format      Format
	TapeID      string
	SessionID   string
	Name        string
	Description string
	Tags        []string

	CreatedAt   time.Time
	UpdatedAt   time.Time
	FinalizedAt time.Time
	Status      string // StatusRecording or StatusFinalized
	DurationMS  int64

	FrameCount     int64
	ErrorCount     int64 // frames carrying a JSON-RPC error (or flagged is_error)
	ClientToServer int64 // frames per direction
	ServerToClient int64

	Methods map[string]int64 // JSON-RPC method -> number of frames calling it
	Tools   map[string]int64 // tools/call params.name -> number of calls

	ProtocolVersion string
	ClientName      string // from initialize params.clientInfo
	ClientVersion   string
	ServerName      string // from the initialize result serverInfo
	ServerVersion   string
	Transport       string // stdio, http, ...

	ErrorMessages []string // distinct error.message texts, for search
	Slowest       []Pair   // the slowest request/response pairs, slowest first

	HasMeta  bool     // a .meta.json (v2) or index.json entry (v1) contributed
	Valid    bool     // parsed cleanly
	Problems []string // what was wrong, one short line each (empty when Valid)
}

// Pair is one request and its response.
type Pair struct {
	Method      string
	RequestSeq  int64
	ResponseSeq int64
	RTTMS       int64
	Status      string // success, error, ...
}
