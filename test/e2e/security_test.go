package e2e

// Security defaults and resource bounds of a running mount.

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// forStoredBackends is forEachBackend for the stores that keep data outside
// the daemon (file:// and S3): mem:// has no files of its own to check, and
// its handles are the same as file://'s.
func forStoredBackends(t *testing.T, fn func(t *testing.T, st Store)) {
	t.Helper()
	for _, b := range selectedBackends(t) {
		if b.name == "mem" {
			continue
		}
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			fn(t, b.newStore(t))
		})
	}
}

// superOptions are the FUSE super-block options of the mount at dir (those
// after " - " in /proc/self/mountinfo: default_permissions, allow_other, …).
func superOptions(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || unescapeMountInfo(fields[4]) != dir {
			continue
		}
		for i := 6; i < len(fields)-3; i++ {
			if fields[i] == "-" {
				return append(strings.Split(fields[5], ","), strings.Split(fields[i+3], ",")...)
			}
		}
	}
	t.Fatalf("%s is not in /proc/self/mountinfo", dir)
	return nil
}

func hasOption(opts []string, o string) bool {
	for _, x := range opts {
		if x == o {
			return true
		}
	}
	return false
}

// checkPrivate fails for a file that others could read: directories must
// be 0700 and files 0600 (or stricter), below root and root itself.
func checkPrivate(t *testing.T, what, root string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n++
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s: %s has mode %o; want nothing for group and others", what, p, perm)
		}
		return nil
	})
	if err != nil {
		t.Errorf("%s: walk %s: %v", what, root, err)
	}
	if n == 0 {
		t.Errorf("%s: %s holds nothing to check", what, root)
	}
}

// TestSecurityDefaults: default_permissions and no allow_other unless
// asked; the sidecar, staged files and the cache are private to the user;
// the S3 secret is nowhere the daemon writes or prints.
func TestSecurityDefaults(t *testing.T) {
	forStoredBackends(t, func(t *testing.T, st Store) {
		c := newCorpus(t)
		m := mountFiles(t, st, c.Files, withArgs("--cache-dir", st.Dirs().Cache))
		opts := superOptions(t, m.Dir)
		if !hasOption(opts, "default_permissions") || hasOption(opts, "allow_other") {
			t.Errorf("mount options %q: want default_permissions and no allow_other", opts)
		}
		// Read everything once (fills the cache), and hold a file open for
		// writing (a staged file exists while it is open).
		for key := range c.Files {
			run(t, "cat", "--", m.Path(key))
		}
		h := holdOpen(t, m.Path("held.jsonl"), false)
		h.Write(t, []byte(`{"type":"init"}`+"\n"))
		if err := h.Sync(); err != nil {
			t.Fatal(err)
		}
		d := st.Dirs()
		checkPrivate(t, "sidecar", filepath.Dir(d.Meta))
		checkPrivate(t, "staging", d.State)
		if st.Kind() == "s3" {
			checkPrivate(t, "cache", d.Cache)
		}
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
		status := tapefs(t, st, "status")
		statusJSON := tapefs(t, st, "status", "--json")
		help := tapefs(t, st, "mount", "--help")
		if st.Kind() != "s3" {
			return
		}
		secret := ""
		for _, kv := range st.Env() {
			if k, v, _ := cutEnv(kv); k == "AWS_SECRET_ACCESS_KEY" {
				secret = v
			}
		}
		if secret == "" {
			t.Fatal("the S3 store has no secret key in its environment")
		}
		m.Unmount(t) // the sidecar and the logs are complete
		places := map[string][]byte{
			"tapefs status":        []byte(status.Stdout + status.Stderr),
			"tapefs status --json": []byte(statusJSON.Stdout + statusJSON.Stderr),
			"tapefs mount --help":  []byte(help.Stdout + help.Stderr),
			"the daemon's logs":    []byte(m.logs()),
		}
		for _, root := range []string{filepath.Dir(d.Meta), d.State, d.Cache} {
			filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
				if err == nil && e.Type().IsRegular() {
					b, _ := os.ReadFile(p)
					places[p] = b
				}
				return nil
			})
		}
		for where, b := range places {
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("the secret key appears in %s", where)
			}
		}
		if len(places) < 6 {
			t.Errorf("only %d places searched for the secret", len(places))
		}
	})
}

// TestAllowOther: --allow-other is the only way to get allow_other.
func TestAllowOther(t *testing.T) {
	m := mount(t, backendNamed(t, "mem"), withArgs("--allow-other"))
	if opts := superOptions(t, m.Dir); !hasOption(opts, "allow_other") || !hasOption(opts, "default_permissions") {
		t.Errorf("mount options %q: want allow_other and default_permissions", opts)
	}
}

