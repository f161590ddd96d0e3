package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/alecthomas/kong"

	"github.com/tapefs/tapefs/meta"
	"github.com/tapefs/tapefs/tape"
)

// LsCmd lists indexed tapes.
type LsCmd struct {
	StoreFlags
	QueryFlags
	OutputFlags

	w, ew io.Writer `kong:"-"` // standard output and error; tests set them
}

// tapeJSON is the --json form of one tape.
type tapeJSON struct {
	Key             string           `json:"key"`
	TapeID          string           `json:"tape_id"`
	SessionID       string           `json:"session_id"`
	Name            string           `json:"name"`
	Description     string           `json:"description,omitempty"`
	Tags            []string         `json:"tags"`
	CreatedAt       *time.Time       `json:"created_at"`
	UpdatedAt       *time.Time       `json:"updated_at,omitempty"`
	FinalizedAt     *time.Time       `json:"finalized_at,omitempty"`
	Status          string           `json:"status"`
	Format          string           `json:"format"`
	DurationMS      int64            `json:"duration_ms"`
	FrameCount      int64            `json:"frame_count"`
	ErrorCount      int64            `json:"error_count"`
	ClientToServer  int64            `json:"client_to_server"`
	ServerToClient  int64            `json:"server_to_client"`
	Methods         map[string]int64 `json:"methods"`
	Tools           map[string]int64 `json:"tools"`
	ProtocolVersion string           `json:"protocol_version,omitempty"`
	Client          string           `json:"client,omitempty"`
	Server          string           `json:"server,omitempty"`
	Transport       string           `json:"transport,omitempty"`
	Size            int64            `json:"size"`
	ETag            string           `json:"etag,omitempty"`
	Modified        time.Time        `json:"modified"`
	HasMeta         bool             `json:"has_meta"`
	Valid           bool             `json:"valid"`
	Problems        []string         `json:"problems,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func nameVersion(n, v string) string {
	if v == "" {
		return n
	}
	return n + " " + v
}

func toJSON(r meta.TapeRow) tapeJSON {
	t := tapeJSON{
		Key: r.Key, TapeID: r.TapeID, SessionID: r.SessionID, Name: r.Name, Description: r.Description,
		Tags: r.Tags, CreatedAt: timePtr(r.CreatedAt), UpdatedAt: timePtr(r.UpdatedAt), FinalizedAt: timePtr(r.FinalizedAt),
		Status: r.Status, Format: string(r.Format), DurationMS: r.DurationMS, FrameCount: r.FrameCount, ErrorCount: r.ErrorCount,
		ClientToServer: r.ClientToServer, ServerToClient: r.ServerToClient, Methods: r.Methods, Tools: r.Tools,
		ProtocolVersion: r.ProtocolVersion, Client: nameVersion(r.ClientName, r.ClientVersion), Server: nameVersion(r.ServerName, r.ServerVersion),
		Transport: r.Transport, Size: r.Size, ETag: r.ETag, Modified: r.ModTime.UTC(), HasMeta: r.HasMeta, Valid: r.Valid, Problems: r.Problems,
	}
	if t.Tags == nil {
		t.Tags = []string{}
	}
	if t.Methods == nil {
		t.Methods = map[string]int64{}
	}
	if t.Tools == nil {
		t.Tools = map[string]int64{}
	}
	return t
}

// QueryFlags are the filters and order of ls and search.
type QueryFlags struct {
	Tag     []string `help:"Only tapes with this tag; repeat it for tapes with all of them." placeholder:"TAG" sep:"none"`
	Session string   `help:"Only tapes of this session id." placeholder:"ID"`
	Since   string   `help:"Only tapes created at or after WHEN: a day (2025-08-01, UTC), an RFC 3339 time (2025-08-01T10:00:00Z), today, yesterday, or a duration ago (7d, 36h, 90m, 2w)." placeholder:"WHEN"`
	Until   string   `help:"Only tapes created up to WHEN, same forms as --since; a day means up to its end." placeholder:"WHEN"`
	Status  string   `help:"Only tapes with this status: recording or finalized." placeholder:"STATUS"`
	Method  []string `help:"Only tapes with a call of this JSON-RPC method (tools/call, resources/read, ...); repeat it for all of them." placeholder:"METHOD" sep:"none"`
	Tool    []string `help:"Only tapes that call this tool (tools/call params.name); repeat it for all of them." placeholder:"TOOL" sep:"none"`
	Errors  bool     `help:"Only tapes with at least one error response."`
	Format  string   `help:"Only tapes in this format: v1 (JSON document) or v2 (JSON Lines)." placeholder:"FORMAT"`
	Invalid bool     `help:"Only tapes that did not parse cleanly."`
	Sort    sortFlag `help:"Order by created, name, size, frames, errors, duration or key, with - in front to reverse (ties go by key). Default: -created (newest first); search: rank (best match first)." placeholder:"KEY"`
	Limit   int      `short:"n" help:"At most this many tapes (0: all)." default:"0" placeholder:"N"`
}

// sortFlag is the value of --sort. Unlike a plain string flag it takes a
// value that begins with "-" (--sort -created), as that is how a reverse
// order is written.
type sortFlag string

func (s *sortFlag) Decode(ctx *kong.DecodeContext) error {
	t := ctx.Scan.Pop()
	v, ok := t.Value.(string)
	if t.IsEOL() || !ok {
		return fmt.Errorf("--sort needs a key: created, -created, name, size, frames, errors, duration or key")
	}
	*s = sortFlag(v)
	return nil
}

// OutputFlags choose how ls and search print the tapes.
type OutputFlags struct {
	JSON  bool   `help:"One JSON object per line."`
	Paths string `help:"Print only the tapes' paths in the mount at MOUNTPOINT (MOUNTPOINT/KEY), one per line, for xargs; the index of that mount is used unless --backend or --meta is given." placeholder:"MOUNTPOINT"`
	Null  bool   `short:"0" help:"With --paths: end each path with a NUL byte instead of a newline, for xargs -0."`
}

func (o OutputFlags) check() error {
	if o.JSON && o.Paths != "" {
		return fmt.Errorf("--json and --paths do not go together: choose one")
	}
	if o.Null && o.Paths == "" {
		return fmt.Errorf("--null (-0) goes with --paths")
	}
	return nil
}

// filter turns the flags into a meta.TapeFilter, with an error naming the
// flag and the valid values for a bad one. search says which command it is
// for (rank is a valid --sort only there).
func (q QueryFlags) filter(now time.Time, search bool) (meta.TapeFilter, error) {
	f := meta.TapeFilter{
		Tags: q.Tag, Session: q.Session, Status: q.Status, Format: tape.Format(q.Format),
		Methods: q.Method, Tools: q.Tool, Errors: q.Errors, Invalid: q.Invalid, Sort: string(q.Sort), Limit: q.Limit,
	}
	bad := func(flag, got string, valid []string) error {
		return fmt.Errorf("--%s %q is not valid; valid values: %s", flag, got, strings.Join(valid, ", "))
	}
	if q.Status != "" && !slices.Contains(meta.Statuses, q.Status) {
		return f, bad("status", q.Status, meta.Statuses)
	}
	if q.Format != "" && !slices.Contains(meta.Formats, q.Format) {
		return f, bad("format", q.Format, meta.Formats)
	}
	sorts := []string{"created", "-created", "name", "-name", "size", "-size", "frames", "-frames",
		"errors", "-errors", "duration", "-duration", "key", "-key"}
	if search {
		sorts = append(sorts, meta.SortRank)
	}
	if q.Sort != "" && !slices.Contains(sorts, string(q.Sort)) {
		return f, bad("sort", string(q.Sort), sorts)
	}
	if q.Limit < 0 {
		return f, fmt.Errorf("--limit %d: want 0 (all) or more", q.Limit)
	}
	var err error
	if q.Since != "" {
		if f.Since, err = parseWhen(q.Since, now, false); err != nil {
			return f, fmt.Errorf("--since %w", err)
		}
	}
	if q.Until != "" {
		if f.Until, err = parseWhen(q.Until, now, true); err != nil {
			return f, fmt.Errorf("--until %w", err)
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return f, fmt.Errorf("--since %s is not before --until %s: no tape can match", q.Since, q.Until)
	}
	return f, f.Validate()
}

// parseWhen reads a --since/--until value. A day is a UTC day; as an upper
// bound (end) it means the end of that day, and a time means up to and
// including that instant. The result is an exclusive bound for end.
func parseWhen(s string, now time.Time, end bool) (time.Time, error) {
	now = now.UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	day := func(t time.Time) time.Time {
		if end {
			return t.AddDate(0, 0, 1)
		}
		return t
	}
	switch strings.ToLower(s) {
	case "today":
		return day(today), nil
	case "yesterday":
		return day(today.AddDate(0, 0, -1)), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return day(t), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04"} {
		if t, err := time.Parse(layout, s); err == nil { // no zone: UTC
			if end {
				t = t.Add(time.Nanosecond)
			}
			return t, nil
		}
	}
	if d, ok := parseAgo(s); ok {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q: want a day (2025-08-01), an RFC 3339 time (2025-08-01T10:00:00Z), today, yesterday, or a duration ago (7d, 36h, 90m, 2w, 1d12h)", s)
}

// parseAgo reads a duration with w (weeks) and d (days) besides Go's units.
func parseAgo(s string) (time.Duration, bool) {
	units := map[string]time.Duration{"w": 7 * 24 * time.Hour, "d": 24 * time.Hour, "h": time.Hour,
		"m": time.Minute, "s": time.Second, "ms": time.Millisecond}
	var total time.Duration
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		j := i
		for j < len(rest) && rest[j] >= 'a' && rest[j] <= 'z' {
			j++
		}
		n, err := strconv.ParseFloat(rest[:i], 64)
		unit, ok := units[rest[i:j]]
		if i == 0 || err != nil || !ok || n < 0 {
			return 0, false
		}
		total += time.Duration(n * float64(unit))
		rest = rest[j:]
	}
	return total, s != ""
}

// findMount returns the running mount of this host at dir, if any.
func findMount(dir string) (mountInfo, bool) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return mountInfo{}, false
	}
	for _, mi := range readMountInfos() {
		if filepath.Clean(mi.Mountpoint) == abs {
			return mi, true
		}
	}
	return mountInfo{}, false
}

// mountOf returns the running mount whose tree holds path, and the key of
// path in it ("" for the mountpoint itself).
func mountOf(path string) (mountInfo, string, bool) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return mountInfo{}, "", false
	}
	for _, mi := range readMountInfos() {
		mp := filepath.Clean(mi.Mountpoint)
		if abs == mp {
			return mi, "", true
		}
		if rel, ok := strings.CutPrefix(abs, mp+string(filepath.Separator)); ok {
			return mi, filepath.ToSlash(rel), true
		}
	}
	return mountInfo{}, "", false
}

// openIndex opens the sidecar of the store sf names for queries. A store
// never indexed is indexed first, from the store (indexFirst); a sidecar of
// an older schema is migrated (once, read-write).
func openIndex(ctx context.Context, sf StoreFlags, log *slog.Logger) (*meta.Sidecar, error) {
	st, err := sf.locate()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(st.Meta); err != nil {
		if err := indexFirst(ctx, sf, log); err != nil {
			return nil, err
		}
	}
	return openSidecarReadOnly(st.Meta)
}

// openSidecarReadOnly opens an existing sidecar for queries, migrating it
// first if its schema is older than this program's, once the mount that
// serves it (if any) has indexed its tapes.
func openSidecarReadOnly(path string) (*meta.Sidecar, error) {
	awaitMountIndex(path, os.Stderr)
	sc, err := meta.OpenReadOnly(path)
	if errors.Is(err, meta.ErrOldSchema) {
		fmt.Fprintf(os.Stderr, "tapefs: upgrading the sidecar %s to this version's schema (once)\n", path)
		if err = reopenReadWrite(path); err == nil {
			sc, err = meta.OpenReadOnly(path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cannot open the sidecar %s: %w", path, err)
	}
	return sc, nil
}

// reopenReadWrite opens the sidecar read-write and closes it again: that
// migrates its schema and builds a missing or stale full-text index.
func reopenReadWrite(path string) error {
	sc, err := meta.Open(path)
	if err != nil {
		return err
	}
	return sc.Close()
}

// queryIndex opens the index to query for ls and search: that of the mount
// --paths names when no store is given, else that of the store.
func queryIndex(ctx context.Context, sf StoreFlags, of OutputFlags, log *slog.Logger) (*meta.Sidecar, error) {
	if of.Paths != "" && len(sf.Backend) == 0 && sf.Meta == "" {
		if mi, ok := findMount(of.Paths); ok && mi.Meta != "" {
			return openSidecarReadOnly(mi.Meta)
		}
	}
	return openIndex(ctx, sf, log)
}

func (c *LsCmd) Run(g *Globals, log *slog.Logger) error {
	if err := c.OutputFlags.check(); err != nil {
		return err
	}
	f, err := c.QueryFlags.filter(time.Now(), false)
	if err != nil {
		return err
	}
	f.Served = c.Paths != ""
	f.Brief = !c.JSON // a table or paths: see printTapes
	ctx := context.Background()
	sc, err := queryIndex(ctx, c.StoreFlags, c.OutputFlags, log)
	if err != nil {
		return err
	}
	defer sc.Close()
	rows, err := sc.ListTapes(ctx, f)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		hintUnknown(ctx, stderr(c.ew), sc, f)
	}
	return printTapes(stdout(c.w), rows, nil, c.OutputFlags)
}

func stdout(w io.Writer) io.Writer {
	if w == nil {
		return os.Stdout
	}
	return w
}

func stderr(w io.Writer) io.Writer {
	if w == nil {
		return os.Stderr
	}
	return w
}

// hintUnknown tells on standard error which --tag, --tool and --method
// values no tape has at all (a typo, most likely), and which it has.
func hintUnknown(ctx context.Context, w io.Writer, sc *meta.Sidecar, f meta.TapeFilter) {
	check := func(facet meta.Facet, values []string) {
		for _, v := range values {
			if ok, err := sc.HasFacetValue(ctx, facet, v); err != nil || ok {
				continue
			}
			all, err := sc.FacetValues(ctx, facet)
			if err != nil {
				return
			}
			if len(all) == 0 {
				fmt.Fprintf(w, "tapefs: no tape has any %s\n", facet)
				continue
			}
			// Values that look like the one asked for first, then the most common.
			var near, rest []string
			lv := strings.ToLower(v)
			for _, a := range all {
				la := strings.ToLower(a.Value)
				if strings.Contains(la, lv) || strings.Contains(lv, la) {
					near = append(near, a.Value)
				} else {
					rest = append(rest, a.Value)
				}
			}
			list := append(near, rest...)
			more := ""
			if len(list) > 15 {
				list, more = list[:15], fmt.Sprintf(", ... (%d in all)", len(all))
			}
			fmt.Fprintf(w, "tapefs: no tape has %s %q; %ss in the index: %s%s\n", facet, v, facet,
				strings.Join(list, ", "), more)
		}
	}
	check(meta.FacetTag, f.Tags)
	check(meta.FacetTool, f.Tools)
	check(meta.FacetMethod, f.Methods)
}

// printTapes prints rows as --json, --paths or the table ask; scores (of a
// search) are printed too when given.
func printTapes(w io.Writer, rows []meta.TapeRow, scores []float64, of OutputFlags) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	switch {
	case of.Paths != "":
		end := "\n"
		if of.Null {
			end = "\x00"
		}
		for _, r := range rows {
			bw.WriteString(filepath.Join(of.Paths, filepath.FromSlash(r.Key)) + end)
		}
	case of.JSON:
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		for i, r := range rows {
			var v any = toJSON(r)
			if scores != nil {
				v = struct {
					tapeJSON
					Score float64 `json:"score"`
				}{toJSON(r), math.Round(scores[i]*1000) / 1000}
			}
			if err := enc.Encode(v); err != nil {
				return err
			}
		}
	default:
		header := []string{"TAPE", "CREATED", "STATUS", "FRAMES", "ERRORS", "SIZE", "TAGS", "NAME", "KEY"}
		if scores != nil {
			header = append([]string{"SCORE"}, header...)
		}
		t := newTable(header, len(rows))
		for i, r := range rows {
			id := r.TapeID
			if len(id) > 8 {
				id = id[:8]
			}
			created := "-"
			if !r.CreatedAt.IsZero() {
				created = r.CreatedAt.UTC().Format("2006-01-02 15:04")
			}
			status := r.Status
			if !r.Valid {
				status += "!"
			}
			if scores != nil {
				t.add(strconv.FormatFloat(scores[i], 'f', 2, 64))
			}
			t.add(cell(id), created, cell(status), strconv.FormatInt(r.FrameCount, 10), strconv.FormatInt(r.ErrorCount, 10),
				humanSize(r.Size), cell(strings.Join(r.Tags, ",")), cell(r.Name), cell(r.Key))
		}
		t.write(bw)
	}
	return bw.Flush()
}

// table lays out cells in columns as text/tabwriter does with a padding
// of two spaces (every column as wide as its widest cell, counted in
// runes; the last column not padded), without tabwriter's copy of every
// cell: a listing of 800 tapes spent a fifth of its page faults there.
type table struct {
	cols  int
	cells []string // row after row
}

func newTable(header []string, rows int) *table {
	t := &table{cols: len(header), cells: make([]string, 0, (rows+1)*len(header))}
	t.add(header...)
	return t
}

func (t *table) add(cells ...string) { t.cells = append(t.cells, cells...) }

func (t *table) write(w *bufio.Writer) {
	width := make([]int, t.cols)
	for i, c := range t.cells {
		width[i%t.cols] = max(width[i%t.cols], utf8.RuneCountInString(c))
	}
	for i, c := range t.cells {
		w.WriteString(c)
		if col := i % t.cols; col == t.cols-1 {
			w.WriteByte('\n')
		} else {
			for n := utf8.RuneCountInString(c); n < width[col]+2; n++ {
				w.WriteByte(' ')
			}
		}
	}
}

// cell makes a value safe for one table cell: no tabs, newlines or other
// control characters (they would break the columns), "-" when empty.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%c", float64(n)/float64(div), "KMGTPE"[exp])
}
