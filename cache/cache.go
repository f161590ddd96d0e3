// Package cache keeps chunks of store objects on local disk, bounded in size
// (and by the free space it leaves on its disk) with least-recently-used
// eviction. A chunk is named by the object's key,
// its ETag and the chunk's index, so a changed object (new ETag) can never
// be served from an old entry; old entries simply age out.
package cache

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Disk is a bounded on-disk chunk cache. It is safe for concurrent use.
type Disk struct {
	dir     string
	max     int64
	minFree int64                       // bytes the cache leaves free on its file system
	free    func(string) (int64, error) // free bytes of the file system of a directory

	mu    sync.Mutex
	lru   *list.List // front = most recently used; values are *entry
	index map[string]*list.Element
	size  int64
	// writing is the bytes of Puts whose files are being written: they are
	// counted against max before the write, so that Puts at once cannot
	// each add a chunk to a full cache before any of them evicts.
	writing int64

	hits, misses, evictions atomic.Int64
	damaged                 atomic.Int64 // chunk files whose trailer did not match
	lowSpace                atomic.Int64 // Puts skipped for lack of free space
}

type entry struct {
	name string
	size int64
}

// Open uses dir (created 0700) for at most maxBytes of chunks, and leaves at
// least minFree bytes free on its file system (0: no such bound): the cache
// usually shares a disk with the staged writes and the sidecar, which must
// not fail because the cache filled it. Entries left by an earlier run are
// kept, oldest first in line for eviction.
func Open(dir string, maxBytes, minFree int64) (*Disk, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("cache size must be positive")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create the cache directory %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	d := &Disk{dir: dir, max: maxBytes, minFree: max(minFree, 0), free: freeBytes, lru: list.New(), index: map[string]*list.Element{}}
	type old struct {
		name string
		size int64
		mod  int64
	}
	var found []old
	filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return nil
		}
		if strings.HasSuffix(p, ".tmp") {
			os.Remove(p)
			return nil
		}
		info, err := de.Info()
		if err != nil {
			return nil
		}
		found = append(found, old{name: filepath.Base(p), size: info.Size(), mod: info.ModTime().UnixNano()})
		return nil
	})
	sort.Slice(found, func(i, j int) bool { return found[i].mod > found[j].mod })
	for _, o := range found {
		d.index[o.name] = d.lru.PushBack(&entry{name: o.name, size: o.size})
		d.size += o.size
	}
	d.mu.Lock()
	d.evictLocked()
	d.mu.Unlock()
	return d, nil
}

// Name is the entry name of chunk idx of key at etag.
func Name(key, etag string, idx int64) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%s\x00%d", key, etag, idx)))
	return hex.EncodeToString(h[:])
}

func (d *Disk) path(name string) string {
	return filepath.Join(d.dir, name[:2], name)
}

// A chunk's file is its bytes, then a trailer: their CRC-32C and a magic
// number. Get serves only chunks whose trailer matches, so a file damaged
// on the disk (a flipped bit, a truncation, an entry of an older format)
// is a miss, and the chunk is read from the store again.
const trailerLen = 8

var (
	trailerMagic = [4]byte{'t', 'f', 'c', '1'}
	castagnoli   = crc32.MakeTable(crc32.Castagnoli)
)

// trailer is the trailer of data.
func trailer(data []byte) [trailerLen]byte {
	var t [trailerLen]byte
	binary.BigEndian.PutUint32(t[:4], crc32.Checksum(data, castagnoli))
	copy(t[4:], trailerMagic[:])
	return t
}

// verified is the data of a chunk file b, or false when its trailer does
// not match it.
func verified(b []byte) ([]byte, bool) {
	n := len(b) - trailerLen
	if n < 0 || [trailerLen]byte(b[n:]) != trailer(b[:n]) {
		return nil, false
	}
	return b[:n], true
}

// Get returns the cached chunk, if present and intact.
func (d *Disk) Get(name string) ([]byte, bool) {
	d.mu.Lock()
	el, ok := d.index[name]
	if ok {
		d.lru.MoveToFront(el)
	}
	d.mu.Unlock()
	if !ok {
		d.misses.Add(1)
		return nil, false
	}
	b, err := os.ReadFile(d.path(name))
	data, intact := verified(b)
	if err != nil || !intact {
		if err == nil {
			d.damaged.Add(1)
		}
		d.remove(name)
		d.misses.Add(1)
		return nil, false
	}
	d.hits.Add(1)
	return data, true
}

