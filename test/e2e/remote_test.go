package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Tests of a remote store (the real versitygw server) shared by more than
// one mount, and of a store that goes away while it is mounted.

// s3Twin is a second mount's view of an S3 store: the same server and
// bucket, but its own sidecar, staging directory and cache, as another
// machine (or another user) would have.
type s3Twin struct {
	*s3Store
	dirs StoreDirs
}

func (s *s3Twin) Dirs() StoreDirs { return s.dirs }

// newS3Pair starts one server and returns two stores on its bucket, each
// with its own local directories.
func newS3Pair(t *testing.T) (*s3Store, *s3Twin) {
	t.Helper()
	st := newS3Store(t).(*s3Store)
	return st, &s3Twin{s3Store: st, dirs: newStoreDirs(t)}
}

// catBytes reads path with cat; ok says whether cat succeeded.
func catBytes(t *testing.T, path string) (string, bool) {
	t.Helper()
	r := try(t, "cat", "--", path)
	return r.Stdout, r.Code == 0
}

// absent says whether stat of path fails with ENOENT.
func absent(t *testing.T, path string) bool {
	t.Helper()
	r := try(t, "stat", "--", path)
	return r.Code != 0 && strings.Contains(r.Stderr, "No such file")
}

// failsWithEIO runs a command that what names, which must fail with EIO,
// and returns how long it took.
func failsWithEIO(t *testing.T, what string, name string, args ...string) time.Duration {
	t.Helper()
	start := time.Now()
	r := try(t, name, args...)
	took := time.Since(start)
	t.Logf("%s: exit %d after %s: %s", what, r.Code, took.Round(time.Millisecond), strings.TrimSpace(r.Stderr))
	if r.Code == 0 || !strings.Contains(r.Stderr, "Input/output error") {
		t.Errorf("%s should fail with EIO:\n%s", what, r)
	}
	return took
}

// mountStatus is the part of `tapefs status --json` these tests look at.
type mountStatus struct {
	Mountpoint string `json:"mountpoint"`
	Pending    []struct {
		Key string `json:"key"`
	} `json:"pending_uploads"`
	Counters struct {
		CacheBytes int64 `json:"bytes_read_from_cache"`
		StoreReads int64 `json:"store_reads"`
	} `json:"store_counters"`
}

// statusOf is the `tapefs status --json` document of the mount m.
func statusOf(t *testing.T, m *Mount) mountStatus {
	t.Helper()
	r := tapefs(t, m.Store, "status", "--json")
	if r.Code != 0 {
		t.Fatalf("tapefs status --json failed:\n%s", r)
	}
	dec := json.NewDecoder(strings.NewReader(r.Stdout))
	for dec.More() {
		var st mountStatus
		if err := dec.Decode(&st); err != nil {
			t.Fatalf("tapefs status --json: %v\n%s", err, r)
		}
		if st.Mountpoint == m.Dir {
			return st
		}
	}
	t.Fatalf("tapefs status --json does not list %s:\n%s", m.Dir, r)
	return mountStatus{}
}

// pendingKeys is the keys `tapefs status --json` lists as pending uploads
// of the mount m.
func pendingKeys(t *testing.T, m *Mount) []string {
	t.Helper()
	keys := []string{}
	for _, p := range statusOf(t, m).Pending {
		keys = append(keys, p.Key)
	}
	return keys
}

