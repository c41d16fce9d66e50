package template

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const schema = `"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#", "contentVersion": "1.0.0.0"`

// doc wraps template members into a template.
func doc(members string) string { return "{" + schema + ", " + members + "}" }

func evaluate(t *testing.T, text string, params map[string]any) (*Plan, error) {
	t.Helper()
	tpl, err := Parse([]byte(text))
	if err != nil {
		return nil, err
	}
	return tpl.Evaluate(t.Context(), params, testCtx)
}

func mustEvaluate(t *testing.T, text string, params map[string]any) *Plan {
	t.Helper()
	p, err := evaluate(t, text, params)
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}
	return p
}

func ids(p *Plan) []string {
	var out []string
	for _, r := range p.Resources {
		out = append(out, r.Type+"/"+r.Name)
	}
	return out
}

// TestIssueExample deploys the template of issue 5 as az sends it.
func TestIssueExample(t *testing.T) {
	body := azBody(`{"diskName": {"value": "disk1"}, "diskResourceId": {"value": "`+diskID+`"}}`, readSnapshotTemplate(t))
	req, err := ParseRequest(body)
	if err != nil {
		t.Fatalf("ParseRequest: %v", err)
	}
	plan, err := req.Template.Evaluate(t.Context(), req.Parameters, testCtx)
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}
	props := map[string]any{
		"creationData": map[string]any{"createOption": "Copy", "sourceResourceId": diskID},
		"incremental":  true,
	}
	want := []Resource{{
		Type:       "Microsoft.Compute/snapshots",
		APIVersion: "2019-03-01",
		Name:       "disk1_snapshot1",
		ID:         rgID + "/providers/Microsoft.Compute/snapshots/disk1_snapshot1",
		Location:   "eastus",
		Body:       map[string]any{"location": "eastus", "properties": props},
		Properties: props,
		Path:       "resources[0]",
		Line:       15,
		Column:     5,
	}}
	if diff := cmp.Diff(want, plan.Resources); diff != "" {
		t.Errorf("Resources mismatch (-want +got):\n%s", diff)
	}
	wantParams := map[string]Value{"diskName": {"String", "disk1"}, "diskResourceId": {"String", diskID}}
	if diff := cmp.Diff(wantParams, plan.Parameters); diff != "" {
		t.Errorf("Parameters mismatch (-want +got):\n%s", diff)
	}

	// After deployment, outputs may reference the snapshot.
	ctx := testCtx
	ctx.Reference = func(_ context.Context, id, api string) (map[string]any, error) {
		if id != want[0].ID || api != "2019-03-01" {
			return nil, fmt.Errorf("unexpected reference(%s, %s)", id, api)
		}
		return map[string]any{"properties": map[string]any{"creationData": map[string]any{"sourceUniqueId": "u1"}}}, nil
	}
	outs, err := plan.Outputs(t.Context(), ctx)
	if err != nil {
		t.Fatalf("Outputs: %v", err)
	}
	wantOuts := map[string]Value{"snapshotId": {"String", want[0].ID}, "sourceUniqueId": {"String", "u1"}}
	if diff := cmp.Diff(wantOuts, outs); diff != "" {
		t.Errorf("Outputs mismatch (-want +got):\n%s", diff)
	}
}

const disk = `{"type": "Microsoft.Compute/disks", "apiVersion": "2022-07-02", "name": %q%s}`

// res is a disk resource with a name and extra members.
func res(name, extra string) string {
	if extra != "" {
		extra = ", " + extra
	}
	return fmt.Sprintf(disk, name, extra)
}

