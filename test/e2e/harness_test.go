package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cmdTimeout bounds every program a test runs, so a hung mount fails the
// test instead of hanging CI.
const cmdTimeout = 60 * time.Second

// Result is what a finished program left behind.
type Result struct {
	Cmdline string
	Stdout  string
	Stderr  string
	Code    int // exit code; -1 when killed (e.g. on timeout)
	Err     error
}

func (r Result) String() string {
	return fmt.Sprintf("$ %s\nexit %d (%v)\nstdout:\n%s\nstderr:\n%s", r.Cmdline, r.Code, r.Err, clip(r.Stdout), clip(r.Stderr))
}

func clip(s string) string {
	const max = 4000
	if len(s) > max {
		return s[:max] + fmt.Sprintf("\n... (%d more bytes)", len(s)-max)
	}
	return s
}

// Cmd describes one program run: name and args, plus optional working
// directory and extra environment.
type Cmd struct {
	Dir     string
	Env     []string
	Stdin   []byte
	Timeout time.Duration
}

// exe runs name with args and returns what happened; it never fails the test.
func (c Cmd) exe(t testing.TB, name string, args ...string) Result {
	t.Helper()
	timeout := c.Timeout
	if timeout == 0 {
		timeout = cmdTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), c.Env...)
	if c.Stdin != nil {
		cmd.Stdin = bytes.NewReader(c.Stdin)
	}
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A program that leaves a child holding its output open must not hang us.
	cmd.WaitDelay = 5 * time.Second
	r := Result{Cmdline: shellQuote(append([]string{name}, args...)), Code: -1}
	if err := cmd.Start(); err != nil {
		r.Err = err
		return r
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		// CommandContext sends SIGKILL; a process blocked on a FUSE request
		// the daemon never answers cannot die until the connection is aborted.
		select {
		case err = <-done:
		case <-time.After(5 * time.Second):
			aborted := abortFuseFor(append([]string{c.Dir}, args...))
			select {
			case err = <-done:
				err = fmt.Errorf("%v (unkillable until FUSE connections %v were aborted)", err, aborted)
			case <-time.After(10 * time.Second):
				err = fmt.Errorf("process %d cannot be killed (blocked in the kernel; aborted FUSE connections %v)", cmd.Process.Pid, aborted)
			}
		}
	}
	r.Stdout, r.Stderr, r.Err = stdout.String(), stderr.String(), err
	if cmd.ProcessState != nil {
		r.Code = cmd.ProcessState.ExitCode()
	}
	if ctx.Err() != nil {
		r.Err = fmt.Errorf("timed out after %s (hung mount?): %v", timeout, err)
		r.Code = -1
	}
	return r
}

// lockedBuffer is a bytes.Buffer safe to read while exec's copier writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// abortFuseFor aborts the FUSE connections of the mounts that the given
// paths lie in (through fusectl), so that processes stuck on a hung daemon
// get ENOTCONN and the test fails instead of hanging. It returns the
// connection numbers it aborted.
func abortFuseFor(paths []string) []string {
	const fusectl = "/sys/fs/fuse/connections"
	if ents, err := os.ReadDir(fusectl); err == nil && len(ents) == 0 {
		exec.Command("mount", "-t", "fusectl", "fusectl", fusectl).Run()
	}
	var aborted []string
	for _, mi := range readMountInfo() {
		if !strings.HasPrefix(mi.FSType, "fuse") {
			continue
		}
		for _, p := range paths {
			if p != "" && (p == mi.Point || strings.HasPrefix(p, mi.Point+"/")) {
				conn := mi.Dev[strings.IndexByte(mi.Dev, ':')+1:]
				if os.WriteFile(filepath.Join(fusectl, conn, "abort"), []byte("1"), 0o200) == nil {
					aborted = append(aborted, conn)
				}
				break
			}
		}
	}
	return aborted
}

// run runs a real program and fails the test unless it exits 0; it returns stdout.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	return Cmd{}.run(t, name, args...)
}

