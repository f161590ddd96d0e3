package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tapefs/tapefs/internal/proc"
)

// Tests of calls the kernel interrupts: any signal to a process blocked in
// a FUSE request makes the kernel send the daemon an INTERRUPT. A signal
// the process handles (Go programs get SIGURG from their own runtime all
// the time, shells SIGCHLD) must not fail the call; a process being killed
// must not wait for a slow store.

// handleSIGUSR1 makes SIGUSR1 a signal the test process handles, until the
// test ends (and a moment longer, for one still on its way).
func handleSIGUSR1(t *testing.T) {
	caught := make(chan os.Signal, 16)
	signal.Notify(caught, syscall.SIGUSR1)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-caught:
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() {
		time.Sleep(100 * time.Millisecond)
		signal.Stop(caught)
		close(done)
	})
}

// underSignals runs call on a thread of its own while another goroutine
// sends that thread a handled SIGUSR1 (see handleSIGUSR1) every 2 ms; it
// returns call's error and how many signals were sent while call ran.
func underSignals(t *testing.T, call func() error) (error, int64) {
	t.Helper()
	tid := make(chan int)
	result := make(chan error)
	var sent atomic.Int64
	var running atomic.Bool
	running.Store(true)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid <- syscall.Gettid()
		err := call()
		running.Store(false)
		result <- err
	}()
	target := <-tid
	pid := os.Getpid()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-result:
			return err, sent.Load()
		case <-tick.C:
			if running.Load() && syscall.Tgkill(pid, target, syscall.SIGUSR1) == nil {
				sent.Add(1)
			}
		}
	}
}

// truncateHelperEnv names the file the test binary, re-executed with it
// set, truncates to 1 byte with SIGUSR1 handled (see truncateHelper).
const truncateHelperEnv = "TAPEFS_E2E_TRUNCATE_HELPER"

// truncateHelper handles SIGUSR1, says "ready" and the id of its thread
// that then truncates path: a process that a harmless signal to that thread
// interrupts before it is killed.
func truncateHelper(path string) int {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGUSR1)
	runtime.LockOSThread()
	fmt.Printf("ready %9d\n", syscall.Gettid())
	if err := syscall.Truncate(path, 1); err != nil {
		fmt.Println(err)
		return 1
	}
	return 0
}

// slowGets delays every GET of an object under prefix by d.
func slowGets(st *proxiedStore, prefix string, d time.Duration) faultRule {
	return func(r *http.Request, n int) *s3Fault {
		if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, st.objectPath(prefix)) {
			return &s3Fault{Delay: d}
		}
		return nil
	}
}

