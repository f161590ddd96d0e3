package tape

import (
	"mime"
	"path"
	"strings"
)

// Kind says what role an object plays, judged by its key (file name) only.
type Kind int

const (
	KindOther   Kind = iota // not part of a tape: served as a plain file
	KindV2Data              // <id>.jsonl
	KindV2Meta              // <id>.meta.json
	KindV1Index             // index.json
	KindV1Data              // <id>.json (a v1 tape, or a plain JSON file: see ParseV1)
)

var kindNames = [...]string{"other", "v2-data", "v2-meta", "v1-index", "v1-data"}

// String returns a short stable name ("v2-data", ...).
func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return "other"
	}
	return kindNames[k]
}

// MarshalText encodes the kind by name.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText decodes a name written by MarshalText; unknown names are KindOther.
func (k *Kind) UnmarshalText(b []byte) error {
	*k = KindOther
	for i, n := range kindNames {
		if n == string(b) {
			*k = Kind(i)
		}
	}
	return nil
}

const (
	extV2Data = ".jsonl"
	extV2Meta = ".meta.json"
	extV1Data = ".json"
	v1Index   = "index.json"
)

// Classify tells the kind of an object from its key's base name
// (case-sensitive, as Shadowcat writes lower-case names).
func Classify(key string) Kind {
	base := baseName(key)
	switch {
	case base == "":
		return KindOther
	case strings.HasSuffix(base, extV2Data):
		return KindV2Data
	case strings.HasSuffix(base, extV2Meta):
		return KindV2Meta
	case base == v1Index:
		return KindV1Index
	case strings.HasSuffix(base, extV1Data):
		return KindV1Data
	}
	return KindOther
}

// V2MetaKey returns the key of the .meta.json beside a .jsonl
// ("x/y.jsonl" → "x/y.meta.json"), or "" if dataKey is not a .jsonl key.
func V2MetaKey(dataKey string) string {
	stem, ok := strings.CutSuffix(dataKey, extV2Data)
	if !ok || Classify(dataKey) != KindV2Data {
		return ""
	}
	return stem + extV2Meta
}

// V2DataKey returns the key of the .jsonl beside a .meta.json
// ("x/y.meta.json" → "x/y.jsonl"), or "" if metaKey is not a .meta.json key.
func V2DataKey(metaKey string) string {
	stem, ok := strings.CutSuffix(metaKey, extV2Meta)
	if !ok || Classify(metaKey) != KindV2Meta {
		return ""
	}
	return stem + extV2Data
}

// V1IndexKey returns the key of the index.json in the same directory as a
// v1 tape ("x/y.json" → "x/index.json", "y.json" → "index.json").
func V1IndexKey(dataKey string) string {
	return dataKey[:len(dataKey)-len(baseName(dataKey))] + v1Index
}

// baseName is the part of key after the last '/' (keys always use '/').
func baseName(key string) string {
	return key[strings.LastIndexByte(key, '/')+1:]
}

// stem is the base name without its tape extension: the default tape id.
func stem(key string) string {
	base := baseName(key)
	for _, ext := range []string{extV2Meta, extV2Data, extV1Data} {
		if s, ok := strings.CutSuffix(base, ext); ok {
			return s
		}
	}
	return base
}

// ContentType is the media type an object is stored with, judged by its key.
func ContentType(key string) string {
	switch {
	case strings.HasSuffix(key, ".jsonl"):
		return "application/x-ndjson"
	case strings.HasSuffix(key, ".json"):
		return "application/json"
	}
	if t := mime.TypeByExtension(path.Ext(key)); t != "" {
		return t
	}
	return "application/octet-stream"
}
