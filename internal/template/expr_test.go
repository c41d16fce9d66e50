package template

import (
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		in       string
		wantText string
		wantExpr bool
	}{
		{"[parameters('a')]", "parameters('a')", true},
		{"[[literal]", "[literal]", false},
		{"[[", "[[", false}, // does not end with ]
		{"plain", "plain", false},
		{"[", "[", false},
		{"[]", "", true},
		{" [x()]", " [x()]", false},
		{"[x()] ", "[x()] ", false},
	}
	for _, tc := range tests {
		text, isExpr := classify(tc.in)
		if text != tc.wantText || isExpr != tc.wantExpr {
			t.Errorf("classify(%q) = %q, %v, want %q, %v", tc.in, text, isExpr, tc.wantText, tc.wantExpr)
		}
	}
}

func TestParseExpr(t *testing.T) {
	tests := []struct {
		in   string
		want string // canonical form
	}{
		{"parameters('a')", "parameters('a')"},
		{"  concat( 'a' ,'b',  'c' )  ", "concat('a', 'b', 'c')"},
		{"'it''s'", "'it''s'"},
		{"''", "''"},
		{"42", "42"},
		{"-7", "-7"},
		{"true()", "true()"},
		{"resourceGroup().location", "resourceGroup().location"},
		{"reference('x').properties.a[0]['b']", "reference('x').properties.a[0]['b']"},
		{"f(g(h(1)), 'x')[2].y", "f(g(h(1)), 'x')[2].y"},
		{"createArray()[copyIndex()]", "createArray()[copyIndex()]"},
		{"a_b$1()", "a_b$1()"},
	}
	for _, tc := range tests {
		e, err := parseExpr(tc.in)
		if err != nil {
			t.Errorf("parseExpr(%q) error: %v", tc.in, err)
			continue
		}
		if got := e.String(); got != tc.want {
			t.Errorf("parseExpr(%q).String() = %q, want %q", tc.in, got, tc.want)
		}
		again, err := parseExpr(e.String())
		if err != nil || again.String() != e.String() {
			t.Errorf("round trip of %q: %v, %v", e.String(), again, err)
		}
	}
}

func TestParseExprErrors(t *testing.T) {
	tests := []struct {
		in      string
		wantSub string
	}{
		{"", "the expression is empty"},
		{"concat(", "expected a function call, a string or an integer and found 'EndOfData'"},
		{"concat('a'", "expected token 'Comma' and actual 'EndOfData'"},
		{"concat('a' 'b')", "expected token 'Comma' and actual 'Literal'"},
		{"concat(,)", "found 'Comma'"},
		{"parameters", "expected token 'LeftParenthesis' and actual 'EndOfData'"},
		{"'abc", "not terminated"},
		{"a().", "expected token 'Identifier' and actual 'EndOfData'"},
		{"a()[1", "expected token 'RightSquareBracket'"},
		{"a() b()", "expected token 'EndOfData' and actual 'Identifier'"},
		{"a(#)", "the character '#'"},
		{"99999999999999999999", "is not valid"},
		{"-", "is not valid"},
		{strings.Repeat("f(", 100) + strings.Repeat(")", 100), "nested deeper"},
	}
	for _, tc := range tests {
		_, err := parseExpr(tc.in)
		if err == nil {
			t.Errorf("parseExpr(%q) = nil error, want %q", tc.in, tc.wantSub)
			continue
		}
		if !strings.Contains(err.Error(), tc.wantSub) || !strings.HasPrefix(err.Error(), "Unable to parse language expression '") {
			t.Errorf("parseExpr(%q) error = %q, want it to contain %q", tc.in, err, tc.wantSub)
		}
	}
}
