package tape

import (
	"encoding/json"
	"errors"
	"time"
	"unicode/utf8"
)

// v2Meta is the part of a .meta.json the index uses.
type v2Meta struct {
	TapeID      string          `json:"tape_id"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Tags        []string        `json:"tags"`
	CreatedAt   *string         `json:"created_at"`
	UpdatedAt   *string         `json:"updated_at"`
	FinalizedAt *string         `json:"finalized_at"`
	Status      string          `json:"status"`
	Transport   json.RawMessage `json:"transport"` // {"type": ...} or a bare string
	Stats       struct {
		DurationMS *int64 `json:"duration_ms"`
	} `json:"stats"`
}

// metaInfo is a decoded .meta.json.
type metaInfo struct {
	tapeID, name, description, status, transport string
	tags                                         []string
	created, updated, finalized                  time.Time
	durationMS                                   *int64
}

// readMeta decodes meta (nil: absent). Fields of a wrong type are left
// empty and reported; a document that is not JSON is ignored.
func (p *v2parser) readMeta(meta []byte) metaInfo {
	var m v2Meta
	if meta == nil {
		return metaInfo{}
	}
	if !utf8.Valid(meta) {
		p.a.problem("meta.json: invalid UTF-8")
	}
	err := json.Unmarshal(meta, &m)
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
	case errors.As(err, &te) && te.Field == "":
		p.a.problem("meta.json: not a JSON object")
		return metaInfo{}
	case errors.As(err, &te):
		p.a.problem("meta.json: wrong type for %s", te.Field)
	default:
		p.a.problem("meta.json: invalid JSON")
		return metaInfo{}
	}
	p.a.rec.HasMeta = true
	mi := metaInfo{
		tapeID: m.TapeID, name: m.Name, description: m.Description,
		status: m.Status, tags: m.Tags, durationMS: m.Stats.DurationMS,
		created:   p.metaTime(m.CreatedAt, "created_at"),
		updated:   p.metaTime(m.UpdatedAt, "updated_at"),
		finalized: p.metaTime(m.FinalizedAt, "finalized_at"),
		transport: p.metaTransport(m.Transport),
	}
	if len(mi.tags) == 0 {
		mi.tags = nil
	}
	return mi
}

// metaTime parses an optional meta time; null or absent is the zero time.
func (p *v2parser) metaTime(s *string, field string) time.Time {
	if s == nil || *s == "" {
		return time.Time{}
	}
	t, err := parseTime(*s)
	if err != nil {
		p.a.problem("meta.json: invalid %s", field)
	}
	return t
}

// metaTransport returns transport.type (or the bare string).
func (p *v2parser) metaTransport(raw json.RawMessage) string {
	if raw == nil || string(raw) == "null" {
		return ""
	}
	var t struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(raw, &t) == nil {
		return t.Type
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	p.a.problem("meta.json: wrong type for transport")
	return ""
}
