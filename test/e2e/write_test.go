package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// checkStore compares the store's objects with want (key -> bytes, nil:
// must be absent), when the test can see the store.
func checkStore(t *testing.T, st Store, want map[string][]byte) {
	t.Helper()
	b := st.Bucket()
	if b == nil {
		return
	}
	for key, w := range want {
		got, ok := storeRead(t, b, key)
		switch {
		case w == nil && ok:
			t.Errorf("store: %q still exists", key)
		case w != nil && !ok:
			t.Errorf("store: %q is missing", key)
		case w != nil && !bytes.Equal(got, w):
			t.Errorf("store: %q has %s", key, sameBytes(got, w))
		}
	}
}

// checkMount compares files in the mount with want (nil: must be absent).
func checkMount(t *testing.T, m *Mount, want map[string][]byte) {
	t.Helper()
	for key, w := range want {
		r := try(t, "cat", "--", m.Path(key))
		switch {
		case w == nil && r.Code == 0:
			t.Errorf("mount: %q still exists", key)
		case w == nil && !strings.Contains(r.Stderr, "No such file"):
			t.Errorf("mount: %q should be gone (ENOENT):\n%s", key, r)
		case w != nil && r.Code != 0:
			t.Errorf("mount: cannot read %q:\n%s", key, r)
		case w != nil && r.Stdout != string(w):
			t.Errorf("mount: %q has %s", key, sameBytes([]byte(r.Stdout), w))
		}
	}
}

// writeLocal writes files into a fresh local directory and returns it.
func writeLocal(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	writeTree(t, dir, files)
	return dir
}

// TestCopyTapeIn: cp a new tape (and its .meta.json) into the mount; it is
// readable, in the store, and indexed with the right frame count.
func TestCopyTapeIn(t *testing.T) {
	c := newCorpus(t)
	tp := newTape(7, 9)
	id := tp.ID()
	src := writeLocal(t, map[string][]byte{id + ".jsonl": tp.Data, id + ".meta.json": tp.Meta})
	forEachBackend(t, func(t *testing.T, st Store) {
		m := mountFiles(t, st, c.Files)
		run(t, "mkdir", "-p", m.Path("incoming/2025"))
		dst := m.Path("incoming/2025") + "/"
		run(t, "cp", filepath.Join(src, id+".meta.json"), filepath.Join(src, id+".jsonl"), dst)

		key := "incoming/2025/" + id + ".jsonl"
		run(t, "cmp", filepath.Join(src, id+".jsonl"), m.Path(key))
		checkStore(t, st, map[string][]byte{key: tp.Data, "incoming/2025/" + id + ".meta.json": tp.Meta})
		recs := waitIndexed(t, st, key)
		checkRecord(t, recs[key], tp.Want(key))
	})
}

