package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// TapeRecord is one line of `tapefs ls --json`.
type TapeRecord struct {
	Key        string          `json:"key"`
	TapeID     string          `json:"tape_id"`
	SessionID  string          `json:"session_id"`
	Name       string          `json:"name"`
	Tags       []string        `json:"tags"`
	CreatedAt  json.RawMessage `json:"created_at"`
	Status     string          `json:"status"`
	Format     string          `json:"format"`
	FrameCount int64           `json:"frame_count"`
	ErrorCount int64           `json:"error_count"`
	Size       int64           `json:"size"`
	Valid      bool            `json:"valid"`

	raw map[string]json.RawMessage
}

// lsFields are the fields every `tapefs ls --json` object must have.
var lsFields = []string{"key", "tape_id", "session_id", "name", "tags", "created_at", "status", "format", "frame_count", "error_count", "size", "valid"}

// lsArgs is how `tapefs ls` reaches the index of st: the sidecar file, plus
// the store URL where another process can open the same store.
func lsArgs(st Store) []string {
	args := []string{"ls", "--json"}
	if st.URL() != "" && st.Persistent() {
		args = append(args, "--backend", st.URL())
	}
	if st.Dirs().Meta != "" {
		args = append(args, "--meta", st.Dirs().Meta)
	}
	return args
}

// lsJSON runs `tapefs ls --json` and returns its records by key.
func lsJSON(t *testing.T, st Store) map[string]TapeRecord {
	t.Helper()
	r := tapefs(t, st, lsArgs(st)...)
	if r.Code != 0 {
		t.Fatalf("tapefs ls failed:\n%s", r)
	}
	recs, err := parseLsJSON(r.Stdout)
	if err != nil {
		t.Fatalf("tapefs ls --json: %v\n%s", err, r)
	}
	return recs
}

func parseLsJSON(out string) (map[string]TapeRecord, error) {
	recs := map[string]TapeRecord{}
	for i, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var rec TapeRecord
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			return nil, fmt.Errorf("line %d is not one JSON object of the expected shape: %v: %q", i+1, err, line)
		}
		if err := json.Unmarshal([]byte(line), &rec.raw); err != nil {
			return nil, err
		}
		for _, f := range lsFields {
			if _, ok := rec.raw[f]; !ok {
				return nil, fmt.Errorf("line %d has no %q field: %s", i+1, f, line)
			}
		}
		if _, dup := recs[rec.Key]; dup {
			return nil, fmt.Errorf("key %q listed twice", rec.Key)
		}
		recs[rec.Key] = rec
	}
	return recs, nil
}

// waitIndexed polls `tapefs ls --json` until every key is listed, and
// returns the records. Indexing may run in the background after a mount.
func waitIndexed(t *testing.T, st Store, keys ...string) map[string]TapeRecord {
	t.Helper()
	return waitLs(t, st, fmt.Sprintf("keys %q indexed", keys), func(recs map[string]TapeRecord) bool {
		for _, k := range keys {
			if _, ok := recs[k]; !ok {
				return false
			}
		}
		return true
	})
}

// waitLs polls `tapefs ls --json` until cond holds (30 s at most).
func waitLs(t *testing.T, st Store, what string, cond func(map[string]TapeRecord) bool) map[string]TapeRecord {
	t.Helper()
	var recs map[string]TapeRecord
	var last Result
	ok := waitFor(30*time.Second, func() bool {
		last = tapefs(t, st, lsArgs(st)...)
		if last.Code != 0 {
			return false
		}
		var err error
		if recs, err = parseLsJSON(last.Stdout); err != nil {
			return false
		}
		return cond(recs)
	})
	if !ok {
		t.Fatalf("tapefs ls --json: %s did not happen within 30s; last run:\n%s", what, last)
	}
	return recs
}

// checkRecord compares one listed tape with the truth.
func checkRecord(t *testing.T, got TapeRecord, want WantTape) {
	t.Helper()
	var errs []string
	bad := func(field string, got, want any) {
		errs = append(errs, fmt.Sprintf("%s = %v, want %v", field, got, want))
	}
	if got.TapeID != want.TapeID {
		bad("tape_id", got.TapeID, want.TapeID)
	}
	if want.SessionID != "" && got.SessionID != want.SessionID {
		bad("session_id", got.SessionID, want.SessionID)
	}
	if want.Name != nil && got.Name != *want.Name {
		bad("name", got.Name, *want.Name)
	}
	if want.Tags != nil && !slices.Equal(sortedCopy(got.Tags), sortedCopy(want.Tags)) {
		bad("tags", got.Tags, want.Tags)
	}
	if !want.CreatedAt.IsZero() {
		if ts, err := parseTime(got.CreatedAt); err != nil || !ts.Equal(want.CreatedAt) {
			bad("created_at", string(got.CreatedAt), want.CreatedAt.Format(time.RFC3339Nano))
		}
	}
	if want.Status != nil && got.Status != *want.Status {
		bad("status", got.Status, *want.Status)
	}
	if got.Format != want.Format {
		bad("format", got.Format, want.Format)
	}
	if want.FrameCount >= 0 && got.FrameCount != want.FrameCount {
		bad("frame_count", got.FrameCount, want.FrameCount)
	}
	if want.ErrorCount >= 0 && got.ErrorCount != want.ErrorCount {
		bad("error_count", got.ErrorCount, want.ErrorCount)
	}
	if got.Size != want.Size {
		bad("size", got.Size, want.Size)
	}
	if got.Valid != want.Valid {
		bad("valid", got.Valid, want.Valid)
	}
	if len(errs) > 0 {
		t.Errorf("tapefs ls --json, %q:\n  %s", want.Key, strings.Join(errs, "\n  "))
	}
}

