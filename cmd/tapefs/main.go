// Command tapefs mounts a store of MCP session recordings (tapes) as a
// directory tree, with a SQLite sidecar index, and answers queries about the
// tapes from that index.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/tapefs/tapefs/backend/compress"
)

// Globals are flags every command takes.
type Globals struct {
	LogLevel string `help:"Log level: debug, info, warn or error." default:"info" enum:"debug,info,warn,error" env:"TAPEFS_LOG_LEVEL"`
}

// StoreFlags choose a store and its sidecar.
type StoreFlags struct {
	Backend string `help:"Store URL: file:///DIR, mem://, s3://BUCKET?region=R&endpoint=URL&use_path_style=true, gs://BUCKET, azblob://CONTAINER. Default: the embedded store in $XDG_DATA_HOME/tapefs/tapes." env:"TAPEFS_BACKEND" placeholder:"URL"`
	Meta    string `help:"Sidecar index (SQLite) file. Default: one per store under $XDG_DATA_HOME/tapefs." env:"TAPEFS_META" placeholder:"FILE"`
	// Compress is shared by every command that opens the store, so that
	// mount, import and reindex agree on what they read and write.
	Compress string `help:"Transparent zstd compression in the store (seekable frames, so range reads stay cheap): off; on (objects over 1MiB); a threshold size such as 4MiB; or read (decode compressed objects, write none). A store written with compression must be opened with it." default:"off" env:"TAPEFS_COMPRESS" placeholder:"off|on|SIZE|read"`
}

// resolve applies the defaults of the store flags (see resolveStore) and
// parses the layers they ask for.
func (sf StoreFlags) resolve() (store, error) {
	st, err := resolveStore(sf.Backend, sf.Meta)
	if err != nil {
		return st, err
	}
	v := strings.TrimSpace(sf.Compress)
	switch strings.ToLower(v) {
	case "", "off":
	case "on":
		st.Layers.Compress = compress.DefaultThreshold
	case "read":
		st.Layers.Compress = compress.Off
	default:
		n, err := compress.ParseThreshold(v)
		if err != nil || n == compress.Off {
			return st, fmt.Errorf("--compress %q: want off, on, read, or a threshold size such as 4MiB", sf.Compress)
		}
		st.Layers.Compress = n
	}
	return st, nil
}

// CLI is the whole command line.
type CLI struct {
	Globals

	Mount   MountCmd   `cmd:"" help:"Mount a tape store on a directory."`
	Unmount UnmountCmd `cmd:"" help:"Upload pending writes and unmount (also cleans up a mount whose daemon died)."`
	Ls      LsCmd      `cmd:"" help:"List the indexed tapes from the sidecar."`
	Search  SearchCmd  `cmd:"" help:"Full-text search of the indexed tapes, best match first."`
	Show    ShowCmd    `cmd:"" help:"Show everything the index knows about one tape (id, id prefix, key or path)."`
	Status  StatusCmd  `cmd:"" help:"Show running mounts, pending uploads and store counters."`
	Refresh RefreshCmd `cmd:"" help:"Make a running mount pick up changes in the store now."`
	Import  ImportCmd  `cmd:"" help:"Copy a directory of tapes into a store, skipping what is already there, and index them."`
	Reindex ReindexCmd `cmd:"" help:"Rebuild the sidecar index from the store (resumable; unmount first)."`
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

func main() {
	var cli CLI
	ctx := kong.Parse(&cli,
		kong.Name("tapefs"),
		kong.Description("Mount MCP session recordings (tapes) from any store as a directory, indexed in a local SQLite sidecar."),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
	)
	log := newLogger(cli.LogLevel)
	slog.SetDefault(log)
	err := ctx.Run(&cli.Globals, log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tapefs: %v\n", err)
		os.Exit(1)
	}
}