// TestCopyPreserving: the copies that try to keep modes, times and
// extended attributes (cp -a, cp -rp, tar -xp, rsync -a) of a tree of
// tapes and directories succeed (exit 0) and put the exact bytes in the
// store. What the store cannot keep (modes, ACLs) they are told with
// ENOTSUP, which they accept; a directory answered ENODATA, and cp -a
// exited 1.
func TestCopyPreserving(t *testing.T) {
	a, b := newTape(11, 12), newTape(12, 7)
	files := map[string][]byte{
		"set/a.jsonl": a.Data, "set/a.meta.json": a.Meta,
		"set/sub/b.jsonl": b.Data, "set/sub/deeper/notes.txt": []byte("notes\n"),
	}
	src := writeLocal(t, files)
	forEachBackend(t, func(t *testing.T, st Store) {
		m := mount(t, st)
		copies := []struct {
			name, dir string
			cmd       []string
		}{
			{"cp -a", "cp-a", []string{"cp", "-a", filepath.Join(src, "set"), m.Path("cp-a")}},
			{"cp -rp", "cp-rp", []string{"cp", "-rp", filepath.Join(src, "set"), m.Path("cp-rp")}},
			{"tar -xp", "tar", []string{"sh", "-c", "mkdir " + shellQuote([]string{m.Path("tar")}) +
				" && tar -C " + shellQuote([]string{src}) + " -cf - set | tar -C " + shellQuote([]string{m.Path("tar")}) + " -xpf -"}},
			{"rsync -a", "rsync", []string{"rsync", "-a", filepath.Join(src, "set") + "/", m.Path("rsync") + "/"}},
		}
		want := map[string][]byte{}
		for _, c := range copies {
			if r := try(t, c.cmd[0], c.cmd[1:]...); r.Code != 0 {
				t.Errorf("%s into the mount:\n%s", c.name, r)
			}
			prefix := c.dir + "/"
			if c.dir == "tar" {
				prefix = "tar/set/"
			}
			for key, data := range files {
				want[prefix+strings.TrimPrefix(key, "set/")] = data
			}
		}
		checkStore(t, st, want)
		checkMount(t, m, want)
		// And a second rsync -a of the same tree, as a backup job runs.
		if r := try(t, "rsync", "-a", filepath.Join(src, "set")+"/", m.Path("rsync")+"/"); r.Code != 0 {
			t.Errorf("rsync -a again:\n%s", r)
		}
		checkStore(t, st, want)
	})
}

// TestMoveFile: mv renames a tape within its directory and into another
// directory; the old name is gone everywhere, the new one has the bytes.
func TestMoveFile(t *testing.T) {
	c := newCorpus(t)
	forEachBackend(t, func(t *testing.T, st Store) {
		m := mountFiles(t, st, c.Files)
		renamed := path.Dir(c.V2Tape) + "/renamed.jsonl"
		for _, mv := range []struct{ from, to string }{
			{c.V2Tape, renamed},
			{c.PlainText, "v1/README moved.txt"},
			{renamed, "odd names/renamed again.jsonl"},
		} {
			data := c.Files[mv.from]
			if data == nil {
				data = c.Files[c.V2Tape]
			}
			run(t, "mv", m.Path(mv.from), m.Path(mv.to))
			checkMount(t, m, map[string][]byte{mv.from: nil, mv.to: data})
			if _, ok := lsDir(t, m.Path(path.Dir(mv.from)))[path.Base(mv.from)]; ok {
				t.Errorf("ls still lists %q after mv", mv.from)
			}
			checkStore(t, st, map[string][]byte{mv.from: nil, mv.to: data})
		}
		// The index follows the tape to its new key.
		final := "odd names/renamed again.jsonl"
		recs := waitLs(t, st, "the moved tape re-keyed", func(recs map[string]TapeRecord) bool {
			_, moved := recs[final]
			_, old := recs[c.V2Tape]
			return moved && !old
		})
		if got, want := recs[final].TapeID, c.Tapes[c.V2Tape].TapeID; got != want {
			t.Errorf("moved tape has tape_id %q, want %q", got, want)
		}
	})
}