// parseTime accepts an RFC 3339 string or milliseconds since the epoch.
func parseTime(raw json.RawMessage) (time.Time, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return time.Parse(time.RFC3339Nano, s)
	}
	var ms int64
	if err := json.Unmarshal(raw, &ms); err == nil {
		return time.UnixMilli(ms), nil
	}
	return time.Time{}, fmt.Errorf("not a time: %s", raw)
}

// TestLsJSON: `tapefs ls --json`, run while the mount is up, lists every
// tape of the corpus with the right fields, and nothing that is not a tape.
func TestLsJSON(t *testing.T) {
	c := newCorpus(t)
	var keys []string
	for k := range c.Tapes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	forEachBackend(t, func(t *testing.T, st Store) {
		mountFiles(t, st, c.Files)
		recs := waitIndexed(t, st, keys...)
		for _, k := range keys {
			checkRecord(t, recs[k], c.Tapes[k])
		}
		for _, k := range c.NotTapes {
			if _, ok := recs[k]; ok {
				t.Errorf("tapefs ls --json lists %q, which is not a tape", k)
			}
		}
		if r, ok := recs["odd/empty.jsonl"]; ok && r.Valid {
			t.Errorf("the empty .jsonl is listed as a valid tape: %+v", r)
		}
	})
}

// TestSidecarSQLite: the sidecar is an SQLite database in WAL mode that the
// sqlite3 shell can read while the mount runs.
func TestSidecarSQLite(t *testing.T) {
	c := newCorpus(t)
	st := backendNamed(t, "file")
	mountFiles(t, st, c.Files)
	waitIndexed(t, st, c.Malformed)
	db := st.Dirs().Meta
	if got := strings.TrimSpace(run(t, "sqlite3", db, "PRAGMA journal_mode;")); got != "wal" {
		t.Errorf("sidecar journal_mode = %q, want wal", got)
	}
	if got := run(t, "sqlite3", "-readonly", db, "SELECT name FROM sqlite_master WHERE type='table';"); strings.TrimSpace(got) == "" {
		t.Errorf("sidecar %s has no tables", db)
	}
}

// TestStatus: `tapefs status` knows the running mount.
func TestStatus(t *testing.T) {
	st := backendNamed(t, "file")
	m := mountFiles(t, st, map[string][]byte{"a.txt": []byte("a\n")})
	r := tapefs(t, st, "status")
	if r.Code != 0 || !strings.Contains(r.Stdout, m.Dir) {
		t.Errorf("tapefs status does not show %s:\n%s", m.Dir, r)
	}
	bytesReadFromStore(t, m) // the field the read tests rely on is there
}

// ---------------------------------------------------------------------------
// tapefs status --json

// statusField is the counter the daemon exports for the bytes it fetched
// from the store (range reads, read-ahead, whatever hits the backend).
const statusField = "bytes_read_from_store"

// bytesReadFromStore reads the mount's store read counter from `tapefs
// status --json`: the output is one JSON document per mount (or an array of
// them); the counter is taken from the document that mentions the mountpoint,
// at whatever depth it sits.
func bytesReadFromStore(t *testing.T, m *Mount) int64 {
	t.Helper()
	r := tapefs(t, m.Store, "status", "--json")
	if r.Code != 0 {
		t.Fatalf("tapefs status --json failed:\n%s", r)
	}
	var docs []any
	dec := json.NewDecoder(strings.NewReader(r.Stdout))
	dec.UseNumber()
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("tapefs status --json is not JSON: %v\n%s", err, r)
		}
		if arr, ok := v.([]any); ok {
			docs = append(docs, arr...)
		} else {
			docs = append(docs, v)
		}
	}
	var found []map[string]any
	for _, d := range docs {
		if containsString(d, m.Dir) {
			collectWithField(d, statusField, &found)
		}
	}
	if len(found) != 1 {
		t.Fatalf("tapefs status --json: want one %q in the document of %s, found %d:\n%s", statusField, m.Dir, len(found), r)
	}
	n, err := found[0][statusField].(json.Number).Int64()
	if err != nil {
		t.Fatalf("tapefs status --json: %s = %v: %v", statusField, found[0][statusField], err)
	}
	return n
}

// settledBytesRead waits until the counter stops moving (background
// indexing), and returns it.
func settledBytesRead(t *testing.T, m *Mount) int64 {
	t.Helper()
	last := bytesReadFromStore(t, m)
	for i := 0; i < 50; i++ {
		time.Sleep(300 * time.Millisecond)
		n := bytesReadFromStore(t, m)
		if n == last {
			return n
		}
		last = n
	}
	t.Fatalf("%s never settled (last %d)", statusField, last)
	return 0
}

func collectWithField(v any, field string, out *[]map[string]any) {
	switch v := v.(type) {
	case map[string]any:
		if _, ok := v[field]; ok {
			*out = append(*out, v)
		}
		for _, x := range v {
			collectWithField(x, field, out)
		}
	case []any:
		for _, x := range v {
			collectWithField(x, field, out)
		}
	}
}

// containsString says whether s is a string value anywhere in v.
func containsString(v any, s string) bool {
	switch v := v.(type) {
	case string:
		return v == s
	case map[string]any:
		for _, x := range v {
			if containsString(x, s) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if containsString(x, s) {
				return true
			}
		}
	}
	return false
}

// sameBytes reports a difference between two byte slices compactly.
func sameBytes(got, want []byte) string {
	if bytes.Equal(got, want) {
		return ""
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("%d bytes, want %d; first difference at byte %d", len(got), len(want), i)
}
