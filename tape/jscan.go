package tape

import (
	"encoding/binary"
	"math"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth is the deepest nesting accepted, as in encoding/json and jq: a
// line we call valid is one that standard tools can read too.
const maxDepth = 10000

// jscan is a small validating pull parser over one JSON text in memory. It
// exists for speed: it validates every byte once, skips values it is not
// asked about (large tool results) with a word-at-a-time string scan, never
// recurses on input depth and allocates only when a wanted string has
// escapes. After a syntax error it sets bad, moves to the end and every
// further call is a no-op.
type jscan struct {
	b     []byte
	i     int
	depth int    // containers opened by object()
	bad   bool   // syntax error met
	stack []byte // container stack for skip, reused
}

// got says what a typed read found.
type got uint8

const (
	gotOK    got = iota // a value of the wanted type
	gotNull             // JSON null: treated as absent
	gotWrong            // another type: the value was skipped
)

func (s *jscan) reset(b []byte) {
	s.b, s.i, s.depth, s.bad = b, 0, 0, false
}

func (s *jscan) fail() {
	s.bad = true
	s.i = len(s.b)
}

func (s *jscan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek skips white space and returns the next byte, or 0 at the end.
func (s *jscan) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// atEnd reports whether only white space remains.
func (s *jscan) atEnd() bool {
	s.ws()
	return s.i == len(s.b)
}

// object reads an object, calling each for every member with the key
// (unescaped; valid only during the call). each may consume the value with
// one read; a value it leaves is skipped. If the value is not an object it
// is skipped and object returns false.
func (s *jscan) object(each func(key []byte)) bool {
	if s.peek() != '{' {
		s.skip()
		return false
	}
	if s.depth++; s.depth > maxDepth {
		s.fail()
		return true
	}
	s.i++
	if s.peek() == '}' {
		s.i++
		s.depth--
		return true
	}
	for !s.bad {
		if s.peek() != '"' {
			s.fail()
			break
		}
		key, _ := s.stringValue()
		if s.peek() != ':' {
			s.fail()
			break
		}
		s.i++
		s.ws()
		at := s.i
		each(key)
		if s.i == at && !s.bad {
			s.skip()
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			s.depth--
			return true
		default:
			s.fail()
		}
	}
	return true
}

// str reads a string; the bytes are unescaped and alias the input unless
// the string had escapes. Invalid UTF-8 is passed through (callers check).
func (s *jscan) str() ([]byte, got) {
	switch s.peek() {
	case '"':
		v, _ := s.stringValue()
		return v, gotOK
	case 'n':
		s.skip()
		return nil, gotNull
	}
	s.skip()
	return nil, gotWrong
}

// int reads a number as an int64 (a fraction is truncated).
func (s *jscan) int() (int64, got) {
	c := s.peek()
	if c == 'n' {
		s.skip()
		return 0, gotNull
	}
	if c != '-' && (c < '0' || c > '9') {
		s.skip()
		return 0, gotWrong
	}
	start := s.i
	s.number()
	if s.bad {
		return 0, gotWrong
	}
	if v, ok := smallInt(s.b[start:s.i]); ok {
		return v, gotOK
	}
	lit := string(s.b[start:s.i])
	if v, err := strconv.ParseInt(lit, 10, 64); err == nil {
		return v, gotOK
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil || math.IsNaN(f) || f >= math.MaxInt64 || f <= math.MinInt64 {
		return 0, gotWrong
	}
	return int64(f), gotOK
}

// bool reads true or false.
func (s *jscan) bool() (bool, got) {
	switch s.peek() {
	case 't', 'f':
		v := s.b[s.i] == 't'
		s.skip()
		return v, gotOK
	case 'n':
		s.skip()
		return false, gotNull
	}
	s.skip()
	return false, gotWrong
}

// raw skips a value and returns its bytes (nil for null or on error).
func (s *jscan) raw() []byte {
	s.ws()
	start := s.i
	s.skip()
	if s.bad {
		return nil
	}
	v := s.b[start:s.i]
	if string(v) == "null" {
		return nil
	}
	return v
}

// skip validates and steps over one value of any depth, without recursion.
func (s *jscan) skip() {
	st := s.stack[:0]
	defer func() { s.stack = st[:0] }()
	for !s.bad {
		// A value is expected here.
		switch s.peek() {
		case '{', '[':
			open := s.b[s.i]
			if len(st)+s.depth >= maxDepth {
				s.fail()
				return
			}
			s.i++
			if c := s.peek(); c == open+2 { // '}' or ']': empty
				s.i++
				break
			}
			st = append(st, open)
			if open == '{' {
				s.key()
			}
			continue
		case '"':
			s.i = s.scanString(s.i + 1)
		case 't':
			s.literal("true")
		case 'f':
			s.literal("false")
		case 'n':
			s.literal("null")
		default:
			s.number()
		}
		// After a value: close containers or go on to the next element.
		for !s.bad && len(st) > 0 {
			top := st[len(st)-1]
			c := s.peek()
			if c == ',' {
				s.i++
				if top == '{' {
					s.key()
				}
				break
			}
			if (c == '}' && top == '{') || (c == ']' && top == '[') {
				s.i++
				st = st[:len(st)-1]
				continue
			}
			s.fail()
		}
		if len(st) == 0 {
			return
		}
	}
}

// key steps over `"key" :` inside an object being skipped.
func (s *jscan) key() {
	if s.peek() != '"' {
		s.fail()
		return
	}
	s.i = s.scanString(s.i + 1)
	if s.peek() != ':' {
		s.fail()
		return
	}
	s.i++
}

func (s *jscan) literal(lit string) {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		s.fail()
		return
	}
	s.i += len(lit)
}

// number steps over a number, checking the JSON grammar.
func (s *jscan) number() {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		s.fail()
		return
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			s.fail()
			return
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			s.fail()
			return
		}
		i = j
	}
	s.i = i
}

