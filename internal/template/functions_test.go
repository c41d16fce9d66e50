package template

import (
	"context"
	"errors"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/google/go-cmp/cmp"
)

const funcTemplate = `{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "parameters": {
    "name": {"type": "string", "defaultValue": "disk1"},
    "count": {"type": "int", "defaultValue": 3},
    "flag": {"type": "bool", "defaultValue": true},
    "obj": {"type": "object", "defaultValue": {"a": 1, "B": {"c": "d"}}},
    "arr": {"type": "array", "defaultValue": ["x", "y", "z"]},
    "derived": {"type": "string", "defaultValue": "[concat(parameters('name'), '-copy')]"}
  },
  "variables": {
    "prefix": "snap",
    "full": "[concat(variables('prefix'), '-', parameters('name'))]",
    "list": [1, 2, 3]
  },
  "resources": [
    {"type": "Microsoft.Compute/disks", "apiVersion": "2022-07-02", "name": "[parameters('name')]"}
  ]
}`

var testCtx = Context{
	SubscriptionID:        "00000000-0000-0000-0000-000000000001",
	SubscriptionName:      "dev",
	TenantID:              "t1",
	ResourceGroup:         "rg1",
	ResourceGroupLocation: "eastus",
	DeploymentName:        "deploy1",
	Reference: func(_ context.Context, id, api string) (map[string]any, error) {
		if strings.HasSuffix(id, "/missing") {
			return nil, errors.New("resource not found")
		}
		return map[string]any{"id": id, "properties": map[string]any{"api": api, "size": int64(4)}}, nil
	},
}

// evalIn evaluates one expression string as an output would be, with the
// given copy loops open.
func evalIn(t *testing.T, s string, loops ...loop) (any, error) {
	t.Helper()
	tpl, err := Parse([]byte(funcTemplate))
	if err != nil {
		t.Fatal(err)
	}
	ev := &evaluator{t: tpl, ctx: testCtx}
	if err := ev.resolveParameters(nil); err != nil {
		t.Fatal(err)
	}
	if err := ev.resolveVariables(); err != nil {
		t.Fatal(err)
	}
	if err := ev.identities(); err != nil {
		t.Fatal(err)
	}
	ev.phase, ev.loops = phaseOutputs, loops
	return ev.evalString(s, at{"x", 0})
}

const rgID = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg1"