// TestMoveDirectory: mv renames whole directories (flat and nested), with
// every object below them.
func TestMoveDirectory(t *testing.T) {
	c := newCorpus(t)
	forEachBackend(t, func(t *testing.T, st Store) {
		m := mountFiles(t, st, c.Files)
		run(t, "mkdir", m.Path("archive"))
		moves := []struct{ from, to string }{
			{"v1", "archive/v1-old"},
			{c.Nested, "nested moved"},
		}
		want := map[string][]byte{}
		renamed := map[string]string{} // old tape key -> new key
		for _, mv := range moves {
			run(t, "mv", m.Path(mv.from), m.Path(mv.to))
			for key, data := range c.Files {
				if strings.HasPrefix(key, mv.from+"/") {
					to := mv.to + key[len(mv.from):]
					want[key], want[to] = nil, data
					if _, isTape := c.Tapes[key]; isTape {
						renamed[key] = to
					}
				}
			}
			if r := try(t, "stat", m.Path(mv.from)); r.Code == 0 {
				t.Errorf("%q still exists after mv", mv.from)
			}
		}
		checkMount(t, m, want)
		checkStore(t, st, want)
		root := lsDir(t, m.Dir)
		if _, ok := root["v1"]; ok {
			t.Errorf("ls still lists v1 after mv")
		}
		if !root["nested moved"].IsDir() || !lsDir(t, m.Path("archive"))["v1-old"].IsDir() {
			t.Errorf("moved directories are not listed as directories")
		}
		recs := waitLs(t, st, "moved tapes re-keyed", func(recs map[string]TapeRecord) bool {
			for from, to := range renamed {
				_, old := recs[from]
				_, moved := recs[to]
				if old || !moved {
					return false
				}
			}
			return true
		})
		for from, to := range renamed {
			if recs[to].TapeID != c.Tapes[from].TapeID {
				t.Errorf("%q (moved from %q) has tape_id %q, want %q", to, from, recs[to].TapeID, c.Tapes[from].TapeID)
			}
		}
	})
}

// TestRemove: rm removes a file, rm -r a directory tree, from the mount,
// the store and the index.
func TestRemove(t *testing.T) {
	c := newCorpus(t)
	forEachBackend(t, func(t *testing.T, st Store) {
		m := mountFiles(t, st, c.Files)
		victim := c.V2Tape
		run(t, "rm", m.Path(victim))
		run(t, "rm", "-r", m.Path("odd names"))
		gone := map[string][]byte{victim: nil}
		for key := range c.Files {
			if strings.HasPrefix(key, "odd names/") {
				gone[key] = nil
			}
		}
		checkMount(t, m, gone)
		checkStore(t, st, gone)
		if _, ok := lsDir(t, m.Dir)["odd names"]; ok {
			t.Errorf("ls still lists the removed directory")
		}
		if b := st.Bucket(); b != nil {
			for _, k := range storeKeys(t, b) {
				if strings.HasPrefix(k, "odd names/") {
					t.Errorf("store still has %q after rm -r", k)
				}
			}
		}
		waitLs(t, st, "removed tapes unlisted", func(recs map[string]TapeRecord) bool {
			for key := range gone {
				if _, ok := recs[key]; ok {
					return false
				}
			}
			return true
		})
	})
}

// TestMkdirRmdir: mkdir -p makes empty directories that survive a remount;
// rmdir refuses non-empty ones with ENOTEMPTY and removes empty ones for good.
func TestMkdirRmdir(t *testing.T) {
	c := newCorpus(t)
	forEachBackend(t, func(t *testing.T, st Store) {
		m := mountFiles(t, st, c.Files)
		run(t, "mkdir", "-p", m.Path("a/b/c"))
		checkDirs := func(want map[string]bool) {
			t.Helper()
			for dir, exists := range want {
				r := try(t, "stat", "-c", "%F", m.Path(dir))
				switch {
				case exists && (r.Code != 0 || strings.TrimSpace(r.Stdout) != "directory"):
					t.Errorf("%q should be a directory:\n%s", dir, r)
				case !exists && r.Code == 0:
					t.Errorf("%q should be gone, stat says %q", dir, strings.TrimSpace(r.Stdout))
				}
			}
		}
		checkDirs(map[string]bool{"a": true, "a/b": true, "a/b/c": true})
		if got := lsDir(t, m.Path("a/b/c")); len(got) != 0 {
			t.Errorf("new directory a/b/c is not empty: %v", got)
		}

		for _, dir := range []string{"a", "a/b", "v1"} {
			r := try(t, "rmdir", m.Path(dir))
			if r.Code == 0 || !strings.Contains(r.Stderr, "Directory not empty") {
				t.Errorf("rmdir of non-empty %q should fail with ENOTEMPTY:\n%s", dir, r)
			}
		}
		if b := st.Bucket(); b != nil {
			t.Logf("store keys under a/: %q", keysWithPrefix(storeKeys(t, b), "a/"))
		}

		if st.Persistent() {
			m = m.Remount(t)
			checkDirs(map[string]bool{"a": true, "a/b": true, "a/b/c": true})
		}
		run(t, "rmdir", m.Path("a/b/c"))
		checkDirs(map[string]bool{"a/b": true, "a/b/c": false})
		if st.Persistent() {
			m = m.Remount(t)
			checkDirs(map[string]bool{"a": true, "a/b": true, "a/b/c": false})
		}
		run(t, "rmdir", m.Path("a/b"), m.Path("a"))
		checkDirs(map[string]bool{"a": false})
		if b := st.Bucket(); b != nil {
			if left := keysWithPrefix(storeKeys(t, b), "a/"); len(left) > 0 {
				t.Errorf("store keeps %q after rmdir", left)
			}
		}
		checkListing(t, m, c.Files)
	})
}