// TestInterruptedCalls: truncate(2), open for writing (which copies the
// object from the store) and a cold read, each waiting 300 ms on a slow
// server while its thread gets a handled signal every 2 ms, succeed with
// the right bytes (syscall.Truncate does not retry EINTR, so an interrupt
// turned into EINTR fails it); then a truncate killed with SIGKILL while
// its copy waits on a server that would answer in 60 s is reaped at once,
// and the object is unchanged.
func TestInterruptedCalls(t *testing.T) {
	st := newProxiedStore(t)
	files := map[string][]byte{}
	for i, name := range []string{"trunc", "write", "read", "killed", "quit", "later"} {
		g := newTape(int64(900+i), 80)
		files["slow/"+name+".jsonl"] = g.Data
	}
	st.Seed(t, files)
	m := mount(t, st)
	handleSIGUSR1(t)
	st.proxy.SetRule(slowGets(st, "slow/", 300*time.Millisecond))

	check := func(what string, err error, sent int64) {
		t.Helper()
		if sent == 0 {
			t.Errorf("%s: no signal was sent while it ran: the test did not interrupt it", what)
		}
		if err != nil {
			t.Errorf("%s, interrupted by %d handled signals: %v", what, sent, err)
		} else {
			t.Logf("%s: succeeded through %d handled signals", what, sent)
		}
	}

	key := "slow/trunc.jsonl"
	err, sent := underSignals(t, func() error { return syscall.Truncate(m.Path(key), 100) })
	check("truncate", err, sent)
	if got, _ := storeRead(t, st.Bucket(), key); !bytes.Equal(got, files[key][:100]) {
		t.Errorf("truncate: the store holds %d bytes, want the first 100 of the tape", len(got))
	}

	key = "slow/write.jsonl"
	err, sent = underSignals(t, func() error {
		fd, err := syscall.Open(m.Path(key), syscall.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("open: %w", err)
		}
		if _, err := syscall.Pwrite(fd, []byte("X"), 0); err != nil {
			syscall.Close(fd)
			return fmt.Errorf("pwrite: %w", err)
		}
		if err := syscall.Close(fd); err != nil {
			return fmt.Errorf("close: %w", err)
		}
		return nil
	})
	check("open for writing, write, close", err, sent)
	want := append([]byte("X"), files[key][1:]...)
	if got, _ := storeRead(t, st.Bucket(), key); !bytes.Equal(got, want) {
		t.Errorf("write: the store holds %d bytes, not the tape with its first byte replaced", len(got))
	}

	key = "slow/read.jsonl"
	buf := make([]byte, len(files[key]))
	var n int
	err, sent = underSignals(t, func() error {
		fd, err := syscall.Open(m.Path(key), syscall.O_RDONLY, 0)
		if err != nil {
			return fmt.Errorf("open: %w", err)
		}
		defer syscall.Close(fd)
		for n < len(buf) {
			k, err := syscall.Read(fd, buf[n:])
			if err != nil {
				return fmt.Errorf("read at %d: %w", n, err)
			}
			if k == 0 {
				break
			}
			n += k
		}
		return nil
	})
	check("cold read", err, sent)
	if err == nil && !bytes.Equal(buf[:n], files[key]) {
		t.Errorf("cold read: %d bytes that are not the tape's", n)
	}

	// A caller being killed does not wait for the store.
	key = "slow/killed.jsonl"
	st.proxy.SetRule(slowGets(st, "slow/", 60*time.Second))
	mark := st.proxy.Mark()
	cmd := exec.Command("truncate", "-s", "1", m.Path(key))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitHeld(t, st, mark, key, cmd)
	killUnchanged(t, st, "truncate killed with SIGKILL", cmd, syscall.SIGKILL, key, files[key])

	// Ctrl-\ (SIGQUIT, which dumps core) is fatal too, without being
	// marked as a pending SIGKILL.
	key = "slow/quit.jsonl"
	st.proxy.SetRule(slowGets(st, "slow/", 60*time.Second))
	mark = st.proxy.Mark()
	cmd = exec.Command("sh", "-c", `ulimit -c 0; exec truncate -s 1 "$1"`, "sh", m.Path(key))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitHeld(t, st, mark, key, cmd)
	killUnchanged(t, st, "truncate killed with SIGQUIT", cmd, syscall.SIGQUIT, key, files[key])

	// The same with a harmless signal first: the kernel interrupts a
	// request once, so the kill that follows sends nothing more.
	key = "slow/later.jsonl"
	st.proxy.SetRule(slowGets(st, "slow/", 60*time.Second))
	mark = st.proxy.Mark()
	helper := exec.Command(os.Args[0])
	helper.Env = append(os.Environ(), truncateHelperEnv+"="+m.Path(key))
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make([]byte, len("ready 123456789\n"))
	var tid int
	if _, err := io.ReadFull(out, ready); err != nil || !strings.HasPrefix(string(ready), "ready ") {
		helper.Process.Kill()
		helper.Wait()
		t.Fatalf("the truncate helper did not start: %q %v", ready, err)
	}
	fmt.Sscan(string(ready[len("ready "):]), &tid)
	waitHeld(t, st, mark, key, helper)
	if err := syscall.Tgkill(helper.Process.Pid, tid, syscall.SIGUSR1); err != nil {
		t.Fatalf("SIGUSR1 to the helper's thread %d: %v", tid, err)
	}
	time.Sleep(300 * time.Millisecond)
	killUnchanged(t, st, "truncate interrupted by a handled signal, then killed,", helper, syscall.SIGKILL, key, files[key])
	if err := syscall.Truncate(m.Path(key), 1); err != nil {
		t.Errorf("truncate after the killed one: %v", err)
	}
	if got, _ := storeRead(t, st.Bucket(), key); !bytes.Equal(got, files[key][:1]) {
		t.Errorf("after truncate to 1 byte the store holds %d bytes", len(got))
	}
}

