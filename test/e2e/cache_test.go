package e2e

import (
	"bytes"
	"os"
	"testing"
	"time"
)

// TestStaleCacheNeverServed: a tape read through an S3 mount (so in the
// disk cache and the kernel's page cache) and then replaced behind the
// mount's back by other bytes of the same size is read anew after a
// refresh: never the cached old bytes.
func TestStaleCacheNeverServed(t *testing.T) {
	st := backendNamed(t, "s3")
	b := needBucket(t, st)
	old := bigTape(3 << 20).Data
	files := map[string][]byte{"team/t.jsonl": old}
	m := mountFiles(t, st, files, withArgs("--cache-dir", st.Dirs().Cache, "--refresh-interval", "0"))
	for i := 0; i < 2; i++ { // the second read is served from the caches
		if got, err := os.ReadFile(m.Path("team/t.jsonl")); err != nil || !bytes.Equal(got, old) {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	if dirBytes(st.Dirs().Cache) == 0 {
		t.Fatal("nothing in the disk cache: the test would prove nothing")
	}
	// Same size, other bytes: only the ETag tells them apart.
	changed := bytes.ToUpper(old)
	if bytes.Equal(changed, old) || len(changed) != len(old) {
		t.Fatal("the replacement must differ and have the same size")
	}
	time.Sleep(1100 * time.Millisecond) // S3 times have 1 s resolution
	if err := storeWrite(t, b, "team/t.jsonl", changed); err != nil {
		t.Fatal(err)
	}
	run(t, tapefsBin, "refresh", m.Dir)
	var got []byte
	if !waitFor(15*time.Second, func() bool {
		var err error
		got, err = os.ReadFile(m.Path("team/t.jsonl"))
		return err == nil && bytes.Equal(got, changed)
	}) {
		t.Fatalf("after the refresh the mount still serves %s", sameBytes(got, changed))
	}
	// And a remount with the same cache directory does not bring it back.
	m = m.Remount(t, withArgs("--cache-dir", st.Dirs().Cache))
	if got, err := os.ReadFile(m.Path("team/t.jsonl")); err != nil || !bytes.Equal(got, changed) {
		t.Fatalf("after a remount: %v, %s", err, sameBytes(got, changed))
	}
}
