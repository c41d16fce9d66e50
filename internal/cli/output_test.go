package cli

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

// TestOutputFormats prints one disk and one list in every format.
func TestOutputFormats(t *testing.T) {
	s := newStack(t)
	s.ok("group", "create", "-n", "rg1", "-l", "eastus", "-o", "none")
	s.ok("disk", "create", "-g", "rg1", "-n", "d1", "--size-gb", "4", "-o", "none")
	show := []string{"disk", "show", "-g", "rg1", "-n", "d1"}

	js := s.ok(show...)
	var disk map[string]any
	if err := json.Unmarshal([]byte(js), &disk); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(js, "{\n  \"burstingEnabled\": null,\n") || !strings.HasSuffix(js, "\n}\n") {
		t.Errorf("-o json is not az's (indent 2, sorted keys):\n%s", js)
	}
	if got := s.ok(append(show, "-o", "jsonc")...); got != js {
		t.Errorf("-o jsonc off a terminal =\n%s\nwant plain json", got)
	}

	var y map[string]any
	if err := yaml.Unmarshal([]byte(s.ok(append(show, "-o", "yaml")...)), &y); err != nil {
		t.Fatal(err)
	}
	yj, _ := jsonValue(y)
	if diff := cmp.Diff(disk, yj); diff != "" {
		t.Errorf("-o yaml differs from -o json (-json +yaml):\n%s", diff)
	}
	if got := s.ok(append(show, "-o", "yaml", "--query", "diskSizeBytes")...); got != "4294967296\n" {
		t.Errorf("-o yaml of a size = %q, want an integer", got)
	}

	// tsv: the values of the sorted keys; objects empty, null as None.
	tsv := s.ok(append(show, "-o", "tsv")...)
	fields := strings.Split(strings.TrimSuffix(tsv, "\n"), "\t")
	keys := make([]string, 0, len(disk))
	for k := range disk {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if len(fields) != len(keys) {
		t.Fatalf("-o tsv has %d fields, want %d (one per key):\n%q", len(fields), len(keys), tsv)
	}
	for i, k := range keys {
		want := map[string]string{"creationData": "", "sku": "", "tags": "", "burstingEnabled": "None", "name": "d1", "diskSizeGb": "4", "diskSizeBytes": "4294967296"}[k]
		if _, check := map[string]bool{"creationData": true, "sku": true, "tags": true, "burstingEnabled": true, "name": true, "diskSizeGb": true, "diskSizeBytes": true}[k]; check && fields[i] != want {
			t.Errorf("-o tsv: field %d (%s) = %q, want %q", i, k, fields[i], want)
		}
	}

	if got := s.ok(append(show, "-o", "none")...); got != "" {
		t.Errorf("-o none printed %q", got)
	}
	if got := s.ok(append(show, "-o", "TABLE")...); !strings.HasPrefix(got, "Name    ResourceGroup    Location") {
		t.Errorf("-o TABLE =\n%s", got)
	}

	// --query: az's key order in tsv and table, automatic columns.
	if got := s.ok(append(show, "--query", "{z:name, a:diskSizeGb, m:sku.name}", "-o", "tsv")...); got != "d1\t4\tPremium_LRS\n" {
		t.Errorf("--query {z,a,m} -o tsv = %q, want the query's order", got)
	}
	if got, want := s.ok(append(show, "--query", "{z:name, a:diskSizeGb}", "-o", "table")...), "Z    A\n---  ---\nd1   4\n"; got != want {
		t.Errorf("--query {z,a} -o table =\n%q\nwant\n%q", got, want)
	}
	if got, want := s.ok("disk", "list", "--query", "[].[name, diskSizeGb]", "-o", "table"), "Column1    Column2\n---------  ---------\nd1         4\n"; got != want {
		t.Errorf("--query [].[name, size] -o table =\n%q\nwant\n%q", got, want)
	}
	if got, want := s.ok("disk", "list", "--query", "[].name", "-o", "table"), "Result\n--------\nd1\n"; got != want {
		t.Errorf("--query [].name -o table =\n%q\nwant\n%q", got, want)
	}
	if got := s.ok("disk", "list", "--query", "[?diskSizeGb > `2`].name", "-o", "json"); got != "[\n  \"d1\"\n]\n" {
		t.Errorf("--query filter -o json = %q", got)
	}
	if got := s.ok(append(show, "--query", "noSuchField")...); got != "" {
		t.Errorf("--query selecting nothing printed %q, want nothing (as az)", got)
	}
	if got := s.ok(append(show, "--query", "length(keys(@)) > `10`")...); got != "true\n" {
		t.Errorf("--query with functions = %q", got)
	}
	s.fails(exitUsage, []string{"argument --query: invalid JMESPath query"}, append(show, "--query", "[.")...)
	s.fails(exitUsage, []string{"argument --output/-o: invalid choice: 'xml'"}, append(show, "-o", "xml")...)
	// az's table of a list with nothing to show.
	if got := s.ok("snapshot", "list", "-o", "table"); got != "" {
		t.Errorf("empty list -o table = %q", got)
	}
}

func TestWriteTSV(t *testing.T) {
	tests := []struct {
		name  string
		data  any
		order []string
		want  string
	}{
		{"object", map[string]any{"b": 2.0, "a": "x", "c": nil, "d": true, "e": map[string]any{"x": 1.0}, "f": []any{1.0, 2.0}},
			nil, "x\t2\tNone\tTrue\t\t2\n"},
		{"list of objects", []any{map[string]any{"n": "a", "s": 1.0}, map[string]any{"n": "b", "s": 2.5}}, nil, "a\t1\nb\t2.5\n"},
		{"query order", map[string]any{"z": "first", "a": "second"}, []string{"z", "a"}, "first\tsecond\n"},
		{"list of scalars", []any{"a", 1.0, false, nil}, nil, "a\n1\nfalse\nNone\n"},
		{"list of lists", []any{[]any{"a", 1.0}, []any{"b", nil}}, nil, "a\t1\nb\tNone\n"},
		{"bare string", "hello", nil, "hello\n"},
		{"bare bool", true, nil, "true\n"},
		{"big number", 1099511627776.0, nil, "1099511627776\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			writeTSV(&buf, tc.data, tc.order)
			if got := buf.String(); got != tc.want {
				t.Errorf("writeTSV(%v) = %q, want %q", tc.data, got, tc.want)
			}
		})
	}
}

