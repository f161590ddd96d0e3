//go:build tapefs_lite

package main

import "testing"

func TestIsQuery(t *testing.T) {
	tests := []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"ls"}, true},
		{[]string{"search", "timeout", "--limit", "5"}, true},
		{[]string{"show", "38f0"}, true},
		{[]string{"--log-level", "debug", "ls"}, true},
		{[]string{"--log-level=debug", "--config", "c.toml", "search", "x"}, true},
		{[]string{"--config", "ls"}, false}, // "ls" is the config file's name
		{[]string{"mount", "/mnt/tapes"}, false},
		{[]string{"import", "ls"}, false},
		{[]string{"--help"}, false},
		{[]string{"-h", "ls"}, false},
		{[]string{"ls", "--help"}, true},
		{[]string{"--", "ls"}, false},
		{[]string{"lsx"}, false},
	}
	for _, tc := range tests {
		if got := isQuery(tc.args); got != tc.want {
			t.Errorf("isQuery(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}
