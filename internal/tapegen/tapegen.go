// Package tapegen makes deterministic test data: realistic Shadowcat tapes
// (v2 JSON Lines with meta, v1 documents with an index) and whole corpora,
// each with the index record a correct parser must produce. The expected
// records are computed by the generator as it writes, independently of
// package tape's parser: the same seed always gives the same bytes.
package tapegen

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// newRand returns the generator's random source for a seed.
func newRand(seed int64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), 0x7a9e5f5b3c1d2e4f))
}

// subSeed derives the seed of the i-th item of a collection (splitmix64).
func subSeed(seed int64, i int) int64 {
	z := uint64(seed) + uint64(i+1)*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return int64(z ^ (z >> 31))
}

func uuid(r *rand.Rand) string {
	a, b := r.Uint64(), r.Uint64()
	a = a&^0xf000 | 0x4000     // version 4
	b = b&^(0xc<<60) | 0x8<<60 // variant 10
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x",
		a>>32, (a>>16)&0xffff, a&0xffff, b>>48, b&0xffffffffffff)
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

var (
	vocab = strings.Fields("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu " +
		"xi omicron pi rho sigma tau upsilon phi chi psi omega tape frame session record replay proxy")
	// spice is mixed into result texts so parsers meet escapes and non-ASCII.
	spice   = []string{"naïve", "café", "東京", "テープ", "🎞", `"quoted"`, `back\slash`, "tab\there", "line\nbreak", "<b>&amp;</b>", "\u2028"}
	clients = []string{"claude-code", "cursor", "zed", "vscode-mcp", "goose"}
	servers = []string{"filesystem-server", "github-server", "postgres-server", "slack-server", "weather-server"}
	tools   = []string{"read_file", "write_file", "list_directory", "sql_query", "send_email",
		"calculator", "web_search", "fetch_url", "git_log", "run_tests", "get_weather", "météo_lookup"}
	tagSet    = []string{"regression", "debug", "perf", "demo", "staging", "production", "customer-a", "ci", "flaky"}
	errorFmts = []string{"internal error: %s", "tool execution failed: %s", "invalid params: %s", "timeout after %s"}
	protocols = []string{"2025-06-18", "2025-03-26", "2024-11-05"}
	// epoch is the earliest created_at of generated tapes.
	epoch = time.Date(2025, 8, 1, 0, 0, 0, 0, time.UTC)
)

// words returns n random vocabulary words joined by spaces.
func words(r *rand.Rand, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(pick(r, vocab))
	}
	return b.String()
}

// text returns about n bytes of prose, with some escapes and non-ASCII.
func text(r *rand.Rand, n int) string {
	var b strings.Builder
	b.Grow(n + 16)
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		if r.IntN(40) == 0 {
			b.WriteString(pick(r, spice))
		} else {
			b.WriteString(pick(r, vocab))
		}
	}
	return b.String()
}

// tags returns a random subset of tagSet (nil when empty).
func tags(r *rand.Rand) []string {
	var out []string
	for _, i := range r.Perm(len(tagSet))[:r.IntN(4)] {
		out = append(out, tagSet[i])
	}
	return out
}

func rfc3339ms(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// stem is the base name of key without its tape extension.
func stem(key string) string {
	base := key[strings.LastIndex(key, "/")+1:]
	for _, ext := range []string{".jsonl", ".json"} {
		if s, ok := strings.CutSuffix(base, ext); ok {
			return s
		}
	}
	return base
}
