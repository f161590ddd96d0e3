package e2e

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Reliability under load: stress-ng's file system stressors (with --verify)
// and fio's data verification, run on a real mount over file:// and over the
// S3 server. mem:// is left out: it is the same tree code as file://.

// stressNotApplicable lists the stressors of stress-ng's filesystem class
// that test what tapefs does not offer (see "Semantics of the mount" in the
// README), and those that run with less than --verify, with the reason. It
// is the one place they are listed.
var stressNotApplicable = map[string]string{
	"link":      "not run: hard links are not supported (link(2) is ENOTSUP) and the stressor has no option to do without them",
	"symlink":   "not run: symbolic links are not supported (symlink(2) is ENOTSUP)",
	"mknod":     "not run: device nodes, FIFOs and sockets are not supported (mknod(2) is ENOTSUP)",
	"xattr":     "not run: user extended attributes are not supported (setxattr is ENOTSUP; the stressor skips itself, exit 3)",
	"access":    "not run: it checks that chmod'ed mode bits take effect in access(2), and modes are not kept (every file shows --file-mode)",
	"fallocate": "not run: fallocate is EOPNOTSUPP, so the stressor does no work (0 bogo ops)",
	"fpunch":    "not run: it punches holes with fallocate, which is EOPNOTSUPP",
	"fiemap":    "not run: FS_IOC_FIEMAP is not offered by FUSE (the stressor skips itself)",
	"copy-file": "not run: its smallest file is 128 MB (--copy-file-bytes), uploaded whole on every close, far beyond the time this test may take; hdd, iomix and fio cover copying data",
	"utime":     runWithoutVerify + ": its check is that utime(2) sets st_mtime, and times are the store's (utimens succeeds and changes nothing); every call must still succeed",
}

// runWithoutVerify starts the reason of a stressor run without --verify.
const runWithoutVerify = "run without --verify"

// stressor is one stress-ng run: --NAME WORKERS plus its own options.
type stressor struct {
	test string   // subtest name
	name string   // the stressor
	args []string // options that bound it (file sizes) or pick what it does
}

// stressors are run one after the other, each for stressTimeout, in a
// directory of its own inside the mount. File sizes are a few MiB: every
// fsync and close uploads the whole file.
var stressors = []stressor{
	{"hdd-seq", "hdd", []string{"--hdd-bytes", "4m", "--hdd-opts", "wr-seq,rd-seq"}},
	{"hdd-rnd", "hdd", []string{"--hdd-bytes", "4m", "--hdd-opts", "wr-rnd,rd-rnd,fsync,iovec"}},
	{"iomix", "iomix", []string{"--iomix-bytes", "4m"}},
	{"dir", "dir", []string{"--dir-dirs", "256"}},
	{"dentry", "dentry", []string{"--dentries", "256"}},
	{"rename", "rename", nil},
	{"open", "open", nil},
	{"seek", "seek", []string{"--seek-size", "4m"}},
	{"readahead", "readahead", []string{"--readahead-bytes", "4m"}},
	{"sync-file", "sync-file", []string{"--sync-file-bytes", "1m"}},
	{"utime", "utime", nil},
	{"revio", "revio", []string{"--revio-bytes", "4m"}},
	{"getdent", "getdent", nil},
	{"dirmany", "dirmany", nil},
}

const stressTimeout = "1s"

var (
	stressFail   = regexp.MustCompile(`(?m)^stress-ng: (fail|error):.*$`)
	stressSkip   = regexp.MustCompile(`(?m)^stress-ng: .*(skipp|not supported|not implemented).*$`)
	fioVerifyErr = regexp.MustCompile(`(?m)^(verify:|fio: .*err=|.*err= *[1-9]).*$`)
)

// needTool fails the test when a program it drives is not installed.
func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is not installed (make deps installs it)", name)
	}
}

