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
	"github.com/tapefs/tapefs/backend/storeurl"
)

// Globals are flags every command takes.
type Globals struct {
	LogLevel string          `help:"Log level: debug, info, warn or error." default:"info" enum:"debug,info,warn,error" env:"TAPEFS_LOG_LEVEL"`
	Config   kong.ConfigFlag `help:"Config file (TOML): the flags' settings under their names, per command in [mount], [ls], …, and named stores in [profiles]. Default: $XDG_CONFIG_HOME/tapefs/config.toml when it exists. A flag wins over its environment variable, which wins over the file." env:"TAPEFS_CONFIG" placeholder:"FILE"`
}

// StoreFlags choose a store and its sidecar.
type StoreFlags struct {
	Backend     []string          `help:"Store URL (file:///DIR, mem://, sqlite://FILE, s3://BUCKET?region=R&endpoint=URL&use_path_style=true, gs://BUCKET, azblob://CONTAINER) or the name of a profile. Repeat it for a tier of stores: reads go to the fastest healthy one and fall back to the others, writes go to all; list the authoritative store (the origin, whose listing is the tree) last. Default: the embedded store in $XDG_DATA_HOME/tapefs/tapes." env:"TAPEFS_BACKEND" sep:";" placeholder:"URL|PROFILE"`
	WritePolicy string            `help:"With several --backend: when a write, copy or delete succeeds: all (every store took it), any (one did), or primary (the first did; the others best effort). A store that missed one is repaired in the background." default:"all" enum:"all,any,primary" env:"TAPEFS_WRITE_POLICY"`
	Profile     map[string]string `help:"Name a store: NAME=URL (repeat it, or separate with ;); --backend NAME then opens it. The config file's [profiles] table does the same. In file:// URLs ~ and relative paths are expanded and the directory is created." env:"TAPEFS_PROFILE" mapsep:";" placeholder:"NAME=URL"`
	Meta        string            `help:"Sidecar index (SQLite) file. Default: one per store under $XDG_DATA_HOME/tapefs." env:"TAPEFS_META" placeholder:"FILE"`
	// Compress is shared by every command that opens the store, so that
	// mount, import and reindex agree on what they read and write.
	Compress string `help:"Transparent zstd compression in the store (seekable frames, so range reads stay cheap): off; on (objects over 1MiB); a threshold size such as 4MiB; or read (decode compressed objects, write none). A store written with compression must be opened with it." default:"off" env:"TAPEFS_COMPRESS" placeholder:"off|on|SIZE|read"`
}

// locate applies the defaults of the store flags (see resolveStore): which
// stores they name and where their sidecar is. It opens nothing.
func (sf StoreFlags) locate() (store, error) {
	urls, err := sf.backendURLs()
	if err != nil {
		return store{}, err
	}
	u := ""
	if len(urls) == 1 {
		u = urls[0].URL
	} else if len(urls) > 1 {
		u = tierURL(urls)
	}
	st, err := resolveStore(u, sf.Meta)
	if err != nil {
		return st, err
	}
	if len(urls) > 1 {
		st.Profiles = urls
		st.Redacted = tierRedacted(urls)
	} else {
		st.Profiles = []storeurl.NamedURL{{Name: "default", URL: st.URL}}
		if len(urls) == 1 {
			st.Profiles[0].Name = urls[0].Name
		}
	}
	return st, nil
}

// QueryCommands are the commands answered from the sidecar alone: the
// query front end (see delegate.go) runs them itself.
type QueryCommands struct {
	Ls     LsCmd     `cmd:"" help:"List the indexed tapes from the sidecar."`
	Search SearchCmd `cmd:"" help:"Full-text search of the indexed tapes, best match first."`
	Show   ShowCmd   `cmd:"" help:"Show everything the index knows about one tape (id, id prefix, key or path)."`
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// backendURLs are the --backend values as URLs, named: a profile's name,
// or "default" for a URL given as it is (store1, store2, … in a tier).
// file:// URLs get ~ and relative paths expanded, and their directory made.
func (sf StoreFlags) backendURLs() ([]storeurl.NamedURL, error) {
	var out []storeurl.NamedURL
	for i, b := range sf.Backend {
		b = strings.TrimSpace(b)
		if b == "" {
			continue
		}
		name := "default"
		if len(sf.Backend) > 1 {
			name = fmt.Sprintf("store%d", i+1)
		}
		profile := !strings.Contains(b, "://")
		if profile {
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
				return nil, fmt.Errorf("--backend %q is neither a store URL nor a profile (%s; define one with --profile NAME=URL or in the config file's [profiles])", b, known)
			}
			name, b = sf.Backend[i], u
		}
		// A profile's directory is made on first use; a URL given as it is
		// must name one that exists (a typo must not create a new store).
		u, err := expandFileURL(b, profile)
		if err != nil {
			return nil, err
		}
		out = append(out, storeurl.NamedURL{Name: name, URL: u})
	}
	return out, nil
}

// tierURL identifies a tier (for its default sidecar): its URLs in order.
func tierURL(urls []storeurl.NamedURL) string {
	parts := make([]string, len(urls))
	for i, u := range urls {
		parts[i] = u.URL
	}
	return "tier:" + strings.Join(parts, " ")
}

// tierRedacted names a tier in messages: NAME=URL + … with secrets hidden.
func tierRedacted(urls []storeurl.NamedURL) string {
	parts := make([]string, len(urls))
	for i, u := range urls {
		parts[i] = u.Name + "=" + storeurl.Redact(u.URL)
	}
	return strings.Join(parts, " + ")
}

// expandFileURL expands ~ and a relative path in a file:// URL and, with
// create, makes the directory (0700); other URLs are returned as they are.
func expandFileURL(raw string, create bool) (string, error) {
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
	if create {
		if err := os.MkdirAll(path, 0o700); err != nil {
			return "", fmt.Errorf("cannot create the store directory %s: %w", path, err)
		}
	}
	out := "file://" + filepath.ToSlash(path)
	if query != "" {
		out += "?" + query
	}
	return out, nil
}

func main() {
	handOff(os.Args[1:])
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
