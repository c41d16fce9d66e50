package template

import (
	"errors"
	"os"
	"testing"
)

// FuzzExpression checks that the expression parser never panics, that
// what it accepts prints in a canonical form that parses back to itself,
// and that evaluating it never panics either.
func FuzzExpression(f *testing.F) {
	for _, s := range []string{
		"parameters('diskName')",
		"concat(parameters('diskName'),'_snapshot1')",
		"resourceGroup().location",
		"reference(resourceId('Microsoft.Compute/disks', 'd1'), '2022-07-02').creationData.sourceUniqueId",
		"format('{0:D3}-{1}', copyIndex(1), toLower('X'))",
		"if(equals(length(parameters('arr')), 3), json('{\"a\": [1]}').a[0], null())",
		"'it''s'",
		"-12",
		"createObject('k', createArray(1, 'two', true()))['k'][1]",
		"uniqueString(subscription().subscriptionId, 'x')",
		"guid(resourceGroup().id, deployment().name)",
		"split(replace(padLeft('a', 5, '-'), '-', ', '), ',')",
		"f(",
		"a.b",
		"'",
	} {
		f.Add(s)
	}
	tpl, err := Parse([]byte(funcTemplate))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := parseExpr(s)
		if err != nil {
			var ee *exprError
			if !errors.As(err, &ee) {
				t.Fatalf("parseExpr(%q) error %v is not an *exprError", s, err)
			}
			return
		}
		canon := e.String()
		again, err := parseExpr(canon)
		if err != nil {
			t.Fatalf("parseExpr(%q) accepted; its canonical form %q fails: %v", s, canon, err)
		}
		if again.String() != canon {
			t.Fatalf("canonical form of %q is not stable: %q then %q", s, canon, again.String())
		}
		ev := &evaluator{t: tpl, ctx: testCtx}
		if err := ev.resolveParameters(nil); err != nil {
			t.Fatal(err)
		}
		if err := ev.resolveVariables(); err != nil {
			t.Fatal(err)
		}
		ev.phase, ev.loops = phaseOutputs, []loop{{name: "l", index: 1, unnamed: true}}
		_, _ = ev.eval(e)
	})
}

// FuzzParseRequest runs whole deployment requests through both paths,
// validate (ParseRequest, Evaluate) and deploy (then Outputs), and checks
// that nothing panics, that every refusal is an *Error, that a plan stays
// within the budget, and that no request makes an evaluation allocate more
// than maxAlloc.
func FuzzParseRequest(f *testing.F) {
	snapshot, err := os.ReadFile("testdata/snapshot.jsonc")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(azBody(`{"diskName": {"value": "d"}, "diskResourceId": {"value": "/x"}}`, string(snapshot)))
	f.Add([]byte(`{"properties": {"mode": "Incremental", "template": ` + doc(`"parameters": {"n": {"type": "int", "defaultValue": 2}},
		"variables": {"copy": [{"name": "v", "count": 2, "input": "[copyIndex('v')]"}]},
		"resources": [{"type": "A.B/c", "apiVersion": "1", "name": "[concat('r', copyIndex())]", "copy": {"name": "l", "count": "[parameters('n')]", "mode": "serial"},
		"dependsOn": ["x"], "properties": {"copy": [{"name": "p", "count": 2, "input": "[variables('v')]"}]}},
		{"type": "A.B/c", "apiVersion": "1", "name": "x", "condition": "[true()]"}],
		"outputs": {"o": {"type": "array", "copy": {"count": 2, "input": "[reference('x').y]"}}}`) + `}}`))
	f.Add([]byte(`{"properties": {"mode": "Complete", template: {/* c */ "a": 'b',}}}`))
	f.Add(attackBody())
	for _, members := range []string{
		bigVars() + `, "resources": [], "outputs": {"o": {"type": "string", "value": "[format('{0}{0}{0}{0}', variables('s3'))]"}}`,
		bigVars() + `, "resources": [], "outputs": {"o": {"type": "array", "value": "[createArray(variables('s3'), variables('s3'))]"}}`,
		`"variables": {"j": "[json(concat('[', replace(padLeft('', 16000, '0'), '0', '0,0,0,0,0,0,0,0,'), '0]'))]"}, "resources": []`,
	} {
		f.Add([]byte(`{"properties": {"mode": "Incremental", "template": ` + doc(members) + `}}`))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 8<<10 {
			return
		}
		var (
			plan  *Plan
			err   error
			stage string
		)
		n := allocated(func() {
			var req *Request
			stage = "ParseRequest"
			if req, err = ParseRequest(body); err != nil {
				return
			}
			stage = "Evaluate"
			if plan, err = req.Template.Evaluate(t.Context(), req.Parameters, testCtx); err != nil {
				return
			}
			stage = "Outputs"
			_, err = plan.Outputs(t.Context(), testCtx)
		})
		if n > maxAlloc {
			t.Fatalf("evaluating the request allocated %d bytes, more than %d", n, maxAlloc)
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%s error %v is not an *Error", stage, err)
			}
		}
		if plan != nil && (plan.bytes > maxBytes || plan.steps > maxSteps) {
			t.Fatalf("a plan spent %d bytes and %d steps, over the budget", plan.bytes, plan.steps)
		}
	})
}
