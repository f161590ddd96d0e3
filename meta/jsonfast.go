package meta

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/tapefs/tapefs/tape"
)

// Fast decoders for the small JSON texts of a tape row (lists of strings,
// method and tool counts, slowest pairs). A listing decodes six of them per
// tape, and encoding/json's reflection made that most of the cost of a
// large listing. Each handles exactly the shapes this package and SQLite's
// json_group_* write, and falls back to encoding/json on anything else, so
// the result is always what json.Unmarshal would give.

// jsonScan reads one JSON text from the start.
type jsonScan struct {
	s string
	i int
}

func (p *jsonScan) ws() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\n' || p.s[p.i] == '\t' || p.s[p.i] == '\r') {
		p.i++
	}
}

// eat consumes c (after white space) if it is next.
func (p *jsonScan) eat(c byte) bool {
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a string; one with escapes is unquoted by encoding/json.
func (p *jsonScan) str() (string, bool) {
	if !p.eat('"') {
		return "", false
	}
	start, esc := p.i, false
	for p.i < len(p.s) {
		switch c := p.s[p.i]; {
		case c == '\\':
			esc = true
			p.i += 2
			continue
		case c == '"':
			raw := p.s[start:p.i]
			p.i++
			if !esc && utf8.ValidString(raw) {
				return raw, true
			}
			var out string
			if json.Unmarshal([]byte(p.s[start-1:p.i]), &out) != nil {
				return "", false
			}
			return out, true
		case c < 0x20:
			return "", false
		}
		p.i++
	}
	return "", false
}

// int reads an integer.
func (p *jsonScan) int() (int64, bool) {
	p.ws()
	start := p.i
	if p.i < len(p.s) && p.s[p.i] == '-' {
		p.i++
	}
	digits := p.i
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
	}
	if p.i-digits > 1 && p.s[digits] == '0' { // JSON has no leading zeros
		return 0, false
	}
	n, err := strconv.ParseInt(p.s[start:p.i], 10, 64)
	return n, err == nil
}

// end says whether only white space is left.
func (p *jsonScan) end() bool {
	p.ws()
	return p.i == len(p.s)
}

// isNull says whether text is the JSON null (or empty).
func isNull(text string) bool {
	return text == "null" || text == ""
}

// decodeStrings decodes a JSON list of strings (null: nil).
func decodeStrings(text string, dst *[]string) error {
	if isNull(text) {
		*dst = nil
		return nil
	}
	p := &jsonScan{s: text}
	var out []string
	ok := p.eat('[')
	if ok && !p.eat(']') {
		for ok {
			var s string
			if s, ok = p.str(); !ok {
				break
			}
			out = append(out, s)
			if p.eat(']') {
				break
			}
			ok = p.eat(',')
		}
	}
	if !ok || !p.end() {
		return json.Unmarshal([]byte(text), dst)
	}
	if out == nil {
		out = []string{}
	}
	*dst = out
	return nil
}

// decodeCounts decodes a JSON object of integers (null: nil).
func decodeCounts(text string, dst *map[string]int64) error {
	if isNull(text) {
		*dst = nil
		return nil
	}
	p := &jsonScan{s: text}
	out := map[string]int64{}
	ok := p.eat('{')
	if ok && !p.eat('}') {
		for ok {
			var k string
			var n int64
			if k, ok = p.str(); ok && p.eat(':') {
				n, ok = p.int()
			} else {
				ok = false
			}
			if !ok {
				break
			}
			out[k] = n
			if p.eat('}') {
				break
			}
			ok = p.eat(',')
		}
	}
	if !ok || !p.end() {
		clear(out)
		return json.Unmarshal([]byte(text), dst)
	}
	*dst = out
	return nil
}

// decodePairs decodes a JSON list of tape.Pair as json.Marshal writes it.
func decodePairs(text string, dst *[]tape.Pair) error {
	if isNull(text) {
		*dst = nil
		return nil
	}
	p := &jsonScan{s: text}
	var out []tape.Pair
	ok := p.eat('[')
	if ok && !p.eat(']') {
		for ok {
			var pr tape.Pair
			if pr, ok = p.pair(); !ok {
				break
			}
			out = append(out, pr)
			if p.eat(']') {
				break
			}
			ok = p.eat(',')
		}
	}
	if !ok || !p.end() {
		return json.Unmarshal([]byte(text), dst)
	}
	if out == nil {
		out = []tape.Pair{}
	}
	*dst = out
	return nil
}

func (p *jsonScan) pair() (tape.Pair, bool) {
	var pr tape.Pair
	if !p.eat('{') {
		return pr, false
	}
	if p.eat('}') {
		return pr, true
	}
	for {
		k, ok := p.str()
		if !ok || !p.eat(':') {
			return pr, false
		}
		switch k {
		case "Method":
			pr.Method, ok = p.str()
		case "Status":
			pr.Status, ok = p.str()
		case "RequestSeq":
			pr.RequestSeq, ok = p.int()
		case "ResponseSeq":
			pr.ResponseSeq, ok = p.int()
		case "RTTMS":
			pr.RTTMS, ok = p.int()
		default:
			return pr, false
		}
		if !ok {
			return pr, false
		}
		if p.eat('}') {
			return pr, true
		}
		if !p.eat(',') {
			return pr, false
		}
	}
}