func keysWithPrefix(keys []string, prefix string) []string {
	var out []string
	for _, k := range keys {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out
}

// TestWritePersists: new files (shell redirect, cp), an overwrite, an append
// and a truncate go to the store; after an unmount and a new mount they are
// all there and re-indexed; and with the sidecar deleted the next mount
// rebuilds the index from the store.
func TestWritePersists(t *testing.T) {
	c := newCorpus(t)
	tp := newTape(11, 6)
	appendTo := c.NoMeta
	extra, extraFrames := moreFrames(t, c.Files[appendTo], newTape(12, 4).Data)
	src := writeLocal(t, map[string][]byte{"new.jsonl": tp.Data, "extra.jsonl": extra, "readme": []byte("overwritten\n")})

	forEachBackend(t, func(t *testing.T, st Store) {
		m := mountFiles(t, st, c.Files)
		want := maps.Clone(c.Files)

		run(t, "mkdir", m.Path("notes"))
		run(t, "sh", "-c", `printf 'hello, tapes\n' > "$1"`, "sh", m.Path("notes/hello.txt"))
		want["notes/hello.txt"] = []byte("hello, tapes\n")

		newKey := "new/" + tp.ID() + ".jsonl"
		run(t, "mkdir", m.Path("new"))
		run(t, "cp", filepath.Join(src, "new.jsonl"), m.Path(newKey))
		want[newKey] = tp.Data

		run(t, "cp", filepath.Join(src, "readme"), m.Path(c.PlainText))
		want[c.PlainText] = []byte("overwritten\n")

		run(t, "sh", "-c", `cat "$1" >> "$2"`, "sh", filepath.Join(src, "extra.jsonl"), m.Path(appendTo))
		want[appendTo] = append(append([]byte(nil), c.Files[appendTo]...), extra...)

		textKey := c.OddText
		run(t, "truncate", "-s", "7", m.Path(textKey))
		want[textKey] = c.Files[textKey][:7]

		checkMount(t, m, want)
		checkStore(t, st, want)
		if !st.Persistent() {
			t.Logf("%s:// does not outlive the daemon: remount not checked", st.Kind())
			return
		}

		m = m.Remount(t)
		checkListing(t, m, want)
		checkMount(t, m, want)
		wantNew := tp.Want(newKey)
		wantNew.Name, wantNew.Status, wantNew.Tags = nil, nil, nil // its .meta.json was not copied
		wantAppended := c.Tapes[appendTo]
		wantAppended.FrameCount += extraFrames
		wantAppended.ErrorCount = -1
		wantAppended.Name, wantAppended.Status, wantAppended.Tags = nil, nil, nil
		wantAppended.Size = int64(len(want[appendTo]))
		recs := waitIndexed(t, st, newKey, appendTo)
		checkRecord(t, recs[newKey], wantNew)
		checkRecord(t, recs[appendTo], wantAppended)

		// The sidecar is only a cache: without it the next mount rebuilds it.
		m.Unmount(t)
		for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
			os.Remove(st.Dirs().Meta + suffix)
		}
		m = mount(t, st, at(m.Dir))
		checkListing(t, m, want)
		keys := []string{newKey}
		for k := range c.Tapes {
			keys = append(keys, k)
		}
		recs = waitIndexed(t, st, keys...)
		checkRecord(t, recs[newKey], wantNew)
		checkRecord(t, recs[appendTo], wantAppended)
		for k, w := range c.Tapes {
			if k != appendTo {
				checkRecord(t, recs[k], w)
			}
		}
	})
}

