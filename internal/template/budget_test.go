package template

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// maxAlloc is the most one evaluation may allocate, a few times maxBytes:
// values are counted once built, and some (a JSON text, a case-mapped
// string) are counted just after.
const maxAlloc = 64 << 20

// allocated returns the bytes fn allocates. The number is process-wide,
// so it is an upper bound on what fn alone allocates.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// attackBody is the request that took the server past 4 GB: a 1 KiB
// string, and variables that concat() the one before 16 times, five levels
// deep (1 GiB at the last).
func attackBody() []byte {
	vars := []string{`"s0": "` + strings.Repeat("a", 1024) + `"`}
	for i := 1; i <= 5; i++ {
		prev := fmt.Sprintf("variables('s%d')", i-1)
		vars = append(vars, fmt.Sprintf(`"s%d": "[concat(%s)]"`, i, strings.Repeat(prev+", ", 15)+prev))
	}
	return []byte(`{"properties": {"mode": "Incremental", "template": ` +
		doc(`"variables": {`+strings.Join(vars, ", ")+`}, "resources": [], "outputs": {"o": {"type": "int", "value": "[length(variables('s5'))]"}}`) + `}}`)
}

// wantBudgetError checks that err is an InvalidTemplate *Error that names
// the part of the template and the expression that went over.
func wantBudgetError(t *testing.T, err error, names ...string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeInvalidTemplate {
		t.Fatalf("error = %v, want an InvalidTemplate *Error", err)
	}
	for _, n := range names {
		if !strings.Contains(e.Message, n) {
			t.Errorf("message %q does not name %q", e.Message, n)
		}
	}
}

// TestBudgetAttack: the attack request fails with InvalidTemplate naming
// the expression, in validation (Evaluate) as in deployment, without
// allocating more than a few times the budget.
func TestBudgetAttack(t *testing.T) {
	body := attackBody()
	if len(body) > 3000 {
		t.Fatalf("attack body is %d bytes, want the issue's ~2.8 KB", len(body))
	}
	req, err := ParseRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	var plan *Plan
	n := allocated(func() { plan, err = req.Template.Evaluate(t.Context(), req.Parameters, testCtx) })
	if plan != nil {
		t.Fatalf("Evaluate of the attack succeeded")
	}
	wantBudgetError(t, err, "The template variable 's", "[concat(variables('s", "builds more than 8388608 bytes")
	if n > maxAlloc {
		t.Errorf("Evaluate allocated %d bytes, want at most %d", n, maxAlloc)
	}
}

// bigVars are variables of 16 KiB (s1), 256 KiB (s2) and 3 MiB (s3),
// built from a 1 KiB string.
func bigVars() string {
	a := "variables('s0')"
	b := "variables('s1')"
	c := "variables('s2')"
	return `"variables": {"s0": "` + strings.Repeat("a", 1024) + `",
		"s1": "[concat(` + strings.Repeat(a+",", 15) + a + `)]",
		"s2": "[concat(` + strings.Repeat(b+",", 15) + b + `)]",
		"s3": "[concat(` + strings.Repeat(c+",", 11) + c + `)]"}`
}

// TestBudgetOutputsGoOn: Outputs spends what Evaluate left, so a
// deployment has one budget: an output that alone would fit fails after
// variables that took most of it.
func TestBudgetOutputsGoOn(t *testing.T) {
	// 16000 * 250 bytes: 4 MB, half the budget.
	out := `"outputs": {"o": {"type": "int", "value": "[length(replace(padLeft('', 16000, 'a'), 'a', padLeft('', 250, 'b')))]"}}`
	p := mustEvaluate(t, doc(bigVars()+`, "resources": [], `+out), nil)
	_, err := p.Outputs(t.Context(), testCtx)
	wantBudgetError(t, err, "The template output 'o'", "[length(replace(padLeft('', 16000, 'a')")

	// The same output fits the budget of a template without the variables
	// that spent most of it, so it is the carried-over spending that
	// failed it.
	alone := mustEvaluate(t, doc(`"resources": [], `+out), nil)
	outs, err := alone.Outputs(t.Context(), testCtx)
	if err != nil || outs["o"].Value != int64(4000000) {
		t.Fatalf("Outputs of the output alone = %v, %v; want 4000000", outs, err)
	}
}