// TestReadOnly: a --read-only mount refuses every kind of write with EROFS
// and the store is left as it was.
func TestReadOnly(t *testing.T) {
	st := backendNamed(t, "file")
	c := newCorpus(t)
	m := mountFiles(t, st, c.Files, withArgs("--read-only"))
	tapePath, dir := m.Path(c.V2Tape), m.Path(c.Nested)
	for _, args := range [][]string{
		{"touch", filepath.Join(m.Dir, "new.jsonl")},
		{"sh", "-c", "echo x >> '" + tapePath + "'"},
		{"truncate", "-s", "0", tapePath},
		{"rm", tapePath},
		{"mv", tapePath, filepath.Join(m.Dir, "moved.jsonl")},
		{"mkdir", filepath.Join(m.Dir, "newdir")},
		{"rmdir", dir},
		{"cp", m.Path(c.PlainText), filepath.Join(dir, "copy.txt")},
		{"setfattr", "-n", "user.x", "-v", "1", tapePath},
		{"chmod", "600", tapePath},
		{"touch", "-d", "2020-01-01", tapePath},
	} {
		r := try(t, args[0], args[1:]...)
		if r.Code == 0 || !strings.Contains(r.Stderr, "Read-only file system") {
			t.Errorf("%s: want EROFS, got %s", shellQuote(args), r)
		}
	}
	checkMount(t, m, c.Files)
	checkStore(t, st, c.Files)
}

// daemonFDs counts the open file descriptors of the daemon serving dir.
func daemonFDs(t *testing.T, dir string) int {
	t.Helper()
	pids := daemonPIDs(dir)
	if len(pids) != 1 {
		t.Fatalf("daemons for %s: %v", dir, pids)
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pids[0]))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// daemonPeakRSS is the daemon's high-water resident set (VmHWM), in bytes.
func daemonPeakRSS(t *testing.T, dir string) int64 {
	t.Helper()
	pids := daemonPIDs(dir)
	if len(pids) != 1 {
		t.Fatalf("daemons for %s: %v", dir, pids)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pids[0]))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}

// TestFDsReleased opens and closes 10,000 files (reads and writes) and
// checks that the daemon holds no more descriptors than before.
func TestFDsReleased(t *testing.T) {
	forStoredBackends(t, func(t *testing.T, st Store) {
		c := newCorpus(t)
		m := mountFiles(t, st, c.Files)
		keys := sortedCopy(mapKeys(c.Tapes))
		buf := make([]byte, 4096)
		// Warm up: first opens may start the cache or the store's pool.
		for _, k := range keys {
			os.ReadFile(m.Path(k))
		}
		before := daemonFDs(t, m.Dir)
		for i := 0; i < 10_000; i++ {
			if i%100 == 0 {
				// A write handle now and then: create, write, close.
				p := filepath.Join(m.Dir, fmt.Sprintf("fd-%d.txt", i%7))
				if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			f, err := os.Open(m.Path(keys[i%len(keys)]))
			if err != nil {
				t.Fatal(err)
			}
			f.Read(buf)
			f.Close()
		}
		var after int
		// Releases are asynchronous in FUSE: give them a moment.
		waitFor(5*time.Second, func() bool { after = daemonFDs(t, m.Dir); return after <= before+2 })
		t.Logf("daemon fds: %d before, %d after 10,000 opens and closes", before, after)
		if after > before+2 {
			t.Errorf("the daemon holds %d descriptors after 10,000 opens, %d before", after, before)
		}
	})
}

// dirBytes is the total size of the regular files below dir.
func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// TestCacheBounded reads far more than --cache-max-size and checks the
// cache directory never holds more than the bound plus one chunk.
func TestCacheBounded(t *testing.T) {
	st := backendNamed(t, "s3")
	const chunk, max = 256 << 10, 1 << 20
	files := map[string][]byte{}
	for i := 0; i < 6; i++ {
		files[fmt.Sprintf("big/%d.jsonl", i)] = bigTape(int64(1<<20 + i*4096)).Data
	}
	m := mountFiles(t, st, files, withArgs("--cache-dir", st.Dirs().Cache,
		"--cache-max-size", strconv.Itoa(max), "--chunk-size", strconv.Itoa(chunk)))
	worst := int64(0)
	for round := 0; round < 2; round++ {
		for key, want := range files {
			got, err := os.ReadFile(m.Path(key))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read %s: %v (%d bytes, want %d)", key, err, len(got), len(want))
			}
			worst = max64(worst, dirBytes(st.Dirs().Cache))
		}
		run(t, "sh", "-c", "echo 1 > /proc/sys/vm/drop_caches") // make the second round read again
	}
	t.Logf("read %d MiB twice through a %d KiB cache: at most %d KiB in the cache directory", len(files), max>>10, worst>>10)
	if worst > max+chunk {
		t.Errorf("the cache held %d bytes; the bound is %d plus one %d-byte chunk", worst, max, chunk)
	}
	if worst == 0 {
		t.Errorf("nothing was cached")
	}
}

