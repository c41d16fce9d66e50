package template

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// The template reader is as lenient as the Newtonsoft reader ARM uses,
// because az relies on that leniency: it sends the template file verbatim
// after an unquoted template: key. Accepted beyond JSON: // and /* */
// comments, trailing commas, property names without quotes, and strings in
// single quotes. Every value keeps its byte offset so that errors can name
// a line and column.

// kind is the JSON type of a node.
type kind uint8

const (
	kindNull kind = iota
	kindBool
	kindInt
	kindFloat
	kindString
	kindArray
	kindObject
)

// node is one parsed JSON value with its position. Objects keep their keys
// in document order.
type node struct {
	kind kind
	off  int // byte offset of the value's first character in the source
	b    bool
	i    int64
	f    float64
	s    string
	arr  []*node
	keys []string
	vals []*node
}

// get returns the member named key, matching case-insensitively as ARM
// does for template keywords, or nil.
func (n *node) get(key string) *node {
	if n == nil || n.kind != kindObject {
		return nil
	}
	for i, k := range n.keys {
		if k == key {
			return n.vals[i]
		}
	}
	for i, k := range n.keys {
		if strings.EqualFold(k, key) {
			return n.vals[i]
		}
	}
	return nil
}

// value converts n to the plain Go form the package uses for values:
// nil, bool, int64, float64, string, []any and map[string]any.
func (n *node) value() any {
	switch n.kind {
	case kindBool:
		return n.b
	case kindInt:
		return n.i
	case kindFloat:
		return n.f
	case kindString:
		return n.s
	case kindArray:
		a := make([]any, len(n.arr))
		for i, e := range n.arr {
			a[i] = e.value()
		}
		return a
	case kindObject:
		m := make(map[string]any, len(n.keys))
		for i, k := range n.keys {
			m[k] = n.vals[i].value()
		}
		return m
	}
	return nil
}

// maxDepth bounds nesting so that hostile input cannot exhaust the stack.
const maxDepth = 256

// maxValues bounds the values one text may hold. Each parsed value costs
// about 230 bytes (its node, its JSON path, its slot in the parent), so a
// 4 MiB body of "0,0,0,..." would take half a gigabyte; 2^17 values bound
// that to about 30 MB, and still let a template of ARM's largest size (4
// MB) average 32 bytes a value, less than real templates, with their
// names, indentation and expressions, use.
const maxValues = 1 << 17

// syntaxError is a JSON syntax error at a byte offset, with the JSON path
// of the value being read.
type syntaxError struct {
	off  int
	path string
	msg  string
}

func (e *syntaxError) Error() string { return e.msg }

type reader struct {
	src   []byte
	pos   int
	depth int
	// unclosed is the offset of a /* comment that never ends, or -1.
	unclosed int
	// markAt records where the text of the value at the path mark (any
	// case) begins, before any white space and comments that precede the
	// value; it is -1 until that value is read. One path, not every one:
	// a 4 MiB body holds two million values.
	mark   string
	markAt int
	// values counts the values read, against maxValues.
	values int
	// bare, when set, decides whether an unquoted property name is
	// allowed at this path; nil allows all.
	bare func(path string) bool
}

// parseJSONC reads one value that must fill src (apart from white space
// and comments).
func parseJSONC(src []byte) (*node, error) {
	return newReader(src, nil).document()
}

func newReader(src []byte, bare func(path string) bool) *reader {
	return &reader{src: src, unclosed: -1, bare: bare, markAt: -1}
}

// document reads the one value that must fill the input.
func (r *reader) document() (*node, error) {
	n, err := r.value("")
	if err != nil {
		return nil, err
	}
	r.skip()
	if r.unclosed >= 0 {
		r.pos = r.unclosed
		return nil, r.fail("", "A comment was not closed: expected */")
	}
	if r.pos < len(r.src) {
		return nil, r.fail("", "Additional text encountered after finished reading JSON content: '%s'", r.peekText())
	}
	return n, nil
}

func (r *reader) fail(path, format string, args ...any) *syntaxError {
	return &syntaxError{off: min(r.pos, len(r.src)), path: path, msg: fmt.Sprintf(format, args...)}
}

func (r *reader) peekText() string {
	if r.pos >= len(r.src) {
		return "end of input"
	}
	c, _ := utf8.DecodeRune(r.src[r.pos:])
	return string(c)
}