// waitHeld waits until the proxy holds a GET of key, which cmd caused.
func waitHeld(t *testing.T, st *proxiedStore, mark int, key string, cmd *exec.Cmd) {
	t.Helper()
	if !waitFor(20*time.Second, func() bool {
		all, _ := countFor(st.proxy.Requests(mark), http.MethodGet, st.objectPath(key))
		return all > 0
	}) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("%s never reached the store for %s", cmd.Path, key)
	}
}

// killUnchanged kills cmd with sig, blocked on a GET the proxy holds for a
// minute: it must end at once, and key must still hold want. The proxy
// then passes everything on.
func killUnchanged(t *testing.T, st *proxiedStore, what string, cmd *exec.Cmd, sig syscall.Signal, key string, want []byte) {
	t.Helper()
	start := time.Now()
	cmd.Process.Signal(sig)
	ended := make(chan struct{})
	go func() { cmd.Wait(); close(ended) }()
	select {
	case <-ended:
		t.Logf("%s ended %s after the kill", what, time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Errorf("%s has not ended 10 s after the kill: the daemon waits for a store that answers in 60 s", what)
		st.proxy.SetRule(nil) // the daemon's next try gets through
		<-ended
	}
	st.proxy.SetRule(nil)
	if got, _ := storeRead(t, st.Bucket(), key); !bytes.Equal(got, want) {
		t.Errorf("%s changed the object: %d bytes, want %d", what, len(got), len(want))
	}
}

// TestConnectionAborted: `umount -f` aborts the kernel's FUSE connection,
// and callers blocked in it get ENOTCONN at once. The daemon's work for
// them stops too: a truncate whose copy waits on a server that would
// answer in a minute changes nothing, and the daemon exits as soon as it
// is unmounted, not after waiting out its running requests.
func TestConnectionAborted(t *testing.T) {
	st := newProxiedStore(t)
	key := "slow/aborted.jsonl"
	data := newTape(960, 40).Data
	st.Seed(t, map[string][]byte{key: data})
	m := mount(t, st)
	pids := daemonPIDs(m.Dir)
	st.proxy.SetRule(slowGets(st, "slow/", 60*time.Second))
	mark := st.proxy.Mark()
	// The calling thread lives on after its call fails: one that is gone
	// is taken as killed anyway (a locked goroutine that returns ends its
	// thread).
	ended := make(chan error, 1)
	live := make(chan struct{})
	defer close(live)
	go func() {
		runtime.LockOSThread()
		ended <- syscall.Truncate(m.Path(key), 1)
		<-live
	}()
	if !waitFor(20*time.Second, func() bool {
		all, _ := countFor(st.proxy.Requests(mark), http.MethodGet, st.objectPath(key))
		return all > 0
	}) {
		t.Fatalf("the truncate never asked the store for %s", key)
	}
	// MNT_FORCE aborts the connection first; the unmount itself may then
	// find the mount busy for a moment, which does not matter here.
	syscall.Unmount(m.Dir, syscall.MNT_FORCE)
	select {
	case err := <-ended:
		t.Logf("the truncate ended after the abort: %v", err)
	case <-time.After(10 * time.Second):
		st.proxy.SetRule(nil)
		t.Fatal("the truncate still waits 10 s after umount -f")
	}
	start := time.Now()
	if r := tapefs(t, st, "unmount", m.Dir); r.Code != 0 && isMounted(m.Dir) {
		t.Errorf("tapefs unmount after the abort:\n%s", r)
	}
	m.unmounted = true
	for _, pid := range pids {
		if !waitFor(30*time.Second, func() bool { return proc.Exited(pid) }) {
			t.Errorf("daemon %d still running 30 s after the unmount", pid)
		}
	}
	t.Logf("the daemon exited %s after the unmount began", time.Since(start).Round(time.Millisecond))
	if log := m.logs(); strings.Contains(log, "requests still running") {
		t.Errorf("the daemon waited for the work of callers the abort had answered:\n%s", log)
	}
	st.proxy.SetRule(nil)
	time.Sleep(500 * time.Millisecond)
	if got, _ := storeRead(t, st.Bucket(), key); !bytes.Equal(got, data) {
		t.Errorf("the aborted truncate changed the object: %d bytes, want %d", len(got), len(data))
	}
}
