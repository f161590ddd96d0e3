package tapegen

// The JSON shapes the generator writes, field order as in Shadowcat's files.

type initLine struct {
	Type            string `json:"type"`
	Version         string `json:"version"`
	TapeID          string `json:"tape_id"`
	SessionID       string `json:"session_id"`
	CreatedAt       string `json:"created_at"`
	ProtocolVersion string `json:"protocol_version"`
}

type frameLine struct {
	Type          string   `json:"type"`
	Seq           int64    `json:"seq"`
	TS            int64    `json:"ts"`
	Dir           string   `json:"dir"`
	Env           envelope `json:"env"`
	Action        any      `json:"action"`
	Transport     obj      `json:"transport"`
	CorrelationID *string  `json:"correlation_id"`
	Flags         flags    `json:"flags"`
}

type envelope struct {
	Message   rpc    `json:"message"`
	Direction string `json:"direction"`
	Timestamp string `json:"timestamp"`
	SessionID string `json:"session_id"`
}

type flags struct {
	IsError          bool `json:"is_error"`
	IsNotification   bool `json:"is_notification"`
	RequiresResponse bool `json:"requires_response"`
}

type corrLine struct {
	Type        string `json:"type"`
	ID          string `json:"id"`
	RequestSeq  int64  `json:"request_seq"`
	ResponseSeq int64  `json:"response_seq"`
	RequestTS   int64  `json:"request_ts"`
	ResponseTS  int64  `json:"response_ts"`
	RTTMS       int64  `json:"rtt_ms"`
	Status      string `json:"status"`
}

type checkpointLine struct {
	Type         string `json:"type"`
	CheckpointAt string `json:"checkpoint_at"`
	Seq          int64  `json:"seq"`
	Stats        stats  `json:"stats"`
}

type stats struct {
	FrameCount       int    `json:"frame_count"`
	DurationMS       int64  `json:"duration_ms"`
	FileSizeBytes    int64  `json:"file_size_bytes,omitempty"`
	LastSequence     int64  `json:"last_sequence"`
	MessageCounts    counts `json:"message_counts"`
	ErrorCount       int    `json:"error_count"`
	CorrelationCount int    `json:"correlation_count"`
}

type counts struct {
	ClientToServer int `json:"client_to_server"`
	ServerToClient int `json:"server_to_client"`
}

type metaDoc struct {
	TapeID      string   `json:"tape_id"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Tags        []string `json:"tags"`
	CreatedAt   string   `json:"created_at"`
	UpdatedAt   string   `json:"updated_at"`
	FinalizedAt *string  `json:"finalized_at"`
	Status      string   `json:"status"`
	Transport   obj      `json:"transport"`
	Environment obj      `json:"environment"`
	Stats       stats    `json:"stats"`
	Checksum    *string  `json:"checksum"`
}

// v1 shapes.

type v1Doc struct {
	Format   v1Format    `json:"format"`
	Session  v1Session   `json:"session"`
	Timeline *v1Timeline `json:"timeline,omitempty"`
	Frames   []v1Frame   `json:"frames"`
}

type v1Format struct {
	Version       string `json:"version"`
	SchemaVersion int    `json:"schema_version"`
	CreatedBy     string `json:"created_by"`
	CreatedAt     string `json:"created_at"`
}

type v1Session struct {
	ID            string   `json:"id"`
	Name          string   `json:"name,omitempty"`
	Description   string   `json:"description"`
	Tags          []string `json:"tags,omitempty"`
	TransportType string   `json:"transport_type"`
}

type v1Timeline struct {
	StartedAt  int64 `json:"started_at"`
	EndedAt    int64 `json:"ended_at"`
	DurationMS int64 `json:"duration_ms"`
	FrameCount int   `json:"frame_count"`
}

type v1Frame struct {
	ID        string `json:"id"`
	Sequence  int64  `json:"sequence"`
	Timestamp int64  `json:"timestamp"`
	Direction string `json:"direction"`
	Message   rpc    `json:"message"`
	Metadata  obj    `json:"metadata"`
}