// Has says whether the chunk is cached, without reading it.
func (d *Disk) Has(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.index[name]
	return ok
}

// Put stores a chunk, evicting the least recently used ones to stay within
// the bounds. A failure to write only means no caching; so does
// ErrLowSpace, which says why.
func (d *Disk) Put(name string, data []byte) error {
	n := int64(len(data) + trailerLen)
	if n > d.max {
		return nil
	}
	d.mu.Lock()
	d.writing += n
	d.evictLocked()
	if d.size+d.writing > d.max { // other Puts hold the room: skip this one
		d.writing -= n
		d.mu.Unlock()
		return nil
	}
	if !d.roomOnDiskLocked(n) {
		d.writing -= n
		d.mu.Unlock()
		d.lowSpace.Add(1)
		return ErrLowSpace
	}
	d.mu.Unlock()
	err := d.write(name, data)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.writing -= n
	if err != nil {
		return err
	}
	if el, ok := d.index[name]; ok {
		d.size -= el.Value.(*entry).size
		el.Value.(*entry).size = n
		d.lru.MoveToFront(el)
	} else {
		d.index[name] = d.lru.PushFront(&entry{name: name, size: n})
	}
	d.size += n
	d.evictLocked()
	return nil
}

// write puts the chunk's file (data, then its trailer) in place through a
// temporary name. The trailer is a second write, not a copy of the chunk.
func (d *Disk) write(name string, data []byte) error {
	p := d.path(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	t := trailer(data)
	_, err = f.Write(data)
	if err == nil {
		_, err = f.Write(t[:])
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func (d *Disk) remove(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if el, ok := d.index[name]; ok {
		d.size -= el.Value.(*entry).size
		d.lru.Remove(el)
		delete(d.index, name)
	}
	os.Remove(d.path(name))
}

func (d *Disk) evictLocked() {
	for d.size+d.writing > d.max && d.evictOneLocked() > 0 {
	}
}

// evictOneLocked drops the least recently used entry and returns its size
// (0 when the cache is empty).
func (d *Disk) evictOneLocked() int64 {
	el := d.lru.Back()
	if el == nil {
		return 0
	}
	e := el.Value.(*entry)
	d.lru.Remove(el)
	delete(d.index, e.name)
	d.size -= e.size
	os.Remove(d.path(e.name))
	d.evictions.Add(1)
	return max(e.size, 1)
}

// ErrLowSpace is what Put returns when its chunk would leave less free
// space on the cache's disk than the bound, even with the cache emptied.
var ErrLowSpace = errors.New("cache: too little free space on its disk")

// roomOnDiskLocked makes n more bytes fit on the cache's file system above
// minFree, evicting the oldest entries as needed (their freed space is
// counted, not measured again: a file system may free blocks later). It
// says whether they fit.
func (d *Disk) roomOnDiskLocked(n int64) bool {
	if d.minFree == 0 {
		return true
	}
	free, err := d.free(d.dir)
	if err != nil {
		return true // no measure: the size bound alone applies
	}
	// The bytes of other Puts being written are not on the disk yet.
	need := d.minFree + d.writing - free
	for need > 0 {
		freed := d.evictOneLocked()
		if freed == 0 {
			return false
		}
		need -= freed
	}
	return true
}

// freeBytes is the space an unprivileged user may still use on the file
// system of dir.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// Stats is a snapshot of the cache's use.
type Stats struct {
	Dir       string `json:"dir"`
	Bytes     int64  `json:"bytes"`
	MaxBytes  int64  `json:"max_bytes"`
	Entries   int    `json:"entries"`
	Hits      int64  `json:"hits"`
	Misses    int64  `json:"misses"`
	Evictions int64  `json:"evictions"`
	MinFree   int64  `json:"min_free"`
	LowSpace  int64  `json:"skipped_low_space"` // chunks not cached for lack of free space
	Damaged   int64  `json:"damaged"`           // chunk files found damaged, and dropped
}

// Stats reports the cache's size and counters.
func (d *Disk) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Stats{Dir: d.dir, Bytes: d.size, MaxBytes: d.max, Entries: len(d.index),
		Hits: d.hits.Load(), Misses: d.misses.Load(), Evictions: d.evictions.Load(),
		MinFree: d.minFree, LowSpace: d.lowSpace.Load(), Damaged: d.damaged.Load()}
}
