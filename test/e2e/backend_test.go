package e2e

import (
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/gcerrors"
)

// Store is one fresh store of some backend that a test mounts, with what the
// test needs to fill it and to look at it behind the mount's back.
type Store interface {
	Kind() string  // "file", "mem", "s3"
	URL() string   // for --backend
	Env() []string // extra environment for tapefs commands (credentials)
	Dirs() StoreDirs
	// Persistent says whether the data outlives the daemon (mem:// does not).
	Persistent() bool
	// Seed writes files into the store directly, before it is mounted. It
	// returns false when the backend can only be filled through a mount.
	Seed(t *testing.T, files map[string][]byte) bool
	// Bucket opens the store in the test process, to write odd keys and to
	// inspect objects directly; nil when only the daemon can see the store.
	Bucket() *blob.Bucket
}

// StoreDirs are the local directories that belong to one store's mounts and
// are kept across remounts: the sidecar, the staging/state dir and the cache.
type StoreDirs struct {
	Meta  string // --meta FILE
	State string // --state-dir
	Cache string // --cache-dir
}

func newStoreDirs(t *testing.T) StoreDirs {
	base := t.TempDir()
	d := StoreDirs{
		Meta:  filepath.Join(base, "meta", "tapefs.db"),
		State: filepath.Join(base, "state"),
		Cache: filepath.Join(base, "cache"),
	}
	for _, dir := range []string{filepath.Dir(d.Meta), d.State, d.Cache} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// A backend makes fresh stores.
type backend struct {
	name     string
	newStore func(t *testing.T) Store
}

var allBackends = []backend{
	{"file", newFileStore},
	{"mem", newMemStore},
	{"s3", newS3Store},
}

// selectedBackends are the backends of the shared test table:
// $TAPEFS_E2E_BACKENDS, default all of them (file, mem, the real S3
// server, a compressed file:// store, and a tier of mem:// over file://).
func selectedBackends(t *testing.T) []backend {
	want := os.Getenv("TAPEFS_E2E_BACKENDS")
	if want == "" {
		want = "file,mem,s3,zstd,tier"
	}
	var out []backend
	for _, name := range strings.Split(want, ",") {
		name = strings.TrimSpace(name)
		found := false
		for _, b := range allBackends {
			if b.name == name {
				out = append(out, b)
				found = true
			}
		}
		if !found && name != "" {
			t.Fatalf("TAPEFS_E2E_BACKENDS: unknown backend %q", name)
		}
	}
	return out
}

// forEachBackend runs fn once per selected backend, each on a fresh store,
// as parallel subtests.
func forEachBackend(t *testing.T, fn func(t *testing.T, st Store)) {
	t.Helper()
	for _, b := range selectedBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			fn(t, b.newStore(t))
		})
	}
}

// backendNamed makes a fresh store of one backend regardless of the table.
func backendNamed(t *testing.T, name string) Store {
	t.Helper()
	for _, b := range allBackends {
		if b.name == name {
			return b.newStore(t)
		}
	}
	t.Fatalf("no backend %q", name)
	return nil
}

// needBucket skips a test that must see the store directly.
func needBucket(t *testing.T, st Store) *blob.Bucket {
	t.Helper()
	b := st.Bucket()
	if b == nil {
		t.Skipf("%s:// lives inside the daemon; the test cannot look at it directly", st.Kind())
	}
	return b
}

// needPersistent skips a test whose data must outlive the daemon.
func needPersistent(t *testing.T, st Store) {
	t.Helper()
	if !st.Persistent() {
		t.Skipf("%s:// does not outlive the daemon", st.Kind())
	}
}

// mountFiles fills a store with files and mounts it: directly into the store
// before mounting where the backend allows, otherwise copied in through the
// mount with cp.
func mountFiles(t *testing.T, st Store, files map[string][]byte, opts ...mountOption) *Mount {
	t.Helper()
	seeded := st.Seed(t, files)
	m := mount(t, st, opts...)
	if !seeded {
		src := t.TempDir()
		writeTree(t, src, files)
		run(t, "cp", "-r", src+"/.", m.Dir+"/")
	}
	return m
}

