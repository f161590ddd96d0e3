package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tapefs/tapefs/meta"
	"github.com/tapefs/tapefs/tape"
)

// ShowCmd prints everything the index knows about one tape.
type ShowCmd struct {
	StoreFlags
	Tape  string `arg:"" help:"The tape: its tape id, a unique prefix of one, its store key, or its path in a mount (its .meta.json names it too)." placeholder:"TAPE"`
	Mount string `help:"TAPE is a path in the mount at MOUNTPOINT (one this host's tapefs does not know of, or to use with --backend/--meta)." placeholder:"MOUNTPOINT"`
	JSON  bool   `help:"Print one JSON object."`

	w io.Writer `kong:"-"` // standard output; tests set it
}

// pairJSON is one of the slowest request/response pairs.
type pairJSON struct {
	Method      string `json:"method"`
	RequestSeq  int64  `json:"request_seq"`
	ResponseSeq int64  `json:"response_seq"`
	RTTMS       int64  `json:"rtt_ms"`
	Status      string `json:"status,omitempty"`
}

// showJSON is the --json form of show: that of ls and what only show prints.
type showJSON struct {
	tapeJSON
	Path          string     `json:"path,omitempty"`
	ObjectID      int64      `json:"object_id"`
	ClientName    string     `json:"client_name,omitempty"`
	ClientVersion string     `json:"client_version,omitempty"`
	ServerName    string     `json:"server_name,omitempty"`
	ServerVersion string     `json:"server_version,omitempty"`
	ErrorMessages []string   `json:"error_messages"`
	Slowest       []pairJSON `json:"slowest"`
	Companion     string     `json:"companion,omitempty"`
	IndexedAt     time.Time  `json:"indexed_at"`
}

func (c *ShowCmd) Run(g *Globals, log *slog.Logger) error {
	ctx := context.Background()
	ref := c.Tape
	if ref == "" {
		return fmt.Errorf("give a tape: its id, an id prefix, its key or its path in a mount")
	}
	// A path in a mount: its key, and the index of that mount (unless a
	// store is given).
	sf := c.StoreFlags
	var key, path, mountDir string
	if c.Mount != "" {
		abs, err := filepath.Abs(ref)
		mp, err2 := filepath.Abs(c.Mount)
		if err != nil || err2 != nil {
			return fmt.Errorf("show %s: %v", ref, errors.Join(err, err2))
		}
		rel, ok := strings.CutPrefix(abs, mp+string(filepath.Separator))
		if !ok {
			return fmt.Errorf("%s is not a path in the mount at %s", ref, c.Mount)
		}
		key, path, mountDir = filepath.ToSlash(rel), abs, mp
		if mi, ok := findMount(c.Mount); ok && len(sf.Backend) == 0 && sf.Meta == "" {
			sf.Meta = mi.Meta
		}
	} else if looksLikePath(ref) {
		if mi, k, ok := mountOf(ref); ok && k != "" {
			key, path, mountDir = k, filepath.Join(mi.Mountpoint, filepath.FromSlash(k)), mi.Mountpoint
			if len(sf.Backend) == 0 && sf.Meta == "" {
				sf.Meta = mi.Meta
			}
		}
	}
	var sc *meta.Sidecar
	var err error
	if len(sf.Backend) == 0 && sf.Meta != "" {
		if _, serr := os.Stat(sf.Meta); serr == nil {
			sc, err = openSidecarReadOnly(sf.Meta)
		}
	}
	if sc == nil && err == nil {
		sc, err = openIndex(ctx, sf, log)
	}
	if err != nil {
		return err
	}
	defer sc.Close()

	r, err := c.resolve(ctx, sc, ref, key, path)
	if err != nil {
		return err
	}
	// Where the tape itself is in the mount (TAPE may have named its
	// .meta.json or a view), or in a mount of this index.
	if mountDir == "" {
		if mi, ok := mountServing(sc.Path()); ok {
			mountDir = mi.Mountpoint
		}
	}
	if mountDir != "" {
		path = filepath.Join(mountDir, filepath.FromSlash(r.Key))
	}
	if c.JSON {
		enc := json.NewEncoder(stdout(c.w))
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		return enc.Encode(toShowJSON(r, path))
	}
	return printShow(stdout(c.w), r, path)
}

// looksLikePath says whether a TAPE argument should be tried as a path in
// a mount: it is absolute, explicitly relative, or names an existing file.
func looksLikePath(ref string) bool {
	if filepath.IsAbs(ref) || strings.HasPrefix(ref, "./") || strings.HasPrefix(ref, "../") {
		return true
	}
	_, err := os.Lstat(ref)
	return err == nil
}

