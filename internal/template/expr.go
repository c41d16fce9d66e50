package template

import (
	"fmt"
	"strconv"
	"strings"
)

// An expr is a parsed template language expression: the text between the
// brackets of "[...]".
//
//	expression := primary { "." name | "[" expression "]" }
//	primary    := name "(" [ expression { "," expression } ] ")"
//	            | 'string' | integer
//
// Strings are single-quoted with ” standing for one quote; integers are
// decimal with an optional minus sign. There are no true, false or null
// literals: ARM spells them true(), false() and null().
type expr interface {
	// String returns the expression in canonical form, which parses back
	// to the same expression.
	String() string
}

type (
	callExpr struct {
		name string
		args []expr
		off  int // offset of the name within the expression text
	}
	stringExpr struct{ v string }
	intExpr    struct{ v int64 }
	// memberExpr is x.name.
	memberExpr struct {
		x    expr
		name string
	}
	// indexExpr is x[index].
	indexExpr struct {
		x, index expr
	}
)

func (c *callExpr) String() string {
	parts := make([]string, len(c.args))
	for i, a := range c.args {
		parts[i] = a.String()
	}
	return c.name + "(" + strings.Join(parts, ", ") + ")"
}

func (s *stringExpr) String() string { return "'" + strings.ReplaceAll(s.v, "'", "''") + "'" }
func (n *intExpr) String() string    { return strconv.FormatInt(n.v, 10) }
func (m *memberExpr) String() string { return m.x.String() + "." + m.name }
func (i *indexExpr) String() string  { return i.x.String() + "[" + i.index.String() + "]" }

// maxExprDepth bounds nesting of calls and indexes.
const maxExprDepth = 64

// classify tells what a JSON string means to ARM: an expression (the text
// between the brackets), or a literal (with the "[[" escape removed).
func classify(s string) (text string, isExpr bool) {
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return s, false
	}
	if s[1] == '[' {
		return s[1:], false
	}
	return s[1 : len(s)-1], true
}

type tokKind uint8

const (
	tokEOF tokKind = iota
	tokName
	tokString
	tokInt
	tokLParen
	tokRParen
	tokLBracket
	tokRBracket
	tokComma
	tokDot
)

// names are ARM's own token names, used in its parse error messages.
var tokNames = [...]string{
	tokEOF: "EndOfData", tokName: "Identifier", tokString: "Literal", tokInt: "Integer",
	tokLParen: "LeftParenthesis", tokRParen: "RightParenthesis", tokLBracket: "LeftSquareBracket",
	tokRBracket: "RightSquareBracket", tokComma: "Comma", tokDot: "Dot",
}

type token struct {
	kind tokKind
	off  int
	text string // name, or the unescaped string literal
	n    int64
}

type exprParser struct {
	src   string
	pos   int
	tok   token
	depth int
}

// parseExpr parses the text of an expression (without its brackets).
func parseExpr(src string) (expr, error) {
	p := &exprParser{src: src}
	if err := p.next(); err != nil {
		return nil, err
	}
	if p.tok.kind == tokEOF {
		return nil, p.errorf("the expression is empty")
	}
	e, err := p.expression()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokEOF {
		return nil, p.unexpected(tokEOF)
	}
	return e, nil
}

func (p *exprParser) errorf(format string, args ...any) *exprError {
	return exprErrorf("Unable to parse language expression '%s': %s", p.src, fmt.Sprintf(format, args...))
}

func (p *exprParser) unexpected(want tokKind) *exprError {
	return p.errorf("expected token '%s' and actual '%s' at position %d", tokNames[want], tokNames[p.tok.kind], p.tok.off)
}