// TestBudget covers each way a template could build much from little.
func TestBudget(t *testing.T) {
	disk := func(extra string) string {
		return `{"type": "Microsoft.Compute/disks", "apiVersion": "2022-07-02", "name": "[concat('d', copyIndex())]", "copy": {"name": "l", "count": 800}` + extra + `}`
	}
	// reverse is a chain of variables each using the next, so that
	// evaluating the first goes n levels deep.
	reverse := func(n int) string {
		var vs []string
		for i := range n {
			vs = append(vs, fmt.Sprintf(`"v%d": "[variables('v%d')]"`, i, i+1))
		}
		return `"variables": {` + strings.Join(vs, ", ") + fmt.Sprintf(`, "v%d": 1}`, n)
	}
	// arrays is a chain of variables each an array holding the one
	// before: values n levels deep, each evaluation shallow.
	arrays := func(n int) string {
		vs := []string{`"a0": 1`}
		for i := 1; i <= n; i++ {
			vs = append(vs, fmt.Sprintf(`"a%d": "[createArray(variables('a%d'))]"`, i, i-1))
		}
		return `"variables": {` + strings.Join(vs, ", ") + `}`
	}
	tests := []struct {
		name     string
		template string
		says     []string
	}{
		{"a shared variable placed in 800 resources",
			`"variables": {"big": "` + strings.Repeat("x", 16<<10) + `"}, "resources": [` + disk(`, "tags": {"t": "[variables('big')]"}`) + `]`,
			[]string{"[variables('big')]", "builds more than"}},
		{"a long string read 800 times",
			bigVars() + `, "resources": [` + disk(`, "tags": {"t": "[length(variables('s3'))]"}`) + `]`,
			[]string{"[length(variables('s3'))]", "evaluation steps"}},
		{"an array holding one value many times",
			bigVars() + `, "resources": [], "outputs": {"o": {"type": "array", "value": "[createArray(variables('s3'), variables('s3'), variables('s3'))]"}}`,
			[]string{"createArray", "builds more than"}},
		{"format repeating an argument",
			bigVars() + `, "resources": [], "outputs": {"o": {"type": "string", "value": "[format('{0}{0}{0}{0}', variables('s3'))]"}}`,
			[]string{"format('{0}{0}{0}{0}'", "builds more than"}},
		{"json of many values",
			`"variables": {"j": "[json(concat('[', replace(padLeft('', 16000, '0'), '0', '0,0,0,0,0,0,0,0,'), '0]'))]"}, "resources": []`,
			[]string{"json(", "builds more than"}},
		{"split into many pieces",
			`"variables": {"big": "[replace(padLeft('', 16000, 'a'), 'a', padLeft('', 40, ','))]", "p": "[split(variables('big'), ',')]"}, "resources": []`,
			[]string{"split(", "builds more than"}},
		{"more than 800 resources",
			`"resources": [` + disk("") + `, {"type": "Microsoft.Compute/disks", "apiVersion": "2022-07-02", "name": "one"}]`,
			[]string{"more than 800 resources"}},
		{"a copy count over 800",
			`"resources": [{"type": "Microsoft.Compute/disks", "apiVersion": "2022-07-02", "name": "[concat('d', copyIndex())]", "copy": {"name": "l", "count": 801}}]`,
			[]string{"must be between 0 and 800"}},
		{"variables using variables too deep", reverse(200) + `, "resources": []`, []string{"nests deeper than 128 levels"}},
		{"values nested too deep", arrays(200) + `, "resources": []`, []string{"nests deeper than 128 levels"}},
		{"65 outputs",
			`"resources": [], "outputs": {"o": {"type": "int", "value": 1}` + outputs(64) + `}`,
			[]string{"65 outputs", "at most 64"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			n := allocated(func() {
				var p *Plan
				if p, err = evaluate(t, doc(tc.template), nil); err == nil {
					_, err = p.Outputs(t.Context(), testCtx)
				}
			})
			wantBudgetError(t, err, tc.says...)
			if n > maxAlloc {
				t.Errorf("evaluation allocated %d bytes, want at most %d", n, maxAlloc)
			}
		})
	}
}