func TestFunctions(t *testing.T) {
	tests := []struct {
		expr  string
		want  any
		loops []loop
	}{
		{expr: "plain text", want: "plain text"},
		{expr: "[[not an expression]", want: "[not an expression]"},
		{expr: "['it''s']", want: "it's"},
		{expr: "[42]", want: int64(42)},
		// parameters and variables
		{expr: "[parameters('name')]", want: "disk1"},
		{expr: "[parameters('NAME')]", want: "disk1"},
		{expr: "[parameters('derived')]", want: "disk1-copy"},
		{expr: "[parameters('obj').B.c]", want: "d"},
		{expr: "[parameters('obj').b.c]", want: "d"},
		{expr: "[parameters('obj')['a']]", want: int64(1)},
		{expr: "[parameters('arr')[1]]", want: "y"},
		{expr: "[variables('full')]", want: "snap-disk1"},
		{expr: "[variables('list')[2]]", want: int64(3)},
		// concat
		{expr: "[concat('a', 'b', 'c')]", want: "abc"},
		{expr: "[concat(parameters('name'),'_snapshot1')]", want: "disk1_snapshot1"},
		{expr: "[concat('n', 1, true())]", want: "n1True"},
		{expr: "[concat(parameters('arr'), createArray('w'))]", want: []any{"x", "y", "z", "w"}},
		{expr: "[concat(createArray(), createArray())]", want: []any{}},
		// format
		{expr: "[format('{0}-{1}', 'a', 2)]", want: "a-2"},
		{expr: "[format('{0:D3}', 7)]", want: "007"},
		{expr: "[format('{0}, {1}. Formatted number: {2:N0}', 'Hello', 'User', 8175133)]", want: "Hello, User. Formatted number: 8,175,133"},
		{expr: "[format('{{{0}}}', 'x')]", want: "{x}"},
		// resourceGroup, subscription, deployment
		{expr: "[resourceGroup().location]", want: "eastus"},
		{expr: "[resourceGroup().id]", want: rgID},
		{expr: "[resourceGroup().name]", want: "rg1"},
		{expr: "[resourceGroup().properties.provisioningState]", want: "Succeeded"},
		{expr: "[subscription().id]", want: "/subscriptions/00000000-0000-0000-0000-000000000001"},
		{expr: "[subscription().subscriptionId]", want: "00000000-0000-0000-0000-000000000001"},
		{expr: "[subscription().tenantId]", want: "t1"},
		{expr: "[subscription().displayName]", want: "dev"},
		{expr: "[deployment().name]", want: "deploy1"},
		// resourceId
		{expr: "[resourceId('Microsoft.Compute/disks', 'd1')]", want: rgID + "/providers/Microsoft.Compute/disks/d1"},
		{expr: "[resourceId('rg2', 'Microsoft.Compute/disks', 'd1')]", want: "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg2/providers/Microsoft.Compute/disks/d1"},
		{expr: "[resourceId('sub2', 'rg2', 'Microsoft.Compute/disks', 'd1')]", want: "/subscriptions/sub2/resourceGroups/rg2/providers/Microsoft.Compute/disks/d1"},
		{expr: "[resourceId('Microsoft.Network/virtualNetworks/subnets', 'vnet', 'sub')]", want: rgID + "/providers/Microsoft.Network/virtualNetworks/vnet/subnets/sub"},
		{expr: "[resourceId('Microsoft.Network/virtualNetworks/subnets', 'vnet/sub')]", want: rgID + "/providers/Microsoft.Network/virtualNetworks/vnet/subnets/sub"},
		// reference
		{expr: "[reference(resourceId('Microsoft.Compute/disks', 'other'), '2022-07-02').api]", want: "2022-07-02"},
		{expr: "[reference('disk1').api]", want: "2022-07-02"},
		{expr: "[reference(resourceId('Microsoft.Compute/disks', 'disk1')).size]", want: int64(4)},
		{expr: "[reference('disk1', '2020-01-01', 'Full').id]", want: rgID + "/providers/Microsoft.Compute/disks/disk1"},
		// string functions
		{expr: "[toLower('AbC')]", want: "abc"},
		{expr: "[toUpper('AbC')]", want: "ABC"},
		{expr: "[trim('  x ')]", want: "x"},
		{expr: "[string(5)]", want: "5"},
		{expr: "[string(true())]", want: "True"},
		{expr: "[string('s')]", want: "s"},
		{expr: "[string(parameters('arr'))]", want: `["x","y","z"]`},
		{expr: "[string(createObject('valueA', 10, 'valueB', 'Example Text'))]", want: `{"valueA":10,"valueB":"Example Text"}`},
		{expr: "[int('42')]", want: int64(42)},
		{expr: "[int(7)]", want: int64(7)},
		{expr: "[bool('TRUE')]", want: true},
		{expr: "[bool(0)]", want: false},
		{expr: "[length('héllo')]", want: int64(5)},
		{expr: "[length('😀')]", want: int64(2)},
		{expr: "[length(parameters('arr'))]", want: int64(3)},
		{expr: "[length(parameters('obj'))]", want: int64(2)},
		{expr: "[replace('123-123-1234', '-', '')]", want: "1231231234"},
		{expr: "[substring('one two three', 4, 3)]", want: "two"},
		{expr: "[substring('one two three', 8)]", want: "three"},
		{expr: "[split('one;two,three', createArray(',', ';'))]", want: []any{"one", "two", "three"}},
		{expr: "[split('a,,b', ',')]", want: []any{"a", "", "b"}},
		{expr: "[startsWith('abcdef', 'AB')]", want: true},
		{expr: "[endsWith('abcdef', 'e')]", want: false},
		{expr: "[padLeft('123', 6, '0')]", want: "000123"},
		{expr: "[padLeft(5, 3)]", want: "  5"},
		{expr: "[first('One')]", want: "O"},
		{expr: "[last(parameters('arr'))]", want: "z"},
		{expr: "[contains('abc', 'b')]", want: true},
		{expr: "[contains(parameters('arr'), 'q')]", want: false},
		{expr: "[contains(parameters('obj'), 'A')]", want: true},
		{expr: "[empty('')]", want: true},
		{expr: "[empty(parameters('arr'))]", want: false},
		{expr: "[empty(null())]", want: true},
		// logic
		{expr: "[if(equals(1, 1), 'yes', 'no')]", want: "yes"},
		{expr: "[if(false(), parameters('nope'), 'lazy')]", want: "lazy"},
		{expr: "[equals('a', 'A')]", want: false},
		{expr: "[equals(parameters('arr'), createArray('x', 'y', 'z'))]", want: true},
		{expr: "[equals(parameters('obj'), json('{\"a\": 1, \"B\": {\"c\": \"d\"}}'))]", want: true},
		{expr: "[not(true())]", want: false},
		{expr: "[and(true(), true(), false())]", want: false},
		{expr: "[and(true(), true())]", want: true},
		{expr: "[or(false(), true())]", want: true},
		{expr: "[or(false(), false())]", want: false},
		{expr: "[true()]", want: true},
		{expr: "[false()]", want: false},
		{expr: "[null()]", want: nil},
		{expr: "[json('null')]", want: nil},
		{expr: "[json('[1, \"a\"]')]", want: []any{int64(1), "a"}},
		{expr: "[coalesce(null(), null(), 'c')]", want: "c"},
		// numbers
		{expr: "[add(2, 3)]", want: int64(5)},
		{expr: "[sub(2, 3)]", want: int64(-1)},
		{expr: "[mul(4, -3)]", want: int64(-12)},
		{expr: "[div(7, 2)]", want: int64(3)},
		{expr: "[mod(7, 3)]", want: int64(1)},
		{expr: "[less(1, 2)]", want: true},
		{expr: "[lessOrEquals(2, 2)]", want: true},
		{expr: "[greater('b', 'a')]", want: true},
		{expr: "[greaterOrEquals(1, 2)]", want: false},
		// objects and arrays
		{expr: "[createObject('k', createArray(1))]", want: map[string]any{"k": []any{int64(1)}}},
		// hashes
		{expr: "[uniqueString('aaa')]", want: "zavj67f3en4hc"},
		{expr: "[uniqueString('xxx', 'yyy', 'zzz')]", want: "lghi7k5js7itq"},
		{expr: "[guid('/subscriptions/s/resourceGroups/rg')]", want: "43af9c26-aedc-52c3-b2fc-7e1d61b44b82"},
		// copyIndex
		{expr: "[copyIndex()]", want: int64(2), loops: []loop{{name: "l", index: 2, unnamed: true}}},
		{expr: "[copyIndex(1)]", want: int64(3), loops: []loop{{name: "l", index: 2, unnamed: true}}},
		{expr: "[copyIndex('l')]", want: int64(2), loops: []loop{{name: "l", index: 2, unnamed: true}, {name: "inner", index: 5}}},
		{expr: "[copyIndex('INNER', 10)]", want: int64(15), loops: []loop{{name: "l", index: 2, unnamed: true}, {name: "inner", index: 5}}},
		{expr: "[concat(parameters('name'), '-', copyIndex(1))]", want: "disk1-1", loops: []loop{{name: "l", index: 0, unnamed: true}}},
		// case-insensitive function names
		{expr: "[CONCAT('a', ToLower('B'))]", want: "ab"},
		// edges
		{expr: "[equals(json('2.0'), 2)]", want: true},
		{expr: "[equals(2, json('2.5'))]", want: false},
		{expr: "[equals(createObject('a', 1), createObject('a', 2))]", want: false},
		{expr: "[string(json('1.5'))]", want: "1.5"},
		{expr: "[string(null())]", want: ""},
		{expr: "[concat('a', null(), 'b')]", want: "ab"},
		{expr: "[bool(1)]", want: true},
		{expr: "[bool(false())]", want: false},
		{expr: "[first(createArray())]", want: nil},
		{expr: "[last('')]", want: ""},
		{expr: "[last('abc')]", want: "c"},
		{expr: "[first(parameters('arr'))]", want: "x"},
		{expr: "[mod(-7, -1)]", want: int64(0)},
		{expr: "[div(-9223372036854775808, -1)]", want: int64(-9223372036854775808)},
		{expr: "[int(json('3.0'))]", want: int64(3)},
		{expr: "[empty(createObject())]", want: true},
		{expr: "[less('a', 'b')]", want: true},
		{expr: "[contains('a1', 1)]", want: true},
		{expr: "[padLeft('abc', 2)]", want: "abc"},
		{expr: "[split('abc', '')]", want: []any{"abc"}},
		{expr: "[createArray(1, 'a')]", want: []any{int64(1), "a"}},
		{expr: "[resourceGroup().tags]", want: map[string]any{}},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			got, err := evalIn(t, tc.expr, tc.loops...)
			if err != nil {
				t.Fatalf("eval(%s) error: %v", tc.expr, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("eval(%s) mismatch (-want +got):\n%s", tc.expr, diff)
			}
		})
	}
}

