package e2e

// Tiers of stores (several --backend): a "tier" backend of the shared test
// table (mem:// in front of a file:// origin, so the whole suite runs over
// a tier), and the profile behaviour end to end with the real S3 server as
// the slow origin.

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func init() { allBackends = append(allBackends, backend{"tier", newTierStore}) }

// tierStore is mem:// (fast, empty at every start) in front of a file://
// origin; the test looks at the origin.
type tierStore struct{ *fileStore }

func newTierStore(t *testing.T) Store { return &tierStore{newFileStore(t).(*fileStore)} }

func (s *tierStore) Kind() string { return "tier" }
func (s *tierStore) URL() string  { return "mem://;" + s.fileStore.URL() }

// profileStatus is one store of `tapefs status --json`'s profiles.
type profileStatus struct {
	Name           string `json:"name"`
	Origin         bool   `json:"origin"`
	Reachable      bool   `json:"reachable"`
	PendingRepairs int    `json:"pending_repairs"`
	LastError      string `json:"last_error"`
}

func profiles(t *testing.T, m *Mount) []profileStatus {
	t.Helper()
	r := tapefs(t, m.Store, "status", "--json")
	var docs []struct {
		Mountpoint string          `json:"mountpoint"`
		Profiles   []profileStatus `json:"profiles"`
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(r.Stdout)))
	for dec.More() {
		var d struct {
			Mountpoint string          `json:"mountpoint"`
			Profiles   []profileStatus `json:"profiles"`
		}
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("tapefs status --json: %v\n%s", err, r)
		}
		docs = append(docs, d)
	}
	for _, d := range docs {
		if d.Mountpoint == m.Dir {
			return d.Profiles
		}
	}
	t.Fatalf("tapefs status --json does not show %s:\n%s", m.Dir, r)
	return nil
}

// TestTierProfiles: file:// (fast) in front of the S3 server (origin).
// A write lands in both; a copy deleted from the fast store behind
// tapefs's back is read from the origin and comes back to the fast one;
// with the origin stopped, cached tapes still read and a write does what
// the policy says (all: refused; any: taken, and repaired once the origin
// is back).
func TestTierProfiles(t *testing.T) {
	s3 := newS3Store(t).(*s3Store)
	fast := newFileStore(t).(*fileStore)
	st := &tierOver{s3Store: s3, fast: fast}
	m := mount(t, st, withArgs("--write-policy", "any", "--refresh-interval", "0"))
	g := newTape(9101, 20)
	src := writeLocal(t, map[string][]byte{"t.jsonl": g.Data, "t.meta.json": g.Meta})
	run(t, "cp", filepath.Join(src, "t.jsonl"), filepath.Join(src, "t.meta.json"), m.Dir+"/")
	for _, b := range []struct {
		name string
		st   Store
	}{{"fast", fast}, {"origin", s3}} {
		if got, ok := storeRead(t, b.st.Bucket(), "t.jsonl"); !ok || !bytes.Equal(got, g.Data) {
			t.Fatalf("after cp, the %s profile does not hold the tape", b.name)
		}
	}
	// Delete from the fast profile behind tapefs's back: the read comes
	// from the origin, and the fast profile has it again soon after.
	if err := os.Remove(fast.Path("t.jsonl")); err != nil {
		t.Fatal(err)
	}
	run(t, "sh", "-c", "echo 3 > /proc/sys/vm/drop_caches")
	if got := run(t, "cat", m.Path("t.jsonl")); got != string(g.Data) {
		t.Fatalf("read after the fast copy was deleted: %s", sameBytes([]byte(got), g.Data))
	}
	if !waitFor(10*time.Second, func() bool {
		got, ok := storeRead(t, fast.Bucket(), "t.jsonl")
		return ok && bytes.Equal(got, g.Data)
	}) {
		t.Fatalf("the fast profile did not get the tape back")
	}
	ps := profiles(t, m)
	if len(ps) != 2 || ps[0].Name != "store1" || ps[0].Origin || !ps[1].Origin {
		t.Fatalf("tapefs status profiles: %+v", ps)
	}

	// The origin stops: the tape cached in the fast profile still reads;
	// a new write is taken (policy any) and waits for a repair.
	s3.srv.Stop(t)
	run(t, "sh", "-c", "echo 3 > /proc/sys/vm/drop_caches")
	if got := run(t, "cat", m.Path("t.jsonl")); got != string(g.Data) {
		t.Fatalf("cached tape with the origin down: %s", sameBytes([]byte(got), g.Data))
	}
	h := newTape(9102, 10)
	if err := os.WriteFile(m.Path("while-down.jsonl"), h.Data, 0o644); err != nil {
		t.Fatalf("write with the origin down under --write-policy any: %v", err)
	}
	var origin profileStatus
	if !waitFor(10*time.Second, func() bool {
		origin = profiles(t, m)[1]
		return origin.PendingRepairs > 0
	}) {
		t.Fatalf("no repair pending for the origin after a write it missed: %+v", origin)
	}
	t.Logf("origin while down: %+v", origin)
	s3.srv.Start(t)
	if !waitFor(60*time.Second, func() bool {
		got, ok := storeRead(t, s3.Bucket(), "while-down.jsonl")
		return ok && bytes.Equal(got, h.Data)
	}) {
		t.Fatalf("the write the origin missed was not repaired after it came back: %+v", profiles(t, m)[1])
	}
	waitFor(10*time.Second, func() bool { return profiles(t, m)[1].PendingRepairs == 0 })
	if p := profiles(t, m)[1]; p.PendingRepairs != 0 {
		t.Errorf("repairs still pending: %+v", p)
	}

	// Under --write-policy all, a write the origin cannot take fails.
	m.Unmount(t)
	m = mount(t, st, withArgs("--write-policy", "all", "--refresh-interval", "0"))
	s3.srv.Stop(t)
	defer s3.srv.Start(t)
	if err := os.WriteFile(m.Path("refused.jsonl"), h.Data, 0o644); err == nil {
		t.Errorf("a write with the origin down succeeded under --write-policy all")
	}
}

// tierOver is a file:// store in front of an S3 origin; the test looks at
// the origin.
type tierOver struct {
	*s3Store
	fast *fileStore
}

func (s *tierOver) Kind() string { return "tier-s3" }
func (s *tierOver) URL() string  { return s.fast.URL() + ";" + s.s3Store.URL() }
