package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tapefs/tapefs/backend"
	"github.com/tapefs/tapefs/indexer"
	"github.com/tapefs/tapefs/meta"
)

// LsCmd lists indexed tapes.
type LsCmd struct {
	StoreFlags
	JSON  bool `help:"One JSON object per line."`
	Limit int  `help:"At most this many tapes (0: all)." default:"0"`
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

// openIndex opens the store's sidecar for queries. A store never indexed is
// indexed first, from the store.
func openIndex(ctx context.Context, sf StoreFlags, log *slog.Logger) (*meta.Sidecar, error) {
	st, err := resolveStore(sf.Backend, sf.Meta)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(st.Meta); err != nil {
		fmt.Fprintf(os.Stderr, "tapefs: %s has no index yet; indexing it now\n", st.Redacted)
		bucket, err := backend.Open(ctx, backend.NewMux(), st.URL)
		if err != nil {
			return nil, err
		}
		defer bucket.Close()
		sc, err := openSidecar(st.Meta, log)
		if err != nil {
			return nil, err
		}
		_, err = indexer.New(bucket, sc, indexer.Options{Logger: log}).Reconcile(ctx)
		sc.Close()
		if err != nil {
			return nil, fmt.Errorf("indexing %s: %w", st.Redacted, err)
		}
	}
	sc, err := meta.OpenReadOnly(st.Meta)
	if err != nil {
		return nil, fmt.Errorf("cannot open the sidecar %s: %w", st.Meta, err)
	}
	return sc, nil
}

func (c *LsCmd) Run(g *Globals, log *slog.Logger) error {
	ctx := context.Background()
	sc, err := openIndex(ctx, c.StoreFlags, log)
	if err != nil {
		return err
	}
	defer sc.Close()
	rows, err := sc.ListTapes(ctx, meta.TapeFilter{Limit: c.Limit})
	if err != nil {
		return err
	}
	return printTapes(rows, c.JSON)
}

func printTapes(rows []meta.TapeRow, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetEscapeHTML(false)
		for _, r := range rows {
			if err := enc.Encode(toJSON(r)); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TAPE\tCREATED\tSTATUS\tFRAMES\tERRORS\tSIZE\tTAGS\tNAME\tKEY")
	for _, r := range rows {
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", id, created, status, r.FrameCount, r.ErrorCount,
			humanSize(r.Size), strings.Join(r.Tags, ","), r.Name, r.Key)
	}
	return tw.Flush()
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