// writeTree writes files (key -> bytes) below dir.
func writeTree(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for key, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(key))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// ---------------------------------------------------------------------------
// Looking at a store directly

// storeKeys lists every key in the bucket, sorted.
func storeKeys(t *testing.T, b *blob.Bucket) []string {
	t.Helper()
	var keys []string
	it := b.List(nil)
	for {
		obj, err := it.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("listing the store: %v", err)
		}
		keys = append(keys, obj.Key)
	}
	sort.Strings(keys)
	return keys
}

// storeRead returns the object's bytes, or ok=false when there is no such key.
func storeRead(t *testing.T, b *blob.Bucket, key string) (data []byte, ok bool) {
	t.Helper()
	data, err := b.ReadAll(context.Background(), key)
	if gcerrors.Code(err) == gcerrors.NotFound {
		return nil, false
	}
	if err != nil {
		t.Fatalf("reading %q from the store: %v", key, err)
	}
	return data, true
}

func storeWrite(t *testing.T, b *blob.Bucket, key string, data []byte) error {
	t.Helper()
	return b.WriteAll(context.Background(), key, data, nil)
}

// ---------------------------------------------------------------------------
// file://

type fileStore struct {
	dir    string
	dirs   StoreDirs
	bucket *blob.Bucket
}

func newFileStore(t *testing.T) Store {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := fileblob.OpenBucket(dir, &fileblob.Options{Metadata: fileblob.MetadataDontWrite})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &fileStore{dir: dir, dirs: newStoreDirs(t), bucket: b}
}

func (s *fileStore) Kind() string { return "file" }
func (s *fileStore) URL() string {
	u := url.URL{Scheme: "file", Path: s.dir, RawQuery: "create_dir=1"}
	return u.String()
}
func (s *fileStore) Env() []string        { return nil }
func (s *fileStore) Dirs() StoreDirs      { return s.dirs }
func (s *fileStore) Persistent() bool     { return true }
func (s *fileStore) Bucket() *blob.Bucket { return s.bucket }

// Seed writes plain files into the store directory, as a user would.
func (s *fileStore) Seed(t *testing.T, files map[string][]byte) bool {
	t.Helper()
	writeTree(t, s.dir, files)
	return true
}

// Path is the file behind a plain key (no characters fileblob escapes).
func (s *fileStore) Path(key string) string { return filepath.Join(s.dir, filepath.FromSlash(key)) }

// ---------------------------------------------------------------------------
// mem://

type memStore struct{ dirs StoreDirs }

func newMemStore(t *testing.T) Store { return &memStore{dirs: newStoreDirs(t)} }

func (s *memStore) Kind() string                            { return "mem" }
func (s *memStore) URL() string                             { return "mem://" }
func (s *memStore) Env() []string                           { return nil }
func (s *memStore) Dirs() StoreDirs                         { return s.dirs }
func (s *memStore) Persistent() bool                        { return false }
func (s *memStore) Bucket() *blob.Bucket                    { return nil }
func (s *memStore) Seed(*testing.T, map[string][]byte) bool { return false }

// ---------------------------------------------------------------------------
// s3:// (a real versitygw process per store)

type s3Store struct {
	srv  *S3Server
	dirs StoreDirs
}

func newS3Store(t *testing.T) Store {
	t.Helper()
	return &s3Store{srv: startS3(t), dirs: newStoreDirs(t)}
}

func (s *s3Store) Kind() string         { return "s3" }
func (s *s3Store) URL() string          { return s.srv.URL() }
func (s *s3Store) Env() []string        { return s.srv.Env() }
func (s *s3Store) Dirs() StoreDirs      { return s.dirs }
func (s *s3Store) Persistent() bool     { return true }
func (s *s3Store) Bucket() *blob.Bucket { return s.srv.Bucket }

func (s *s3Store) Seed(t *testing.T, files map[string][]byte) bool {
	t.Helper()
	for key, data := range files {
		if err := storeWrite(t, s.srv.Bucket, key, data); err != nil {
			t.Fatalf("seeding %q: %v", key, err)
		}
	}
	return true
}