func TestFunctionErrors(t *testing.T) {
	tests := []struct {
		expr    string
		wantSub string
	}{
		{"[concatt('a')]", "The template function 'concatt' is not found"},
		{"[parameters('nope')]", "The template parameter 'nope' is not found"},
		{"[variables('nope')]", "The template variable 'nope' is not found"},
		{"[parameters(1)]", "expects its parameter 1 to be of type 'String'. The provided value is of type 'Integer'"},
		{"[toLower()]", "function requires 1 argument(s) while 0 were provided"},
		{"[toLower('a', 'b')]", "function requires 1 argument(s) while 2 were provided"},
		{"[toLower(1)]", "'toLower' expects its parameter 1 to be of type 'String'"},
		{"[concat()]", "requires at least 1 argument(s)"},
		{"[concat('a', createArray())]", "expects its parameter 1 to be of type 'Array'"},
		{"[concat('a', createObject())]", "expects its parameter 2 to be of type 'String'"},
		{"[format('{1}', 'a')]", "index (zero based) must be greater than or equal to zero"},
		{"[format('{0', 'a')]", "input string was not in a correct format"},
		{"[format('{0:Q}', 1)]", "the format specifier 'Q' is not supported"},
		{"[resourceId('d1')]", "function requires at least 2 argument(s)"},
		{"[resourceId('a', 'b')]", "requires exactly one multi-segmented argument"},
		{"[resourceId('Microsoft.Compute/disks', 'a', 'b')]", "requires 1 resource name segment(s) and 2 were given"},
		{"[int('x')]", "cannot convert the string 'x' to an integer"},
		{"[length(1)]", "expects its parameter 1 to be of type 'String, Array or Object'"},
		{"[if(1, 'a', 'b')]", "expects its parameter 1 to be of type 'Boolean'"},
		{"[not('true')]", "to be of type 'Boolean'"},
		{"[and(true())]", "requires at least 2 argument(s)"},
		{"[uniqueString(1)]", "to be of type 'String'"},
		{"[guid()]", "requires at least 1 argument(s)"},
		{"[div(1, 0)]", "Attempted to divide by zero"},
		{"[substring('abc', 2, 5)]", "must refer to a location within the string"},
		{"[json('{')]", "cannot parse its argument as JSON"},
		{"[createObject('a')]", "even number of arguments"},
		{"[padLeft('a', 100000)]", "cannot pad to more than"},
		{"[resourceGroup().nope]", "The language expression property 'nope' doesn't exist, available properties are 'id, location, name, properties, tags, type'"},
		{"[parameters('arr')[3]]", "array index '3' is out of bounds"},
		{"[parameters('name').x]", "can't be evaluated on a value of type 'String'"},
		{"[copyIndex()]", "The template function 'copyIndex' is not expected at this location"},
		{"[reference('nope')]", "names the resource 'nope', which is not defined in the template"},
		{"[reference(resourceId('Microsoft.Compute/disks', 'missing'))]", "failed for '" + rgID + "/providers/Microsoft.Compute/disks/missing': resource not found"},
		{"[reference('disk1', '2020-01-01', 'Partial')]", "expects 'Full'"},
		{"[concat(]", "Unable to parse language expression 'concat('"},
		{"[resourceGroup('rg2')]", "function requires 0 argument(s) while 1 were provided"},
		{"[subscription(1)]", "function requires 0 argument(s) while 1 were provided"},
		{"[deployment(1)]", "function requires 0 argument(s) while 1 were provided"},
		{"[true(1)]", "function requires 0 argument(s) while 1 were provided"},
		{"[copyIndex(1, 2, 3)]", "function accepts at most 2 argument(s) while 3 were provided"},
		{"[copyIndex(true())]", "'copyIndex' expects its parameter 1 to be of type 'Integer'"},
		{"[copyIndex('loop', 'x')]", "'copyIndex' expects its parameter 2 to be of type 'Integer'"},
		{"[empty(1)]", "'empty' expects its parameter 1 to be of type 'String, Array or Object'"},
		{"[replace('a', '', 'b')]", "cannot replace an empty string"},
		{"[replace(padLeft('', 16000, 'a'), 'a', padLeft('', 16000, 'b'))]", "builds more than 8388608 bytes of values"},
		{"[replace('a', 'a', 1)]", "'replace' expects its parameter 3 to be of type 'String'"},
		{"[mod(1, 0)]", "Attempted to divide by zero"},
		{"[add('a', 1)]", "'add' expects its parameter 1 to be of type 'Integer'"},
		{"[sub(1, 'a')]", "'sub' expects its parameter 2 to be of type 'Integer'"},
		{"[less(true(), 1)]", "'less' expects its parameter 1 to be of type 'Integer or String'"},
		{"[less(1, 'a')]", "'less' expects its parameter 2 to be of type 'Integer'"},
		{"[greater('a', 1)]", "'greater' expects its parameter 2 to be of type 'String'"},
		{"[coalesce()]", "requires at least 1 argument(s)"},
		{"[startsWith(1, 'a')]", "'startsWith' expects its parameter 1 to be of type 'String'"},
		{"[endsWith('a', 1)]", "'endsWith' expects its parameter 2 to be of type 'String'"},
		{"[string()]", "function requires 1 argument(s) while 0 were provided"},
		{"[equals(1)]", "function requires 2 argument(s) while 1 were provided"},
		{"[first(1)]", "'first' expects its parameter 1 to be of type 'String or Array'"},
		{"[bool('maybe')]", "cannot convert the string 'maybe' to a boolean"},
		{"[bool(createArray())]", "'bool' expects its parameter 1 to be of type 'Boolean'"},
		{"[int(true())]", "'int' expects its parameter 1 to be of type 'String'"},
		{"[substring(1, 0)]", "'substring' expects its parameter 1 to be of type 'String'"},
		{"[substring('abc', 'x')]", "'substring' expects its parameter 2 to be of type 'Integer'"},
		{"[substring('abc', -1, 1)]", "must refer to a location within the string"},
		{"[split('a', 1)]", "'split' expects its parameter 2 to be of type 'String or Array'"},
		{"[split('a', createArray(1))]", "'split' expects its parameter 2 to be of type 'String'"},
		{"[padLeft(createArray(), 2)]", "'padLeft' expects its parameter 1 to be of type 'String or Integer'"},
		{"[padLeft('a', 3, 'ab')]", "expects a single padding character"},
		{"[contains(1, 'a')]", "'contains' expects its parameter 1 to be of type 'String, Array or Object'"},
		{"[contains(createObject(), 1)]", "'contains' expects its parameter 2 to be of type 'String'"},
		{"[length(null())]", "'length' expects its parameter 1 to be of type 'String, Array or Object'"},
		{"[not()]", "function requires 1 argument(s) while 0 were provided"},
		{"[json(1)]", "'json' expects its parameter 1 to be of type 'String'"},
		{"[format(1)]", "'format' expects its parameter 1 to be of type 'String'"},
		{"[createObject(1, 2)]", "'createObject' expects its parameter 1 to be of type 'String'"},
		{"[resourceId('Microsoft.Compute/disks', 1)]", "'resourceId' expects its parameter 2 to be of type 'String'"},
		{"[resourceId('Microsoft.Compute/', 'a')]", "is not a resource type"},
		{"[reference(1)]", "'reference' expects its parameter 1 to be of type 'String'"},
		{"[reference('disk1', 1)]", "'reference' expects its parameter 2 to be of type 'String'"},
		{"[createArray()[0]]", "array index '0' is out of bounds"},
		{"['a'[0]]", "can't be applied to a value of type 'String'"},
		{"[createArray()[true()]]", "index must be a string or an integer; it is of type 'Boolean'"},
		{"[parameters('obj')[createArray()]]", "index must be a string or an integer"},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			_, err := evalIn(t, tc.expr)
			if err == nil || !strings.Contains(err.Error(), tc.wantSub) {
				t.Errorf("eval(%s) error = %v, want it to contain %q", tc.expr, err, tc.wantSub)
			}
		})
	}
}