// outputs is n more outputs after a first one, named p0...
func outputs(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `, "p%d": {"type": "int", "value": %d}`, i, i)
	}
	return b.String()
}

// TestBudgetAllowedValues: checking an array parameter against its
// allowed values compares every pair; a request with long lists on both
// sides is stopped by the step budget instead of running for minutes.
func TestBudgetAllowedValues(t *testing.T) {
	allowed := make([]string, 2000)
	given := make([]any, 2000)
	for i := range allowed {
		allowed[i] = fmt.Sprintf(`"a%d"`, i)
		given[i] = fmt.Sprintf("a%d", len(allowed)-1-i) // each found last, or nearly
	}
	_, err := evaluate(t, doc(`"parameters": {"p": {"type": "array", "allowedValues": [`+strings.Join(allowed, ",")+`]}}, "resources": []`),
		map[string]any{"p": given})
	wantBudgetError(t, err, "The template parameter 'p'", "evaluation steps")
}

// TestMessagesClipped: an error quoting a long value stays short.
func TestMessagesClipped(t *testing.T) {
	_, err := evaluate(t, doc(`"variables": {"n": "[int(padLeft('', 16000, 'x'))]"}, "resources": []`), nil)
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(e.Message, "cannot convert the string") {
		t.Fatalf("error = %v, want int() refusing the string", err)
	}
	if len(e.Message) > maxMessage+400 {
		t.Errorf("message is %d bytes, want about %d at most", len(e.Message), maxMessage)
	}
}

// TestBudgetAllowsLargeTemplates: a template as large as ARM accepts, with
// 800 resources, fits the budget.
func TestBudgetAllowsLargeTemplates(t *testing.T) {
	var rs []string
	tag := strings.Repeat("t", 4000) // 800 * 4 KB: a 3.3 MB template
	for i := range 800 {
		rs = append(rs, fmt.Sprintf(`{"type": "Microsoft.Compute/disks", "apiVersion": "2022-07-02", "name": "d%d", "location": "[resourceGroup().location]",
			"tags": {"t": "%s", "n": "[concat(variables('prefix'), '-', string(%d))]"}, "properties": {"diskSizeGB": "[add(1, %d)]"}}`, i, tag, i, i))
	}
	text := doc(`"variables": {"prefix": "disk"}, "resources": [` + strings.Join(rs, ",") + `]`)
	if len(text) < 3<<20 {
		t.Fatalf("template is %d bytes, want over 3 MiB", len(text))
	}
	p := mustEvaluate(t, text, nil)
	if len(p.Resources) != 800 {
		t.Errorf("%d resources, want 800", len(p.Resources))
	}
}

// TestBudgetDependsOn: a dependsOn list that names a copy loop many times
// adds each of its instances once, so 800 resources depending on their
// own loop of 800 fifty times allocate megabytes, not gigabytes.
func TestBudgetDependsOn(t *testing.T) {
	deps := strings.TrimSuffix(strings.Repeat(`"other",`, 50), ",")
	text := doc(`"resources": [
		{"type": "Microsoft.Compute/disks", "apiVersion": "2022-07-02", "name": "[concat('o', copyIndex())]", "copy": {"name": "other", "count": 400}},
		{"type": "Microsoft.Compute/disks", "apiVersion": "2022-07-02", "name": "[concat('d', copyIndex())]", "copy": {"name": "l", "count": 400}, "dependsOn": [` + deps + `]}]`)
	var p *Plan
	var err error
	n := allocated(func() { p, err = evaluate(t, text, nil) })
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}
	if got := len(p.Resources[len(p.Resources)-1].DependsOn); got != 400 {
		t.Errorf("the last resource depends on %d resources, want 400", got)
	}
	if n > maxAlloc {
		t.Errorf("Evaluate allocated %d bytes, want at most %d", n, maxAlloc)
	}
}

