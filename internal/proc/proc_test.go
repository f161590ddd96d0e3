package proc

import (
	"os"
	"os/exec"
	"testing"
)

func TestExited(t *testing.T) {
	if Exited(os.Getpid()) {
		t.Error("this process counts as exited")
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// Not reaped yet: a zombie, which counts as exited once it is one.
	for !Exited(pid) {
	}
	cmd.Wait()
	if !Exited(pid) {
		t.Error("a reaped process counts as running")
	}
}
