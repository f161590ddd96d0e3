//go:build !tapefs_lite

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tapefs/tapefs/importer"
	"github.com/tapefs/tapefs/meta"
)

// ReindexCmd rebuilds a store's sidecar from the store.
type ReindexCmd struct {
	StoreFlags
	Workers int  `help:"Objects read in parallel (each mostly waits on the store)." default:"32" env:"TAPEFS_WORKERS"`
	Restart bool `help:"Throw away an interrupted rebuild (SIDECAR.reindex) instead of resuming it." env:"TAPEFS_REINDEX_RESTART"`
	ProgressFlag
}

func (c *ReindexCmd) Run(g *Globals, log *slog.Logger) error {
	return c.run(g, os.Stdout)
}

func (c *ReindexCmd) run(g *Globals, out io.Writer) error {
	st, err := c.StoreFlags.resolve()
	if err != nil {
		return err
	}
	if isMemStore(st) {
		return fmt.Errorf("%s is a memory store, which lives only inside the process that mounts it: there is nothing to reindex from here", st.Redacted)
	}
	if err := refuseIfMounted(st); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bucket, err := openStore(ctx, st)
	if err != nil {
		return err
	}
	defer bucket.Close()

	var done, total atomic.Int64
	p := newProgress(c.Progress, "reindex", func() progressState {
		if total.Load() == 0 {
			return progressState{Phase: "listing the store", Done: done.Load(), Unit: "keys"}
		}
		return progressState{Phase: "indexing", Done: done.Load(), Total: total.Load(), Unit: "tapes"}
	})
	log := progressLogger(g.LogLevel, p)
	tmp := st.Meta + importer.BuildSuffix
	if _, err := os.Stat(tmp); err == nil && !c.Restart {
		p.Printf(out, "resuming the interrupted rebuild in %s (--restart starts afresh)\n", tmp)
	}
	p.Start()
	start := time.Now()
	res, err := importer.Reindex(ctx, bucket, st.Meta, importer.ReindexOptions{
		Workers: c.Workers, Logger: log, Name: st.Redacted, Restart: c.Restart,
		Progress: func(d, t int) { done.Store(int64(d)); total.Store(int64(t)) },
	})
	p.Stop()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("reindex interrupted after %s; the sidecar %s is unchanged, and the work done is kept in %s: run tapefs reindex again to resume",
				time.Since(start).Round(time.Second), st.Meta, tmp)
		}
		if importer.NoSpace(err) {
			return fmt.Errorf("reindex of %s: the disk of %s is full (%v): free some space, then run tapefs reindex again to resume", st.Redacted, tmp, err)
		}
		return fmt.Errorf("reindex of %s: %w (the sidecar %s is unchanged; run tapefs reindex again to resume)", st.Redacted, err, st.Meta)
	}
	fmt.Fprintf(out, "rebuilt the sidecar %s from %s in %s: %d key(s) listed, %d tape(s) read this run",
		st.Meta, st.Redacted, time.Since(start).Round(time.Millisecond), res.Listed, res.TapesIndexed)
	if sc, err := meta.OpenReadOnly(st.Meta); err == nil {
		if s, err := sc.Stats(ctx); err == nil {
			fmt.Fprintf(out, "; the index holds %d tape(s) (%d invalid), %d key(s) not served", s.Tapes, s.InvalidTapes, s.Skipped)
		}
		sc.Close()
	}
	fmt.Fprintln(out)
	return nil
}

// refuseIfMounted fails when a running mount holds the sidecar open: its
// daemon would go on writing to the file that the rebuild replaces.
func refuseIfMounted(st storeStack) error {
	onSidecar, _ := mountsOf(st)
	var live []string
	for _, mi := range onSidecar {
		err := callControl(mi.Mountpoint, "GET", "/status", 3*time.Second, nil)
		if err != nil && isDialErr(err) {
			continue // a daemon that is gone left its entry behind
		}
		live = append(live, mi.Mountpoint)
	}
	if len(live) == 0 {
		return nil
	}
	return fmt.Errorf("the sidecar %s is in use by the mount at %s (its daemon holds it open): unmount first (tapefs unmount %s), run tapefs reindex again, then mount again; to pick up changes in the store without unmounting, run tapefs refresh %s",
		st.Meta, strings.Join(live, ", "), live[0], live[0])
}