// TestParseBounded: a 4 MiB request of tiny values is refused once it
// holds more than maxValues, before parsing it takes hundreds of
// megabytes (700 MB before the limit).
func TestParseBounded(t *testing.T) {
	for _, fill := range []string{"0,", "[],", `"",`} {
		arr := strings.Repeat(fill, (4<<20-300)/len(fill)) + "0"
		body := []byte(`{"properties": {"mode": "Incremental", "template": ` + doc(`"metadata": {"x": [`+arr+`]}, "resources": []`) + `}}`)
		var err error
		n := allocated(func() { _, err = ParseRequest(body) })
		wantBudgetError(t, err, "more than 131072 values")
		if n > maxAlloc {
			t.Errorf("ParseRequest of %d bytes of %q allocated %d bytes, want at most %d", len(body), fill, n, maxAlloc)
		}
	}
}

// TestReferenceReadOnce: reference() in a copy loop reads each resource
// once per evaluation, so a template cannot turn its steps into store
// reads.
func TestReferenceReadOnce(t *testing.T) {
	p := mustEvaluate(t, doc(`"resources": [], "outputs": {"o": {"type": "array", "copy": {"count": 800,
		"input": "[reference('/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/a', '2023-04-02').size]"}}}`), nil)
	dc := testCtx
	reads := 0
	dc.Reference = func(_ context.Context, id, api string) (map[string]any, error) {
		reads++
		return map[string]any{"properties": map[string]any{"size": int64(4)}}, nil
	}
	outs, err := p.Outputs(t.Context(), dc)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(outs["o"].Value.([]any)); got != 800 || reads != 1 {
		t.Errorf("Outputs made %d values with %d reads, want 800 with 1", got, reads)
	}
}

// TestBudgetRepeatedWork: work that grows with what the template repeats
// (an expression parsed again at every iteration, members matched ignoring
// case, separators searched to the end, a context object rebuilt) is
// counted or done once, so it neither allocates without bound nor runs
// for seconds uncounted.
func TestBudgetRepeatedWork(t *testing.T) {
	// loops is a variable copy loop of 800 whose input is a property copy
	// loop of 800 evaluating expr: 640,000 evaluations.
	loops := func(expr string) string {
		return `"variables": {"copy": [{"name": "v", "count": 800, "input": {"copy": [{"name": "p", "count": 800, "input": "` + expr + `"}]}}]}, "resources": []`
	}
	keys := make(map[string]any, 100000)
	for i := range 100000 {
		keys[fmt.Sprintf("k%d", i)] = i
	}
	tests := []struct {
		name     string
		template string
		params   map[string]any
		says     string
	}{
		{"a long expression parsed at every iteration",
			loops(`[length('` + strings.Repeat("x", 7000) + `')]`), nil, "evaluation steps"},
		{"a context object rebuilt at every iteration",
			loops(`[length(resourceGroup())]`), nil, "builds more than"},
		{"a member matched ignoring case among many",
			`"parameters": {"o": {"type": "object"}}, "resources": [], "outputs": {"x": {"type": "array", "copy": {"count": 800, "input": "[parameters('o').K0]"}}}`,
			map[string]any{"o": keys}, "evaluation steps"},
		{"a separator that never occurs searched for at every piece",
			`"variables": {"big": "[replace(padLeft('', 16000, 'a'), 'a', ',,,,')]", "p": "[split(variables('big'), createArray('x', ','))]"}, "resources": []`,
			nil, "evaluation steps"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			n := allocated(func() {
				var p *Plan
				if p, err = evaluate(t, doc(tc.template), tc.params); err == nil {
					_, err = p.Outputs(t.Context(), testCtx)
				}
			})
			wantBudgetError(t, err, tc.says)
			if n > maxAlloc {
				t.Errorf("evaluation allocated %d bytes, want at most %d", n, maxAlloc)
			}
		})
	}
}

// TestMessagesClipName: a resource whose evaluated name is long is named
// clipped in its error.
func TestMessagesClipName(t *testing.T) {
	_, err := evaluate(t, doc(`"resources": [{"type": "Microsoft.Compute/disks", "apiVersion": "2022-07-02",
		"name": "[padLeft('', 16000, 'n')]", "condition": "[int('x')]"}]`), nil)
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(e.Message, "cannot convert the string 'x'") {
		t.Fatalf("error = %v, want int() refusing 'x'", err)
	}
	if len(e.Message) > 1000 {
		t.Errorf("message is %d bytes, want the name clipped", len(e.Message))
	}
}