func TestDependsOnOrder(t *testing.T) {
	text := doc(`"resources": [` + strings.Join([]string{
		res("c", `"dependsOn": ["b", "[resourceId('Microsoft.Compute/disks', 'a')]"]`),
		res("b", `"dependsOn": ["Microsoft.Compute/disks/a"]`),
		res("x", ""),
		res("a", ""),
		res("y", `"dependsOn": ["a"]`),
	}, ",") + `]`)
	p := mustEvaluate(t, text, nil)
	want := []string{"Microsoft.Compute/disks/x", "Microsoft.Compute/disks/a", "Microsoft.Compute/disks/b", "Microsoft.Compute/disks/c", "Microsoft.Compute/disks/y"}
	if diff := cmp.Diff(want, ids(p)); diff != "" {
		t.Errorf("order mismatch (-want +got):\n%s", diff)
	}
	c := p.Resources[3]
	wantDeps := []string{rgID + "/providers/Microsoft.Compute/disks/b", rgID + "/providers/Microsoft.Compute/disks/a"}
	if diff := cmp.Diff(wantDeps, c.DependsOn); diff != "" {
		t.Errorf("DependsOn of c mismatch (-want +got):\n%s", diff)
	}
}

func TestCopyLoops(t *testing.T) {
	text := doc(`"parameters": {"n": {"type": "int", "defaultValue": 3}},
	"variables": {"copy": [{"name": "sizes", "count": 2, "input": "[mul(copyIndex('sizes', 1), 10)]"}]},
	"resources": [
		` + res("[concat('snap', copyIndex(1))]", `"copy": {"name": "snaps", "count": "[parameters('n')]", "mode": "Serial", "batchSize": 2},
			"dependsOn": ["src"],
			"properties": {"index": "[copyIndex()]", "copy": [{"name": "tags", "count": 2, "input": {"k": "[copyIndex('tags')]", "outer": "[copyIndex('snaps')]"}}]}`) + `,
		` + res("src", `"properties": {"sizes": "[variables('sizes')]"}`) + `,
		` + res("after", `"dependsOn": ["snaps"]`) + `
	],
	"outputs": {"names": {"type": "array", "copy": {"count": "[parameters('n')]", "input": "[concat('snap', copyIndex(1))]"}}}`)
	p := mustEvaluate(t, text, nil)
	want := []string{"src", "snap1", "snap2", "snap3", "after"}
	var got []string
	for _, r := range p.Resources {
		got = append(got, r.Name)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("order mismatch (-want +got):\n%s", diff)
	}
	id := func(n string) string { return rgID + "/providers/Microsoft.Compute/disks/" + n }
	// Serial with batchSize 2: snap3 waits for snap1 and snap2.
	if diff := cmp.Diff([]string{id("src"), id("snap1"), id("snap2")}, p.Resources[3].DependsOn); diff != "" {
		t.Errorf("snap3 DependsOn mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{id("snap1"), id("snap2"), id("snap3")}, p.Resources[4].DependsOn); diff != "" {
		t.Errorf("after DependsOn mismatch (-want +got):\n%s", diff)
	}
	wantProps := map[string]any{"index": int64(1), "tags": []any{
		map[string]any{"k": int64(0), "outer": int64(1)},
		map[string]any{"k": int64(1), "outer": int64(1)},
	}}
	if diff := cmp.Diff(wantProps, p.Resources[2].Properties); diff != "" {
		t.Errorf("snap2 properties mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]any{"sizes": []any{int64(10), int64(20)}}, p.Resources[0].Properties); diff != "" {
		t.Errorf("src properties mismatch (-want +got):\n%s", diff)
	}
	outs, err := p.Outputs(t.Context(), testCtx)
	if err != nil {
		t.Fatalf("Outputs: %v", err)
	}
	if diff := cmp.Diff(map[string]Value{"names": {"Array", []any{"snap1", "snap2", "snap3"}}}, outs); diff != "" {
		t.Errorf("Outputs mismatch (-want +got):\n%s", diff)
	}
}

func TestConditionAndZeroCount(t *testing.T) {
	text := doc(`"resources": [
		` + res("skipped", `"condition": "[equals(1, 2)]"`) + `,
		` + res("kept", `"dependsOn": ["skipped", "none"]`) + `,
		` + res("[concat('none', copyIndex())]", `"copy": {"name": "none", "count": 0}`) + `
	],
	"outputs": {"hidden": {"condition": false, "type": "string", "value": "[reference('skipped').x]"}}`)
	p := mustEvaluate(t, text, nil)
	if diff := cmp.Diff([]string{"Microsoft.Compute/disks/kept"}, ids(p)); diff != "" {
		t.Errorf("resources mismatch (-want +got):\n%s", diff)
	}
	if len(p.Resources[0].DependsOn) != 0 {
		t.Errorf("DependsOn = %v, want none", p.Resources[0].DependsOn)
	}
	outs, err := p.Outputs(t.Context(), testCtx)
	if err != nil || len(outs) != 0 {
		t.Errorf("Outputs = %v, %v, want none", outs, err)
	}
}

func TestParametersAndSecrets(t *testing.T) {
	text := doc(`"parameters": {
		"s": {"type": "securestring"},
		"o": {"type": "secureObject", "defaultValue": {}},
		"n": {"type": "int", "minValue": 1, "maxValue": 5},
		"a": {"type": "array", "allowedValues": ["x", "y", "z"], "defaultValue": ["x", "z"]},
		"loc": {"type": "string", "defaultValue": "[resourceGroup().location]"}
	},
	"resources": [],
	"outputs": {"secret": {"type": "securestring", "value": "[parameters('s')]"}, "n": {"type": "int", "value": "[parameters('n')]"}}`)
	p := mustEvaluate(t, text, map[string]any{"S": "hunter2", "n": 3.0})
	want := map[string]Value{
		"s": {"SecureString", nil}, "o": {"SecureObject", nil}, "n": {"Int", int64(3)},
		"a": {"Array", []any{"x", "z"}}, "loc": {"String", "eastus"},
	}
	if diff := cmp.Diff(want, p.Parameters); diff != "" {
		t.Errorf("Parameters mismatch (-want +got):\n%s", diff)
	}
	outs, err := p.Outputs(t.Context(), testCtx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]Value{"secret": {"SecureString", nil}, "n": {"Int", int64(3)}}, outs); diff != "" {
		t.Errorf("Outputs mismatch (-want +got):\n%s", diff)
	}
}

// TestPlanIsolated checks that changing one resource's Body does not
// change another's, though both come from one variable.
func TestPlanIsolated(t *testing.T) {
	text := doc(`"variables": {"props": {"a": [1]}}, "resources": [` +
		res("one", `"properties": "[variables('props')]"`) + "," + res("two", `"properties": "[variables('props')]"`) + "]")
	p := mustEvaluate(t, text, nil)
	p.Resources[0].Properties["a"].([]any)[0] = "changed"
	if got := p.Resources[1].Properties["a"].([]any)[0]; got != int64(1) {
		t.Errorf("second resource sees %v after a change to the first", got)
	}
}

func TestResourceErrorf(t *testing.T) {
	p := mustEvaluate(t, doc(`"resources": [`+res("d", "")+`]`), nil)
	e := p.Resources[0].Errorf(CodeInvalidTemplateDeployment, "The resource type 'disks' does not support api-version '%s'.", "2000-01-01")
	want := "The template resource 'd' at line '1' and column '139' is not valid: The resource type 'disks' does not support api-version '2000-01-01'."
	if e.Code != CodeInvalidTemplateDeployment || e.Message != want || e.Path != "resources[0]" {
		t.Errorf("Errorf = %+v, want message %q", e, want)
	}
}

func TestEvaluateNeedsContext(t *testing.T) {
	tpl, err := Parse([]byte(doc(`"resources": []`)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tpl.Evaluate(t.Context(), nil, Context{}); !errors.Is(err, ErrContext) {
		t.Errorf("Evaluate(empty Context) error = %v, want ErrContext", err)
	}
}

// TestBadInput covers issue 5's bad input and the rest of the refusals:
// each is an *Error naming the spot.
func TestBadInput(t *testing.T) {
	snapshot := `{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "parameters": {
    "diskName": {"type": "string"},
    "sku": {"type": "string", "defaultValue": "Standard_LRS", "allowedValues": ["Standard_LRS", "Premium_LRS"]},
    "count": {"type": "int", "defaultValue": 1, "minValue": 1, "maxValue": 3},
    "prefix": {"type": "string", "defaultValue": "ab", "minLength": 2, "maxLength": 4}
  },
  "resources": [
    {
      "type": "Microsoft.Compute/snapshots",
      "apiVersion": "2019-03-01",
      "name": "%s",
      "location": "[resourceGroup().location]",
      "properties": {"incremental": true}
    }
  ]
}`
	name := "[concat(parameters('diskName'),'_snapshot1')]"
	withName := func(n string) string { return fmt.Sprintf(snapshot, n) }
	ok := map[string]any{"diskName": "disk1"}
	tests := []struct {
		name     string
		text     string
		params   map[string]any
		wantMsg  string // the whole message, or a part of it when wantPart
		wantPart bool
		wantPath string
		wantLine int
	}{
		{
			name:     "syntax error",
			text:     strings.Replace(withName(name), `"location":`, `"location"`, 1),
			params:   ok,
			wantMsg:  "Deployment template parse failed: 'Invalid character after parsing property name. Expected ':' but got: '\"'. Path 'resources[0].location' at line '15' and column '18'.'",
			wantPath: "resources[0].location",
			wantLine: 15,
		},
		{
			name:     "unknown function",
			text:     withName("[concatt(parameters('diskName'),'_snapshot1')]"),
			params:   ok,
			wantMsg:  "The template resource '[concatt(parameters('diskName'),'_snapshot1')]' at line '14' and column '15' is not valid: The template function 'concatt' is not found. Please see https://aka.ms/arm-functions for usage details.",
			wantPath: "resources[0].name",
			wantLine: 14,
		},
		{
			name:     "expression syntax error",
			text:     withName("[concat(parameters('diskName'),'_snapshot1']"),
			params:   ok,
			wantMsg:  "The template resource '[concat(parameters('diskName'),'_snapshot1']' at line '14' and column '15' is not valid: Unable to parse language expression 'concat(parameters('diskName'),'_snapshot1'': expected token 'Comma' and actual 'EndOfData' at position 42. Please see https://aka.ms/arm-functions for usage details.",
			wantPath: "resources[0].name",
			wantLine: 14,
		},
		{
			name:     "missing parameter",
			text:     withName(name),
			params:   nil,
			wantMsg:  "The value for the template parameter 'diskName' at line '5' and column '17' is not provided. Please see https://aka.ms/arm-create-parameter-file for usage details.",
			wantPath: "parameters.diskName",
			wantLine: 5,
		},
		{
			name:     "wrong parameter type",
			text:     withName(name),
			params:   map[string]any{"diskName": int64(7)},
			wantMsg:  "The template parameter 'diskName' at line '5' and column '17' is not valid: Template parameter JToken type is not valid. Expected 'String'. Actual 'Integer'. Please see https://aka.ms/arm-create-parameter-file for usage details.",
			wantPath: "parameters.diskName",
			wantLine: 5,
		},
		{
			name:     "value not allowed",
			text:     withName(name),
			params:   map[string]any{"diskName": "d", "sku": "Ultra"},
			wantMsg:  "The provided value for the template parameter 'sku' at line '6' and column '12' is not valid. The parameter value is not part of the allowed value(s): 'Standard_LRS,Premium_LRS'. Please see https://aka.ms/arm-create-parameter-file for usage details.",
			wantPath: "parameters.sku",
			wantLine: 6,
		},
		{
			name:     "below minValue",
			text:     withName(name),
			params:   map[string]any{"diskName": "d", "count": int64(0)},
			wantMsg:  "The parameter value '0' is less than the minimum value '1'.",
			wantPart: true,
			wantPath: "parameters.count",
			wantLine: 7,
		},
		{
			name:     "above maxValue",
			text:     withName(name),
			params:   map[string]any{"diskName": "d", "count": int64(4)},
			wantMsg:  "The parameter value '4' is greater than the maximum value '3'.",
			wantPart: true,
			wantPath: "parameters.count",
			wantLine: 7,
		},
		{
			name:     "too short",
			text:     withName(name),
			params:   map[string]any{"diskName": "d", "prefix": "a"},
			wantMsg:  "The parameter value is 1 long, shorter than the minimum length '2'.",
			wantPart: true,
			wantPath: "parameters.prefix",
			wantLine: 8,
		},
		{
			name:     "too long",
			text:     withName(name),
			params:   map[string]any{"diskName": "d", "prefix": "abcde"},
			wantMsg:  "The parameter value is 5 long, longer than the maximum length '4'.",
			wantPart: true,
			wantPath: "parameters.prefix",
			wantLine: 8,
		},
		{
			name:     "unknown parameter",
			text:     withName(name),
			params:   map[string]any{"diskName": "d", "extra": "x"},
			wantMsg:  "The template parameters 'extra' in the parameters file are not valid; they are not present in the original template and can therefore not be provided at deployment time. The only supported parameters for this template are 'diskName, sku, count, prefix'. Please see https://aka.ms/arm-pass-parameter-values for usage details.",
			wantPath: "parameters",
			wantLine: 4,
		},
		{
			name: "dependsOn cycle",
			text: "{" + schema + ",\n\"resources\": [\n" + res("a", `"dependsOn": ["c"]`) + ",\n" + res("b", `"dependsOn": ["a"]`) + ",\n" + res("c", `"dependsOn": ["[resourceId('Microsoft.Compute/disks', 'b')]"]`) + "]}",
			wantMsg: "Circular dependency detected on resource: '" + rgID + "/providers/Microsoft.Compute/disks/a' at line '3' and column '91': " +
				"'Microsoft.Compute/disks/a' -> 'Microsoft.Compute/disks/c' -> 'Microsoft.Compute/disks/b' -> 'Microsoft.Compute/disks/a'. Please see https://aka.ms/arm-template/#resources for usage details.",
			wantPath: "resources[0].dependsOn",
			wantLine: 3,
		},
		{
			name:     "self dependency",
			text:     doc(`"resources": [` + res("a", `"dependsOn": ["a"]`) + `]`),
			wantMsg:  "'Microsoft.Compute/disks/a' -> 'Microsoft.Compute/disks/a'",
			wantPart: true,
			wantPath: "resources[0].dependsOn",
			wantLine: 1,
		},
		{
			name:     "dependsOn names nothing",
			text:     doc(`"resources": [` + res("a", `"dependsOn": ["ghost"]`) + `]`),
			wantMsg:  "The template resource 'a' at line '1' and column '230' is not valid: The resource 'ghost' named in dependsOn is not defined in the template. Please see https://aka.ms/arm-functions for usage details.",
			wantPath: "resources[0].dependsOn[0]",
			wantLine: 1,
		},
		{
			name:     "duplicate resource",
			text:     doc(`"resources": [` + res("a", "") + "," + res("A", "") + `]`),
			wantMsg:  "The resource '" + rgID + "/providers/Microsoft.Compute/disks/A' at line '1' and column '216' is defined multiple times in a template.",
			wantPart: true,
			wantPath: "resources[1]",
			wantLine: 1,
		},
		{
			name:     "name segments",
			text:     doc(`"resources": [` + res("a/b", "") + `]`),
			wantMsg:  "The template resource 'a/b' for type 'Microsoft.Compute/disks' at line '1' and column '139' has incorrect segment lengths.",
			wantPart: true,
			wantPath: "resources[0]",
			wantLine: 1,
		},
		{
			name:     "variable cycle",
			text:     doc(`"variables": {"a": "[variables('b')]", "b": "[concat(variables('a'))]"}, "resources": []`),
			wantMsg:  "The template variable 'a' at line '1' and column '144' is not valid: it refers to itself: a -> b -> a.",
			wantPath: "variables.a",
			wantLine: 1,
		},
		{
			name:     "parameter default cycle",
			text:     doc(`"parameters": {"p": {"type": "string", "defaultValue": "[parameters('p')]"}}, "resources": []`),
			wantMsg:  "The template parameter 'p' at line '1' and column '145' is not valid: its default value refers to itself: p -> p.",
			wantPath: "parameters.p",
			wantLine: 1,
		},
		{
			name:     "variables in a parameter default",
			text:     doc(`"parameters": {"p": {"type": "string", "defaultValue": "[variables('v')]"}}, "variables": {"v": "x"}, "resources": []`),
			wantMsg:  "The template parameter 'p' at line '1' and column '180' is not valid: The template function 'variables' is not expected at this location.",
			wantPart: true,
			wantPath: "parameters.p.defaultValue",
			wantLine: 1,
		},
		{
			name:     "default of the wrong type",
			text:     doc(`"parameters": {"p": {"type": "int", "defaultValue": "three"}}, "resources": []`),
			wantMsg:  "Expected 'Integer'. Actual 'String'.",
			wantPart: true,
			wantPath: "parameters.p",
			wantLine: 1,
		},
		{
			name:     "reference to a resource of the template in a resource",
			text:     doc(`"resources": [` + res("a", "") + "," + res("b", `"properties": {"x": "[reference('a').y]"}`) + `]`),
			wantMsg:  "The template function 'reference' refers to 'a', which this template deploys; this server evaluates such references only in outputs.",
			wantPart: true,
			wantPath: "resources[1].properties.x",
			wantLine: 1,
		},
		{
			name:     "reference in a variable",
			text:     doc(`"variables": {"v": "[reference('x')]"}, "resources": []`),
			wantMsg:  "The template function 'reference' is not expected at this location.",
			wantPart: true,
			wantPath: "variables.v",
			wantLine: 1,
		},
		{
			name:     "copyIndex outside a loop",
			text:     doc(`"resources": [` + res("[concat('a', copyIndex())]", "") + `]`),
			wantMsg:  "The template function 'copyIndex' is not expected at this location.",
			wantPart: true,
			wantPath: "resources[0].name",
			wantLine: 1,
		},
		{
			name:     "copy count too large",
			text:     doc(`"resources": [` + res("[concat('a', copyIndex())]", `"copy": {"name": "l", "count": 801}`) + `]`),
			wantMsg:  "The copy count '801' is not valid: it must be between 0 and 800.",
			wantPart: true,
			wantPath: "resources[0].copy.count",
			wantLine: 1,
		},
		{
			name:     "condition not boolean",
			text:     doc(`"resources": [` + res("a", `"condition": "yes"`) + `]`),
			wantMsg:  "The resource condition must be a boolean; it is of type 'String'.",
			wantPart: true,
			wantPath: "resources[0].condition",
			wantLine: 1,
		},
		{
			name:     "nested resources",
			text:     doc(`"resources": [` + res("a", `"resources": []`) + `]`),
			wantMsg:  "nested child resources are not supported by this server",
			wantPart: true,
			wantPath: "resources[0].resources",
			wantLine: 1,
		},
		{
			name:     "missing type",
			text:     doc(`"resources": [{"name": "a", "apiVersion": "2020-01-01"}]`),
			wantMsg:  "The template resource 'a' at line '1' and column '139' is not valid: the required property 'type' is missing or is not a non-empty string.",
			wantPath: "resources[0]",
			wantLine: 1,
		},
		{
			name:     "missing schema",
			text:     `{"contentVersion": "1.0.0.0", "resources": []}`,
			wantMsg:  "The template is missing the required property '$schema'.",
			wantPath: "$schema",
			wantLine: 1,
		},
		{
			name:     "subscription schema",
			text:     `{"$schema": "https://schema.management.azure.com/schemas/2018-05-01/subscriptionDeploymentTemplate.json#", "contentVersion": "1.0.0.0", "resources": []}`,
			wantMsg:  "is not supported for a resource group deployment",
			wantPart: true,
			wantPath: "$schema",
			wantLine: 1,
		},
		{
			name:     "bad contentVersion",
			text:     `{"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#", "contentVersion": "1.0", "resources": []}`,
			wantMsg:  "The template 'contentVersion' '1.0' is not valid: it must be four numbers separated by dots, such as '1.0.0.0'.",
			wantPath: "contentVersion",
			wantLine: 1,
		},
		{
			name:     "unknown member",
			text:     doc(`"resource": []`),
			wantMsg:  "Could not find member 'resource' on object of type 'Template'. Path 'resource'.",
			wantPath: "resource",
			wantLine: 1,
		},
		{
			name:     "unknown parameter member",
			text:     doc(`"parameters": {"p": {"type": "string", "defaultvalu": "x"}}, "resources": []`),
			wantMsg:  "Could not find member 'defaultvalu' on object of type 'TemplateParameter'. Path 'parameters.p.defaultvalu'.",
			wantPath: "parameters.p.defaultvalu",
			wantLine: 1,
		},
		{
			name:     "unknown parameter type",
			text:     doc(`"parameters": {"p": {"type": "str"}}, "resources": []`),
			wantMsg:  "The template parameter 'p' has no valid 'type'",
			wantPart: true,
			wantPath: "parameters.p",
			wantLine: 1,
		},
		{
			name:     "user functions",
			text:     doc(`"functions": [{"namespace": "x"}], "resources": []`),
			wantMsg:  "User-defined template functions are not supported by this server.",
			wantPath: "functions",
			wantLine: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := evaluate(t, tc.text, tc.params)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Evaluate error = %v, want *Error", err)
			}
			if e.Code != CodeInvalidTemplate {
				t.Errorf("Code = %q, want %q", e.Code, CodeInvalidTemplate)
			}
			if tc.wantPart && !strings.Contains(e.Message, tc.wantMsg) || !tc.wantPart && e.Message != tc.wantMsg {
				t.Errorf("Message = %q\nwant %q", e.Message, tc.wantMsg)
			}
			if e.Path != tc.wantPath || e.Line != tc.wantLine {
				t.Errorf("place = %s line %d, want %s line %d", e.Path, e.Line, tc.wantPath, tc.wantLine)
			}
		})
	}
}

func TestOutputErrors(t *testing.T) {
	tests := []struct {
		name    string
		outputs string
		wantSub string
	}{
		{"type mismatch", `{"o": {"type": "int", "value": "x"}}`, "The template output 'o' at line '1' and column '235' is not valid: Template output JToken type is not valid. Expected 'Integer'. Actual 'String'."},
		{"reference fails", `{"o": {"type": "object", "value": "[reference('d')]"}}`, "The template function 'reference' failed for '" + rgID + "/providers/Microsoft.Compute/disks/d': not deployed"},
		{"no reference", `{"o": {"type": "string", "value": "[reference('nope').x]"}}`, "names the resource 'nope', which is not defined in the template"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := mustEvaluate(t, doc(`"resources": [`+res("d", "")+`], "outputs": `+tc.outputs), nil)
			ctx := testCtx
			cause := errors.New("not deployed")
			ctx.Reference = func(context.Context, string, string) (map[string]any, error) { return nil, cause }
			_, err := p.Outputs(t.Context(), ctx)
			var e *Error
			if !errors.As(err, &e) || !strings.Contains(e.Message, tc.wantSub) {
				t.Fatalf("Outputs error = %v, want it to contain %q", err, tc.wantSub)
			}
			if tc.name == "reference fails" && !errors.Is(err, cause) {
				t.Errorf("Outputs error does not wrap the Reference error")
			}
		})
	}
}
