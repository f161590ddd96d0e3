package e2e

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// posixNotApplicable lists the cases of go-fuse's posixtest suite that test
// what tapefs does not offer, with the reason. It is the one place they are
// listed; the README's "Semantics of the mount" says the same.
var posixNotApplicable = map[string]string{
	"Link":                "no hard links: a store key is one file (link(2) is ENOTSUP)",
	"LinkUnlinkRename":    "no hard links: a store key is one file (link(2) is ENOTSUP)",
	"SymlinkReadlink":     "no symbolic links: a store holds objects only (symlink(2) is ENOTSUP)",
	"SetattrSymlink":      "no symbolic links: a store holds objects only (symlink(2) is ENOTSUP)",
	"OpenSymlinkRace":     "no symbolic links: a store holds objects only (symlink(2) is ENOTSUP)",
	"Tmpfile":             "no O_TMPFILE: every file is a store key, and an unnamed file has none",
	"XAttr":               "no user-set extended attributes: a file's attributes are its tape's index (setxattr is ENOTSUP)",
	"XAttrLarge":          "no user-set extended attributes: a file's attributes are its tape's index (setxattr is ENOTSUP)",
	"FileBasic":           "modes are not kept: every file shows --file-mode (default 0644) and chmod changes nothing (the case checks a 0755 file)",
	"Fallocate":           "no space reservation: an object store has none to give (fallocate is EOPNOTSUPP)",
	"FallocateKeepSize":   "no space reservation: an object store has none to give (fallocate is EOPNOTSUPP)",
	"FcntlFlockLocksFile": "record locks are not kept: other mounts of the store could not see them",
}

// TestPosix runs go-fuse's own posixtest suite against a real mount, each
// case in a fresh directory of its own.
func TestPosix(t *testing.T) {
	names := make([]string, 0, len(posixtest.All))
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, b := range selectedBackends(t) {
		if b.name == "mem" {
			continue // the same tree code as file://; file and s3 are the ones that matter
		}
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			m := mount(t, b.newStore(t))
			for _, name := range names {
				t.Run(name, func(t *testing.T) {
					if why, ok := posixNotApplicable[name]; ok {
						t.Skip("not applicable to tapefs: " + why)
					}
					dir := filepath.Join(m.Dir, "posix-"+name)
					if err := os.Mkdir(dir, 0o755); err != nil {
						t.Fatal(err)
					}
					posixtest.All[name](t, dir)
				})
			}
		})
	}
}