// stressBackends runs fn on a fresh mount of every selected backend but mem,
// in parallel.
func stressBackends(t *testing.T, fn func(t *testing.T, m *Mount)) {
	for _, b := range selectedBackends(t) {
		if b.name == "mem" {
			continue // the same tree code as file://
		}
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			fn(t, mount(t, b.newStore(t)))
			t.Logf("%s: %s", b.name, time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestStress runs stress-ng's file system stressors with --verify on a real
// mount. A stressor passes when stress-ng exits 0, reports no failure, did
// some work, skipped nothing, and left its directory empty.
func TestStress(t *testing.T) {
	needTool(t, "stress-ng")
	stressBackends(t, func(t *testing.T, m *Mount) {
		for _, s := range stressors {
			t.Run(s.test, func(t *testing.T) {
				dir := filepath.Join(m.Dir, "stress-"+s.test)
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				args := []string{"--" + s.name, "2", "--timeout", stressTimeout, "--temp-path", dir, "--metrics-brief"}
				if !strings.HasPrefix(stressNotApplicable[s.name], runWithoutVerify) {
					args = append(args, "--verify")
				}
				args = append(args, s.args...)
				r := Cmd{Timeout: 45 * time.Second}.exe(t, "stress-ng", args...)
				out := r.Stdout + r.Stderr
				if r.Code != 0 {
					t.Fatalf("stress-ng failed:\n%s", r)
				}
				if f := stressFail.FindAllString(out, -1); f != nil {
					t.Fatalf("stress-ng exited 0 but reported failures:\n%s\n\n%s", strings.Join(f, "\n"), r)
				}
				if sk := stressSkip.FindAllString(out, -1); sk != nil {
					t.Fatalf("stress-ng skipped work:\n%s\n\n%s", strings.Join(sk, "\n"), r)
				}
				if ops := bogoOps(out, s.name); ops <= 0 {
					t.Fatalf("the %s stressor did no work (bogo ops %d):\n%s", s.name, ops, r)
				}
				ents, err := os.ReadDir(dir)
				if err != nil {
					t.Fatal(err)
				}
				if len(ents) != 0 {
					var names []string
					for _, e := range ents {
						names = append(names, e.Name())
					}
					t.Fatalf("stress-ng left %v behind in %s (it removes what it made):\n%s", names, dir, r)
				}
			})
		}
	})
}

// bogoOps is the stressor's bogo-op count from stress-ng's metrics, -1 when
// the line is missing.
func bogoOps(out, name string) int {
	re := regexp.MustCompile(`(?m)^stress-ng: metrc: \[\d+\] ` + regexp.QuoteMeta(name) + ` +(\d+) `)
	m := re.FindStringSubmatch(out)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// fioJob is one fio run on one file of the mount.
type fioJob struct {
	name, file string
	args       []string
}

// TestFio writes files through the mount with fio, sequentially and at
// random, every block with a crc32c header that fio checks when it reads
// the block back (in the same job, from the open file); then it remounts
// and checks the files again (--verify_only), now from the store, and
// writes at random into one of them and checks it once more. A file
// of random bytes, which must fail verification, shows that the check is live.
// fallocate is off (--fallocate=none): tapefs has none (EOPNOTSUPP).
func TestFio(t *testing.T) {
	needTool(t, "fio")
	stressBackends(t, func(t *testing.T, m *Mount) {
		dir := filepath.Join(m.Dir, "fio")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		seq, rnd, rw := filepath.Join(dir, "seq.dat"), filepath.Join(dir, "rand.dat"), filepath.Join(dir, "randrw.dat")
		fio(t, fioJob{"seqwrite", seq, []string{"--rw=write", "--bs=64k"}}, true)
		fio(t, fioJob{"randwrite", rnd, []string{"--rw=randwrite", "--bs=4k", "--fsync=256"}}, true)
		// randrw writes about half the blocks, so only its own (inline)
		// verification applies to this file.
		fio(t, fioJob{"randrw", rw, []string{"--rw=randrw", "--bs=16k"}}, true)

		// The same files after a remount: the kernel's pages are gone, every
		// block comes from the store.
		m.Remount(t)
		fio(t, fioJob{"seqread", seq, []string{"--rw=read", "--bs=64k", "--verify_only"}}, true)
		fio(t, fioJob{"randread", rnd, []string{"--rw=randread", "--bs=4k", "--verify_only"}}, true)
		// Random writes into an existing file (copied from the store to the
		// staging file on open), then the whole file checked again.
		fio(t, fioJob{"randrw-existing", rnd, []string{"--rw=randrw", "--bs=4k"}}, true)
		fio(t, fioJob{"randread-again", rnd, []string{"--rw=randread", "--bs=4k", "--verify_only"}}, true)

		junk := filepath.Join(dir, "junk.dat")
		if err := os.WriteFile(junk, randomBytes(t, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		fio(t, fioJob{"control", junk, []string{"--rw=read", "--bs=64k", "--verify_only", "--size=1m"}}, false)
	})
}

// fio runs one job; wantOK says whether it must pass verification or must
// fail it (the control).
func fio(t *testing.T, j fioJob, wantOK bool) {
	t.Helper()
	args := []string{
		"--name=" + j.name, "--filename=" + j.file, "--ioengine=psync", "--size=4m",
		"--verify=crc32c", "--verify_fatal=1", "--verify_state_save=0",
		"--end_fsync=1", "--fallocate=none",
	}
	args = append(args, j.args...)
	r := Cmd{Timeout: 45 * time.Second}.exe(t, "fio", args...)
	bad := fioVerifyErr.FindAllString(r.Stdout+r.Stderr, -1)
	switch {
	case wantOK && (r.Code != 0 || bad != nil):
		t.Fatalf("fio job %s failed (verification errors: %q):\n%s", j.name, bad, r)
	case !wantOK && (r.Code == 0 || !strings.Contains(r.Stdout+r.Stderr, "verify: bad magic header")):
		t.Fatalf("fio job %s on random bytes passed verification: the check is not live:\n%s", j.name, r)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
