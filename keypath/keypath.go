// Package keypath maps store keys to places in the mounted tree and back.
// A key is served only when every '/'-separated segment is a name a POSIX
// file system can hold and a shell can show; other keys are skipped (never
// mangled), so that a name seen in the mount always writes back to the same
// key.
package keypath

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxName is the longest segment a Linux file system accepts.
const MaxName = 255

// MaxKey is the longest key written through the mount: the limit of S3,
// Google Cloud Storage and Azure Blob Storage, kept for every store so that
// a tree can move between them.
const MaxKey = 1024

// Sentinel errors, so callers can tell why a key or name was refused.
var (
	ErrEmpty    = errors.New("empty name")
	ErrDot      = errors.New("'.' or '..' segment")
	ErrTooLong  = errors.New("name longer than 255 bytes")
	ErrControl  = errors.New("NUL or control character")
	ErrBadUTF8  = errors.New("invalid UTF-8")
	ErrSlash    = errors.New("'/' in a name")
	ErrEmptySeg = errors.New("empty segment ('//', or '/' at the start)")
	ErrEmptyKey = errors.New("empty key")
	ErrKeyLong  = errors.New("key longer than 1024 bytes (the limit of S3, GCS and Azure)")
)

// CheckNewKey says whether a key (a directory marker with its trailing
// '/') is short enough to be written through the mount.
func CheckNewKey(key string) error {
	if len(key) > MaxKey {
		return ErrKeyLong
	}
	return nil
}

// Place is where a key appears in the tree. Dir is the slash-joined parent
// directory ("" for the root). A key ending in '/' is a directory marker: it
// makes Dir/Name an (empty) directory rather than a file.
type Place struct {
	Dir         string
	Name        string
	IsDirMarker bool
}

// Path is the place's path from the root.
func (p Place) Path() string { return Join(p.Dir, p.Name) }

// Split maps a store key to its place, or says why it cannot be served.
func Split(key string) (Place, error) {
	if key == "" {
		return Place{}, ErrEmptyKey
	}
	marker := false
	if strings.HasSuffix(key, "/") {
		marker = true
		key = key[:len(key)-1]
		if key == "" {
			return Place{}, ErrEmptySeg
		}
	}
	segs := strings.Split(key, "/")
	for _, s := range segs {
		if s == "" {
			return Place{}, ErrEmptySeg
		}
		if err := ValidName(s); err != nil {
			return Place{}, err
		}
	}
	i := strings.LastIndexByte(key, '/')
	if i < 0 {
		return Place{Name: key, IsDirMarker: marker}, nil
	}
	return Place{Dir: key[:i], Name: key[i+1:], IsDirMarker: marker}, nil
}

// ValidName says whether name can be one path segment in the mount.
func ValidName(name string) error {
	switch {
	case name == "":
		return ErrEmpty
	case name == "." || name == "..":
		return ErrDot
	case len(name) > MaxName:
		return ErrTooLong
	case strings.IndexByte(name, '/') >= 0:
		return ErrSlash
	case !utf8.ValidString(name):
		return ErrBadUTF8
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return ErrControl
		}
	}
	return nil
}

// Join joins a directory path and a name ("" is the root).
func Join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// Parent returns the directory part of a path ("" for a root entry).
func Parent(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[:i]
	}
	return ""
}

// Base returns the last segment of a path.
func Base(path string) string {
	return path[strings.LastIndexByte(path, '/')+1:]
}

// FileKey is the store key of the file at path; DirMarkerKey the key of the
// marker object that keeps an empty directory at path.
func FileKey(path string) string      { return path }
func DirMarkerKey(path string) string { return path + "/" }

// DirPrefix is the key prefix of everything below the directory at path.
func DirPrefix(path string) string {
	if path == "" {
		return ""
	}
	return path + "/"
}

// Describe returns a one-line reason a key is skipped, for the log.
func Describe(key string, err error) string {
	return fmt.Sprintf("store key %q is not served: %v", key, err)
}
