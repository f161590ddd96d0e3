package e2e

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapefs/tapefs/internal/proc"
	"gocloud.dev/blob"
)

// TestMountErrors: `tapefs mount --daemon` fails fast and cleanly: non-zero
// exit, one line on stderr naming the problem, nothing left mounted and no
// daemon left behind.
func TestMountErrors(t *testing.T) {
	base := t.TempDir()
	aFile := filepath.Join(base, "a-file")
	if err := os.WriteFile(aFile, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	busy := mount(t, newMemStore(t))
	closedPort := freePort(t) // nothing listens there
	const secret = "very-secret-value-0xdeadbeef"

	cases := []struct {
		name    string
		dir     string   // "" = a fresh empty directory
		url     string   // --backend
		env     []string // extra environment
		wrap    []string // run tapefs under this command
		wantAny []string // stderr names the problem: one of these (case-insensitive)
		wantAll []string // ... and all of these
	}{
		{name: "mountpoint missing", dir: filepath.Join(base, "missing"), url: "mem://",
			wantAny: []string{"not exist", "no such", "missing"}},
		{name: "mountpoint not a directory", dir: aFile, url: "mem://",
			wantAny: []string{"not a directory"}},
		{name: "already mounted", dir: busy.Dir, url: "mem://",
			wantAny: []string{"already mounted", "already a mount", "is a mount"}},
		{name: "malformed URL", url: "file://%zz/tapes",
			wantAny: []string{"url", "escape"}},
		{name: "malformed query", url: "s3://bucket?endpoint=%&region=us-east-1",
			wantAny: []string{"escape", "query", "malformed", "invalid"}},
		{name: "unknown scheme", url: "bogus://bucket",
			wantAll: []string{"bogus", "file", "mem", "s3"}},
		{name: "file store missing", url: "file:///nonexistent/tapefs-store",
			wantAny: []string{"/nonexistent/tapefs-store"}},
		{name: "s3 store unreachable",
			url:     "s3://tapes?endpoint=http://127.0.0.1:" + closedPort + "&use_path_style=true&region=us-east-1",
			env:     []string{"AWS_ACCESS_KEY_ID=AKIDTEST", "AWS_SECRET_ACCESS_KEY=" + secret},
			wantAny: []string{"unreachable", "refused", "connect", "not accessible"}},
		{name: "/dev/fuse unusable", url: "mem://",
			// A private mount namespace whose /dev has no fuse device.
			wrap: []string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
				`mount -t tmpfs none /dev && mknod -m 666 /dev/null c 1 3 && exec "$@"`, "sh"},
			wantAny: []string{"/dev/fuse"}},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, "/", "_"), func(t *testing.T) {
			t.Parallel()
			dir := tc.dir
			if dir == "" {
				dir = filepath.Join(t.TempDir(), "mnt")
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			wasMounted := len(mountsAt(dir))
			d := newStoreDirs(t)
			args := []string{"mount", dir, "--daemon", "--backend", tc.url, "--meta", d.Meta, "--cache-dir", d.Cache, "--state-dir", d.State}
			name := tapefsBin
			if len(tc.wrap) > 0 {
				name, args = tc.wrap[0], append(append(tc.wrap[1:], tapefsBin), args...)
			}
			start := time.Now()
			r := Cmd{Env: tc.env}.exe(t, name, args...)
			took := time.Since(start)
			t.Logf("%s -> exit %d in %s: %q", tc.name, r.Code, took.Round(time.Millisecond), r.Stderr)

			if r.Code == 0 || r.Code == -1 {
				t.Errorf("want a non-zero exit:\n%s", r)
			}
			msg := strings.TrimSpace(r.Stderr)
			switch {
			case msg == "":
				t.Errorf("stderr is empty, want one line naming the problem")
			case strings.Contains(msg, "\n"):
				t.Errorf("stderr has %d lines, want one:\n%s", strings.Count(msg, "\n")+1, msg)
			}
			lower := strings.ToLower(msg)
			if len(tc.wantAny) > 0 && !containsAny(lower, tc.wantAny) {
				t.Errorf("stderr %q names none of %q", msg, tc.wantAny)
			}
			for _, w := range tc.wantAll {
				if !strings.Contains(lower, strings.ToLower(w)) {
					t.Errorf("stderr %q does not mention %q", msg, w)
				}
			}
			if strings.Contains(r.Stderr+r.Stdout, secret) {
				t.Errorf("the output shows the secret key")
			}

			if got := len(mountsAt(dir)); got != wasMounted {
				t.Errorf("%s: %d mounts before, %d after", dir, wasMounted, got)
				if wasMounted == 0 {
					detach(dir)
				}
			}
			if wasMounted == 0 {
				if !waitFor(5*time.Second, func() bool { return len(daemonPIDs(dir)) == 0 }) {
					t.Errorf("a tapefs process for %s is still running: %v", dir, daemonPIDs(dir))
				}
			}
		})
	}
	// Runs once all the (parallel) cases are done, before busy is unmounted.
	t.Cleanup(func() {
		if n := len(mountsAt(busy.Dir)); n != 1 {
			t.Errorf("%s is mounted %d times, want once", busy.Dir, n)
		}
		if r := try(t, "ls", busy.Dir); r.Code != 0 {
			t.Errorf("the first mount stopped working:\n%s", r)
		}
	})
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, strings.ToLower(sub)) {
			return true
		}
	}
	return false
}

