//go:build !sqlite_fts5

package meta

import (
	"context"
	"errors"
	"testing"

	"github.com/tapefs/tapefs/tape"
)

// Without -tags sqlite_fts5 everything but Search works, and Search says
// why it does not.
func TestWithoutFTS(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	if s.HasFTS() {
		t.Skip("this SQLite has FTS5 without the tag")
	}
	r := qrec("a.jsonl", "name", "s", tape.StatusFinalized, qbase)
	o := put(t, s, "a.jsonl")[0]
	if err := s.PutTape(ctx, &r, TapeSource{Data: StampOf(o)}); err != nil {
		t.Fatal(err)
	}
	if err := s.RenameObject(ctx, "a.jsonl", "b.jsonl"); err != nil {
		t.Fatal(err)
	}
	if rows, err := s.ListTapes(ctx, TapeFilter{}); err != nil || len(rows) != 1 {
		t.Errorf("ListTapes: %v, %v", rows, err)
	}
	if _, err := s.Search(ctx, "name", TapeFilter{}); !errors.Is(err, ErrNoFTS) {
		t.Errorf("Search: %v, want ErrNoFTS", err)
	}
	var n int
	s.read.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE name = 'tapes_fts'`).Scan(&n)
	if n != 0 {
		t.Error("a build without FTS5 made tapes_fts")
	}
}