// moreFrames turns the frame lines of donor into lines that continue tape
// (same session, seq numbers after the last one), for appending.
func moreFrames(t *testing.T, tape, donor []byte) ([]byte, int64) {
	t.Helper()
	var session string
	var lastSeq int64 = -1
	for _, line := range bytes.Split(bytes.TrimSpace(tape), []byte("\n")) {
		var v struct {
			Type      string `json:"type"`
			Seq       int64  `json:"seq"`
			SessionID string `json:"session_id"`
		}
		if json.Unmarshal(line, &v) != nil {
			continue
		}
		switch v.Type {
		case "init":
			session = v.SessionID
		case "frame":
			lastSeq = v.Seq
		}
	}
	var out bytes.Buffer
	var n int64
	for _, line := range bytes.Split(bytes.TrimSpace(donor), []byte("\n")) {
		var v map[string]any
		if json.Unmarshal(line, &v) != nil || v["type"] != "frame" {
			continue
		}
		lastSeq++
		v["seq"] = lastSeq
		if e, ok := v["env"].(map[string]any); ok {
			e["session_id"] = session
		}
		b, _ := json.Marshal(v)
		out.Write(b)
		out.WriteByte('\n')
		n++
	}
	return out.Bytes(), n
}

// TestPartialWriteInvisible: while a writer holds a file open and has
// written part of it, the store has no such object; after close it has the
// whole file. fsync uploads what was written so far, whole.
func TestPartialWriteInvisible(t *testing.T) {
	part1 := bytes.Repeat([]byte(`{"type":"frame","seq":0}`+"\n"), 40000) // ~1 MiB
	part2 := bytes.Repeat([]byte(`{"type":"frame","seq":1}`+"\n"), 40000)
	part3 := []byte(`{"type":"frame","seq":2}` + "\n")
	forEachBackend(t, func(t *testing.T, st Store) {
		b := needBucket(t, st)
		m := mountFiles(t, st, map[string][]byte{"keep.txt": []byte("x")})
		run(t, "mkdir", m.Path("partial"))
		key := "partial/tape.jsonl"

		absent := func(when string) {
			t.Helper()
			if data, ok := storeRead(t, b, key); ok {
				t.Errorf("%s: the store already has %q (%d bytes)", when, key, len(data))
			}
			if fs, ok := st.(*fileStore); ok {
				if found := findFiles(fs.dir, "tape.jsonl"); len(found) > 0 {
					t.Errorf("%s: the store directory has %q", when, found)
				}
			}
		}

		f := holdOpen(t, m.Path(key), false)
		f.Write(t, part1)
		time.Sleep(time.Second) // a daemon that uploads early would have done it by now
		absent("after the first write")
		f.Write(t, part2)
		absent("after the second write")
		if err := f.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		whole := append(append([]byte(nil), part1...), part2...)
		checkStore(t, st, map[string][]byte{key: whole})

		// fsync uploads the whole file so far; later writes stay invisible until close.
		f = holdOpen(t, m.Path(key), true)
		f.Write(t, part3)
		if err := f.Sync(); err != nil {
			t.Fatalf("fsync: %v", err)
		}
		synced := append(append([]byte(nil), whole...), part3...)
		checkStore(t, st, map[string][]byte{key: synced})
		f.Write(t, part1)
		time.Sleep(500 * time.Millisecond)
		checkStore(t, st, map[string][]byte{key: synced})
		if err := f.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		checkStore(t, st, map[string][]byte{key: append(synced, part1...)})
	})
}

