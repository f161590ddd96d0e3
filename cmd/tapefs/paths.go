package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tapefs/tapefs/backend/storeurl"
)

// xdgDir returns $env, or $HOME/fallback when it is unset.
func xdgDir(env, fallback string) string {
	if d := os.Getenv(env); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "tapefs")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "/root"
	}
	return filepath.Join(home, fallback, "tapefs")
}

// dataDir holds the embedded default store and sidecars.
func dataDir() string { return xdgDir("XDG_DATA_HOME", ".local/share") }

// stateDir holds daemon logs.
func stateDir() string { return xdgDir("XDG_STATE_HOME", ".local/state") }

// cacheDir holds the read cache.
func cacheDir() string { return xdgDir("XDG_CACHE_HOME", ".cache") }

// runDir holds the control sockets of running mounts (mode 0700).
func runDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "tapefs")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("tapefs-%d", os.Getuid()))
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])[:16]
}

// store is a resolved backend URL with its sidecar.
type store struct {
	URL      string // as given, may hold secrets: never print it, use Redacted
	Redacted string
	Meta     string // sidecar path
	Embedded bool
	// Profiles are the stores to open: one, or a tier (the last is the
	// origin).
	Profiles []storeurl.NamedURL
}

// tiered says the store is a tier of several: their ETags differ for one
// object (indexer.Options.MixedETags), so reads cannot ask for one.
func (s store) tiered() bool { return len(s.Profiles) > 1 }

// resolveStore applies the defaults: no backend means the embedded file://
// store under the data directory; no --meta means a sidecar per store URL
// under the data directory.
func resolveStore(backendURL, metaPath string) (store, error) {
	s := store{URL: backendURL, Meta: metaPath}
	if backendURL == "" {
		u, err := storeurl.FileURL(filepath.Join(dataDir(), "tapes"))
		if err != nil {
			return s, err
		}
		s.URL, s.Embedded = u, true
		if s.Meta == "" {
			s.Meta = filepath.Join(dataDir(), "index.db")
		}
	}
	s.Redacted = storeurl.Redact(s.URL)
	if s.Meta == "" {
		s.Meta = filepath.Join(dataDir(), "sidecars", shortHash(s.URL)+".db")
	}
	abs, err := filepath.Abs(s.Meta)
	if err != nil {
		return s, err
	}
	s.Meta = abs
	return s, nil
}

// mountID names a mount's control files from its mountpoint.
func mountID(mountpoint string) string { return shortHash(mountpoint) }

func socketPath(mountpoint string) string {
	return filepath.Join(runDir(), mountID(mountpoint)+".sock")
}

func infoPath(mountpoint string) string {
	return filepath.Join(runDir(), mountID(mountpoint)+".json")
}

func logPath(mountpoint string) string {
	return filepath.Join(stateDir(), "logs", mountID(mountpoint)+".log")
}
