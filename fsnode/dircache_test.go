package fsnode

import (
	"testing"
	"time"

	"github.com/tapefs/tapefs/meta"
)

// TestDirCache: the kernel keeps a directory's cached listing only while
// every handle that could have filled it read the listing of now.
func TestDirCache(t *testing.T) {
	const ttl = time.Hour
	var c dirCache
	var reads int64
	step := func(what string, fp uint64, want int) {
		t.Helper()
		if got := c.opened(fp, ttl, reads); got != want {
			t.Fatalf("%s: opened(%d) = %d, want %d", what, fp, got, want)
		}
	}
	step("first open of a new directory", 1, dirRefill)
	c.released(1)
	step("same listing", 1, dirCached)
	c.released(1)
	step("listing changed", 2, dirRefill)
	step("a second handle of the same listing", 2, dirCached)
	step("a handle of another listing while one of the old is open", 3, dirNoCache)
	c.released(2)
	step("the old handle may have filled the cache", 3, dirNoCache)
	c.released(2)
	c.released(3)
	c.released(3)
	step("no other handle open: filled again", 3, dirRefill)
	c.released(3)
	step("filled", 3, dirCached)
	c.released(3)
	step("refill that failed", 4, dirRefill)
	c.failed()
	c.released(4)
	step("after a failed refill", 4, dirRefill)
	c.released(4)
	reads++
	step("after a read the daemon served", 4, dirRefill)
	c.released(4)
	step("no read since", 4, dirCached)
	c.released(4)
	if len(c.open) != 0 {
		t.Errorf("open handles left: %v", c.open)
	}

	var off dirCache
	if got := off.opened(1, 0, 0); got != dirNoCache {
		t.Errorf("with no entry timeout: opened = %d, want no caching", got)
	}
	var old dirCache
	old.opened(1, ttl, 0)
	old.released(1)
	old.filled = old.filled.Add(-ttl)
	if got := old.opened(1, ttl, 0); got != dirRefill {
		t.Errorf("a cache older than half the timeout: opened = %d, want a refill", got)
	}
}

func TestListingFP(t *testing.T) {
	at := time.Unix(1700000000, 0)
	a := []meta.Entry{{Name: "a", ID: 1, Size: 10, ModTime: at}, {Name: "b", ID: 2, IsDir: true}}
	same := []meta.Entry{{Name: "a", ID: 1, Size: 10, ModTime: at}, {Name: "b", ID: 2, IsDir: true}}
	if listingFP(a) != listingFP(same) {
		t.Fatal("the same listing has two fingerprints")
	}
	for what, b := range map[string][]meta.Entry{
		"size":    {{Name: "a", ID: 1, Size: 11, ModTime: at}, {Name: "b", ID: 2, IsDir: true}},
		"time":    {{Name: "a", ID: 1, Size: 10, ModTime: at.Add(1)}, {Name: "b", ID: 2, IsDir: true}},
		"name":    {{Name: "c", ID: 1, Size: 10, ModTime: at}, {Name: "b", ID: 2, IsDir: true}},
		"id":      {{Name: "a", ID: 3, Size: 10, ModTime: at}, {Name: "b", ID: 2, IsDir: true}},
		"type":    {{Name: "a", ID: 1, Size: 10, ModTime: at}, {Name: "b", ID: 2}},
		"removed": {{Name: "a", ID: 1, Size: 10, ModTime: at}},
		"split":   {{Name: "", ID: 1, Size: 10, ModTime: at}, {Name: "b", ID: 2, IsDir: true}},
	} {
		if listingFP(a) == listingFP(b) {
			t.Errorf("a change of %s leaves the fingerprint", what)
		}
	}
}