// TestForeground: without --daemon, `tapefs mount` serves until SIGINT,
// SIGTERM or `tapefs unmount`; then it uploads what was written, unmounts
// and exits 0. So too with a SIGTERM the moment the mount appears, while
// the daemon is still starting.
func TestForeground(t *testing.T) {
	for _, stop := range []string{"SIGINT", "SIGTERM", "unmount", "SIGTERM-at-once"} {
		t.Run(stop, func(t *testing.T) {
			t.Parallel()
			st := backendNamed(t, "file")
			base := t.TempDir()
			dir := filepath.Join(base, "mnt")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			logPath := filepath.Join(base, "foreground.log")
			logf, err := os.Create(logPath)
			if err != nil {
				t.Fatal(err)
			}
			defer logf.Close()
			rememberMount(dir)
			cmd := exec.Command(tapefsBin, mountArgs(st, dir, false)...)
			cmd.Stdout, cmd.Stderr = logf, logf
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var waitErr error
			exited := make(chan struct{})
			go func() { waitErr = cmd.Wait(); close(exited) }()
			t.Cleanup(func() {
				select {
				case <-exited:
				default:
					cmd.Process.Kill()
					<-exited
				}
				if isMounted(dir) {
					detach(dir)
				}
				if t.Failed() {
					data, _ := os.ReadFile(logPath)
					t.Logf("tapefs log:\n%s", tail(string(data), 8000))
				}
			})
			// Polled closely: SIGTERM-at-once signals as soon as it is.
			for deadline := time.Now().Add(30 * time.Second); !isMounted(dir); time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("foreground tapefs mount did not mount %s within 30s", dir)
				}
			}

			data := newTape(31, 3).Data
			want := map[string][]byte{"t.jsonl": data}
			if stop == "SIGTERM-at-once" {
				cmd.Process.Signal(syscall.SIGTERM)
				want = map[string][]byte{}
			} else {
				src := writeLocal(t, want)
				run(t, "cp", filepath.Join(src, "t.jsonl"), filepath.Join(dir, "t.jsonl"))
			}

			switch stop {
			case "SIGINT":
				cmd.Process.Signal(syscall.SIGINT)
			case "SIGTERM":
				cmd.Process.Signal(syscall.SIGTERM)
			case "unmount":
				if r := tapefs(t, st, "unmount", dir); r.Code != 0 {
					t.Errorf("tapefs unmount failed:\n%s", r)
				}
			}
			select {
			case <-exited:
				if waitErr != nil {
					t.Errorf("after %s, tapefs mount exited with %v, want 0", stop, waitErr)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("tapefs mount still running 30s after %s", stop)
			}
			if isMounted(dir) {
				t.Errorf("%s still mounted after %s", dir, stop)
			}
			checkStore(t, st, want)
		})
	}
}

