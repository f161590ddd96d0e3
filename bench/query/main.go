// Command query measures the sidecar's tape queries on a large synthetic
// index: it builds a sidecar of -n tapes (100,000 by default) directly
// through package meta, then times ListTapes with the filters of `tapefs ls`
// and Search as `tapefs search` runs them, and prints p50 and max per query.
// It is a program, not a test: it asserts nothing.
//
//	go run -tags sqlite_fts5 ./bench/query                 # build in a temp dir, measure, remove
//	go run -tags sqlite_fts5 ./bench/query -db /tmp/q.db -keep -plans
//	go run -tags sqlite_fts5 ./bench/query -db /tmp/q.db -cli bin/tapefs,bin/tapefs-full   # reuse it, and time the CLI too
//
// With -db naming an existing file, the sidecar is reused as it is.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tapefs/tapefs/meta"
	"github.com/tapefs/tapefs/tape"
)

func main() {
	n := flag.Int("n", 100_000, "tapes in the synthetic sidecar")
	dbPath := flag.String("db", "", "sidecar file (default: a new one in a temporary directory); reused if it exists")
	keep := flag.Bool("keep", false, "keep the sidecar built in the temporary directory")
	runs := flag.Int("runs", 20, "timed runs per query")
	plans := flag.Bool("plans", false, "print each query's EXPLAIN QUERY PLAN")
	cli := flag.String("cli", "", "tapefs binaries, comma-separated (e.g. bin/tapefs,bin/tapefs-full): also time `tapefs ls/search/show --meta DB` end to end with each, side by side")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the timed queries to this file")
	only := flag.String("only", "", "time only the queries whose name contains this")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "query:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if err := run(*n, *dbPath, *keep, *runs, *plans, *cli, *only); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "query:", err)
		os.Exit(1)
	}
}