func TestWriteTable(t *testing.T) {
	rows := tableRows([]any{
		map[string]any{"name": "a", "size": 10.0, "ok": true, "id": "/x", "type": "T", "nested": map[string]any{}, "gone": nil},
		map[string]any{"name": "bbbbbb", "size": 2.0, "ok": false, "extra": "e"},
	}, nil, false, nil)
	var buf bytes.Buffer
	if err := writeTable(&buf, rows); err != nil {
		t.Fatal(err)
	}
	want := "Name    Ok     Size    Extra\n" +
		"------  -----  ------  -------\n" +
		"a       True   10\n" +
		"bbbbbb  False  2       e\n"
	if got := buf.String(); got != want {
		t.Errorf("table =\n%s\nwant\n%s", got, want)
	}
	if err := writeTable(&buf, tableRows([]any{map[string]any{"only": map[string]any{}}}, nil, false, nil)); err == nil {
		t.Error("a table with no scalar field: no error")
	}
}

func TestJSONAndColor(t *testing.T) {
	v := map[string]any{"b": []any{}, "a": map[string]any{}, "c": "<é>", "d": 1.5, "e": nil, "f": []any{true}}
	var buf bytes.Buffer
	writeJSON(&buf, v, false)
	want := "{\n  \"a\": {},\n  \"b\": [],\n  \"c\": \"<é>\",\n  \"d\": 1.5,\n  \"e\": null,\n  \"f\": [\n    true\n  ]\n}\n"
	if buf.String() != want {
		t.Errorf("writeJSON =\n%s\nwant\n%s", buf.String(), want)
	}
	buf.Reset()
	writeJSON(&buf, map[string]any{"k": "v"}, true)
	if got, want := buf.String(), "{\n  "+colorKey+`"k"`+colorReset+": "+colorString+`"v"`+colorReset+"\n}\n"; got != want {
		t.Errorf("writeJSON with color = %q, want %q", got, want)
	}
}

