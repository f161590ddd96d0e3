package e2e

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A file held open by the test process itself would be flushed (FUSE_FLUSH,
// i.e. an upload) whenever any parallel test forks a program, because the
// child's copy of the descriptor is closed at exec. So writes that must stay
// unflushed go through a helper process that holds the file and never forks:
// this test binary re-executed with writerHelperEnv set, driven line by line.

const writerHelperEnv = "TAPEFS_E2E_WRITER_HELPER"

// writerHelper serves commands from in, one per line, answering "ok" or
// "err MESSAGE": "create PATH", "append PATH", "write BASE64", "sync",
// "close".
func writerHelper(in io.Reader, out io.Writer) int {
	var f *os.File
	r := bufio.NewReader(in)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return 0
		}
		cmd, arg, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		switch cmd {
		case "create":
			f, err = os.OpenFile(arg, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		case "append":
			f, err = os.OpenFile(arg, os.O_WRONLY|os.O_APPEND, 0o644)
		case "write":
			var data []byte
			if data, err = base64.StdEncoding.DecodeString(arg); err == nil {
				_, err = f.Write(data)
			}
		case "sync":
			err = f.Sync()
		case "close":
			err = f.Close()
		default:
			err = fmt.Errorf("unknown command %q", cmd)
		}
		if err != nil {
			fmt.Fprintf(out, "err %v\n", err)
		} else {
			fmt.Fprintln(out, "ok")
		}
	}
}

// heldFile is a file open for writing in a writer helper process.
type heldFile struct {
	path string
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
}

// holdOpen starts a writer helper and opens path in it (append: O_APPEND
// without truncation, else O_CREAT|O_TRUNC).
func holdOpen(t *testing.T, path string, appendMode bool) *heldFile {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), writerHelperEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &heldFile{path: path, cmd: cmd, in: in, out: bufio.NewReader(out)}
	t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
		}
	})
	op := "create"
	if appendMode {
		op = "append"
	}
	if err := h.do(op + " " + path); err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	return h
}

// do sends one command and waits (bounded) for the answer; a hung mount is
// aborted so that the helper, and the test, get unstuck.
func (h *heldFile) do(line string) error {
	if _, err := io.WriteString(h.in, line+"\n"); err != nil {
		return err
	}
	type answer struct {
		s   string
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		s, err := h.out.ReadString('\n')
		ch <- answer{strings.TrimSpace(s), err}
	}()
	select {
	case a := <-ch:
		if a.err != nil {
			return a.err
		}
		if a.s != "ok" {
			return fmt.Errorf("%s", strings.TrimPrefix(a.s, "err "))
		}
		return nil
	case <-time.After(cmdTimeout):
		aborted := abortFuseFor([]string{h.path})
		return fmt.Errorf("no answer within %s (hung mount? aborted FUSE connections %v)", cmdTimeout, aborted)
	}
}

func (h *heldFile) Write(t *testing.T, data []byte) {
	t.Helper()
	if err := h.do("write " + base64.StdEncoding.EncodeToString(data)); err != nil {
		t.Fatalf("write %s: %v", h.path, err)
	}
}

func (h *heldFile) Sync() error  { return h.do("sync") }
func (h *heldFile) Close() error { return h.do("close") }
