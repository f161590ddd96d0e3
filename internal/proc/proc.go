// Package proc tells whether another process is still running, for the
// commands and tests that wait for a daemon to exit.
package proc

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
)

// Exited says whether pid has exited (or is a zombie that its parent has
// not reaped yet).
func Exited(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z'
	}
	return false
}
