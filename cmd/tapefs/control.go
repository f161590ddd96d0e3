package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// mountInfo is what a running mount leaves in the run directory, so other
// tapefs commands can find it.
type mountInfo struct {
	Mountpoint string    `json:"mountpoint"`
	PID        int       `json:"pid"`
	Backend    string    `json:"backend"` // redacted
	Meta       string    `json:"meta"`
	Socket     string    `json:"socket"`
	Log        string    `json:"log,omitempty"`
	Started    time.Time `json:"started"`
	// Indexing: the mount serves while it still indexes the store's
	// tapes; queries of its sidecar wait until this is false.
	Indexing bool `json:"indexing,omitempty"`
}

func writeMountInfo(mi mountInfo) error {
	if err := os.MkdirAll(runDir(), 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(mi, "", "  ")
	// Whole or not at all: a reader never sees a half-written info.
	path := infoPath(mi.Mountpoint)
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// readMountInfo is the info the mount at mountpoint left, if any.
func readMountInfo(mountpoint string) (mountInfo, bool) {
	return readMountInfoFile(infoPath(mountpoint))
}

func readMountInfos() []mountInfo {
	paths, _ := filepath.Glob(filepath.Join(runDir(), "*.json"))
	var out []mountInfo
	for _, p := range paths {
		if mi, ok := readMountInfoFile(p); ok {
			out = append(out, mi)
		}
	}
	return out
}

func readMountInfoFile(path string) (mountInfo, bool) {
	var mi mountInfo
	b, err := os.ReadFile(path)
	ok := err == nil && json.Unmarshal(b, &mi) == nil && mi.Mountpoint != ""
	return mi, ok
}

func removeMountInfo(mountpoint string) {
	os.Remove(infoPath(mountpoint))
	os.Remove(socketPath(mountpoint))
}