// mountServing returns the running mount whose index is the sidecar at path.
func mountServing(path string) (mountInfo, bool) {
	for _, mi := range readMountInfos() {
		if mi.Meta != "" && filepath.Clean(mi.Meta) == filepath.Clean(path) {
			return mi, true
		}
	}
	return mountInfo{}, false
}

// resolve finds the tape ref names: by the key of its path in a mount
// (key, path), then as a key, then as a tape id or a unique prefix of one.
func (c *ShowCmd) resolve(ctx context.Context, sc *meta.Sidecar, ref, key, path string) (meta.TapeRow, error) {
	if key != "" {
		if r, ok, err := tapeAtKey(ctx, sc, key); err != nil || ok {
			return r, err
		}
		// A view or another name for the tape: follow a symlink into the
		// mount, or ask the file for its id (user.tape.id).
		if real, err := filepath.EvalSymlinks(path); err == nil && real != path {
			if _, k, ok := mountOf(real); ok && k != "" {
				if r, ok, err := tapeAtKey(ctx, sc, k); err != nil || ok {
					return r, err
				}
			}
		}
		if id := xattrTapeID(path); id != "" {
			return tapeByID(ctx, sc, id, true)
		}
		return meta.TapeRow{}, fmt.Errorf("%s: no tape is indexed at key %q in %s", ref, key, sc.Path())
	}
	if r, ok, err := tapeAtKey(ctx, sc, ref); err != nil || ok {
		return r, err
	}
	return tapeByID(ctx, sc, ref, false)
}

// tapeAtKey returns the tape whose data object is key, or whose .meta.json
// (or v1 index.json entry's file) key is.
func tapeAtKey(ctx context.Context, sc *meta.Sidecar, key string) (meta.TapeRow, bool, error) {
	r, ok, err := sc.GetTape(ctx, key)
	if err != nil || ok {
		return r, ok, err
	}
	if dk := tape.V2DataKey(key); dk != "" {
		return sc.GetTape(ctx, dk)
	}
	return meta.TapeRow{}, false, nil
}

// xattrTapeID reads user.tape.id from a file, "" when it has none.
func xattrTapeID(path string) string {
	buf := make([]byte, 256)
	n, err := unix.Getxattr(path, "user.tape.id", buf)
	if err != nil || n <= 0 {
		return ""
	}
	return string(buf[:n])
}

// tapeByID finds the tape with id, or the one tape whose id begins with it.
func tapeByID(ctx context.Context, sc *meta.Sidecar, id string, exact bool) (meta.TapeRow, error) {
	const most = 20
	rows, err := sc.ListTapes(ctx, meta.TapeFilter{IDPrefix: id, Sort: "id", Limit: most + 1})
	if err != nil {
		return meta.TapeRow{}, err
	}
	var same []meta.TapeRow
	for _, r := range rows {
		if r.TapeID == id {
			same = append(same, r)
		}
	}
	if len(same) == 1 {
		return same[0], nil
	}
	if len(same) > 1 {
		rows = same // copies of one tape under several keys
	} else if exact {
		rows = nil
	}
	switch {
	case len(rows) == 0:
		return meta.TapeRow{}, fmt.Errorf("no tape has the key, id or id prefix %q in %s (a path in a mount this host does not know of needs --mount)", id, sc.Path())
	case len(rows) == 1:
		return rows[0], nil
	}
	var b strings.Builder
	what := "id prefix"
	if len(same) > 1 {
		what = "tape id"
	}
	n := fmt.Sprint(len(rows))
	if len(rows) > most {
		rows, n = rows[:most], fmt.Sprintf("more than %d", most)
	}
	fmt.Fprintf(&b, "%s %q is ambiguous: %s tapes match; give more of the id, or the key:\n", what, id, n)
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", cell(r.TapeID), cell(r.Key), cell(r.Name))
	}
	tw.Flush()
	return meta.TapeRow{}, errors.New(strings.TrimRight(b.String(), "\n"))
}

func toShowJSON(r meta.TapeRow, path string) showJSON {
	s := showJSON{
		tapeJSON: toJSON(r), Path: path, ObjectID: r.ObjectID,
		ClientName: r.ClientName, ClientVersion: r.ClientVersion, ServerName: r.ServerName, ServerVersion: r.ServerVersion,
		ErrorMessages: r.ErrorMessages, Slowest: []pairJSON{}, Companion: r.Source.Companion.Key, IndexedAt: r.IndexedAt.UTC(),
	}
	if s.ErrorMessages == nil {
		s.ErrorMessages = []string{}
	}
	for _, p := range r.Slowest {
		s.Slowest = append(s.Slowest, pairJSON{Method: p.Method, RequestSeq: p.RequestSeq, ResponseSeq: p.ResponseSeq,
			RTTMS: p.RTTMS, Status: p.Status})
	}
	return s
}