// TestCacheLeavesFreeSpace puts the read cache on a small disk (a 6 MiB
// tmpfs) with a far larger size bound: the cache stops short of the
// --cache-min-free it must leave (evicting), the reads are right all the
// same, and tapefs status shows the cache.
func TestCacheLeavesFreeSpace(t *testing.T) {
	st := backendNamed(t, "s3")
	small := t.TempDir()
	run(t, "mount", "-t", "tmpfs", "-o", "size=6m", "tapefs-cache", small)
	t.Cleanup(func() { exec.Command("umount", "-l", small).Run() })
	const minFree = 2 << 20
	files := map[string][]byte{}
	for i := 0; i < 3; i++ {
		files[fmt.Sprintf("big/%d.jsonl", i)] = bigTape(int64(3<<20 + i*4096)).Data
	}
	m := mountFiles(t, st, files, withArgs("--cache-dir", small,
		"--cache-max-size", "1GiB", "--cache-min-free", strconv.Itoa(minFree), "--chunk-size", "262144"))
	least := int64(1 << 62)
	for key, want := range files {
		got, err := os.ReadFile(m.Path(key))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read %s: %v (%d bytes, want %d)", key, err, len(got), len(want))
		}
		var sfs syscall.Statfs_t
		if err := syscall.Statfs(small, &sfs); err != nil {
			t.Fatal(err)
		}
		least = min(least, int64(sfs.Bavail)*sfs.Bsize)
	}
	t.Logf("read %d files of 3 MiB through a cache on a 6 MiB disk: at least %d KiB stayed free", len(files), least>>10)
	if least < minFree-256<<10 { // one chunk may be on its way
		t.Errorf("the cache left %d bytes free; --cache-min-free is %d", least, minFree)
	}
	if dirBytes(small) == 0 {
		t.Errorf("nothing was cached")
	}
	if out := run(t, tapefsBin, "status"); !strings.Contains(out, "bytes in "+small+",") {
		t.Errorf("tapefs status does not show the cache in %s:\n%s", small, out)
	}
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// TestLargeStoreMemory mounts a store of 100,000 objects, lists all of it
// through the mount, and reports the daemon's peak memory, which must stay
// well below what holding every object in memory many times over would
// take. TAPEFS_E2E_OBJECTS changes the count.
func TestLargeStoreMemory(t *testing.T) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("TAPEFS_E2E_OBJECTS")); err == nil && v > 0 {
		n = v
	}
	st := backendNamed(t, "file").(*fileStore)
	start := time.Now()
	for i := 0; i < n; i++ {
		p := st.Path(fmt.Sprintf("d%03d/obj-%06d.txt", i%100, i))
		if i < 100 {
			os.MkdirAll(filepath.Dir(p), 0o755)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wrote %d objects in %s", n, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	m := mount(t, st)
	var count int
	if !waitFor(3*time.Minute, func() bool {
		// -printf %s stats every entry, as ls -l does.
		r := try(t, "sh", "-c", "find '"+m.Dir+"' -type f -printf '%s %p\\n' | wc -l")
		count, _ = strconv.Atoi(strings.TrimSpace(r.Stdout))
		return count == n
	}) {
		t.Fatalf("find lists %d files, want %d", count, n)
	}
	t.Logf("mounted and listed %d objects through the mount in %s", n, time.Since(start).Round(time.Millisecond))
	peak := daemonPeakRSS(t, m.Dir)
	t.Logf("daemon peak RSS (VmHWM) with %d objects: %d MiB", n, peak>>20)
	if limit := int64(256<<20) + int64(n)*2048; peak > limit {
		t.Errorf("peak RSS %d MiB for %d objects; want at most %d MiB", peak>>20, n, limit>>20)
	}
}

// TestS3PermanentErrors: a bucket that does not exist and credentials the
// server refuses fail the mount at once (no long retries), with one line
// that names the bucket and the cause; the secret is not in it.
func TestS3PermanentErrors(t *testing.T) {
	s := startS3(t)
	good := s.URL()
	cases := []struct {
		name    string
		url     string
		env     []string
		wantAll []string
		wantAny []string
	}{
		{name: "no such bucket", url: strings.Replace(good, "s3://"+s.BucketName+"?", "s3://no-such-bucket-here?", 1),
			env: s.Env(), wantAll: []string{`bucket "no-such-bucket-here" does not exist`}, wantAny: []string{"create it"}},
		{name: "invalid bucket name", url: strings.Replace(good, "s3://"+s.BucketName+"?", "s3://ab?", 1),
			env: s.Env(), wantAll: []string{"bad store URL", `bucket "ab"`, "InvalidBucketName"}, wantAny: []string{"correct the bucket name"}},
		{name: "wrong secret key", url: good,
			env:     append(append([]string{}, s.Env()...), "AWS_SECRET_ACCESS_KEY=wrong-secret-0xfeedface"),
			wantAll: []string{`access denied to bucket "` + s.BucketName + `"`, "AWS_SECRET_ACCESS_KEY"}, wantAny: []string{"signature"}},
		{name: "unknown access key", url: good,
			env:     append(append([]string{}, s.Env()...), "AWS_ACCESS_KEY_ID=AKIDNOBODY"),
			wantAll: []string{`access denied to bucket "` + s.BucketName + `"`, "AWS_ACCESS_KEY_ID"}, wantAny: []string{"access key"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "mnt")
			os.Mkdir(dir, 0o755)
			d := newStoreDirs(t)
			start := time.Now()
			r := Cmd{Env: tc.env}.exe(t, tapefsBin, "mount", dir, "--backend", tc.url, "--meta", d.Meta,
				"--state-dir", d.State, "--daemon")
			took := time.Since(start)
			if isMounted(dir) {
				detach(dir)
				t.Fatalf("mounted anyway")
			}
			msg := strings.TrimSpace(r.Stderr)
			lower := strings.ToLower(msg)
			t.Logf("%s: failed in %s: %s", tc.name, took.Round(time.Millisecond), msg)
			if r.Code == 0 || strings.Count(msg, "\n") > 0 {
				t.Errorf("want a non-zero exit with one line; got %s", r)
			}
			for _, w := range tc.wantAll {
				if !strings.Contains(lower, strings.ToLower(w)) {
					t.Errorf("the message does not name %q", w)
				}
			}
			if !containsAny(lower, tc.wantAny) {
				t.Errorf("the message names none of the causes %q", tc.wantAny)
			}
			if strings.Contains(msg, "wrong-secret-0xfeedface") || strings.Contains(msg, s.SecretKey) {
				t.Errorf("the message shows a secret key")
			}
			if took > 20*time.Second {
				t.Errorf("took %s: a permanent error must not be retried for long", took)
			}
		})
	}
}

