// Package storeurl names stores by URL without opening them: the URL of a
// file:// store in a directory, a URL with its secrets hidden for messages,
// and a named URL of a profile. It needs only the standard library, so the
// query commands can find a store's sidecar without linking (and paying the
// start-up of) the cloud SDKs behind package backend.
package storeurl

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// NamedURL is one store of a profile set: a name (for status, metrics and
// logs) and its URL.
type NamedURL struct{ Name, URL string }

// FileURL is the URL of a file:// store in dir, created on first use. It
// keeps no attribute files beside the tapes, so the directory stays a plain
// tape directory that other tools can read.
func FileURL(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return "", fmt.Errorf("cannot create the store directory %s: %w", abs, err)
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: "metadata=skip"}
	return u.String(), nil
}

// secretParams are query parameters whose values are never shown.
var secretParams = []string{"key", "secret", "token", "password", "sig", "signature", "credential"}

// Redact returns rawURL with user info and secret-looking query values
// replaced, for logs and error messages.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<unparsable URL>"
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	q := u.Query()
	changed := false
	for k := range q {
		lk := strings.ToLower(k)
		for _, s := range secretParams {
			if strings.Contains(lk, s) {
				q.Set(k, "REDACTED")
				changed = true
			}
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	// A store URL has no use for a fragment, and what follows a stray "#"
	// (a SAS token pasted after one, say) is not parsed as parameters.
	if u.Fragment != "" || u.RawFragment != "" {
		u.Fragment, u.RawFragment = "REDACTED", ""
	}
	return u.String()
}