// TestRemoteTwoMounts: two mounts of one bucket, each with its own sidecar.
// A tape written, renamed and deleted through mount A shows up, moves and
// goes in mount B within a few refresh intervals; and `tapefs refresh` on a
// mount that would not list the store for a minute shows a change at once.
func TestRemoteTwoMounts(t *testing.T) {
	t.Parallel() // it mostly waits out its own server's timeouts
	const interval = 2 * time.Second
	const within = 4*interval + 2*time.Second // a few intervals, plus a reconcile
	stA, stB := newS3Pair(t)
	a := mount(t, stA, withArgs("--refresh-interval", interval.String()))
	b := mount(t, stB, withArgs("--refresh-interval", interval.String()))

	tp := newTape(21, 5)
	src := writeLocal(t, map[string][]byte{"t.jsonl": tp.Data})
	key, renamed := "shared/"+tp.ID()+".jsonl", "shared/renamed.jsonl"
	run(t, "mkdir", a.Path("shared"))
	if !absent(t, b.Path(key)) {
		t.Fatalf("mount B sees %q before it was written", key)
	}

	start := time.Now()
	run(t, "cp", filepath.Join(src, "t.jsonl"), a.Path(key))
	if !waitFor(within, func() bool { got, ok := catBytes(t, b.Path(key)); return ok && got == string(tp.Data) }) {
		t.Fatalf("mount B does not serve %q written through A within %s", key, within)
	}
	t.Logf("write through A visible in B after %s", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	run(t, "mv", a.Path(key), a.Path(renamed))
	if !waitFor(within, func() bool {
		got, ok := catBytes(t, b.Path(renamed))
		return ok && got == string(tp.Data) && absent(t, b.Path(key))
	}) {
		t.Fatalf("mount B does not show the rename %q -> %q within %s:\n%s", key, renamed, within, run(t, "ls", "-la", b.Path("shared")))
	}
	t.Logf("rename through A visible in B after %s", time.Since(start).Round(time.Millisecond))
	if ls := lsDir(t, b.Path("shared")); len(ls) != 1 || ls["renamed.jsonl"].Size != int64(len(tp.Data)) {
		t.Errorf("ls -l of B's shared/ after the rename = %v, want only renamed.jsonl (%d bytes)", ls, len(tp.Data))
	}

	start = time.Now()
	run(t, "rm", a.Path(renamed))
	if !waitFor(within, func() bool { return absent(t, b.Path(renamed)) }) {
		t.Fatalf("mount B still has %q deleted through A after %s", renamed, within)
	}
	t.Logf("delete through A visible in B after %s", time.Since(start).Round(time.Millisecond))
	if ls := lsDir(t, b.Path("shared")); len(ls) != 0 {
		t.Errorf("ls -l of B's shared/ after the delete = %v, want it empty", ls)
	}

	// A third mount that lists the store only every minute: `tapefs
	// refresh` makes a change visible at once.
	stC := &s3Twin{s3Store: stA, dirs: newStoreDirs(t)}
	c := mount(t, stC, withArgs("--refresh-interval", "1m"))
	late := "shared/late.txt"
	if !absent(t, c.Path(late)) { // also puts a negative entry in C's kernel cache
		t.Fatalf("mount C sees %q before it was written", late)
	}
	run(t, "sh", "-c", `printf 'late\n' > "$1"`, "sh", a.Path(late))
	time.Sleep(1500 * time.Millisecond) // past the kernel's negative entry timeout (1 s)
	if !absent(t, c.Path(late)) {
		t.Fatalf("mount C sees %q without a refresh; the test proves nothing", late)
	}
	r := tapefs(t, stC, "refresh", c.Dir)
	if r.Code != 0 {
		t.Fatalf("tapefs refresh failed:\n%s", r)
	}
	if !strings.Contains(r.Stdout, "refreshed "+c.Dir) || !strings.Contains(r.Stdout, " 1 added, ") || !strings.Contains(r.Stdout, " 0 removed;") {
		t.Errorf("tapefs refresh does not say what it found (1 key added):\n%s", r)
	}
	if got, ok := catBytes(t, c.Path(late)); !ok || got != "late\n" {
		t.Errorf("right after `tapefs refresh`, C reads %q (ok=%v), want \"late\\n\"", got, ok)
	}
	run(t, "rm", a.Path(late))
	r = tapefs(t, stC, "refresh", c.Dir, "--json")
	if r.Code != 0 {
		t.Fatalf("tapefs refresh failed:\n%s", r)
	}
	var res struct {
		Removed int
		Changes []struct{ Key string }
	}
	err := json.Unmarshal([]byte(r.Stdout), &res)
	if err != nil || res.Removed != 1 || !slices.ContainsFunc(res.Changes, func(c struct{ Key string }) bool { return c.Key == late }) {
		t.Errorf("tapefs refresh --json does not list the one key removed, %q (%v):\n%s", late, err, r)
	}
	if !absent(t, c.Path(late)) {
		t.Errorf("right after `tapefs refresh`, C still has %q deleted through A", late)
	}
}

// TestRemoteExclusiveCreate: an O_EXCL create (dd conv=excl) of the same
// new file through two mounts of one bucket: the second, whose sidecar has
// not seen the first one's file yet, fails at create or at close instead of
// replacing the object, and the store keeps the first one's bytes.
func TestRemoteExclusiveCreate(t *testing.T) {
	stA, stB := newS3Pair(t)
	a := mount(t, stA, withArgs("--refresh-interval", "0"))
	b := mount(t, stB, withArgs("--refresh-interval", "0"))
	bucket := stA.Bucket()
	src := writeLocal(t, map[string][]byte{"a": []byte("written through A\n"), "b": []byte("written through B, must not win\n")})
	key := "excl.txt"

	if !absent(t, b.Path(key)) {
		t.Fatalf("mount B sees %q before it was written", key)
	}
	run(t, "dd", "if="+filepath.Join(src, "a"), "of="+a.Path(key), "conv=excl", "status=none")
	if got, ok := storeRead(t, bucket, key); !ok || string(got) != "written through A\n" {
		t.Fatalf("store has %q (ok=%v) after the create through A", got, ok)
	}
	if !absent(t, b.Path(key)) {
		t.Fatalf("mount B (no refresh) already sees %q: the test would not reach the conditional upload", key)
	}

	r := try(t, "dd", "if="+filepath.Join(src, "b"), "of="+b.Path(key), "conv=excl", "status=none")
	if r.Code == 0 {
		t.Errorf("O_EXCL create of %q through B succeeded although A had created it:\n%s", key, r)
	} else if !strings.Contains(r.Stderr, "File exists") && !strings.Contains(r.Stderr, "Input/output error") {
		t.Errorf("O_EXCL create through B failed, but not with EEXIST or EIO:\n%s", r)
	}
	t.Logf("B's exclusive create: %s", strings.TrimSpace(r.Stderr))
	if got, ok := storeRead(t, bucket, key); !ok || string(got) != "written through A\n" {
		t.Errorf("store has %q (ok=%v) after B's O_EXCL create, want A's bytes", got, ok)
	}

	// B does not keep its losing copy as an upload to retry for ever, and
	// it reads the object the store has, A's.
	if !waitFor(10*time.Second, func() bool { return len(pendingKeys(t, b)) == 0 }) {
		t.Errorf("B keeps a pending upload after its O_EXCL create lost: %q", pendingKeys(t, b))
	}
	if got, ok := catBytes(t, b.Path(key)); !ok || got != "written through A\n" {
		t.Errorf("B reads %q (ok=%v) after its O_EXCL create lost, want A's bytes", got, ok)
	}
	// Once B knows the file, an O_EXCL create fails at once with EEXIST.
	r = try(t, "dd", "if="+filepath.Join(src, "b"), "of="+b.Path(key), "conv=excl", "status=none")
	if r.Code == 0 || !strings.Contains(r.Stderr, "File exists") {
		t.Errorf("a second O_EXCL create through B should fail with EEXIST:\n%s", r)
	}
	if got, _ := storeRead(t, bucket, key); string(got) != "written through A\n" {
		t.Errorf("store has %q after B's second O_EXCL create, want A's bytes", got)
	}
}

// TestRemoteServerDownRead: with the server stopped, a tape never read
// fails with EIO within a bounded time (--timeout), a tape read before is
// served from the read cache, and `ls -l` works from the sidecar. When the
// server is back, the same mount reads the other tape without a remount.
func TestRemoteServerDownRead(t *testing.T) {
	st := newS3Store(t).(*s3Store)
	read, unread := newTape(31, 40), newTape(32, 40)
	files := map[string][]byte{"dir/read.jsonl": read.Data, "dir/unread.jsonl": unread.Data}
	m := mountFiles(t, st, files, withArgs("--timeout", "3s"))

	if got, ok := catBytes(t, m.Path("dir/read.jsonl")); !ok || got != string(read.Data) {
		t.Fatalf("cannot read dir/read.jsonl while the server is up")
	}
	st.srv.Stop(t)

	took := failsWithEIO(t, "read of an uncached tape with the server stopped", "cat", m.Path("dir/unread.jsonl"))
	if took > 30*time.Second {
		t.Errorf("read of an uncached tape with the server stopped took %s (--timeout 3s)", took)
	}

	// Drop the kernel's pages of the file, so the read below is served by
	// the daemon from its --cache-dir, not by the page cache.
	run(t, "dd", "if="+m.Path("dir/read.jsonl"), "iflag=nocache", "count=0", "status=none")
	cached := statusOf(t, m).Counters.CacheBytes
	if got, ok := catBytes(t, m.Path("dir/read.jsonl")); !ok || got != string(read.Data) {
		t.Errorf("a tape read before the server stopped is not readable from the cache (ok=%v, %d bytes)", ok, len(got))
	}
	if now := statusOf(t, m).Counters.CacheBytes; now < cached+int64(len(read.Data)) {
		t.Errorf("bytes_read_from_cache went from %d to %d reading %d bytes: not served by the disk cache", cached, now, len(read.Data))
	}
	ls := lsDir(t, m.Path("dir"))
	for key, data := range files {
		name := strings.TrimPrefix(key, "dir/")
		if e, ok := ls[name]; !ok || e.Size != int64(len(data)) {
			t.Errorf("ls -l with the server stopped: %q is %+v (listed %v), want %d bytes", name, e, ok, len(data))
		}
	}

	st.srv.Start(t)
	var got string
	var ok bool
	if !waitFor(15*time.Second, func() bool { got, ok = catBytes(t, m.Path("dir/unread.jsonl")); return ok }) || got != string(unread.Data) {
		t.Errorf("after the server came back, dir/unread.jsonl reads %d bytes (ok=%v), want %d", len(got), ok, len(unread.Data))
	}
}

// TestRemoteMountWhileServerDown: a store whose sidecar has listed it
// before mounts while its server is stopped, from that listing: ls -l
// shows every file, a tape read before is read from the disk cache, and a
// tape never read fails with EIO within the bound. Once the server is back,
// the same mount reads it, with no remount. A mount of the same store with
// a sidecar that never listed it still fails, naming the cause.
func TestRemoteMountWhileServerDown(t *testing.T) {
	t.Parallel() // it mostly waits out its own server's timeouts
	st, fresh := newS3Pair(t)
	read, unread := newTape(51, 30), newTape(52, 30)
	files := map[string][]byte{"dir/read.jsonl": read.Data, "dir/unread.jsonl": unread.Data}
	m := mountFiles(t, st, files, withArgs("--timeout", "3s"))
	if got, ok := catBytes(t, m.Path("dir/read.jsonl")); !ok || got != string(read.Data) {
		t.Fatalf("cannot read dir/read.jsonl while the server is up")
	}
	m.Unmount(t)
	st.srv.Stop(t)

	m = mount(t, st, at(m.Dir), withArgs("--timeout", "3s"))
	if log := m.logs(); !strings.Contains(log, "serving its last listing from the sidecar") {
		t.Errorf("the log does not say that the mount serves the sidecar's listing:\n%s", log)
	}
	ls := lsDir(t, m.Path("dir"))
	for key, data := range files {
		name := strings.TrimPrefix(key, "dir/")
		if e, ok := ls[name]; !ok || e.Size != int64(len(data)) {
			t.Errorf("ls -l of a mount made with the server stopped: %q is %+v (listed %v), want %d bytes", name, e, ok, len(data))
		}
	}
	if got, ok := catBytes(t, m.Path("dir/read.jsonl")); !ok || got != string(read.Data) {
		t.Errorf("a tape read before is not readable from the disk cache (ok=%v, %d bytes)", ok, len(got))
	}
	if took := failsWithEIO(t, "read of a tape never read, with the server stopped", "cat", m.Path("dir/unread.jsonl")); took > 30*time.Second {
		t.Errorf("the read took %s (--timeout 3s)", took)
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rememberMount(dir)
	if r := tapefs(t, fresh, mountArgs(fresh, dir, true, "--timeout", "3s")...); r.Code == 0 || !strings.Contains(r.Stderr, "unreachable") {
		detach(dir)
		t.Errorf("a mount with a sidecar that never listed the store, with the server stopped: want it refused as unreachable\n%s", r)
	}

	st.srv.Start(t)
	var got string
	var ok bool
	if !waitFor(15*time.Second, func() bool { got, ok = catBytes(t, m.Path("dir/unread.jsonl")); return ok }) || got != string(unread.Data) {
		t.Errorf("after the server came back, dir/unread.jsonl reads %d bytes (ok=%v), want %d", len(got), ok, len(unread.Data))
	}
}

// TestRemoteServerDownWrite: a file written while the server is stopped
// fails at close with EIO, is listed by `tapefs status` as pending, and
// reaches the store by itself once the server is back. A file written while
// it is stopped and left staged when the daemon unmounts (which must not
// hang) is uploaded by the next mount.
func TestRemoteServerDownWrite(t *testing.T) {
	t.Parallel() // it mostly waits out its own server's timeouts
	st := newS3Store(t).(*s3Store)
	bucket := st.Bucket()
	m := mountFiles(t, st, map[string][]byte{"keep.txt": []byte("keep\n")})
	mounted := time.Now() // the background retry runs every 15 s from here
	first, second := newTape(41, 6), newTape(42, 6)
	src := writeLocal(t, map[string][]byte{"first.jsonl": first.Data, "second.jsonl": second.Data})

	st.srv.Stop(t)
	failsWithEIO(t, "cp into the mount with the server stopped (at close)", "cp", filepath.Join(src, "first.jsonl"), m.Path("first.jsonl"))
	if r := tapefs(t, st, "status"); !strings.Contains(r.Stdout, "pending:  1 uploads") || !strings.Contains(r.Stdout, "first.jsonl") {
		t.Errorf("right after the failed close, tapefs status does not list first.jsonl as pending:\n%s", r)
	}
	// It stays listed the whole time: while the last close's upload is
	// tried again in the background, and through the first periodic retry
	// (15 s after the mount) and its failure.
	for until := mounted.Add(21 * time.Second); time.Now().Before(until); time.Sleep(300 * time.Millisecond) {
		if keys := pendingKeys(t, m); len(keys) != 1 || keys[0] != "first.jsonl" {
			t.Errorf("%s after the mount, tapefs status --json lists pending uploads %q, want [first.jsonl]", time.Since(mounted).Round(100*time.Millisecond), keys)
			break
		}
	}

	st.srv.Start(t)
	start := time.Now()
	if !waitFor(30*time.Second, func() bool { got, ok := storeRead(t, bucket, "first.jsonl"); return ok && bytes.Equal(got, first.Data) }) {
		t.Fatalf("first.jsonl did not reach the store within 30 s of the server's return")
	}
	t.Logf("first.jsonl reached the store %s after the server came back", time.Since(start).Round(time.Millisecond))
	if !waitFor(5*time.Second, func() bool { return len(pendingKeys(t, m)) == 0 }) {
		t.Errorf("still pending after the upload: %q", pendingKeys(t, m))
	}
	if got, ok := catBytes(t, m.Path("first.jsonl")); !ok || got != string(first.Data) {
		t.Errorf("the mount reads %d bytes of first.jsonl (ok=%v), want %d", len(got), ok, len(first.Data))
	}

	// Across a daemon restart.
	st.srv.Stop(t)
	if r := try(t, "cp", filepath.Join(src, "second.jsonl"), m.Path("second.jsonl")); r.Code == 0 {
		t.Errorf("cp of second.jsonl with the server stopped succeeded:\n%s", r)
	}
	start = time.Now()
	m.Unmount(t)
	t.Logf("unmount with an upload pending and the server stopped took %s", time.Since(start).Round(time.Millisecond))
	st.srv.Start(t)
	if _, ok := storeRead(t, bucket, "second.jsonl"); ok {
		t.Fatalf("second.jsonl is in the store before the next mount")
	}
	m = mount(t, st, at(m.Dir))
	if !waitFor(20*time.Second, func() bool {
		got, ok := storeRead(t, bucket, "second.jsonl")
		return ok && bytes.Equal(got, second.Data)
	}) {
		t.Errorf("the next mount did not upload the staged second.jsonl")
	}
	if got, ok := catBytes(t, m.Path("second.jsonl")); !ok || got != string(second.Data) {
		t.Errorf("the mount reads %d bytes of second.jsonl (ok=%v), want %d", len(got), ok, len(second.Data))
	}
	if keys := pendingKeys(t, m); len(keys) != 0 {
		t.Errorf("pending uploads after the restart: %q", keys)
	}
}

// TestRemoteFailedUploadKeptVisible: data whose upload failed at close
// (server stopped) is kept for retry, and until the store has it the mount
// shows it: stat gives its size, cat its bytes, an append or an overwrite
// builds on it (not on the store's older version), and all of it reaches
// the store once the server is back. A file removed, or renamed, after
// its upload failed stays removed, or renamed: a later retry does not
// bring the old name back.
func TestRemoteFailedUploadKeptVisible(t *testing.T) {
	t.Parallel() // it mostly waits out its own server's timeouts
	st := newS3Store(t).(*s3Store)
	bucket := st.Bucket()
	m := mountFiles(t, st, map[string][]byte{"keep.txt": []byte("keep\n"), "gone.txt": []byte("gone\n"), "mv1.txt": []byte("old\n")})
	first := newTape(43, 6)
	src := writeLocal(t, map[string][]byte{"first.jsonl": first.Data})
	sh := func(script string) Result { return try(t, "sh", "-c", script, "sh", m.Dir) }

	st.srv.Stop(t)
	failsWithEIO(t, "cp with the server stopped", "cp", filepath.Join(src, "first.jsonl"), m.Path("first.jsonl"))
	if fi, err := os.Stat(m.Path("first.jsonl")); err != nil || fi.Size() != int64(len(first.Data)) {
		t.Errorf("stat of the kept first.jsonl: %v, want %d bytes (err %v)", fi, len(first.Data), err)
	}
	if got, ok := catBytes(t, m.Path("first.jsonl")); !ok || got != string(first.Data) {
		t.Errorf("cat of the kept first.jsonl gives %d bytes (ok=%v), want the %d written", len(got), ok, len(first.Data))
	}
	// The shell does not report a close that fails (the daemon logs it).
	sh(`printf 'more\n' >> "$1/first.jsonl"`)
	sh(`printf 'changed\n' > "$1/keep.txt"`)
	want := map[string]string{"first.jsonl": string(first.Data) + "more\n", "keep.txt": "changed\n"}
	for key, data := range want {
		if got, ok := catBytes(t, m.Path(key)); !ok || got != data {
			t.Errorf("with the server stopped, cat %s gives %d bytes (ok=%v), want the %d written", key, len(got), ok, len(data))
		}
	}
	sh(`printf 'new\n' > "$1/gone.txt"; printf 'new\n' > "$1/mv1.txt"`)

	st.srv.Start(t)
	if r := try(t, "rm", m.Path("gone.txt")); r.Code != 0 {
		t.Errorf("rm of gone.txt, its upload queued:\n%s", r)
	}
	if r := try(t, "mv", m.Path("mv1.txt"), m.Path("mv2.txt")); r.Code != 0 {
		t.Errorf("mv of mv1.txt, its upload queued:\n%s", r)
	}
	want["mv2.txt"] = "new\n"
	if !waitFor(30*time.Second, func() bool {
		for key, data := range want {
			if got, ok := storeRead(t, bucket, key); !ok || string(got) != data {
				return false
			}
		}
		return true
	}) {
		for key, data := range want {
			got, ok := storeRead(t, bucket, key)
			t.Errorf("30 s after the server came back the store holds %d bytes of %s (present: %v, right: %v), want %d", len(got), key, ok, string(got) == data, len(data))
		}
	}
	m.Unmount(t) // uploads whatever is still queued
	for _, key := range []string{"gone.txt", "mv1.txt"} {
		if got, ok := storeRead(t, bucket, key); ok {
			t.Errorf("%s, removed or renamed after its upload failed, is in the store again: %q", key, got)
		}
	}
	for key, data := range want {
		if got, ok := storeRead(t, bucket, key); !ok || string(got) != data {
			t.Errorf("after the unmount the store holds %d bytes of %s (present: %v, right: %v), want %d", len(got), key, ok, string(got) == data, len(data))
		}
	}
}

// TestRemoteServerHung: a server that accepts connections and answers
// nothing (SIGSTOP: a hung process, a lost route) rather than refusing
// them. A read of an uncached tape fails with EIO after one --timeout, not
// one for each time the kernel asks again; a copy in fails at close with
// EIO after the SDK's tries, each bounded by --timeout, instead of waiting
// out the 10-minute upload bound; ls and cached tapes keep working; and
// once the server goes on, the kept upload lands and reads work again.
func TestRemoteServerHung(t *testing.T) {
	t.Parallel() // it mostly waits out its own server's timeouts
	st := newS3Store(t).(*s3Store)
	bucket := st.Bucket()
	read, unread, copied := newTape(51, 40), newTape(52, 40), newTape(53, 8)
	files := map[string][]byte{"dir/read.jsonl": read.Data, "dir/unread.jsonl": unread.Data}
	const timeout = 3 * time.Second
	m := mountFiles(t, st, files, withArgs("--timeout", timeout.String()))
	if got, ok := catBytes(t, m.Path("dir/read.jsonl")); !ok || got != string(read.Data) {
		t.Fatalf("cannot read dir/read.jsonl while the server answers")
	}
	src := writeLocal(t, map[string][]byte{"copied.jsonl": copied.Data})

	st.srv.Pause(t)
	took := failsWithEIO(t, "read of an uncached tape from a paused server", "cat", m.Path("dir/unread.jsonl"))
	if took > timeout*9/5 {
		t.Errorf("read of an uncached tape from a paused server took %s: more than one --timeout (%s)", took, timeout)
	}

	took = failsWithEIO(t, "cp into the mount with the server paused (at close)", "cp", filepath.Join(src, "copied.jsonl"), m.Path("dir/copied.jsonl"))
	// Three tries of --timeout each, and the SDK's backoff between them.
	if took > 12*timeout {
		t.Errorf("cp into the mount with the server paused took %s (--timeout %s): a silent server must not hold a close", took, timeout)
	}
	if keys := pendingKeys(t, m); len(keys) != 1 || keys[0] != "dir/copied.jsonl" {
		t.Errorf("tapefs status lists pending uploads %q, want [dir/copied.jsonl]", keys)
	}
	ls := lsDir(t, m.Path("dir"))
	if e, ok := ls["read.jsonl"]; !ok || e.Size != int64(len(read.Data)) {
		t.Errorf("ls -l with the server paused: read.jsonl is %+v (listed %v)", e, ok)
	}
	run(t, "dd", "if="+m.Path("dir/read.jsonl"), "iflag=nocache", "count=0", "status=none")
	if got, ok := catBytes(t, m.Path("dir/read.jsonl")); !ok || got != string(read.Data) {
		t.Errorf("a tape read before the pause is not readable from the cache (ok=%v, %d bytes)", ok, len(got))
	}

	st.srv.Resume(t)
	if !waitFor(40*time.Second, func() bool {
		got, ok := storeRead(t, bucket, "dir/copied.jsonl")
		return ok && bytes.Equal(got, copied.Data)
	}) {
		t.Errorf("dir/copied.jsonl did not reach the store within 40 s of the server going on")
	}
	var got string
	var ok bool
	if !waitFor(15*time.Second, func() bool { got, ok = catBytes(t, m.Path("dir/unread.jsonl")); return ok }) || got != string(unread.Data) {
		t.Errorf("after the server went on, dir/unread.jsonl reads %d bytes (ok=%v), want %d", len(got), ok, len(unread.Data))
	}
}