func (c Cmd) run(t testing.TB, name string, args ...string) string {
	t.Helper()
	r := c.exe(t, name, args...)
	if r.Code != 0 {
		t.Fatalf("command failed:\n%s", r)
	}
	return r.Stdout
}

// try runs a real program and returns the result without judging it.
func try(t testing.TB, name string, args ...string) Result {
	t.Helper()
	return Cmd{}.exe(t, name, args...)
}

func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r == '/' || r == '-' || r == '_' || r == '.' || r == '=' || r == ':' || r == ',' ||
				r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		}) < 0 {
			q[i] = a
		} else {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}

// tapefs runs the binary under test with the store's environment.
func tapefs(t testing.TB, st Store, args ...string) Result {
	t.Helper()
	var env []string
	if st != nil {
		env = st.Env()
	}
	return Cmd{Env: env}.exe(t, tapefsBin, args...)
}

// ---------------------------------------------------------------------------
// Mounts

// Mount is a live `tapefs mount --daemon` of a store.
type Mount struct {
	Dir   string // the mountpoint
	Store Store
	Log   string // stdout and stderr of `tapefs mount` (and of the daemon, if it keeps them)

	unmounted bool
}

type mountConfig struct {
	dir   string   // mount here instead of a fresh directory
	extra []string // more flags for `tapefs mount`
	// indexing: return as soon as the mount serves, while it may still be
	// indexing the store's tapes in the background; by default mount
	// waits for that indexing too, so that a test's counters of store
	// requests see only what the test itself causes.
	indexing bool
}

type mountOption func(*mountConfig)

// at mounts on the given (existing) directory, e.g. to remount in place.
func at(dir string) mountOption { return func(c *mountConfig) { c.dir = dir } }

// whileIndexing returns from mount while the first indexing may still run.
func whileIndexing() mountOption { return func(c *mountConfig) { c.indexing = true } }

// withArgs passes more flags to `tapefs mount`.
func withArgs(args ...string) mountOption {
	return func(c *mountConfig) { c.extra = append(c.extra, args...) }
}

// mountArgs is the `tapefs mount` command line for st at dir.
func mountArgs(st Store, dir string, daemon bool, extra ...string) []string {
	d := st.Dirs()
	args := []string{"mount", dir}
	for _, f := range []struct{ flag, value string }{
		{"--backend", st.URL()}, {"--meta", d.Meta}, {"--cache-dir", d.Cache}, {"--state-dir", d.State},
	} {
		if f.value != "" { // empty: the embedded default
			args = append(args, f.flag, f.value)
		}
	}
	if daemon {
		args = append(args, "--daemon")
	}
	return append(args, extra...)
}

// mount mounts st with `tapefs mount --daemon` and unmounts it when the test
// ends. On failure it dumps the daemon's log.
func mount(t *testing.T, st Store, opts ...mountOption) *Mount {
	t.Helper()
	var cfg mountConfig
	for _, o := range opts {
		o(&cfg)
	}
	base := t.TempDir()
	m := &Mount{Dir: cfg.dir, Store: st, Log: filepath.Join(base, "mount.log")}
	if m.Dir == "" {
		m.Dir = filepath.Join(base, "mnt")
		if err := os.Mkdir(m.Dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	logf, err := os.Create(m.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	args := mountArgs(st, m.Dir, true, cfg.extra...)
	cmd := exec.CommandContext(ctx, tapefsBin, args...)
	cmd.Env = append(os.Environ(), st.Env()...)
	rememberMount(m.Dir)
	// Files, not pipes: a daemon child that inherits them must not block Wait.
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	err = cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("timed out after %s: %v", cmdTimeout, err)
		}
		// Whatever happened, leave nothing mounted behind.
		if isMounted(m.Dir) {
			exec.Command("umount", "-l", m.Dir).Run()
		}
		t.Fatalf("$ %s\n%v\n%s", shellQuote(append([]string{"tapefs"}, args...)), err, m.logs())
	}
	if !isMounted(m.Dir) {
		t.Fatalf("`tapefs mount --daemon` exited 0 but %s is not in /proc/self/mountinfo\n%s", m.Dir, m.logs())
	}
	what := st.URL()
	if what == "" {
		what = "the embedded default store"
	}
	t.Logf("mounted %s at %s in %s", what, m.Dir, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", m.logs())
		}
		m.cleanup(t)
	})
	if !cfg.indexing {
		m.awaitIndexed(t)
	}
	return m
}

