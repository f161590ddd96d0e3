package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestQueryFrontEnd: tapefs is two programs (see cmd/tapefs/delegate.go).
// The front end answers ls, search and show itself, with the same output as
// the complete program, even when tapefs-full is nowhere to be found; every
// other command, help, a query on a store never indexed, and a config file
// setting of another command go to tapefs-full; without it they fail with
// one line naming it and the fix.
func TestQueryFrontEnd(t *testing.T) {
	c := newCorpus(t)
	st := backendNamed(t, "file")
	if !st.Seed(t, c.Files) {
		t.Fatal("the file store cannot be seeded")
	}
	store := []string{"--backend", st.URL(), "--meta", st.Dirs().Meta}

	// No sidecar yet: the front end hands the query to tapefs-full, which
	// indexes the store first.
	first := tapefs(t, st, append([]string{"ls", "--json"}, store...)...)
	if first.Code != 0 || !strings.Contains(first.Stderr, "indexing it now") {
		t.Fatalf("first ls on a store never indexed:\n%s", first)
	}
	if n := strings.Count(first.Stdout, "\n"); n != len(c.Tapes) {
		t.Fatalf("first ls lists %d tapes, want %d:\n%s", n, len(c.Tapes), first)
	}
	full := filepath.Join(filepath.Dir(tapefsBin), "tapefs-full")
	var row struct {
		TapeID string `json:"tape_id"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(first.Stdout, "\n", 2)[0]), &row); err != nil || row.TapeID == "" {
		t.Fatalf("no tape id in %q: %v", first.Stdout, err)
	}

	// The front end alone, with no tapefs-full beside it or on $PATH.
	alone := filepath.Join(t.TempDir(), "tapefs")
	raw, err := os.ReadFile(tapefsBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(alone, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	lonely := Cmd{Env: append(st.Env(), "PATH=/usr/sbin:/usr/bin:/sbin:/bin")}
	for _, args := range [][]string{
		{"ls", "--json"},
		{"ls", "--limit", "3", "--sort", "key"},
		{"search", "tools"},
		{"show", "--json", row.TapeID},
	} {
		args := append(args, store...)
		got := lonely.exe(t, alone, args...)
		want := Cmd{Env: st.Env()}.exe(t, full, args...)
		if got.Code != 0 || want.Code != 0 {
			t.Errorf("%v: front end alone:\n%s\ntapefs-full:\n%s", args, got, want)
			continue
		}
		if got.Stdout != want.Stdout {
			t.Errorf("%v: the front end prints\n%s\ntapefs-full prints\n%s", args, got.Stdout, want.Stdout)
		}
	}
	for _, args := range [][]string{
		{"mount", t.TempDir()},
		{"status"},
		{"--help"},
		{"ls", "--backend", st.URL(), "--meta", filepath.Join(t.TempDir(), "new.db")},
	} {
		r := lonely.exe(t, alone, args...)
		msg := strings.TrimSpace(r.Stderr)
		if r.Code != 1 || !strings.Contains(msg, "tapefs-full") || !strings.Contains(msg, "make install") || strings.Contains(msg, "\n") {
			t.Errorf("%v without tapefs-full: want exit 1 and one line naming tapefs-full and the fix:\n%s", args, r)
		}
	}

	// Help comes from tapefs-full: every command.
	help := run(t, tapefsBin, "--help")
	for _, cmd := range []string{"mount", "unmount", "ls", "search", "show", "status", "refresh", "import", "reindex"} {
		if !strings.Contains(help, "\n  "+cmd+" ") {
			t.Errorf("tapefs --help does not list %s:\n%s", cmd, help)
		}
	}

	// A config file: another command's table is that command's business;
	// a top-level setting of another command is valid, and tapefs-full runs
	// the query; a setting that is no flag at all is refused by name.
	conf := func(body string) string {
		p := filepath.Join(t.TempDir(), "config.toml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	table := conf("[mount]\nrefresh-interval = \"30s\"\n[ls]\nlimit = 2\n")
	if r := lonely.exe(t, alone, append([]string{"ls", "--json", "--config", table}, store...)...); r.Code != 0 || strings.Count(r.Stdout, "\n") != 2 {
		t.Errorf("ls with a [mount] table and [ls] limit = 2, front end alone: want 2 lines:\n%s", r)
	}
	top := conf("cache-max-size = \"1GiB\"\n")
	if r := tapefs(t, st, append([]string{"ls", "--json", "--config", top}, store...)...); r.Code != 0 || r.Stdout != first.Stdout {
		t.Errorf("ls with a top-level mount setting: want the same listing:\n%s", r)
	}
	bogus := conf("cache-max-sise = \"1GiB\"\n")
	if r := tapefs(t, st, append([]string{"ls", "--config", bogus}, store...)...); r.Code == 0 || !strings.Contains(r.Stderr, `unknown setting "cache-max-sise"`) {
		t.Errorf("ls with a misspelt setting: want it refused by name:\n%s", r)
	}
}