// TestDaemonSIGTERM: SIGTERM to the daemon unmounts cleanly, keeping what
// was written.
func TestDaemonSIGTERM(t *testing.T) {
	st := backendNamed(t, "file")
	m := mount(t, st)
	data := newTape(32, 3).Data
	src := writeLocal(t, map[string][]byte{"t.jsonl": data})
	run(t, "cp", filepath.Join(src, "t.jsonl"), m.Path("t.jsonl"))

	pids := daemonPIDs(m.Dir)
	if len(pids) == 0 {
		t.Fatalf("no tapefs process with %s on its command line", m.Dir)
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	if !waitFor(30*time.Second, func() bool { return !isMounted(m.Dir) }) {
		t.Fatalf("%s still mounted 30s after SIGTERM to the daemon %v", m.Dir, pids)
	}
	m.unmounted = true
	for _, pid := range pids {
		if !waitFor(10*time.Second, func() bool { return proc.Exited(pid) }) {
			t.Errorf("daemon %d still running after SIGTERM", pid)
		}
	}
	checkStore(t, st, map[string][]byte{"t.jsonl": data})
}

// TestUnmountAfterDaemonKilled: `tapefs unmount` cleans up a mount whose
// daemon was SIGKILLed, and the store mounts again there.
func TestUnmountAfterDaemonKilled(t *testing.T) {
	st := backendNamed(t, "file")
	c := newCorpus(t)
	m := mountFiles(t, st, c.Files)
	pids := daemonPIDs(m.Dir)
	if len(pids) == 0 {
		t.Fatalf("no tapefs process with %s on its command line", m.Dir)
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, pid := range pids {
		if !waitFor(10*time.Second, func() bool { return proc.Exited(pid) }) {
			t.Fatalf("daemon %d survived SIGKILL", pid)
		}
	}
	if r := try(t, "ls", m.Dir); r.Code == 0 || !strings.Contains(r.Stderr, "not connected") {
		t.Logf("ls of the dead mount (expected ENOTCONN):\n%s", r)
	}
	m2 := m.Remount(t) // tapefs unmount cleans up the dead mount
	checkListing(t, m2, c.Files)
	checkMount(t, m2, map[string][]byte{c.Malformed: c.Files[c.Malformed]})
}

// TestUnmountBusy: `tapefs unmount` of a mount with a file held open is
// refused, saying why and what to do, and the mount keeps serving;
// `--lazy` detaches it at once, the open files keep working (a read, and a
// write that reaches the store), and the daemon exits when they are closed.
func TestUnmountBusy(t *testing.T) {
	st := backendNamed(t, "file")
	data := newTape(33, 40).Data
	m := mountFiles(t, st, map[string][]byte{"held/t.jsonl": data})

	// A holder with the tape open on fd 3, which reads it when told to.
	// and a new file open for writing on fd 4, which it writes then.
	holder := exec.Command("sh", "-c", `exec 3<"$1" 4>"$2"; read go; cat <&3; echo after-detach >&4`,
		"holder", m.Path("held/t.jsonl"), m.Path("held/new.txt"))
	stdin, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	holder.Stdout = &out
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer holder.Process.Kill()
	if !waitFor(10*time.Second, func() bool {
		link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/3", holder.Process.Pid))
		return link == m.Path("held/t.jsonl")
	}) {
		t.Fatal("the holder never opened the tape")
	}

	r := tapefs(t, st, "unmount", m.Dir)
	if r.Code == 0 {
		t.Fatalf("unmount with a file open succeeded:\n%s", r)
	}
	for _, want := range []string{m.Dir, "busy", "fuser -vm", "--lazy"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, r)
		}
	}
	if strings.Contains(r.Stderr, "fusermount") {
		t.Errorf("the refusal names fusermount, not the cause:\n%s", r)
	}
	if got, ok := catBytes(t, m.Path("held/t.jsonl")); !ok || got != string(data) {
		t.Error("the mount does not serve the tape after the refused unmount")
	}

	pids := daemonPIDs(m.Dir)
	r = tapefs(t, st, "unmount", "--lazy", m.Dir)
	if r.Code != 0 {
		t.Fatalf("unmount --lazy:\n%s", r)
	}
	m.unmounted = true
	if !strings.Contains(r.Stderr, "still open") {
		t.Errorf("unmount --lazy with files open does not say the daemon goes on serving them:\n%s", r)
	}
	if isMounted(m.Dir) {
		t.Errorf("%s still mounted after unmount --lazy", m.Dir)
	}
	stdin.Write([]byte("go\n"))
	stdin.Close()
	if err := holder.Wait(); err != nil {
		t.Errorf("the holder's read after the lazy unmount: %v", err)
	}
	if out.String() != string(data) {
		t.Errorf("the open file read %d bytes after the lazy unmount, want the tape's %d", out.Len(), len(data))
	}
	for _, pid := range pids {
		if !waitFor(20*time.Second, func() bool { return proc.Exited(pid) }) {
			t.Errorf("daemon %d still running after the lazy unmount and the last close", pid)
		}
	}
	if got, ok := storeRead(t, st.Bucket(), "held/new.txt"); !ok || string(got) != "after-detach\n" {
		t.Errorf("a file written after the lazy unmount holds %q in the store (present: %v), want %q", got, ok, "after-detach\n")
	}
}