// awaitIndexed waits until the mount's first indexing of the store's tapes
// has ended: `tapefs status --json` shows an "indexing" object until then.
func (m *Mount) awaitIndexed(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(cmdTimeout); ; time.Sleep(50 * time.Millisecond) {
		doc := m.status(t)
		if _, ok := doc["indexing"]; !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still indexing after %s: %v\n%s", m.Dir, cmdTimeout, doc["indexing"], m.logs())
		}
	}
}

// status is the document of `tapefs status --json` for this mount.
func (m *Mount) status(t *testing.T) map[string]any {
	t.Helper()
	r := tapefs(t, m.Store, "status", "--json")
	if r.Code != 0 {
		t.Fatalf("tapefs status --json failed:\n%s", r)
	}
	dec := json.NewDecoder(strings.NewReader(r.Stdout))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("no document for %s in tapefs status --json (%v):\n%s", m.Dir, err, r)
		}
		if doc["mountpoint"] == m.Dir {
			return doc
		}
	}
}

// Path is the path of key inside the mount.
func (m *Mount) Path(key string) string {
	return filepath.Join(m.Dir, filepath.FromSlash(key))
}

// Unmount runs `tapefs unmount` and fails the test unless the mount is gone.
func (m *Mount) Unmount(t *testing.T) {
	t.Helper()
	r := tapefs(t, m.Store, "unmount", m.Dir)
	m.unmounted = true
	if r.Code != 0 {
		detach(m.Dir)
		t.Fatalf("unmount failed:\n%s\n%s", r, m.logs())
	}
	if isMounted(m.Dir) {
		detach(m.Dir)
		t.Fatalf("`tapefs unmount %s` exited 0 but it is still mounted\n%s", m.Dir, m.logs())
	}
}

// Remount unmounts and mounts the same store again on the same directory.
func (m *Mount) Remount(t *testing.T, opts ...mountOption) *Mount {
	t.Helper()
	m.Unmount(t)
	return mount(t, m.Store, append([]mountOption{at(m.Dir)}, opts...)...)
}

func (m *Mount) cleanup(t *testing.T) {
	defer killDaemons(t, m.Dir)
	if m.unmounted {
		return
	}
	m.unmounted = true
	r := tapefs(t, m.Store, "unmount", m.Dir)
	if r.Code != 0 {
		t.Errorf("cleanup: unmount failed:\n%s", r)
	}
	if isMounted(m.Dir) {
		t.Errorf("cleanup: %s still mounted after `tapefs unmount`; detaching it", m.Dir)
		detach(m.Dir)
	}
}