// findFiles returns the paths below root whose name contains substr.
func findFiles(root, substr string) []string {
	var out []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(d.Name(), substr) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestStagingDiskFull fills the disk that holds the staged copies: the
// write and the close fail with ENOSPC, and nothing of the failed copy
// reaches the store (a new file does not appear, an existing one keeps its
// last version, in the store and through the mount). The failed copy is
// dropped, so the disk is free again and the next copy that fits works.
func TestStagingDiskFull(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st Store) {
		state := st.Dirs().State
		if state == "" {
			t.Skip("the embedded default keeps its state in the user's directories")
		}
		run(t, "mount", "-t", "tmpfs", "-o", "size=4m", "tapefs-staging", state)
		t.Cleanup(func() { exec.Command("umount", "-l", state).Run() })
		last := []byte("the last version\n")
		m := mountFiles(t, st, map[string][]byte{"keep.txt": last})

		frame := []byte(`{"jsonrpc":"2.0","method":"tools/call"}` + "\n")
		big := writeLocal(t, map[string][]byte{"big.jsonl": bytes.Repeat(frame, (6<<20)/len(frame))})
		for _, name := range []string{"new.jsonl", "keep.txt"} {
			r := try(t, "cp", filepath.Join(big, "big.jsonl"), m.Path(name))
			if r.Code == 0 || !strings.Contains(r.Stderr, "No space left on device") {
				t.Errorf("cp of 6 MiB onto a 4 MiB staging disk as %s: want ENOSPC\n%s", name, r)
			}
		}
		// The last close drops the copy after close(2) returns (RELEASE).
		if !waitFor(10*time.Second, func() bool {
			staged, _ := filepath.Glob(filepath.Join(state, "staging", "*.*")) // data and journals, not the lock
			return len(staged) == 0
		}) {
			t.Errorf("the failed staged copies were not dropped: %s", run(t, "ls", "-la", filepath.Join(state, "staging")))
		}
		want := map[string][]byte{"keep.txt": last, "new.jsonl": nil}
		checkStore(t, st, want)
		checkMount(t, m, want)

		small := writeLocal(t, map[string][]byte{"small.jsonl": frame})
		run(t, "cp", filepath.Join(small, "small.jsonl"), m.Path("new.jsonl"))
		want["new.jsonl"] = frame
		checkStore(t, st, want)
		checkMount(t, m, want)
		if log := m.logs(); !strings.Contains(log, "local disk full") || !strings.Contains(log, "--state-dir") {
			t.Errorf("the log does not say which disk is full and what to do:\n%s", log)
		}
	})
}

