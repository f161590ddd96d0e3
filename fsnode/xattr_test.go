package fsnode

import (
	"syscall"
	"testing"
)

// TestOtherXattr: names outside user.tape.* never reach the sidecar;
// security. and system. are unsupported (ls -l stops asking after one
// ENOTSUP per device), other names are merely unset.
func TestOtherXattr(t *testing.T) {
	for attr, want := range map[string]syscall.Errno{
		"security.selinux":         syscall.ENOTSUP,
		"security.capability":      syscall.ENOTSUP,
		"system.posix_acl_access":  syscall.ENOTSUP,
		"system.posix_acl_default": syscall.ENOTSUP,
		"user.foo":                 syscall.ENODATA,
		"trusted.x":                syscall.ENODATA,
	} {
		if got := otherXattr(attr); got != want {
			t.Errorf("otherXattr(%q) = %v, want %v", attr, got, want)
		}
		n := &fileNode{}
		if _, got := n.Getxattr(t.Context(), attr, nil); got != want {
			t.Errorf("file: Getxattr(%q) = %v, want %v", attr, got, want)
		}
		d := &dirNode{}
		if _, got := d.Getxattr(t.Context(), attr, nil); got != want {
			t.Errorf("dir: Getxattr(%q) = %v, want %v", attr, got, want)
		}
	}
}