// killDaemons SIGKILLs the tapefs daemons still serving dir 10 s after it
// was unmounted: a daemon that does not exit after its unmount is a bug,
// and must not outlive the test run.
func killDaemons(t *testing.T, dir string) {
	if waitFor(10*time.Second, func() bool { return len(daemonPIDs(dir)) == 0 }) {
		return
	}
	for _, pid := range daemonPIDs(dir) {
		t.Errorf("tapefs daemon %d for %s still running after unmount; killing it", pid, dir)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// mounted remembers every mountpoint of this run, for the last clean-up.
var mounted struct {
	sync.Mutex
	dirs []string
}

func rememberMount(dir string) {
	mounted.Lock()
	defer mounted.Unlock()
	mounted.dirs = append(mounted.dirs, dir)
}

// cleanupMounts detaches whatever this run left mounted and kills its
// daemons (after a panic or a timeout, test clean-ups may not have run).
func cleanupMounts() {
	mounted.Lock()
	defer mounted.Unlock()
	for _, dir := range mounted.dirs {
		if isMounted(dir) {
			fmt.Fprintf(os.Stderr, "e2e: %s was still mounted at exit; detaching it\n", dir)
			abortFuseFor([]string{dir})
			detach(dir)
		}
		for _, pid := range daemonPIDs(dir) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// logs returns the mount command's output and the daemon's log files: any
// *.log in the store's state directory, and those in the XDG state and
// runtime directories that mention this mountpoint.
func (m *Mount) logs() string {
	var b strings.Builder
	if data, err := os.ReadFile(m.Log); err == nil {
		fmt.Fprintf(&b, "--- %s\n%s\n", m.Log, clip(string(data)))
	}
	dump := func(root string, onlyMine bool) {
		if root == "" {
			return
		}
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".log") || p == m.Log {
				return nil
			}
			data, err := os.ReadFile(p)
			if err == nil && (!onlyMine || bytes.Contains(data, []byte(m.Dir))) {
				fmt.Fprintf(&b, "--- %s\n%s\n", p, tail(string(data), 8000))
			}
			return nil
		})
	}
	dump(m.Store.Dirs().State, false)
	for _, env := range []string{"XDG_STATE_HOME", "XDG_RUNTIME_DIR"} {
		dump(os.Getenv(env), true)
	}
	for _, kv := range m.Store.Env() {
		if k, v, _ := cutEnv(kv); k == "XDG_STATE_HOME" {
			dump(v, true)
		}
	}
	return b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// detach lazily unmounts dir so that nothing (e.g. t.TempDir's RemoveAll)
// walks into a broken mount.
func detach(dir string) {
	exec.Command("umount", "-l", dir).Run()
}

// ---------------------------------------------------------------------------
// /proc/self/mountinfo

type mountInfo struct {
	Dev    string // major:minor; for FUSE the minor is the fusectl connection
	Point  string
	FSType string
	Source string
}

func readMountInfo() []mountInfo {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []mountInfo
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superopts
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		mi := mountInfo{Dev: fields[2], Point: unescapeMountInfo(fields[4])}
		for i := 6; i < len(fields)-2; i++ {
			if fields[i] == "-" {
				mi.FSType, mi.Source = fields[i+1], unescapeMountInfo(fields[i+2])
				break
			}
		}
		out = append(out, mi)
	}
	return out
}

// unescapeMountInfo undoes the kernel's \NNN octal escapes (space, tab, \n, \\).
func unescapeMountInfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountsAt lists the mounts whose mountpoint is dir.
func mountsAt(dir string) []mountInfo {
	var out []mountInfo
	for _, mi := range readMountInfo() {
		if mi.Point == dir {
			out = append(out, mi)
		}
	}
	return out
}

func isMounted(dir string) bool { return len(mountsAt(dir)) > 0 }

// mountsUnder lists mountpoints at or below root, deepest first.
func mountsUnder(root string) []string {
	var out []string
	for _, mi := range readMountInfo() {
		if mi.Point == root || strings.HasPrefix(mi.Point, root+"/") {
			out = append(out, mi.Point)
		}
	}
	// Deepest first, so nested mounts go before their parents.
	for i := 0; i < len(out); i++ {
		for j := i + 1; j < len(out); j++ {
			if len(out[j]) > len(out[i]) {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// Daemon processes

// daemonPIDs finds the tapefs processes serving dir, by their command line.
// A daemon is tapefs-full (the front end tapefsBin execs it for mount).
func daemonPIDs(dir string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || filepath.Base(strings.TrimSuffix(exe, " (deleted)")) != "tapefs-full" {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		for _, arg := range strings.Split(string(raw), "\x00") {
			if arg == dir {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// waitFor polls cond until it is true or the timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