// skip passes white space and comments. An unclosed /* comment runs to the
// end of the input, which the caller then reports as unexpected end.
func (r *reader) skip() {
	for r.pos < len(r.src) {
		c := r.src[r.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			r.pos++
		case c == 0xEF && r.pos == 0 && len(r.src) >= 3 && r.src[1] == 0xBB && r.src[2] == 0xBF:
			r.pos += 3 // UTF-8 byte order mark
		case c == '/' && r.pos+1 < len(r.src) && r.src[r.pos+1] == '/':
			for r.pos < len(r.src) && r.src[r.pos] != '\n' {
				r.pos++
			}
		case c == '/' && r.pos+1 < len(r.src) && r.src[r.pos+1] == '*':
			end := strings.Index(string(r.src[r.pos+2:]), "*/")
			if end < 0 {
				r.unclosed = r.pos
				r.pos = len(r.src)
				return
			}
			r.pos += 2 + end + 2
		default:
			return
		}
	}
}

func (r *reader) value(path string) (*node, error) {
	if r.mark != "" && strings.EqualFold(path, r.mark) {
		r.markAt = r.pos
	}
	if r.values++; r.values > maxValues {
		return nil, r.fail(path, "The JSON holds more than %d values, the most this server reads", maxValues)
	}
	r.skip()
	if r.pos >= len(r.src) {
		return nil, r.fail(path, "Unexpected end of content while parsing the value")
	}
	start := r.pos
	switch c := r.src[r.pos]; {
	case c == '{':
		return r.object(path)
	case c == '[':
		return r.array(path)
	case c == '"' || c == '\'':
		s, err := r.str(path)
		if err != nil {
			return nil, err
		}
		return &node{kind: kindString, off: start, s: s}, nil
	case c == '-' || c >= '0' && c <= '9':
		return r.number(path)
	case isIdentStart(c):
		word := r.ident()
		switch word {
		case "true", "false":
			return &node{kind: kindBool, off: start, b: word == "true"}, nil
		case "null":
			return &node{kind: kindNull, off: start}, nil
		}
		r.pos = start
		return nil, r.fail(path, "Unexpected character encountered while parsing value: '%s'", word)
	default:
		return nil, r.fail(path, "Unexpected character encountered while parsing value: '%s'", r.peekText())
	}
}

func (r *reader) enter(path string) error {
	r.depth++
	if r.depth > maxDepth {
		return r.fail(path, "The JSON is nested deeper than %d levels", maxDepth)
	}
	return nil
}

func (r *reader) object(path string) (*node, error) {
	n := &node{kind: kindObject, off: r.pos}
	if err := r.enter(path); err != nil {
		return nil, err
	}
	defer func() { r.depth-- }()
	r.pos++ // {
	seen := map[string]bool{}
	for {
		r.skip()
		if r.pos >= len(r.src) {
			return nil, r.fail(path, "Unexpected end of content while reading an object")
		}
		if r.src[r.pos] == '}' {
			r.pos++
			return n, nil
		}
		keyOff := r.pos
		var key string
		switch c := r.src[r.pos]; {
		case c == '"' || c == '\'':
			k, err := r.str(path)
			if err != nil {
				return nil, err
			}
			key = k
		case isIdentStart(c):
			key = r.ident()
			if r.bare != nil && !r.bare(joinPath(path, key)) {
				r.pos = keyOff
				return nil, r.fail(path, "Invalid property identifier character: '%s'", key[:1])
			}
		default:
			return nil, r.fail(path, "Invalid property identifier character: '%s'", r.peekText())
		}
		r.skip()
		if r.pos >= len(r.src) || r.src[r.pos] != ':' {
			return nil, r.fail(joinPath(path, key), "Invalid character after parsing property name. Expected ':' but got: '%s'", r.peekText())
		}
		r.pos++
		if seen[key] {
			r.pos = keyOff
			return nil, r.fail(path, "The property '%s' is defined more than once", key)
		}
		seen[key] = true
		v, err := r.value(joinPath(path, key))
		if err != nil {
			return nil, err
		}
		n.keys = append(n.keys, key)
		n.vals = append(n.vals, v)
		r.skip()
		if r.pos >= len(r.src) {
			return nil, r.fail(path, "Unexpected end of content while reading an object")
		}
		switch r.src[r.pos] {
		case ',':
			r.pos++
		case '}':
		default:
			return nil, r.fail(joinPath(path, key), "After parsing a value an unexpected character was encountered: '%s'", r.peekText())
		}
	}
}

