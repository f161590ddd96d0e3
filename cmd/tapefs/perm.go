package main

import (
	"fmt"
	"strconv"
	"strings"
)

// FileMode is a permission flag in octal: 0640, 640, 0o640.
type FileMode uint32

// UnmarshalText implements encoding.TextUnmarshaler for kong.
func (m *FileMode) UnmarshalText(text []byte) error {
	s := strings.TrimPrefix(strings.TrimSpace(string(text)), "0o")
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v == 0 || v > 0o777 {
		return fmt.Errorf("%q is not a permission mode: give octal bits from 1 to 777, e.g. 0640", string(text))
	}
	*m = FileMode(v)
	return nil
}

// OwnerID is a numeric user or group id flag; unset, the mount shows the
// mounting user's.
type OwnerID struct {
	ID  uint32
	Set bool
}

// UnmarshalText implements encoding.TextUnmarshaler for kong.
func (o *OwnerID) UnmarshalText(text []byte) error {
	v, err := strconv.ParseUint(strings.TrimSpace(string(text)), 10, 32)
	if err != nil {
		return fmt.Errorf("%q is not a numeric id (for a name, give $(id -u NAME) or $(id -g NAME))", string(text))
	}
	*o = OwnerID{ID: uint32(v), Set: true}
	return nil
}