// printShow prints a tape as a list of fields and tables.
func printShow(w io.Writer, r meta.TapeRow, path string) error {
	bw := bufio.NewWriter(w)
	tw := tabwriter.NewWriter(bw, 0, 4, 2, ' ', 0)
	field := func(name, value string) {
		if value != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", name, cell(value))
		}
	}
	when := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05.000 UTC")
	}
	field("key", r.Key)
	field("path", path)
	field("tape id", r.TapeID)
	field("session id", r.SessionID)
	field("name", r.Name)
	field("description", r.Description)
	field("tags", strings.Join(r.Tags, ", "))
	field("status", r.Status)
	format := string(r.Format)
	switch {
	case r.Format == tape.FormatV2 && r.HasMeta:
		format += " (JSON Lines, with .meta.json)"
	case r.Format == tape.FormatV2:
		format += " (JSON Lines, no .meta.json)"
	case r.Format == tape.FormatV1 && r.HasMeta:
		format += " (JSON document, in index.json)"
	case r.Format == tape.FormatV1:
		format += " (JSON document, not in an index.json)"
	}
	field("format", format)
	field("created", when(r.CreatedAt))
	field("updated", when(r.UpdatedAt))
	field("finalized", when(r.FinalizedAt))
	field("duration", fmt.Sprintf("%s (%d ms)", (time.Duration(r.DurationMS)*time.Millisecond).String(), r.DurationMS))
	field("frames", fmt.Sprintf("%d (%d client to server, %d server to client)", r.FrameCount, r.ClientToServer, r.ServerToClient))
	field("errors", fmt.Sprint(r.ErrorCount))
	field("protocol", r.ProtocolVersion)
	field("client", nameVersion(r.ClientName, r.ClientVersion))
	field("server", nameVersion(r.ServerName, r.ServerVersion))
	field("transport", r.Transport)
	field("size", fmt.Sprintf("%s (%d bytes)", humanSize(r.Size), r.Size))
	field("etag", r.ETag)
	field("modified", when(r.ModTime))
	field("companion", r.Source.Companion.Key)
	valid := "yes"
	if !r.Valid {
		valid = "no"
	}
	field("valid", valid)
	field("indexed", when(r.IndexedAt))
	field("object id", fmt.Sprint(r.ObjectID))
	if err := tw.Flush(); err != nil {
		return err
	}

	table := func(title string, head string, lines [][]any) {
		fmt.Fprintf(bw, "\n%s\n", title)
		if len(lines) == 0 {
			fmt.Fprintln(bw, "  (none)")
			return
		}
		tw := tabwriter.NewWriter(bw, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  "+head)
		for _, l := range lines {
			for i, v := range l {
				if i > 0 {
					fmt.Fprint(tw, "\t")
				} else {
					fmt.Fprint(tw, "  ")
				}
				if s, ok := v.(string); ok {
					v = cell(s)
				}
				fmt.Fprint(tw, v)
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}
	table("Methods", "METHOD\tFRAMES", countLines(r.Methods))
	table("Tools", "TOOL\tCALLS", countLines(r.Tools))
	var slow [][]any
	for _, p := range r.Slowest {
		m := p.Method
		if m == "" {
			m = "?"
		}
		st := p.Status
		if st == "" {
			st = "-"
		}
		slow = append(slow, []any{m, p.RequestSeq, p.ResponseSeq, fmt.Sprintf("%d ms", p.RTTMS), st})
	}
	table("Slowest requests", "METHOD\tREQUEST SEQ\tRESPONSE SEQ\tTIME\tSTATUS", slow)
	var msgs [][]any
	for _, m := range r.ErrorMessages {
		msgs = append(msgs, []any{m})
	}
	table("Error messages", "MESSAGE", msgs)
	if len(r.Problems) > 0 {
		var ps [][]any
		for _, p := range r.Problems {
			ps = append(ps, []any{p})
		}
		table("Problems (the tape did not parse cleanly)", "PROBLEM", ps)
	}
	return bw.Flush()
}

// countLines returns a count map's entries, the largest count first.
func countLines(m map[string]int64) [][]any {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var out [][]any
	for _, k := range keys {
		out = append(out, []any{k, m[k]})
	}
	return out
}
