//go:build !tapefs_lite

package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/tapefs/tapefs/cache"
	"github.com/tapefs/tapefs/fsnode"
	"github.com/tapefs/tapefs/indexer"
	"github.com/tapefs/tapefs/meta"
)

// StatusCmd shows running mounts.
type StatusCmd struct {
	JSON bool `help:"One JSON object per mount."`
}

func (c *StatusCmd) Run(g *Globals, log *slog.Logger) error {
	infos := readMountInfos()
	enc := json.NewEncoder(os.Stdout)
	if len(infos) == 0 && !c.JSON {
		fmt.Println("no tapefs mounts")
	}
	for _, mi := range infos {
		var rep statusReport
		err := callControl(mi.Mountpoint, "GET", "/status", 5*time.Second, &rep)
		if err != nil {
			if c.JSON {
				enc.Encode(map[string]any{"mountpoint": mi.Mountpoint, "pid": mi.PID, "backend": mi.Backend, "alive": false,
					"error": "daemon not answering: " + err.Error()})
			} else {
				fmt.Printf("%s: daemon (pid %d) not answering; clean up with: tapefs unmount %s\n", mi.Mountpoint, mi.PID, mi.Mountpoint)
			}
			continue
		}
		if c.JSON {
			enc.Encode(struct {
				statusReport
				Alive bool `json:"alive"`
			}{rep, true})
			continue
		}
		fmt.Printf("%s\n  store:    %s\n  sidecar:  %s\n  pid:      %d\n", rep.Mountpoint, rep.Backend, rep.Meta, rep.PID)
		fmt.Printf("  index:    %d objects, %d tapes (%d invalid), %d keys skipped\n", rep.Index.Objects, rep.Index.Tapes, rep.Index.InvalidTapes, rep.Index.Skipped)
		if ix := rep.Indexing; ix != nil {
			fmt.Printf("  indexing: %d of %d tapes read (views, xattrs and queries wait for it)\n", ix.Read, ix.Total)
		}
		if rep.IndexErr != "" {
			fmt.Printf("  indexing failed: %s (tapefs refresh %s indexes the rest)\n", rep.IndexErr, rep.Mountpoint)
		}
		fmt.Printf("  reads:    %d requests, %d bytes from the store\n", rep.Store.StoreReads, rep.Store.StoreReadBytes)
		fmt.Printf("  uploads:  %d (%d bytes), %d failed attempts\n", rep.Store.Uploads, rep.Store.UploadBytes, rep.Store.UploadErrors)
		if c := rep.Cache; c != nil {
			fmt.Printf("  cache:    %d of %d bytes in %s, %d hits, %d misses, %d evictions\n", c.Bytes, c.MaxBytes, c.Dir, c.Hits, c.Misses, c.Evictions)
			if c.Damaged > 0 {
				fmt.Printf("            %d damaged chunk files dropped and read from the store again\n", c.Damaged)
			}
			if c.LowSpace > 0 {
				fmt.Printf("            %d chunks not cached: the disk had less than --cache-min-free (%d bytes) free\n", c.LowSpace, c.MinFree)
			}
		}
		if !rep.LastRefresh.IsZero() {
			fmt.Printf("  refresh:  %s", rep.LastRefresh.Format(time.RFC3339))
			if rep.RefreshErr != "" {
				fmt.Printf(" (failed: %s)", rep.RefreshErr)
			}
			fmt.Println()
		}
		fmt.Printf("  pending:  %d uploads\n", len(rep.Pending))
		for _, p := range rep.Pending {
			fmt.Printf("    %s  %s\n", p.Key, p.Error)
		}
		if len(rep.Profiles) > 0 {
			fmt.Printf("  stores:\n")
		}
		for _, p := range rep.Profiles {
			role, state := "", "reachable"
			if p.Origin {
				role = " (origin)"
			}
			if !p.Reachable {
				state = "unreachable"
			}
			fmt.Printf("    %s%s: %s, latency %.1f ms, %d write-backs and %d repairs pending", p.Name, role, state,
				p.LatencyMS, p.PendingWriteBacks, p.PendingRepairs)
			if p.DroppedWriteBacks > 0 {
				fmt.Printf(", %d write-backs dropped", p.DroppedWriteBacks)
			}
			if p.LastError != "" {
				fmt.Printf("; last error: %s", p.LastError)
			}
			fmt.Println()
		}
	}
	return nil
}

// RefreshCmd asks a running mount to list the store again now.
type RefreshCmd struct {
	Mountpoint string `arg:"" help:"The mounted directory." type:"path"`
	JSON       bool   `help:"Print the result as JSON, with every key added, changed or removed."`
}

func (c *RefreshCmd) Run(g *Globals, log *slog.Logger) error {
	var raw json.RawMessage
	if err := callControl(c.Mountpoint, "POST", "/refresh", 10*time.Minute, &raw); err != nil {
		return fmt.Errorf("refresh of %s: %w", c.Mountpoint, err)
	}
	if c.JSON {
		fmt.Println(string(raw))
		return nil
	}
	var res indexer.Result
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("refresh of %s: the daemon's answer: %w", c.Mountpoint, err)
	}
	fmt.Printf("refreshed %s in %s: %d keys in the store, %d added, %d changed, %d removed; %d tapes indexed (%d invalid)\n",
		c.Mountpoint, res.Duration.Round(time.Millisecond), res.Listed, res.Added, res.Changed, res.Removed, res.TapesIndexed, res.InvalidTapes)
	return nil
}

// statusReport is what `tapefs status --json` prints per mount.
type statusReport struct {
	mountInfo
	Store       fsnode.Snapshot        `json:"store_counters"`
	Pending     []fsnode.PendingUpload `json:"pending_uploads"`
	Index       meta.Stats             `json:"index"`
	LastRefresh time.Time              `json:"last_refresh,omitempty"`
	RefreshErr  string                 `json:"last_refresh_error,omitempty"`
	Profiles    []profileStatus        `json:"profiles,omitempty"`
	Cache       *cache.Stats           `json:"cache,omitempty"`    // nil: no read cache
	Indexing    *indexProgress         `json:"indexing,omitempty"` // nil: the tapes are indexed
	// IndexErr: the first indexing failed before every tape was indexed;
	// cleared by the next refresh that succeeds.
	IndexErr string `json:"index_error,omitempty"`
}

// indexProgress is how far the first indexing of a mount's store got.
type indexProgress struct {
	Read  int64 `json:"tapes_read"`
	Total int64 `json:"tapes_to_read"` // 0 while the count is not known yet
}

// profileStatus is one store of a tier, as tapefs status shows it.
type profileStatus struct {
	Name              string  `json:"name"`
	Origin            bool    `json:"origin"`
	Reachable         bool    `json:"reachable"`
	LatencyMS         float64 `json:"latency_ms"`
	PendingWriteBacks int64   `json:"pending_write_backs"`
	DroppedWriteBacks int64   `json:"dropped_write_backs"`
	PendingRepairs    int     `json:"pending_repairs"`
	LastError         string  `json:"last_error,omitempty"`
}
