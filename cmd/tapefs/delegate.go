//go:build tapefs_lite

package main

// The query front end (built with -tags tapefs_lite, installed as tapefs).
//
// A Go program runs the init of every package it links before main. The
// complete program links the S3, GCS and Azure SDKs (and gRPC, protobuf and
// OpenTelemetry through them): about 30 ms of package init at every start,
// most of the 50 ms a query on a 100,000-tape sidecar may take. This build
// links only the sidecar and parses only ls, search and show. It execs the
// complete program, tapefs-full, with the same arguments for everything
// else: the other commands, --help, a query on a store never indexed (the
// store must be read), and a config file whose top level holds a setting of
// another command (only tapefs-full knows every flag).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// fullProgram is the name of the complete program beside this one.
const fullProgram = "tapefs-full"

// CLI is the part of the command line this front end answers.
type CLI struct {
	Globals
	QueryCommands
}

// handOff execs tapefs-full unless args run a query command.
func handOff(args []string) {
	if isQuery(args) {
		return
	}
	err := delegate()
	fmt.Fprintf(os.Stderr, "tapefs: %v\n", err)
	os.Exit(1)
}

// isQuery says whether the first command word of args is ls, search or
// show. Before it there can only be global flags; --log-level and --config
// take a value, which may be the next argument.
func isQuery(args []string) bool {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return false
		case a == "--log-level" || a == "--config":
			i++
		case strings.HasPrefix(a, "-"):
			if a == "-h" || a == "--help" {
				return false
			}
		default:
			return a == "ls" || a == "search" || a == "show"
		}
	}
	return false
}

// runsElsewhere says whether tapefs-full runs command: its table in the
// config file is checked there.
func runsElsewhere(command string) bool {
	switch command {
	case "mount", "unmount", "status", "refresh", "import", "reindex":
		return true
	}
	return false
}

// unknownSetting: a setting at the top of the config file that names no
// flag of ls, search or show may be one of another command's (the top level
// is for every command). tapefs-full knows them all: it runs the query, or
// refuses a setting that is not a flag at all.
func unknownSetting(err error) error {
	if derr := delegate(); derr != nil {
		return fmt.Errorf("%w (%v)", err, derr)
	}
	return nil
}

func indexFirst(ctx context.Context, sf StoreFlags, log *slog.Logger) error { return delegate() }

// delegate replaces this process with tapefs-full, given the same arguments,
// environment and file descriptors, so its output and exit status are the
// command's. It returns only when tapefs-full cannot be started.
func delegate() error {
	path, err := findFull()
	if err != nil {
		return err
	}
	args := append([]string{path}, os.Args[1:]...)
	err = syscall.Exec(path, args, os.Environ())
	return fmt.Errorf("cannot run %s: %w", path, err)
}

// findFull looks for tapefs-full beside this executable, then on $PATH.
func findFull() (string, error) {
	tried := "$PATH"
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		p := filepath.Join(filepath.Dir(exe), fullProgram)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
		tried = p + " or on $PATH"
	}
	p, err := exec.LookPath(fullProgram)
	if err == nil {
		return p, nil
	}
	if !errors.Is(err, exec.ErrNotFound) {
		return "", err
	}
	return "", fmt.Errorf("this command needs %s, the complete tapefs program, and it is not at %s "+
		"(install both with `make install`, or build it: go build -tags sqlite_fts5 -o %s ./cmd/tapefs)",
		fullProgram, tried, fullProgram)
}