// TestOwnerAndModes: --uid, --gid, --file-mode and --dir-mode set what
// every file and directory shows, new ones included, with the views
// read-only; and the kernel checks access by them (default_permissions):
// with --allow-other the owner reads a 0640 file and another user cannot.
func TestOwnerAndModes(t *testing.T) {
	st := backendNamed(t, "file")
	c := newCorpus(t)
	m := mountFiles(t, st, c.Files, withArgs("--uid", "1234", "--gid", "2345", "--file-mode", "0640", "--dir-mode", "750", "--allow-other"))
	run(t, "mkdir", m.Path("made"))
	run(t, "sh", "-c", "echo new > "+shellQuote([]string{m.Path("made/new.txt")}))
	view := strings.TrimSpace(run(t, "sh", "-c", "find "+shellQuote([]string{m.Path(".by/tag")})+" -type f | head -n 1"))
	if view == "" {
		t.Fatalf("no tape under .by/tag")
	}
	for _, tc := range []struct{ path, want string }{
		{m.Dir, "1234 2345 750"},
		{m.Path(c.V2Tape), "1234 2345 640"},
		{m.Path(c.Nested), "1234 2345 750"},
		{m.Path("made"), "1234 2345 750"},
		{m.Path("made/new.txt"), "1234 2345 640"},
		{m.Path(".by"), "1234 2345 550"},
		{view, "1234 2345 440"},
	} {
		if got := strings.TrimSpace(run(t, "stat", "-c", "%u %g %a", tc.path)); got != tc.want {
			t.Errorf("stat %s: %q, want %q (uid gid mode)", tc.path, got, tc.want)
		}
	}

	// Other users must be able to reach the mountpoint for the check below.
	for p := m.Dir; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		os.Chmod(p, 0o755)
	}
	as := func(uid string, args ...string) Result {
		return try(t, "setpriv", append([]string{"--reuid", uid, "--regid", uid, "--clear-groups"}, args...)...)
	}
	tapePath := m.Path(c.V2Tape)
	if r := as("1234", "cat", tapePath); r.Code != 0 || r.Stdout != string(c.Files[c.V2Tape]) {
		t.Errorf("the owner (uid 1234) cannot read a 0640 file:\n%s", r)
	}
	if r := as("4321", "cat", tapePath); r.Code == 0 || !strings.Contains(r.Stderr, "Permission denied") {
		t.Errorf("another user (uid 4321) read a 0640 file owned by 1234, want EACCES:\n%s", r)
	}
}