// smallInt parses a plain integer literal of up to 18 digits without
// allocating.
func smallInt(lit []byte) (int64, bool) {
	neg := len(lit) > 0 && lit[0] == '-'
	if neg {
		lit = lit[1:]
	}
	if len(lit) == 0 || len(lit) > 18 {
		return 0, false
	}
	var v int64
	for _, c := range lit {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// stringValue reads the string at s.i (which is '"') and returns its
// unescaped bytes and whether it had escapes.
func (s *jscan) stringValue() ([]byte, bool) {
	start := s.i + 1
	end := s.scanString(start)
	if s.bad {
		return nil, false
	}
	s.i = end
	body := s.b[start : end-1]
	for _, c := range body {
		if c == '\\' {
			return unescape(body), true
		}
	}
	return body, false
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// scanString validates a string body from i (just after the opening quote)
// and returns the index after the closing quote. Eight bytes at a time, it
// looks for the only bytes that need attention: '"', '\\' and controls.
func (s *jscan) scanString(i int) int {
	b := s.b
	for {
		for i+8 <= len(b) {
			x := binary.LittleEndian.Uint64(b[i:])
			q := x ^ (ones * '"')
			e := x ^ (ones * '\\')
			m := ((q - ones) &^ q) | ((e - ones) &^ e) | ((x - ones*0x20) &^ x)
			if m &= highs; m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		if i >= len(b) {
			s.fail()
			return len(b)
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			if i+1 >= len(b) {
				s.fail()
				return len(b)
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex4(b[i+2:i+6]) {
					s.fail()
					return len(b)
				}
				i += 6
			default:
				s.fail()
				return len(b)
			}
		case c < 0x20:
			s.fail()
			return len(b)
		default:
			i++
		}
	}
}

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if hexVal(c) < 0 {
			return false
		}
	}
	return true
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		r = r<<4 | rune(hexVal(c))
	}
	return r
}

// unescape decodes a validated string body with escapes into a new slice.
// Lone surrogates become U+FFFD, as encoding/json does.
func unescape(body []byte) []byte {
	out := make([]byte, 0, len(body))
	for i := 0; i < len(body); {
		c := body[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		switch body[i+1] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hex4(body[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if i+6 <= len(body) && body[i] == '\\' && body[i+1] == 'u' {
					r2 = utf16.DecodeRune(r, hex4(body[i+2:]))
				}
				if r2 != utf8.RuneError {
					i += 6
				}
				r = r2
			}
			out = utf8.AppendRune(out, r)
			continue
		default: // '"', '\\', '/'
			out = append(out, body[i+1])
		}
		i += 2
	}
	return out
}
