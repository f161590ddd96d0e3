package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/tapefs/tapefs/meta"
)

// SearchCmd is a full-text search of the index.
type SearchCmd struct {
	StoreFlags
	Query []string `arg:"" help:"What to look for: words (all must occur), \"quoted phrases\", prefix*, OR, NOT, ( ), and COLUMN:word to look in one of name, description, tags, tools, methods, errors, client, server, key, ids. Case and accents do not matter." placeholder:"QUERY"`
	QueryFlags
	OutputFlags

	w, ew io.Writer `kong:"-"` // standard output and error; tests set them
}

func (c *SearchCmd) Run(g *Globals, log *slog.Logger) error {
	if err := c.OutputFlags.check(); err != nil {
		return err
	}
	f, err := c.QueryFlags.filter(time.Now(), true)
	if err != nil {
		return err
	}
	f.Served = c.Paths != ""
	f.Brief = !c.JSON // a table or paths: see printTapes
	query := strings.Join(c.Query, " ")
	if _, err := meta.FTSQuery(query); err != nil { // before opening anything
		return err
	}
	ctx := context.Background()
	sc, err := queryIndex(ctx, c.StoreFlags, c.OutputFlags, log)
	if err != nil {
		return err
	}
	defer func() { sc.Close() }()
	hits, err := sc.Search(ctx, query, f)
	if errors.Is(err, meta.ErrFTSStale) {
		// Written by a build without FTS5 since the index was built, or
		// never built: a read-write open builds it.
		path := sc.Path()
		fmt.Fprintf(os.Stderr, "tapefs: building the full-text index of %s (once)\n", path)
		sc.Close()
		if err = reopenReadWrite(path); err != nil {
			return fmt.Errorf("building the full-text index of %s: %w", path, err)
		}
		if sc, err = openSidecarReadOnly(path); err != nil {
			return err
		}
		hits, err = sc.Search(ctx, query, f)
	}
	if errors.Is(err, meta.ErrNoFTS) {
		return fmt.Errorf("search: built without FTS5; build with -tags sqlite_fts5 (ls and show work without it)")
	}
	if err != nil {
		return err
	}
	if len(hits) == 0 {
		hintUnknown(ctx, stderr(c.ew), sc, f)
	}
	rows := make([]meta.TapeRow, len(hits))
	scores := make([]float64, len(hits))
	for i, h := range hits {
		rows[i], scores[i] = h.TapeRow, h.Score
	}
	return printTapes(stdout(c.w), rows, scores, c.OutputFlags)
}
