//go:build !tapefs_lite

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

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