func (p *exprParser) next() error {
	for p.pos < len(p.src) && (p.src[p.pos] == ' ' || p.src[p.pos] == '\t' || p.src[p.pos] == '\r' || p.src[p.pos] == '\n') {
		p.pos++
	}
	p.tok = token{off: p.pos}
	if p.pos >= len(p.src) {
		p.tok.kind = tokEOF
		return nil
	}
	c := p.src[p.pos]
	if k := punctuation(c); k != tokEOF {
		p.tok.kind = k
		p.pos++
		return nil
	}
	switch {
	case c == '\'':
		var b strings.Builder
		p.pos++
		for {
			if p.pos >= len(p.src) {
				return p.errorf("the string literal starting at position %d is not terminated", p.tok.off)
			}
			if p.src[p.pos] == '\'' {
				if p.pos+1 < len(p.src) && p.src[p.pos+1] == '\'' {
					b.WriteByte('\'')
					p.pos += 2
					continue
				}
				p.pos++
				break
			}
			b.WriteByte(p.src[p.pos])
			p.pos++
		}
		p.tok.kind, p.tok.text = tokString, b.String()
	case c == '-' || c >= '0' && c <= '9':
		start := p.pos
		p.pos++
		for p.pos < len(p.src) && p.src[p.pos] >= '0' && p.src[p.pos] <= '9' {
			p.pos++
		}
		n, err := strconv.ParseInt(p.src[start:p.pos], 10, 64)
		if err != nil {
			return p.errorf("the integer '%s' at position %d is not valid", p.src[start:p.pos], start)
		}
		p.tok.kind, p.tok.n = tokInt, n
	case isIdentStart(c):
		start := p.pos
		for p.pos < len(p.src) && isIdentPart(p.src[p.pos]) {
			p.pos++
		}
		p.tok.kind, p.tok.text = tokName, p.src[start:p.pos]
	default:
		return p.errorf("the character '%c' at position %d is not expected", rune(c), p.pos)
	}
	return nil
}

// punctuation returns the token a one-character punctuation mark stands
// for, or tokEOF.
func punctuation(c byte) tokKind {
	switch c {
	case '(':
		return tokLParen
	case ')':
		return tokRParen
	case '[':
		return tokLBracket
	case ']':
		return tokRBracket
	case ',':
		return tokComma
	case '.':
		return tokDot
	}
	return tokEOF
}

func (p *exprParser) expect(k tokKind) error {
	if p.tok.kind != k {
		return p.unexpected(k)
	}
	return p.next()
}

func (p *exprParser) expression() (expr, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxExprDepth {
		return nil, p.errorf("the expression is nested deeper than %d levels", maxExprDepth)
	}
	var e expr
	switch p.tok.kind {
	case tokString:
		e = &stringExpr{v: p.tok.text}
		if err := p.next(); err != nil {
			return nil, err
		}
	case tokInt:
		e = &intExpr{v: p.tok.n}
		if err := p.next(); err != nil {
			return nil, err
		}
	case tokName:
		call := &callExpr{name: p.tok.text, off: p.tok.off}
		if err := p.next(); err != nil {
			return nil, err
		}
		if err := p.expect(tokLParen); err != nil {
			return nil, err
		}
		for p.tok.kind != tokRParen {
			if len(call.args) > 0 {
				if err := p.expect(tokComma); err != nil {
					return nil, err
				}
			}
			a, err := p.expression()
			if err != nil {
				return nil, err
			}
			call.args = append(call.args, a)
		}
		if err := p.next(); err != nil {
			return nil, err
		}
		e = call
	default:
		return nil, p.errorf("expected a function call, a string or an integer and found '%s' at position %d", tokNames[p.tok.kind], p.tok.off)
	}
	for {
		switch p.tok.kind {
		case tokDot:
			if err := p.next(); err != nil {
				return nil, err
			}
			if p.tok.kind != tokName {
				return nil, p.unexpected(tokName)
			}
			e = &memberExpr{x: e, name: p.tok.text}
			if err := p.next(); err != nil {
				return nil, err
			}
		case tokLBracket:
			if err := p.next(); err != nil {
				return nil, err
			}
			i, err := p.expression()
			if err != nil {
				return nil, err
			}
			if err := p.expect(tokRBracket); err != nil {
				return nil, err
			}
			e = &indexExpr{x: e, index: i}
		default:
			return e, nil
		}
	}
}