func (r *reader) array(path string) (*node, error) {
	n := &node{kind: kindArray, off: r.pos}
	if err := r.enter(path); err != nil {
		return nil, err
	}
	defer func() { r.depth-- }()
	r.pos++ // [
	for {
		r.skip()
		if r.pos >= len(r.src) {
			return nil, r.fail(path, "Unexpected end of content while reading an array")
		}
		if r.src[r.pos] == ']' {
			r.pos++
			return n, nil
		}
		ep := fmt.Sprintf("%s[%d]", path, len(n.arr))
		v, err := r.value(ep)
		if err != nil {
			return nil, err
		}
		n.arr = append(n.arr, v)
		r.skip()
		if r.pos >= len(r.src) {
			return nil, r.fail(path, "Unexpected end of content while reading an array")
		}
		switch r.src[r.pos] {
		case ',':
			r.pos++
		case ']':
		default:
			return nil, r.fail(ep, "After parsing a value an unexpected character was encountered: '%s'", r.peekText())
		}
	}
}

func (r *reader) str(path string) (string, error) {
	quote := r.src[r.pos]
	start := r.pos
	r.pos++
	var b strings.Builder
	for {
		if r.pos >= len(r.src) {
			r.pos = start
			return "", r.fail(path, "Unterminated string. Expected delimiter: %c", quote)
		}
		c := r.src[r.pos]
		switch {
		case c == quote:
			r.pos++
			return b.String(), nil
		case c == '\\':
			if r.pos+1 >= len(r.src) {
				r.pos = start
				return "", r.fail(path, "Unterminated string. Expected delimiter: %c", quote)
			}
			e := r.src[r.pos+1]
			r.pos += 2
			switch e {
			case '"', '\'', '\\', '/':
				b.WriteByte(e)
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				u, ok := r.hex4()
				if !ok {
					return "", r.fail(path, "Invalid Unicode escape sequence")
				}
				if utf16.IsSurrogate(rune(u)) && r.pos+1 < len(r.src) && r.src[r.pos] == '\\' && r.src[r.pos+1] == 'u' {
					save := r.pos
					r.pos += 2
					if u2, ok := r.hex4(); ok {
						if dec := utf16.DecodeRune(rune(u), rune(u2)); dec != utf8.RuneError {
							b.WriteRune(dec)
							continue
						}
					}
					r.pos = save
				}
				b.WriteRune(rune(u))
			default:
				r.pos -= 2
				return "", r.fail(path, "Bad JSON escape sequence: \\%c", e)
			}
		default:
			b.WriteByte(c)
			r.pos++
		}
	}
}

func (r *reader) hex4() (uint16, bool) {
	if r.pos+4 > len(r.src) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(r.src[r.pos:r.pos+4]), 16, 16)
	if err != nil {
		return 0, false
	}
	r.pos += 4
	return uint16(v), true
}

func (r *reader) number(path string) (*node, error) {
	start := r.pos
	if r.src[r.pos] == '-' {
		r.pos++
	}
	isFloat := false
	for r.pos < len(r.src) {
		c := r.src[r.pos]
		if c >= '0' && c <= '9' {
			r.pos++
			continue
		}
		if c == '.' || c == 'e' || c == 'E' || (c == '+' || c == '-') && (r.src[r.pos-1] == 'e' || r.src[r.pos-1] == 'E') {
			isFloat = true
			r.pos++
			continue
		}
		break
	}
	text := string(r.src[start:r.pos])
	if !isFloat {
		if i, err := strconv.ParseInt(text, 10, 64); err == nil {
			return &node{kind: kindInt, off: start, i: i}, nil
		}
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsInf(f, 0) {
		r.pos = start
		return nil, r.fail(path, "Input string '%s' is not a valid number", text)
	}
	return &node{kind: kindFloat, off: start, f: f}, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentPart(c byte) bool {
	return isIdentStart(c) || c >= '0' && c <= '9'
}

func (r *reader) ident() string {
	start := r.pos
	for r.pos < len(r.src) && isIdentPart(r.src[r.pos]) {
		r.pos++
	}
	return string(r.src[start:r.pos])
}

// joinPath appends a property to a JSON path the way ARM writes paths:
// resources[0].properties.x, or ['odd key'] when key is not an identifier.
func joinPath(path, key string) string {
	plain := key != ""
	for i := 0; i < len(key); i++ {
		if !isIdentPart(key[i]) {
			plain = false
			break
		}
	}
	switch {
	case !plain:
		return path + "['" + key + "']"
	case path == "":
		return key
	}
	return path + "." + key
}

// position converts a byte offset into a 1-based line and column, counted
// from origin (the first byte of the template text): the column of a
// character on the origin's line counts from the origin.
func position(src []byte, origin, off int) (line, col int) {
	if off < origin {
		off = origin
	}
	off = min(off, len(src))
	line, lineStart := 1, origin
	for i := origin; i < off; i++ {
		if src[i] == '\n' {
			line++
			lineStart = i + 1
		}
	}
	return line, utf8.RuneCount(src[lineStart:off]) + 1
}
