package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
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
}

func writeMountInfo(mi mountInfo) error {
	if err := os.MkdirAll(runDir(), 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(mi, "", "  ")
	return os.WriteFile(infoPath(mi.Mountpoint), b, 0o600)
}

func readMountInfos() []mountInfo {
	paths, _ := filepath.Glob(filepath.Join(runDir(), "*.json"))
	var out []mountInfo
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var mi mountInfo
		if json.Unmarshal(b, &mi) == nil && mi.Mountpoint != "" {
			out = append(out, mi)
		}
	}
	return out
}

func removeMountInfo(mountpoint string) {
	os.Remove(infoPath(mountpoint))
	os.Remove(socketPath(mountpoint))
}

// controlClient talks to a running mount over its unix socket.
func controlClient(mountpoint string, timeout time.Duration) *http.Client {
	sock := socketPath(mountpoint)
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}},
	}
}

// callControl sends one request to the mount's daemon and decodes the JSON
// answer into out (when out is not nil).
func callControl(mountpoint, method, path string, timeout time.Duration, out any) error {
	req, err := http.NewRequest(method, "http://tapefs"+path, nil)
	if err != nil {
		return err
	}
	resp, err := controlClient(mountpoint, timeout).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s", e.Error)
		}
		return fmt.Errorf("daemon answered %s", resp.Status)
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
