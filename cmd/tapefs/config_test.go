//go:build !tapefs_lite

package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
)

// parseWith parses args as the tapefs command line with the config file
// holding config (none when ""), after setting env.
func parseWith(t *testing.T, config string, env map[string]string, args ...string) (*CLI, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	path := filepath.Join(t.TempDir(), "config.toml")
	if config != "" {
		if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var cli CLI
	k, err := kong.New(&cli, kong.Name("tapefs"), kong.Configuration(configLoader, path),
		kong.Exit(func(int) { t.Fatal("kong exited") }))
	if err != nil {
		return nil, err
	}
	_, err = k.Parse(args)
	return &cli, err
}

func TestConfigPrecedence(t *testing.T) {
	const config = `
refresh-interval = "5m"
compress = "on"
[mount]
attr_timeout = "3s"
[profiles]
fast = "file:///tmp/fast"
`
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		refresh time.Duration
		attr    time.Duration
		comp    string
	}{
		{"file over default", nil, []string{"mount", "/mnt"}, 5 * time.Minute, 3 * time.Second, "on"},
		{"env over file", map[string]string{"TAPEFS_REFRESH_INTERVAL": "7m", "TAPEFS_COMPRESS": "off"}, []string{"mount", "/mnt"}, 7 * time.Minute, 3 * time.Second, "off"},
		{"flag over env and file", map[string]string{"TAPEFS_REFRESH_INTERVAL": "7m"}, []string{"mount", "/mnt", "--refresh-interval", "9m", "--attr-timeout", "1s", "--compress", "read"}, 9 * time.Minute, time.Second, "read"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cli, err := parseWith(t, config, tc.env, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			m := cli.Mount
			if m.RefreshInterval != tc.refresh || m.AttrTimeout != tc.attr || m.Compress != tc.comp {
				t.Errorf("refresh %s, attr %s, compress %q; want %s, %s, %q", m.RefreshInterval, m.AttrTimeout, m.Compress, tc.refresh, tc.attr, tc.comp)
			}
			if m.Profile["fast"] != "file:///tmp/fast" {
				t.Errorf("profiles = %v", m.Profile)
			}
		})
	}
	// Without a config file, the defaults.
	cli, err := parseWith(t, "", nil, "mount", "/mnt")
	if err != nil {
		t.Fatal(err)
	}
	if cli.Mount.RefreshInterval != time.Minute || cli.Mount.Compress != "off" {
		t.Errorf("defaults: refresh %s, compress %q", cli.Mount.RefreshInterval, cli.Mount.Compress)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ config, want string }{
		{"bogus = 1\n", `unknown setting "bogus"`},
		{"[mount]\nno_such = 1\n", `unknown setting "no_such" in [mount]`},
		{"backend = \n", "not a valid TOML config file"},
		{"profiles = \"x\"\n", "[profiles] must be a table"},
		{"[profiles]\nfast = 3\n", "want a store URL in quotes"},
	}
	for _, tc := range tests {
		_, err := parseWith(t, tc.config, nil, "ls")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %q: err = %v, want %q", tc.config, err, tc.want)
		}
	}
}

func TestBackendProfiles(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	wd := t.TempDir()
	t.Chdir(wd)
	sf := StoreFlags{Profile: map[string]string{
		"home": "file://~/tapes?metadata=skip", "rel": "file://sub/dir", "team": "s3://b?region=x",
	}}
	tests := []struct{ backend, want, wantErr string }{
		{"home", "file://" + filepath.Join(home, "tapes") + "?metadata=skip", ""},
		{"rel", "file://" + filepath.Join(wd, "sub/dir"), ""},
		{"team", "s3://b?region=x", ""},
		{"file://~/direct", "file://" + filepath.Join(home, "direct"), ""}, // expanded, not created
		{"nope", "", "known profiles: home, rel, team"},
	}
	for _, tc := range tests {
		sf.Backend = []string{tc.backend}
		urls, err := sf.backendURLs()
		got := ""
		if len(urls) == 1 {
			got = urls[0].URL
		}
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want %q", tc.backend, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.backend, got, err, tc.want)
		}
	}
	for _, dir := range []string{filepath.Join(home, "tapes"), filepath.Join(wd, "sub/dir")} {
		if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v (want a 0700 directory)", dir, err)
		}
	}
	if _, err := os.Stat(filepath.Join(home, "direct")); err == nil {
		t.Errorf("a --backend URL given as it is created its directory: a typo would make a new store")
	}
	// Several --backend: a tier, named by profile or by position.
	sf.Backend = []string{"home", "file:///srv/x"}
	urls, err := sf.backendURLs()
	if err != nil || len(urls) != 2 || urls[0].Name != "home" || urls[1].Name != "store2" {
		t.Errorf("tier: %+v, %v", urls, err)
	}
}

// FuzzConfig: any config file is either refused with an error or applied;
// parsing never panics.
func FuzzConfig(f *testing.F) {
	for _, s := range []string{"", "backend = \"x\"\n", "[profiles]\na = \"mem://\"\n", "[mount]\nattr_timeout = \"1s\"\n",
		"compress = 3\n", "bogus = [1, 2]\n", "[ls]\njson = true\nlimit = 5\n", "a = {b = 1}\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, config string) {
		path := filepath.Join(t.TempDir(), "c.toml")
		if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		var cli CLI
		k, err := kong.New(&cli, kong.Name("tapefs"), kong.Configuration(configLoader, path),
			kong.Exit(func(int) {}), kong.Writers(io.Discard, io.Discard))
		if err != nil {
			return // refused at load: fine
		}
		k.Parse([]string{"ls"})
		k.Parse([]string{"mount", "/mnt"})
	})
}
