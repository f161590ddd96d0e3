package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/alecthomas/kong"
)

// The config file (TOML) holds the same settings as the flags, under the
// flags' names (with - or _): at the top level for every command, or in a
// table named after one command ([mount], [ls], …) for it alone. The
// [profiles] table names stores for --backend. A flag on the command line
// wins over its environment variable, which wins over the file, which wins
// over the default.
//
//	backend = "team"
//	compress = "on"
//	[profiles]
//	cache = "file://~/.cache/tapefs/tapes"
//	team  = "s3://tapes?region=eu-west-1"
//	[mount]
//	refresh-interval = "30s"

// defaultConfigPath is read when it exists and no --config is given.
func defaultConfigPath() string {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "tapefs", "config.toml")
}

// configLoader is kong's loader for the config file.
func configLoader(r io.Reader) (kong.Resolver, error) {
	doc := map[string]any{}
	if _, err := toml.NewDecoder(r).Decode(&doc); err != nil {
		return nil, fmt.Errorf("not a valid TOML config file: %w", err)
	}
	return &configResolver{doc: doc}, nil
}

// configResolver answers kong for the flags the command line left unset.
type configResolver struct{ doc map[string]any }

// profilesKey is the table of named stores; it feeds the --profile flags.
const profilesKey = "profiles"

// key spells a flag name as a config key: the name with - or _.
func lookup(table map[string]any, name string) (any, bool) {
	if v, ok := table[name]; ok {
		return v, true
	}
	v, ok := table[strings.ReplaceAll(name, "-", "_")]
	return v, ok
}

func (c *configResolver) Resolve(ctx *kong.Context, parent *kong.Path, flag *kong.Flag) (any, error) {
	for _, env := range flag.Envs {
		if _, set := os.LookupEnv(env); set {
			return nil, nil // the environment wins over the file
		}
	}
	tables := []map[string]any{}
	if parent.Command != nil {
		if t, ok := c.doc[parent.Command.Name].(map[string]any); ok {
			tables = append(tables, t)
		}
	}
	tables = append(tables, c.doc)
	for _, t := range tables {
		if flag.Name == "profile" {
			if p, ok := t[profilesKey].(map[string]any); ok {
				return configProfiles(p)
			}
			continue
		}
		if v, ok := lookup(t, flag.Name); ok {
			return configValue(flag.Name, v)
		}
	}
	return nil, nil
}

// configProfiles turns the [profiles] table into --profile's NAME=URL;….
func configProfiles(t map[string]any) (any, error) {
	names := make([]string, 0, len(t))
	for name := range t {
		names = append(names, name)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, name := range names {
		u, ok := t[name].(string)
		if !ok {
			return nil, fmt.Errorf("[profiles] %s: want a store URL in quotes", name)
		}
		parts = append(parts, name+"="+u)
	}
	return strings.Join(parts, ";"), nil
}

// configValue gives kong a setting as a flag value: scalars as text, an
// array as a comma-separated list.
func configValue(name string, v any) (any, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool, int64, float64:
		return fmt.Sprint(x), nil
	case []any:
		items := make([]string, 0, len(x))
		for _, it := range x {
			items = append(items, fmt.Sprint(it))
		}
		return strings.Join(items, ","), nil
	}
	return nil, fmt.Errorf("setting %q: want a string, number, boolean or list, not %T", name, v)
}

// Validate refuses settings that name no flag, listing the known ones.
func (c *configResolver) Validate(app *kong.Application) error {
	known := map[string]bool{profilesKey: true}
	commands := map[string]map[string]bool{}
	var walk func(n *kong.Node, into map[string]bool)
	walk = func(n *kong.Node, into map[string]bool) {
		for _, f := range n.Flags {
			into[f.Name] = true
		}
		for _, ch := range n.Children {
			if ch.Type != kong.CommandNode {
				continue
			}
			if commands[ch.Name] == nil {
				commands[ch.Name] = map[string]bool{}
			}
			for k := range into {
				commands[ch.Name][k] = true
			}
			walk(ch, commands[ch.Name])
			for k := range commands[ch.Name] {
				known[k] = true // a command's flag may stand at the top level too
			}
		}
	}
	walk(app.Node, known)
	check := func(where string, t map[string]any, flags map[string]bool) error {
		for k := range t {
			name := strings.ReplaceAll(k, "_", "-")
			if !flags[name] && !flags[k] {
				names := make([]string, 0, len(flags))
				for f := range flags {
					if f != "help" {
						names = append(names, f)
					}
				}
				sort.Strings(names)
				return fmt.Errorf("config file: unknown setting %q%s; known settings: %s", k, where, strings.Join(names, ", "))
			}
		}
		return nil
	}
	for k, v := range c.doc {
		if _, ok := v.(map[string]any); ok && commands[k] == nil && runsElsewhere(k) {
			continue // checked by the program that runs that command
		}
		if sub, ok := v.(map[string]any); ok && commands[k] != nil {
			if err := check(" in ["+k+"]", sub, commands[k]); err != nil {
				return err
			}
			continue
		}
		if k == profilesKey {
			if _, ok := v.(map[string]any); !ok {
				return fmt.Errorf("config file: [profiles] must be a table of NAME = \"URL\"")
			}
			continue
		}
		if err := check("", map[string]any{k: v}, known); err != nil {
			return unknownSetting(err)
		}
	}
	return nil
}