func TestPythonTime(t *testing.T) {
	for in, want := range map[string]string{
		"2026-11-26T12:00:00Z":             "2026-11-26T12:00:00+00:00",
		"2026-11-26T12:00:00.123456789Z":   "2026-11-26T12:00:00.123456+00:00",
		"2026-11-26T13:00:00.5+01:00":      "2026-11-26T12:00:00.500000+00:00",
		"not a time":                       "not a time",
		"2026-11-26T12:00:00.000000100Z":   "2026-11-26T12:00:00+00:00",
		"2026-11-26T12:00:00.000001000Z":   "2026-11-26T12:00:00.000001+00:00",
		"2026-11-26T12:00:00.999999999Z":   "2026-11-26T12:00:00.999999+00:00",
		"2026-11-26T12:00:00.100000-00:30": "2026-11-26T12:30:00.100000+00:00",
	} {
		if got := pythonTime(in); got != want {
			t.Errorf("pythonTime(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestQueryKeyOrder(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{"{b: x, a: y}", []string{"b", "a"}},
		{"[].{n: name, s: diskSizeGb}", []string{"n", "s"}},
		{"[?incremental].{z: name, a: id}", []string{"z", "a"}},
		{"value[*] | [0].{q: a, p: b}", []string{"q", "p"}},
		{"[].name", nil},
		{"[name, id]", nil},
	}
	for _, tc := range tests {
		_, got, err := compileQuery(tc.expr)
		if err != nil || !cmp.Equal(got, tc.want) {
			t.Errorf("compileQuery(%q) order = %v, %v; want %v", tc.expr, got, err, tc.want)
		}
	}
}

func TestCredentialsLookup(t *testing.T) {
	s := newStack(t)
	s.ok("group", "create", "-n", "rg1", "-l", "eastus", "-o", "none")
	list := []string{"group", "list", "--query", "[].name", "-o", "tsv"}

	// $DELTADISK_DATA_DIR (the stack's default), --data-dir, --credentials.
	if got := s.ok(list...); got != "rg1\n" {
		t.Errorf("with $DELTADISK_DATA_DIR: %q", got)
	}
	s.env = map[string]string{}
	if got := s.ok(append(list, "--data-dir", s.dataDir)...); got != "rg1\n" {
		t.Errorf("with --data-dir: %q", got)
	}
	if got := s.ok(append(list, "--credentials", filepath.Join(s.dataDir, credentialsFileName))...); got != "rg1\n" {
		t.Errorf("with --credentials: %q", got)
	}
	s.env = map[string]string{"XDG_DATA_HOME": filepath.Dir(s.dataDir)}
	s.fails(exitError, []string{filepath.Join(filepath.Dir(s.dataDir), "deltadisk", credentialsFileName), "deltadisk serve"}, list...)
	s.env = map[string]string{}
	s.fails(exitError, []string{"no --data-dir, no $DELTADISK_DATA_DIR"}, list...)
	empty := t.TempDir()
	s.fails(exitError, []string{filepath.Join(empty, credentialsFileName), "does not exist"}, append(list, "--data-dir", empty)...)
	s.fails(exitUsage, []string{"give one"}, append(list, "--data-dir", empty, "--credentials", "x.json")...)

	// --subscription: by id, by name; an unknown name is not found.
	s.env = map[string]string{"DELTADISK_DATA_DIR": s.dataDir}
	if got := s.ok(append(list, "--subscription", testSub)...); got != "rg1\n" {
		t.Errorf("--subscription ID: %q", got)
	}
	if got := s.ok(append(list, "--subscription", "DeltaDisk")...); got != "rg1\n" {
		t.Errorf("--subscription NAME: %q", got)
	}
	s.fails(exitNotFound, []string{"Subscription 'other' not found", "deltadisk"}, append(list, "--subscription", "other")...)
	s.fails(exitError, []string{"(AuthorizationFailed)"}, append(list, "--subscription", "99999999-2222-3333-4444-555555555555")...)

	// A wrong secret fails to log in.
	bad := s.creds
	bad.ClientSecret = "wrong"
	badPath := filepath.Join(t.TempDir(), "bad.json")
	if err := writeCredentials(badPath, bad); err != nil {
		t.Fatal(err)
	}
	s.fails(exitError, []string{"ERROR: authentication failed"}, append(list, "--credentials", badPath)...)
}

func TestServerDown(t *testing.T) {
	s := newStack(t)
	s.srv.Close()
	s.fails(exitError, []string{"ERROR: cannot log in at " + s.creds.Authority, "is `deltadisk serve` running there?"}, "group", "list")
}

func TestOnlyShowErrors(t *testing.T) {
	var out, errOut bytes.Buffer
	g := &globals{stdout: &out, stderr: &errOut}
	g.warn("careful %d", 1)
	g.client.onlyShowErrors = true
	g.warn("hidden")
	if errOut.String() != "WARNING: careful 1\n" {
		t.Errorf("warnings = %q", errOut.String())
	}
}
