package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jmespath-community/go-jmespath"
	"github.com/jmespath-community/go-jmespath/pkg/parsing"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	"gopkg.in/yaml.v3"
)

// The output formats of -o, as az's. jsonc is json colored on a terminal.
var outputFormats = []string{"json", "jsonc", "table", "tsv", "yaml", "none"}

// cell is one column of a table row: its header and its value.
type cell struct {
	key string
	val any
}

// tableFunc picks and names the columns of one item of a result for -o
// table, as az's table transformers do. It is not used with --query:
// then, as in az, the query's result is tabulated as it is.
type tableFunc func(item map[string]any) []cell

// output prints a command's result, v, in the format the flags chose,
// after --query. v is anything that marshals to az's JSON shape; a nil v
// (or a query that selects nothing) prints nothing, as in az.
func (g *globals) output(cmd *cobra.Command, v any, table tableFunc) error {
	if v == nil {
		return nil
	}
	data, err := jsonValue(v)
	if err != nil {
		return err
	}
	o := &g.client
	if o.jp != nil {
		if data, err = o.jp.Search(data); err != nil {
			return usagef("--query %q: %v", o.query, err)
		}
		table = nil
	}
	if data == nil {
		return nil
	}
	w := cmd.OutOrStdout()
	var buf bytes.Buffer
	switch o.output {
	case "json":
		writeJSON(&buf, data, false)
	case "jsonc":
		writeJSON(&buf, data, isTerminal(w))
	case "yaml":
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(yamlValue(data)); err != nil {
			return err
		}
		if err := enc.Close(); err != nil {
			return err
		}
	case "tsv":
		writeTSV(&buf, data, o.order)
	case "table":
		rows := tableRows(data, table, o.jp != nil, o.order)
		if err := writeTable(&buf, rows); err != nil {
			return err
		}
	case "none":
		return nil
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// jsonValue turns v into what encoding/json decodes JSON into (maps,
// slices, float64, string, bool, nil): what JMESPath and the writers
// below take.
func jsonValue(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// compileQuery parses a --query expression and finds the key order of the
// object it builds, if it ends in a multiselect hash ({a: x, b: y}):
// az keeps that order in tsv and table output, and scripts rely on it.
func compileQuery(expr string) (jmespath.JMESPath, []string, error) {
	jp, err := jmespath.Compile(expr)
	if err != nil {
		return nil, nil, err
	}
	node, err := parsing.NewParser().Parse(expr)
	if err != nil {
		return nil, nil, err
	}
	return jp, hashKeys(node), nil
}

// hashKeys returns the keys of the multiselect hash that builds each
// result of node, in their order, or nil.
func hashKeys(node parsing.ASTNode) []string {
	switch node.NodeType {
	case parsing.ASTMultiSelectHash:
		keys := make([]string, 0, len(node.Children))
		for _, kv := range node.Children {
			k, _ := kv.Value.(string)
			keys = append(keys, k)
		}
		return keys
	case parsing.ASTProjection, parsing.ASTValueProjection, parsing.ASTFilterProjection,
		parsing.ASTPipe, parsing.ASTSubexpression:
		if len(node.Children) >= 2 {
			return hashKeys(node.Children[1])
		}
	}
	return nil
}

// orderedKeys are m's keys in the query's order when the query built m,
// else sorted (az sorts keys everywhere else).
func orderedKeys(m map[string]any, order []string) []string {
	if len(order) == len(m) && !slices.ContainsFunc(order, func(k string) bool { _, ok := m[k]; return !ok }) {
		return order
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// ANSI colors of -o jsonc.
const (
	colorKey     = "\x1b[34m"
	colorString  = "\x1b[32m"
	colorNumber  = "\x1b[36m"
	colorLiteral = "\x1b[35m"
	colorReset   = "\x1b[0m"
)

// writeJSON writes v as az does: indented by two spaces, keys sorted,
// non-ASCII kept, and a final newline; with color, as -o jsonc on a
// terminal.
func writeJSON(buf *bytes.Buffer, v any, color bool) {
	paint := func(c, s string) {
		if color {
			buf.WriteString(c + s + colorReset)
		} else {
			buf.WriteString(s)
		}
	}
	var walk func(v any, indent string)
	walk = func(v any, indent string) {
		switch v := v.(type) {
		case map[string]any:
			if len(v) == 0 {
				buf.WriteString("{}")
				return
			}
			buf.WriteString("{\n")
			for i, k := range orderedKeys(v, nil) {
				if i > 0 {
					buf.WriteString(",\n")
				}
				buf.WriteString(indent + "  ")
				paint(colorKey, jsonString(k))
				buf.WriteString(": ")
				walk(v[k], indent+"  ")
			}
			buf.WriteString("\n" + indent + "}")
		case []any:
			if len(v) == 0 {
				buf.WriteString("[]")
				return
			}
			buf.WriteString("[\n")
			for i, e := range v {
				if i > 0 {
					buf.WriteString(",\n")
				}
				buf.WriteString(indent + "  ")
				walk(e, indent+"  ")
			}
			buf.WriteString("\n" + indent + "]")
		case string:
			paint(colorString, jsonString(v))
		case float64:
			paint(colorNumber, formatNumber(v))
		case bool:
			paint(colorLiteral, strconv.FormatBool(v))
		case nil:
			paint(colorLiteral, "null")
		default:
			b, _ := json.Marshal(v)
			buf.Write(b)
		}
	}
	walk(v, "")
	buf.WriteByte('\n')
}

func jsonString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

// formatNumber prints whole numbers (sizes, counts) without exponent or
// fraction, and others as JSON does.
func formatNumber(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return strconv.FormatInt(int64(f), 10)
	}
	b, _ := json.Marshal(f)
	return string(b)
}

// yamlValue makes whole numbers integers, so that YAML prints sizes as
// 1099511627776 rather than 1.099511627776e+12.
func yamlValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = yamlValue(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = yamlValue(e)
		}
		return out
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return int64(v)
		}
	}
	return v
}

// writeTSV writes data as az's tsv: one line per item of a list (or one
// for anything else); an object's values in key order (the query's, else
// sorted), tab-separated, with a nested object as an empty field and a
// nested list as its length, so that every line of a list has the same
// columns. Scalars print as Python's str() does (True, None), except a
// bare boolean, which prints lower-case.
func writeTSV(buf *bytes.Buffer, data any, order []string) {
	items, ok := data.([]any)
	if !ok {
		items = []any{data}
	}
	for _, item := range items {
		switch item := item.(type) {
		case map[string]any:
			for i, k := range orderedKeys(item, order) {
				if i > 0 {
					buf.WriteByte('\t')
				}
				buf.WriteString(tsvField(item[k]))
			}
		case []any:
			for i, e := range item {
				if i > 0 {
					buf.WriteByte('\t')
				}
				buf.WriteString(tsvField(e))
			}
		case bool:
			buf.WriteString(strconv.FormatBool(item))
		default:
			buf.WriteString(tsvField(item))
		}
		buf.WriteByte('\n')
	}
}

func tsvField(v any) string {
	switch v := v.(type) {
	case []any:
		return strconv.Itoa(len(v))
	case map[string]any:
		return ""
	}
	return pyString(v)
}

// pyString prints a scalar as az (Python) does.
func pyString(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		if v {
			return "True"
		}
		return "False"
	case string:
		return v
	case float64:
		return formatNumber(v)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// tableRows picks the rows and columns of -o table: the command's
// columns when it has them and no --query is given, else az's automatic
// table: every scalar field but id and type, with the first letter of its
// key capitalised, in key order (the query's, else sorted).
func tableRows(data any, table tableFunc, queried bool, order []string) [][]cell {
	items, ok := data.([]any)
	if !ok {
		items = []any{data}
	}
	rows := make([][]cell, 0, len(items))
	for _, item := range items {
		var row []cell
		switch item := item.(type) {
		case map[string]any:
			if table != nil {
				row = table(item)
				break
			}
			if !queried {
				order = nil
			}
			for _, k := range orderedKeys(item, order) {
				switch v := item[k]; v.(type) {
				case nil, map[string]any, []any:
				default:
					if k != "id" && k != "type" && k != "etag" {
						row = append(row, cell{capitalize(k), v})
					}
				}
			}
		case []any:
			for i, v := range item {
				row = append(row, cell{fmt.Sprintf("Column%d", i+1), v})
			}
		default:
			row = []cell{{"Result", item}}
		}
		rows = append(rows, row)
	}
	return rows
}

func capitalize(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	return strings.ToUpper(string(r)) + s[n:]
}

// writeTable writes rows as az's table, which is tabulate's "simple"
// format with number parsing off: the columns every row has between them,
// in order of first appearance, each as wide as its widest value and at
// least two wider than its header, left-aligned, two spaces apart, under
// a header and a rule of dashes. (Trailing spaces are trimmed.)
func writeTable(buf *bytes.Buffer, rows [][]cell) error {
	if len(rows) == 0 {
		return nil
	}
	var headers []string
	index := make(map[string]int)
	for _, row := range rows {
		for _, c := range row {
			if _, ok := index[c.key]; !ok {
				index[c.key] = len(headers)
				headers = append(headers, c.key)
			}
		}
	}
	if len(headers) == 0 {
		return errors.New("table output unavailable: the result has no scalar fields; use --query to select some")
	}
	widths := make([]int, len(headers))
	for i, h := range headers {
		widths[i] = utf8.RuneCountInString(h) + 2
	}
	cells := make([][]string, len(rows))
	for r, row := range rows {
		cells[r] = make([]string, len(headers))
		for _, c := range row {
			i := index[c.key]
			cells[r][i] = tableString(c.val)
			widths[i] = max(widths[i], utf8.RuneCountInString(cells[r][i]))
		}
	}
	line := func(fields []string) {
		var l strings.Builder
		for i, f := range fields {
			if i > 0 {
				l.WriteString("  ")
			}
			l.WriteString(f + strings.Repeat(" ", widths[i]-utf8.RuneCountInString(f)))
		}
		buf.WriteString(strings.TrimRight(l.String(), " ") + "\n")
	}
	line(headers)
	rule := make([]string, len(headers))
	for i := range rule {
		rule[i] = strings.Repeat("-", widths[i])
	}
	line(rule)
	for _, r := range cells {
		line(r)
	}
	return nil
}

func tableString(v any) string {
	switch v.(type) {
	case nil:
		return ""
	case map[string]any, []any:
		b, _ := json.Marshal(v)
		return string(b)
	}
	return pyString(v)
}