func TestCopyIndexLoopName(t *testing.T) {
	_, err := evalIn(t, "[copyIndex('other')]", loop{name: "l", index: 0, unnamed: true})
	if err == nil || !strings.Contains(err.Error(), "refers to the copy loop 'other', which does not enclose this expression") {
		t.Errorf("copyIndex('other') error = %v", err)
	}
}

func TestErrorString(t *testing.T) {
	e := &Error{Code: CodeInvalidTemplate, Message: "m"}
	if got := e.Error(); got != "InvalidTemplate: m" {
		t.Errorf("Error() = %q", got)
	}
}

func TestFormatNET(t *testing.T) {
	tests := []struct {
		f    string
		args []any
		want string
	}{
		{"{0}", []any{"a"}, "a"},
		{"{0:D5}", []any{int64(-42)}, "-00042"},
		{"{0:d}", []any{int64(42)}, "42"},
		{"{0:000}", []any{int64(7)}, "007"},
		{"{0:N}", []any{int64(1234)}, "1,234.00"},
		{"{0:N1}", []any{int64(-1234567)}, "-1,234,567.0"},
		{"{0:F3}", []any{int64(2)}, "2.000"},
		{"{0:X}", []any{int64(255)}, "FF"},
		{"{0:x4}", []any{int64(255)}, "00ff"},
		{"{0:G}", []any{int64(9)}, "9"},
		{"[{0,5}]", []any{"ab"}, "[   ab]"},
		{"[{0,-5}]", []any{"ab"}, "[ab   ]"},
		{"{0:D3}", []any{"text ignores format"}, "text ignores format"},
		{"{0} {1}", []any{true, false}, "True False"},
		{"{{0}}", nil, "{0}"},
		{"{ 0 }", []any{"s"}, "s"},
	}
	for _, tc := range tests {
		got, err := formatNET(tc.f, tc.args, unlimited)
		if err != nil || got != tc.want {
			t.Errorf("formatNET(%q, %v) = %q, %v, want %q", tc.f, tc.args, got, err, tc.want)
		}
	}
	for _, bad := range []string{"{", "}", "{x}", "{-1}", "{0,x}", "{0,99999}", "{0:D999}"} {
		if got, err := formatNET(bad, []any{int64(1)}, unlimited); err == nil {
			t.Errorf("formatNET(%q) = %q, want an error", bad, got)
		}
	}
}