// TestUnmountLazyIdle: `tapefs unmount --lazy` of a mount with nothing
// open returns once the daemon has exited, so the same store mounts again
// right after (its sidecar and staging directory free).
func TestUnmountLazyIdle(t *testing.T) {
	st := backendNamed(t, "file")
	m := mountFiles(t, st, map[string][]byte{"idle/t.jsonl": newTape(34, 10).Data})
	pids := daemonPIDs(m.Dir)
	if len(pids) == 0 {
		t.Fatal("no daemon found for the mount")
	}
	r := tapefs(t, st, "unmount", "--lazy", m.Dir)
	m.unmounted = true
	if r.Code != 0 {
		t.Fatalf("unmount --lazy:\n%s", r)
	}
	for _, pid := range pids {
		if !proc.Exited(pid) {
			t.Errorf("daemon %d still running when `unmount --lazy` of an idle mount returned", pid)
		}
	}
	if strings.Contains(r.Stderr, "still open") {
		t.Errorf("unmount --lazy of an idle mount says files are still open:\n%s", r)
	}
	m2 := mount(t, st, at(m.Dir))
	checkMount(t, m2, map[string][]byte{"idle/t.jsonl": newTape(34, 10).Data})
}

// ---------------------------------------------------------------------------
// The embedded default store (no --backend, no --meta)

type defaultStore struct{ env []string }

func newDefaultStore(t *testing.T) Store {
	base := t.TempDir()
	var env []string
	for _, v := range []string{"XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"} {
		dir := filepath.Join(base, strings.ToLower(strings.TrimPrefix(v, "XDG_")))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		env = append(env, v+"="+dir)
	}
	return &defaultStore{env: env}
}

func (s *defaultStore) Kind() string    { return "default" }
func (s *defaultStore) URL() string     { return "" }
func (s *defaultStore) Env() []string   { return s.env }
func (s *defaultStore) Dirs() StoreDirs { return StoreDirs{} }
func (s *defaultStore) Persistent() bool {
	return true
}
func (s *defaultStore) Seed(*testing.T, map[string][]byte) bool { return false }
func (s *defaultStore) Bucket() *blob.Bucket                    { return nil }

// dataHome is the XDG_DATA_HOME this store's commands see.
func (s *defaultStore) dataHome() string {
	return strings.TrimPrefix(s.env[0], "XDG_DATA_HOME=")
}

// TestEmbeddedDefault: `tapefs mount DIR` with no --backend keeps tapes in a
// store under $XDG_DATA_HOME/tapefs that outlives the mount, and `tapefs ls`
// with no flags lists them.
func TestEmbeddedDefault(t *testing.T) {
	c := newCorpus(t)
	st := newDefaultStore(t)
	files := c.Under("v1")
	maps.Copy(files, c.Under(c.Nested))
	m := mountFiles(t, st, files)
	checkMount(t, m, files)
	m = m.Remount(t)
	checkListing(t, m, files)
	checkMount(t, m, files)

	home := filepath.Join(st.(*defaultStore).dataHome(), "tapefs")
	if _, err := os.Stat(home); err != nil {
		t.Errorf("the embedded default store is not under $XDG_DATA_HOME/tapefs: %v", err)
	}
	key := c.V2Tape
	if found := findFiles(home, filepath.Base(key)); len(found) == 0 {
		t.Errorf("%s is not stored under %s", key, home)
	}
	recs := waitIndexed(t, st, key)
	checkRecord(t, recs[key], c.Tapes[key])
}

// TestSecondMountSameSidecar: a second mount of a store that would share
// the first one's sidecar and staging directory (the default for one store)
// is refused, naming the mount that holds them and the flags that separate
// them; the first mount keeps working. Once it is unmounted, the same
// second mount works at once (unmount waits for the daemon to exit).
func TestSecondMountSameSidecar(t *testing.T) {
	st := backendNamed(t, "file")
	first := mountFiles(t, st, map[string][]byte{"a.txt": []byte("a")})
	second := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(second, 0o755); err != nil {
		t.Fatal(err)
	}
	rememberMount(second)
	r := tapefs(t, st, mountArgs(st, second, true)...)
	if r.Code == 0 || isMounted(second) {
		detach(second)
		t.Fatalf("a second mount sharing the sidecar was allowed:\n%s", r)
	}
	for _, want := range []string{"in use by another tapefs mount", first.Dir, "--meta", "--state-dir"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, r)
		}
	}
	checkMount(t, first, map[string][]byte{"a.txt": []byte("a")})

	first.Unmount(t)
	m := mount(t, st, at(second))
	checkMount(t, m, map[string][]byte{"a.txt": []byte("a")})
}
