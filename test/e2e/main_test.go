// Package e2e drives a real tapefs mount with real programs (ls, cat, cmp,
// jq, grep, cp, mv, rm, mkdir, stat, dd) over every backend the project
// supports. TestMain builds the tapefs binary once; every test mounts its own
// fresh store through `tapefs mount --daemon` and unmounts it when done.
//
// The tests need root and /dev/fuse. Without them they fail, unless
// TAPEFS_E2E=skip, which skips the whole package.
//
// Environment knobs:
//
//	TAPEFS_E2E=skip            skip the package (machines without FUSE)
//	TAPEFS_E2E_BACKENDS=...    comma-separated backends for the shared test table (default file,mem,s3)
//	                           (default "file,mem"; add "s3" for the versitygw server)
//	TAPEFS_E2E_KEEP=1          keep the temporary root directory for post-mortems
//	TAPEFS_E2E_BIN=PATH        test this tapefs binary instead of building one
//	TAPEFS_VERSITYGW=PATH      versitygw binary (default: $TAPEFS_TOOLS/bin/versitygw, then $PATH)
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Set by TestMain.
var (
	tapefsBin string // the freshly built binary
	repoRoot  string // the module root
	testRoot  string // one temporary directory for everything this run creates
	toolsDir  string // where scripts/install-versitygw.sh puts its binary
)

func TestMain(m *testing.M) {
	if os.Getenv(writerHelperEnv) != "" {
		os.Exit(writerHelper(os.Stdin, os.Stdout))
	}
	if path := os.Getenv(truncateHelperEnv); path != "" {
		os.Exit(truncateHelper(path))
	}
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Getenv("TAPEFS_E2E") == "skip" {
		fmt.Println("e2e: skipped (TAPEFS_E2E=skip)")
		return 0
	}
	if err := checkMachine(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n(the end-to-end tests mount FUSE file systems: run them as root on a machine with /dev/fuse, or set TAPEFS_E2E=skip)\n", err)
		return 1
	}

	var err error
	if repoRoot, err = findRepoRoot(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	// Resolved before HOME is replaced below.
	toolsDir = os.Getenv("TAPEFS_TOOLS")
	if toolsDir == "" {
		if home, err := os.UserHomeDir(); err == nil {
			toolsDir = filepath.Join(home, ".cache", "tapefs-tools")
		}
	}

	if testRoot, err = os.MkdirTemp("", "tapefs-e2e-"); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	keep := os.Getenv("TAPEFS_E2E_KEEP") != ""
	defer func() {
		if keep {
			cleanupMounts()
			fmt.Printf("e2e: kept %s\n", testRoot)
			return
		}
		cleanupMounts()
		unmountLeftovers(testRoot)
		os.RemoveAll(testRoot)
	}()

	if tapefsBin = os.Getenv("TAPEFS_E2E_BIN"); tapefsBin == "" {
		tapefsBin = filepath.Join(testRoot, "bin", "tapefs")
		if err := buildTapefs(tapefsBin); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: building tapefs failed:\n%v\n", err)
			return 1
		}
	}

	// Everything tapefs and the tools might touch by default lives under
	// testRoot, so nothing leaks into (or is read from) the real home.
	if err := isolateEnv(filepath.Join(testRoot, "env")); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	// Programs run with a scratch working directory, never inside the repo.
	cwd := filepath.Join(testRoot, "cwd")
	if err := os.MkdirAll(cwd, 0o755); err != nil || os.Chdir(cwd) != nil {
		fmt.Fprintf(os.Stderr, "e2e: cannot use %s as the working directory\n", cwd)
		return 1
	}
	return m.Run()
}

func checkMachine() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("needs Linux, this is %s", runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (euid is %d)", os.Geteuid())
	}
	fi, err := os.Stat("/dev/fuse")
	if err != nil {
		return fmt.Errorf("/dev/fuse: %v", err)
	}
	if fi.Mode()&os.ModeCharDevice == 0 {
		return fmt.Errorf("/dev/fuse is not a character device")
	}
	for _, tool := range requiredTools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed (make test installs it)", tool)
		}
	}
	return nil
}

// requiredTools are the real programs the tests drive the mount with.
var requiredTools = []string{"ls", "cat", "cmp", "jq", "grep", "cp", "mv", "rm", "mkdir", "rmdir", "stat", "dd", "sqlite3", "unshare", "umount"}

func findRepoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the tapefs module")
	}
	return filepath.Dir(mod), nil
}

// buildTapefs builds the two programs as make build does: the query front
// end at out (tapefs, -tags tapefs_lite) and the complete program beside it
// (tapefs-full), which the front end runs for every other command. So every
// test that runs tapefsBin goes through the front end.
func buildTapefs(out string) error {
	start := time.Now()
	for _, b := range []struct{ tags, out string }{
		{"sqlite_fts5", filepath.Join(filepath.Dir(out), "tapefs-full")},
		{"sqlite_fts5 tapefs_lite", out},
	} {
		cmd := exec.Command("go", "build", "-tags", b.tags, "-o", b.out, "./cmd/tapefs")
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v\n%s", err, out)
		}
	}
	fmt.Printf("e2e: built %s and tapefs-full in %s\n", out, time.Since(start).Round(time.Millisecond))
	return nil
}

func isolateEnv(base string) error {
	for _, v := range []struct{ name, dir string }{
		{"HOME", "home"},
		{"XDG_DATA_HOME", "data"},
		{"XDG_STATE_HOME", "state"},
		{"XDG_CACHE_HOME", "cache"},
		{"XDG_CONFIG_HOME", "config"},
		{"XDG_RUNTIME_DIR", "runtime"},
	} {
		dir := filepath.Join(base, v.dir)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		os.Setenv(v.name, dir)
	}
	// Stable messages from the programs the tests run.
	os.Setenv("LC_ALL", "C")
	os.Setenv("LANG", "C")
	// Never let a developer's cloud credentials reach a test daemon.
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"} {
		os.Unsetenv(v)
	}
	return nil
}

// unmountLeftovers detaches anything still mounted under root, so removing
// root never walks into a live (or dead) FUSE mount.
func unmountLeftovers(root string) {
	for _, mp := range mountsUnder(root) {
		fmt.Fprintf(os.Stderr, "e2e: %s was still mounted at exit; detaching it\n", mp)
		exec.Command("umount", "-l", mp).Run()
	}
}