// unlimited is a formatNET grow that allows everything.
func unlimited(int) error { return nil }

// TestUTF16Slice: substring() cuts as utf16.Decode of the UTF-16 code
// units would, half surrogate pairs included, without converting the
// string.
func TestUTF16Slice(t *testing.T) {
	for _, s := range []string{"", "abc", "h\u00e9llo", "a\U0001F600b\U0001F601c", "\U0001F600", "\xffx\xfe"} {
		u := utf16.Encode([]rune(s))
		for start := 0; start <= len(u); start++ {
			for end := start; end <= len(u); end++ {
				want := string(utf16.Decode(u[start:end]))
				if got := utf16Slice(s, start, end); got != want {
					t.Errorf("utf16Slice(%q, %d, %d) = %q, want %q", s, start, end, got, want)
				}
			}
		}
	}
	if _, err := evalIn(t, "[substring('abc', 1, 9223372036854775807)]"); err == nil {
		t.Errorf("substring with a length that overflows: no error")
	}
}

// TestAffixFold: startsWith and endsWith compare as the lower-cased
// strings would, without building them.
func TestAffixFold(t *testing.T) {
	for _, s := range []string{"", "a", "ABC", "aBc\u00c9", "\u00e9t\u00c9", "\U0001F600x", "\xffa"} {
		for _, a := range []string{"", "a", "AB", "bc\u00e9", "\u00c9T", "X", "\U0001F600", "\xff", "abcdef"} {
			if got, want := hasPrefixFold(s, a), strings.HasPrefix(strings.ToLower(s), strings.ToLower(a)); got != want {
				t.Errorf("hasPrefixFold(%q, %q) = %v, want %v", s, a, got, want)
			}
			if got, want := hasSuffixFold(s, a), strings.HasSuffix(strings.ToLower(s), strings.ToLower(a)); got != want {
				t.Errorf("hasSuffixFold(%q, %q) = %v, want %v", s, a, got, want)
			}
		}
	}
}