// TestSidecarDiskFull fills the disk of the sidecar: a create fails with
// ENOSPC (not EIO), the log names the sidecar and the flag that moves it,
// nothing reaches the store, and once there is room again the same create
// works without a remount.
func TestSidecarDiskFull(t *testing.T) {
	st := backendNamed(t, "file")
	dir := filepath.Dir(st.Dirs().Meta)
	run(t, "mount", "-t", "tmpfs", "-o", "size=4m", "tapefs-sidecar", dir)
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	m := mountFiles(t, st, map[string][]byte{"keep.txt": []byte("x")})
	filler := filepath.Join(dir, "filler")
	try(t, "dd", "if=/dev/zero", "of="+filler, "bs=64k") // until the disk is full
	r := try(t, "cp", "/etc/hostname", m.Path("new.txt"))
	if r.Code == 0 || !strings.Contains(r.Stderr, "No space left on device") {
		t.Errorf("create with the sidecar's disk full: want ENOSPC\n%s", r)
	}
	checkStore(t, st, map[string][]byte{"new.txt": nil})
	if log := m.logs(); !strings.Contains(log, "sidecar's disk is full") || !strings.Contains(log, "--meta") {
		t.Errorf("the log does not say that the sidecar's disk is full and how to move it:\n%s", log)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	run(t, "cp", "/etc/hostname", m.Path("new.txt"))
	host, err := os.ReadFile("/etc/hostname")
	if err != nil {
		t.Fatal(err)
	}
	checkStore(t, st, map[string][]byte{"new.txt": host})
	checkMount(t, m, map[string][]byte{"new.txt": host, "keep.txt": []byte("x")})
}

// TestStagingDirRemovedWhileMounted: rm -rf of the state directory while
// the mount is in use (a cleaner of old files, a user clearing state) does
// not break writes: the next file written makes the staging directory
// again, takes its lock again, and goes up; cp into the mount failed with
// ENOENT before. A second mount still cannot share the directory.
func TestStagingDirRemovedWhileMounted(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st Store) {
		state := st.Dirs().State
		if state == "" {
			t.Skip("the embedded default keeps its state in the user's directories")
		}
		m := mountFiles(t, st, map[string][]byte{"old.txt": []byte("old\n")})
		// A file open for writing across the removal keeps its bytes.
		run(t, "bash", "-c", `exec 3>"$1"; printf 'first\n' >&3; rm -rf "$2"; printf 'second\n' >&3; exec 3>&-`,
			"-", m.Path("open.txt"), filepath.Join(state, "staging"))
		frame := []byte(`{"jsonrpc":"2.0","method":"tools/call"}` + "\n")
		src := writeLocal(t, map[string][]byte{"new.jsonl": frame})
		run(t, "cp", filepath.Join(src, "new.jsonl"), m.Path("new.jsonl"))
		run(t, "sh", "-c", "echo changed > "+m.Path("old.txt"))
		want := map[string][]byte{"old.txt": []byte("changed\n"), "new.jsonl": frame, "open.txt": []byte("first\nsecond\n")}
		checkStore(t, st, want)
		checkMount(t, m, want)
		if fi, err := os.Stat(filepath.Join(state, "staging")); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("the staging directory was not made again with mode 0700: %v", err)
		}
		if log := m.logs(); !strings.Contains(log, "staging directory was removed") {
			t.Errorf("the log does not say the staging directory was made again:\n%s", log)
		}
		second := filepath.Join(t.TempDir(), "mnt")
		if err := os.Mkdir(second, 0o755); err != nil {
			t.Fatal(err)
		}
		rememberMount(second)
		if r := tapefs(t, st, mountArgs(st, second, true)...); r.Code == 0 || isMounted(second) {
			detach(second)
			t.Fatalf("a second mount shared the staging directory made again:\n%s", r)
		} else if !strings.Contains(r.Stderr, "in use by another tapefs mount") {
			t.Errorf("the second mount failed, but not for the staging directory's lock:\n%s", r)
		}
	})
}

// TestReadWhileWriterCloses: a file opened for reading while another
// handle is writing it reads what was written, also after the writer has
// closed (and its data gone up), as on a local disk.
func TestReadWhileWriterCloses(t *testing.T) {
	for _, name := range []string{"file", "s3"} {
		t.Run(name, func(t *testing.T) {
			m := mount(t, backendNamed(t, name))
			w, err := os.Create(m.Path("shared.txt"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.WriteString("written before the reader opened\n"); err != nil {
				t.Fatal(err)
			}
			r, err := os.Open(m.Path("shared.txt"))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if err := w.Close(); err != nil {
				t.Fatalf("close of the writer: %v", err)
			}
			got, err := io.ReadAll(r)
			if err != nil || string(got) != "written before the reader opened\n" {
				t.Errorf("the reader, after the writer closed, read %q (%v)", got, err)
			}
		})
	}
}
