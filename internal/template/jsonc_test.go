package template

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseJSONC(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want any
	}{
		{"json", `{"a": [1, 2.5, "x", true, false, null]}`, map[string]any{"a": []any{int64(1), 2.5, "x", true, false, nil}}},
		{"line comment", "{\"a\": 1 // one\n}", map[string]any{"a": int64(1)}},
		{"block comment", `/* head */ {"a": /* in */ 1} /* tail */`, map[string]any{"a": int64(1)}},
		{"comment markers in strings", `{"a": "// not /* a comment */"}`, map[string]any{"a": "// not /* a comment */"}},
		{"trailing commas", `{"a": [1, 2,], "b": {"c": 3,},}`, map[string]any{"a": []any{int64(1), int64(2)}, "b": map[string]any{"c": int64(3)}}},
		{"unquoted keys and single quotes", `{a: 'x', $b_1: "y"}`, map[string]any{"a": "x", "$b_1": "y"}},
		{"escapes", `{"a": "q\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}`, map[string]any{"a": "q\"\\/\b\f\n\r\té😀"}},
		{"byte order mark", "\ufeff{\"a\": 1}", map[string]any{"a": int64(1)}},
		{"big integer is a float", `[123456789012345678901234]`, []any{1.2345678901234568e+23}},
		{"negative and exponent", `[-3, 1e3, -2.5E-1]`, []any{int64(-3), 1000.0, -0.25}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := parseJSONC([]byte(tc.in))
			if err != nil {
				t.Fatalf("parseJSONC(%q) error: %v", tc.in, err)
			}
			if diff := cmp.Diff(tc.want, n.value()); diff != "" {
				t.Errorf("parseJSONC(%q) mismatch (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestParseJSONCErrors(t *testing.T) {
	tests := []struct {
		in       string
		wantSub  string
		wantPath string
		wantLine int
		wantCol  int
	}{
		{"{\n  \"a\": 1,\n  \"b\": }", "Unexpected character encountered while parsing value: '}'", "b", 3, 8},
		{"{\"a\": [1, 2", "Unexpected end of content while reading an array", "a", 1, 12},
		{"{\"a\" 1}", "Expected ':' but got: '1'", "a", 1, 6},
		{"{\"a\": 1 \"b\": 2}", "After parsing a value an unexpected character was encountered: '\"'", "a", 1, 9},
		{"{\"a\": \"x}", "Unterminated string", "a", 1, 7},
		{"{\"a\": 1, \"a\": 2}", "The property 'a' is defined more than once", "", 1, 10},
		{"{\"a\": tru}", "Unexpected character encountered while parsing value: 'tru'", "a", 1, 7},
		{"{\"a\": \"\\x\"}", "Bad JSON escape sequence", "a", 1, 8},
		{"{} x", "Additional text encountered", "", 1, 4},
		{"{} /* open", "A comment was not closed", "", 1, 4},
		{"{\"a\": 1.2.3}", "is not a valid number", "a", 1, 7},
		{strings.Repeat("[", 300), "nested deeper than", "", 1, 257},
	}
	for _, tc := range tests {
		_, err := parseJSONC([]byte(tc.in))
		se, ok := err.(*syntaxError)
		if !ok {
			t.Errorf("parseJSONC(%q) error = %v, want a syntax error", tc.in, err)
			continue
		}
		line, col := position([]byte(tc.in), 0, se.off)
		if !strings.Contains(se.msg, tc.wantSub) || line != tc.wantLine || col != tc.wantCol || tc.wantPath != "" && se.path != tc.wantPath {
			t.Errorf("parseJSONC(%q) = %q at %s line %d col %d, want %q at %s line %d col %d",
				tc.in, se.msg, se.path, line, col, tc.wantSub, tc.wantPath, tc.wantLine, tc.wantCol)
		}
	}
}

func TestPosition(t *testing.T) {
	src := []byte("xx{\n\tab\n")
	tests := []struct{ origin, off, line, col int }{
		{2, 2, 1, 1},
		{2, 3, 1, 2},
		{2, 5, 2, 2},
		{0, 5, 2, 2},
		{0, 2, 1, 3},
	}
	for _, tc := range tests {
		if l, c := position(src, tc.origin, tc.off); l != tc.line || c != tc.col {
			t.Errorf("position(origin %d, off %d) = %d:%d, want %d:%d", tc.origin, tc.off, l, c, tc.line, tc.col)
		}
	}
}

// TestTemplatePosition checks the template's line index against position
// at every offset of a request body whose template starts mid-line.
func TestTemplatePosition(t *testing.T) {
	body := azBody(`{"a": {"value": "é"}}`, "\n  "+doc("\n\"resources\": [ // é\n]\n")+"\n")
	req, err := ParseRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	tpl := req.Template
	for off := tpl.origin; off <= len(body); off++ {
		l1, c1 := tpl.position(off)
		l2, c2 := position(body, tpl.origin, off)
		if l1 != l2 || c1 != c2 {
			t.Fatalf("offset %d: Template.position = %d:%d, position = %d:%d", off, l1, c1, l2, c2)
		}
	}
}
