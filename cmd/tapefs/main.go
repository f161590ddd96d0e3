// Command tapefs mounts a store of MCP session recordings (tapes) as a
// directory tree, with a SQLite sidecar index, and answers queries about the
// tapes from that index.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/tapefs/tapefs/backend/compress"
)

// Globals are flags every command takes.
type Globals struct {
	LogLevel string          `help:"Log level: debug, info, warn or error." default:"info" enum:"debug,info,warn,error" env:"TAPEFS_LOG_LEVEL"`
	Config   kong.ConfigFlag `help:"Config file (TOML): the flags' settings under their names, per command in [mount], [ls], …, and named stores in [profiles]. Default: $XDG_CONFIG_HOME/tapefs/config.toml when it exists. A flag wins over its environment variable, which wins over the file." env:"TAPEFS_CONFIG" placeholder:"FILE"`
}

// StoreFlags choose a store and its sidecar.
type StoreFlags struct {
	Backend string            `help:"Store URL (file:///DIR, mem://, sqlite://FILE, s3://BUCKET?region=R&endpoint=URL&use_path_style=true, gs://BUCKET, azblob://CONTAINER) or the name of a profile. Default: the embedded store in $XDG_DATA_HOME/tapefs/tapes." env:"TAPEFS_BACKEND" placeholder:"URL|PROFILE"`
	Profile map[string]string `help:"Name a store: NAME=URL (repeat it, or separate with ;); --backend NAME then opens it. The config file's [profiles] table does the same. In file:// URLs ~ and relative paths are expanded and the directory is created." env:"TAPEFS_PROFILE" mapsep:";" placeholder:"NAME=URL"`
	Meta    string            `help:"Sidecar index (SQLite) file. Default: one per store under $XDG_DATA_HOME/tapefs." env:"TAPEFS_META" placeholder:"FILE"`
	// Compress is shared by every command that opens the store, so that
	// mount, import and reindex agree on what they read and write.
	Compress string `help:"Transparent zstd compression in the store (seekable frames, so range reads stay cheap): off; on (objects over 1MiB); a threshold size such as 4MiB; or read (decode compressed objects, write none). A store written with compression must be opened with it." default:"off" env:"TAPEFS_COMPRESS" placeholder:"off|on|SIZE|read"`
}

// resolve applies the defaults of the store flags (see resolveStore) and
// parses the layers they ask for.
func (sf StoreFlags) resolve() (store, error) {
	u, err := sf.backendURL()
	if err != nil {
		return store{}, err
	}
	st, err := resolveStore(u, sf.Meta)
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

// backendURL is --backend as a URL: a profile's, or the flag itself;
// file:// URLs get ~ and relative paths expanded, and their directory made.
func (sf StoreFlags) backendURL() (string, error) {
	b := strings.TrimSpace(sf.Backend)
	if b == "" {
		return "", nil
	}
	if !strings.Contains(b, "://") {
		u, ok := sf.Profile[b]
		if !ok {
			names := make([]string, 0, len(sf.Profile))
			for n := range sf.Profile {
				names = append(names, n)
			}
			sort.Strings(names)
			known := "none are defined"
			if len(names) > 0 {
				known = "known profiles: " + strings.Join(names, ", ")
			}
			return "", fmt.Errorf("--backend %q is neither a store URL nor a profile (%s; define one with --profile NAME=URL or in the config file's [profiles])", b, known)
		}
		b = u
	}
	return expandFileURL(b)
}

// expandFileURL expands ~ and a relative path in a file:// URL and creates
// the directory (0700); other URLs are returned as they are.
func expandFileURL(raw string) (string, error) {
	rest, ok := strings.CutPrefix(raw, "file://")
	if !ok {
		return raw, nil
	}
	path, query, _ := strings.Cut(rest, "?")
	if path == "~" || strings.HasPrefix(path, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("%s: cannot expand ~: %w", raw, err)
		}
		path = filepath.Join(home, path[1:])
	}
	if path == "" || !filepath.IsAbs(path) {
		abs, err := filepath.Abs(path)
		if err != nil {
			return "", err
		}
		path = abs
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return "", fmt.Errorf("cannot create the store directory %s: %w", path, err)
	}
	out := "file://" + filepath.ToSlash(path)
	if query != "" {
		out += "?" + query
	}
	return out, nil
}

func main() {
	var cli CLI
	ctx := kong.Parse(&cli,
		kong.Name("tapefs"),
		kong.Description("Mount MCP session recordings (tapes) from any store as a directory, indexed in a local SQLite sidecar."),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Configuration(configLoader, defaultConfigPath()),
	)
	log := newLogger(cli.LogLevel)
	slog.SetDefault(log)
	err := ctx.Run(&cli.Globals, log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tapefs: %v\n", err)
		os.Exit(1)
	}
}