func run(n int, dbPath string, keep bool, runs int, plans bool, cli, only string) error {
	ctx := context.Background()
	if dbPath == "" {
		dir, err := os.MkdirTemp("", "tapefs-query-bench-")
		if err != nil {
			return err
		}
		if !keep {
			defer os.RemoveAll(dir)
		}
		dbPath = filepath.Join(dir, "index.db")
	}
	now := time.Now()
	if _, err := os.Stat(dbPath); err != nil {
		start := time.Now()
		if err := build(ctx, dbPath, n, now); err != nil {
			return err
		}
		fi, _ := os.Stat(dbPath)
		fmt.Printf("built %s: %d tapes in %.1fs, %.0f MiB\n", dbPath, n, time.Since(start).Seconds(),
			float64(fi.Size())/(1<<20))
	} else {
		fmt.Printf("reusing %s\n", dbPath)
	}
	// Open read-write once (migrates and builds the full-text index if it
	// must, as a mount would), then query read-only, as the CLI does.
	start := time.Now()
	sc, err := meta.Open(dbPath)
	if err != nil {
		return err
	}
	if err := sc.Close(); err != nil {
		return err
	}
	fmt.Printf("read-write open (migrate, check): %.2fs\n", time.Since(start).Seconds())
	sc, err = meta.OpenReadOnly(dbPath)
	if err != nil {
		return err
	}
	defer sc.Close()
	st, err := sc.Stats(ctx)
	if err != nil {
		return err
	}
	tags, err := sc.FacetValues(ctx, meta.FacetTag)
	if err != nil {
		return err
	}
	tools, err := sc.FacetValues(ctx, meta.FacetTool)
	if err != nil {
		return err
	}
	common, mid, rare := tags[0], tags[len(tags)/3], tags[len(tags)-1]
	tool := tools[len(tools)/4]
	fmt.Printf("%d tapes; tags: %d (common %q on %d tapes, mid %q on %d, rare %q on %d); tool %q on %d\n\n",
		st.Tapes, len(tags), common.Value, common.Tapes, mid.Value, mid.Tapes, rare.Value, rare.Tapes,
		tool.Value, tool.Tapes)

	week := now.Add(-7 * 24 * time.Hour)
	type query struct {
		name   string
		search string
		f      meta.TapeFilter
	}
	var qs []query
	for _, limit := range []int{50, 0} {
		sfx := ""
		if limit > 0 {
			sfx = fmt.Sprintf(" --limit %d", limit)
		}
		qs = append(qs,
			query{name: "ls" + sfx, f: meta.TapeFilter{Limit: limit}},
			query{name: "ls --tag " + common.Value + " (common)" + sfx, f: meta.TapeFilter{Tags: []string{common.Value}, Limit: limit}},
			query{name: "ls --tag " + mid.Value + " (mid)" + sfx, f: meta.TapeFilter{Tags: []string{mid.Value}, Limit: limit}},
			query{name: "ls --tag " + rare.Value + " (rare)" + sfx, f: meta.TapeFilter{Tags: []string{rare.Value}, Limit: limit}},
			query{name: "ls --tool " + tool.Value + sfx, f: meta.TapeFilter{Tools: []string{tool.Value}, Limit: limit}},
			query{name: "ls --errors" + sfx, f: meta.TapeFilter{Errors: true, Limit: limit}},
			query{name: "ls --since 7d" + sfx, f: meta.TapeFilter{Since: week, Limit: limit}},
			query{name: "ls --tag " + mid.Value + " --tool " + tool.Value + " --since 7d" + sfx,
				f: meta.TapeFilter{Tags: []string{mid.Value}, Tools: []string{tool.Value}, Since: week, Limit: limit}},
			query{name: "search timeout" + sfx, search: "timeout", f: meta.TapeFilter{Limit: limit}},
			query{name: "search replay" + sfx, search: "replay", f: meta.TapeFilter{Limit: limit}},
			query{name: `search "connection refused"` + sfx, search: `"connection refused"`, f: meta.TapeFilter{Limit: limit}},
			query{name: "search kappa --tag " + mid.Value + sfx, search: "kappa", f: meta.TapeFilter{Tags: []string{mid.Value}, Limit: limit}},
		)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "query\trows\tp50 ms\tmax ms\t")
	for _, q := range qs {
		if !strings.Contains(q.name, only) {
			continue
		}
		if q.search != "" && !sc.HasFTS() {
			fmt.Fprintf(tw, "%s\t-\tno FTS5 (build with -tags sqlite_fts5)\t\t\n", q.name)
			continue
		}
		var rows int
		exec := func() error {
			if q.search != "" {
				hits, err := sc.Search(ctx, q.search, q.f)
				rows = len(hits)
				return err
			}
			ts, err := sc.ListTapes(ctx, q.f)
			rows = len(ts)
			return err
		}
		if err := exec(); err != nil { // warm-up
			return fmt.Errorf("%s: %w", q.name, err)
		}
		times := make([]time.Duration, runs)
		for i := range times {
			start := time.Now()
			if err := exec(); err != nil {
				return fmt.Errorf("%s: %w", q.name, err)
			}
			times[i] = time.Since(start)
		}
		p50, mx := stats(times)
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t\n", q.name, rows, ms(p50), ms(mx))
		if plans {
			tw.Flush()
			plan, err := sc.QueryPlan(ctx, q.search, q.f)
			if err != nil {
				return err
			}
			for _, l := range plan {
				fmt.Println("      " + l)
			}
		}
	}
	tw.Flush()

	if cli != "" {
		one, err := sc.ListTapes(ctx, meta.TapeFilter{Tags: []string{mid.Value}, Limit: 1})
		if err != nil || len(one) == 0 {
			return fmt.Errorf("no tape to show: %v", err)
		}
		prefix := one[0].TapeID[:8]
		bins := strings.Split(cli, ",")
		fmt.Printf("\nend to end, `BINARY … --meta %s` (process start, open, query, print to /dev/null), p50 and max ms of %d runs:\n", dbPath, runs)
		tw = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "command\t")
		for _, b := range bins {
			fmt.Fprintf(tw, "%s p50\tmax\t", filepath.Base(b))
		}
		fmt.Fprintln(tw)
		for _, args := range [][]string{
			{"--help"},
			{"ls", "--limit", "50"},
			{"ls", "--tag", mid.Value, "--limit", "50"},
			{"ls", "--tag", mid.Value},
			{"ls", "--tag", mid.Value, "--json"},
			{"ls", "--tag", rare.Value},
			{"ls", "--tag", common.Value, "--limit", "50"},
			{"ls", "--errors", "--since", "7d"},
			{"search", "timeout", "--limit", "50"},
			{"search", `"connection refused"`, "--limit", "50"},
			{"search", "kappa", "--tag", mid.Value, "--limit", "50"},
			{"show", prefix},
			{"show", "--json", prefix},
		} {
			if args[0] == "search" && !sc.HasFTS() {
				continue
			}
			full := args
			if args[0] != "--help" {
				full = append(slices.Clone(args), "--meta", dbPath)
			}
			fmt.Fprintf(tw, "tapefs %s\t", strings.Join(args, " "))
			for _, b := range bins {
				times := make([]time.Duration, runs)
				for i := range times {
					cmd := exec.Command(b, full...)
					start := time.Now()
					out, err := cmd.CombinedOutput()
					times[i] = time.Since(start)
					if err != nil {
						return fmt.Errorf("%s %s: %v: %s", b, strings.Join(full, " "), err, out)
					}
				}
				p50, mx := stats(times)
				fmt.Fprintf(tw, "%.1f\t%.1f\t", ms(p50), ms(mx))
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}
	return nil
}

func stats(ts []time.Duration) (p50, mx time.Duration) {
	s := slices.Clone(ts)
	slices.Sort(s)
	return s[len(s)/2], s[len(s)-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

var (
	vocab = strings.Fields("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron " +
		"pi rho sigma tau upsilon phi chi psi omega tape frame session record replay proxy deploy " +
		"login checkout billing search index import export sync backup restore migrate refactor")
	tagBases = strings.Fields("auth billing checkout search perf regression debug demo staging production " +
		"ci flaky nightly customer onboarding mobile web api admin reports")
	toolBases = strings.Fields("read_file write_file list_directory sql_query send_email calculator web_search " +
		"fetch_url git_log git_diff run_tests get_weather create_issue close_issue search_code open_pr " +
		"deploy rollback page_oncall query_metrics")
	methods = []string{"initialize", "notifications/initialized", "tools/list", "tools/call", "resources/list",
		"resources/read", "prompts/list", "prompts/get", "ping", "completion/complete", "logging/setLevel"}
	errorTexts = []string{"connection refused by upstream", "timeout after 30s", "invalid params: missing path",
		"tool execution failed: exit status 1", "permission denied", "rate limited, retry later",
		"internal error: nil pointer", "resource not found"}
	clients = []string{"claude-code", "cursor", "zed", "vscode-mcp", "goose"}
	servers = []string{"filesystem-server", "github-server", "postgres-server", "slack-server", "weather-server"}
)

// names returns k names made from bases: base, base-2, base-3, ...
func names(bases []string, k int) []string {
	var out []string
	for i := 0; len(out) < k; i++ {
		for _, b := range bases {
			if i > 0 {
				b = fmt.Sprintf("%s-%d", b, i+1)
			}
			out = append(out, b)
			if len(out) == k {
				break
			}
		}
	}
	return out
}

func uuid(r *rand.Rand) string {
	a, b := r.Uint64(), r.Uint64()
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", a>>32, (a>>16)&0xffff, a&0xfff, b>>48|0x8000, b&0xffffffffffff)
}

func words(r *rand.Rand, n int) string {
	w := make([]string, n)
	for i := range w {
		w[i] = vocab[r.IntN(len(vocab))]
	}
	return strings.Join(w, " ")
}

// build writes n synthetic tapes into a new sidecar at path, 5,000 per
// transaction. Tags and tools follow Zipf distributions (a few common, a
// long tail of rare ones); creation times spread over the year before now.
func build(ctx context.Context, path string, n int, now time.Time) error {
	sc, err := meta.Open(path)
	if err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(1, 2))
	tagNames := names(tagBases, 200)
	toolNames := names(toolBases, 120)
	tagZipf := rand.NewZipf(r, 1.1, 4, uint64(len(tagNames)-1))
	toolZipf := rand.NewZipf(r, 1.2, 2, uint64(len(toolNames)-1))
	const batch = 5000
	for lo := 0; lo < n; lo += batch {
		err := sc.Update(ctx, func(tx *meta.Tx) error {
			for i := lo; i < min(lo+batch, n); i++ {
				rec := synth(r, i, now, tagNames, toolNames, tagZipf, toolZipf)
				o, err := tx.PutObject(meta.Object{Key: rec.Key, Size: 2000 + r.Int64N(500_000),
					ModTime: rec.UpdatedAt, ETag: fmt.Sprintf("%016x", r.Uint64())})
				if err != nil {
					return err
				}
				if err := tx.PutTape(rec, meta.TapeSource{Data: meta.StampOf(o)}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			sc.Close()
			return err
		}
	}
	return sc.Close()
}

func synth(r *rand.Rand, i int, now time.Time, tagNames, toolNames []string, tagZipf, toolZipf *rand.Zipf) *tape.Record {
	id := uuid(r)
	created := now.Add(-time.Duration(r.Int64N(int64(365 * 24 * time.Hour))))
	rec := &tape.Record{
		Format:      tape.FormatV2,
		TapeID:      id,
		SessionID:   fmt.Sprintf("sess-%05d", r.IntN(20000)),
		Name:        fmt.Sprintf("%s %d", words(r, 3), i),
		Description: words(r, 8+r.IntN(8)),
		CreatedAt:   created,
		Status:      tape.StatusFinalized,
		DurationMS:  r.Int64N(3_600_000),
		FrameCount:  2 + r.Int64N(2000),
		Methods:     map[string]int64{},
		Tools:       map[string]int64{},
		ClientName:  clients[r.IntN(len(clients))], ClientVersion: fmt.Sprintf("1.%d", r.IntN(10)),
		ServerName: servers[r.IntN(len(servers))], ServerVersion: fmt.Sprintf("0.%d", r.IntN(10)),
		ProtocolVersion: "2025-06-18", Transport: "stdio",
		HasMeta: true, Valid: true,
	}
	rec.Key = fmt.Sprintf("team-%c/%s/%s.jsonl", 'a'+r.IntN(5), created.UTC().Format("2006/01"), id)
	rec.UpdatedAt = created.Add(time.Duration(rec.DurationMS) * time.Millisecond)
	if r.IntN(10) == 0 {
		rec.Status = tape.StatusRecording
	} else {
		rec.FinalizedAt = rec.UpdatedAt
	}
	if r.IntN(20) == 0 {
		rec.Format, rec.HasMeta = tape.FormatV1, false
		rec.Key = strings.TrimSuffix(rec.Key, "l")
	}
	for range 1 + r.IntN(4) {
		if t := tagNames[tagZipf.Uint64()]; !slices.Contains(rec.Tags, t) {
			rec.Tags = append(rec.Tags, t)
		}
	}
	rec.Methods["initialize"] = 1
	for _, m := range methods[1:] {
		if r.IntN(3) == 0 {
			rec.Methods[m] = 1 + r.Int64N(20)
		}
	}
	if r.IntN(4) != 0 {
		for range 1 + r.IntN(6) {
			rec.Tools[toolNames[toolZipf.Uint64()]] += 1 + r.Int64N(10)
		}
		var calls int64
		for _, c := range rec.Tools {
			calls += c
		}
		rec.Methods["tools/call"] = calls
	}
	if r.IntN(4) == 0 {
		rec.ErrorCount = 1 + r.Int64N(5)
		for range 1 + r.IntN(2) {
			if e := errorTexts[r.IntN(len(errorTexts))]; !slices.Contains(rec.ErrorMessages, e) {
				rec.ErrorMessages = append(rec.ErrorMessages, e)
			}
		}
	}
	if r.IntN(100) == 0 {
		rec.Valid, rec.Problems = false, []string{fmt.Sprintf("line %d: invalid JSON", 2+r.IntN(100))}
	}
	rec.ClientToServer = rec.FrameCount / 2
	rec.ServerToClient = rec.FrameCount - rec.ClientToServer
	for k := range 5 {
		rec.Slowest = append(rec.Slowest, tape.Pair{Method: "tools/call", RequestSeq: int64(2 * k),
			ResponseSeq: int64(2*k + 1), RTTMS: int64(5000 - 100*k), Status: "success"})
	}
	return rec
}
