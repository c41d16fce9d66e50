package template

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const diskID = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg1/providers/Microsoft.Compute/disks/disk1"

// azBody builds a request body the way az 2.45 does
// (JsonCTemplatePolicy): json.dumps of the request without the template,
// minus its closing "}}", then ", template:", the file verbatim, and "}}".
func azBody(params, templateText string) []byte {
	return []byte(`{"properties": {"parameters": ` + params + `, "mode": "Incremental", template:` + templateText + "}}")
}

func readSnapshotTemplate(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/snapshot.jsonc")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseRequestAz(t *testing.T) {
	body := azBody(`{"diskName": {"value": "disk1"}, "diskResourceId": {"value": "`+diskID+`"}}`, readSnapshotTemplate(t))
	req, err := ParseRequest(body)
	if err != nil {
		t.Fatalf("ParseRequest: %v", err)
	}
	if req.Mode != "Incremental" {
		t.Errorf("Mode = %q, want Incremental", req.Mode)
	}
	if diff := cmp.Diff(map[string]any{"diskName": "disk1", "diskResourceId": diskID}, req.Parameters); diff != "" {
		t.Errorf("Parameters mismatch (-want +got):\n%s", diff)
	}
	if req.Template.ContentVersion != "1.0.0.0" || len(req.Template.Parameters) != 2 {
		t.Errorf("Template = %+v", req.Template)
	}
}

func TestParseRequestSDK(t *testing.T) {
	var tpl map[string]any
	// The SDK sends the template as JSON: strip the comments first.
	n, err := parseJSONC([]byte(readSnapshotTemplate(t)))
	if err != nil {
		t.Fatal(err)
	}
	tpl = n.value().(map[string]any)
	body, err := json.Marshal(map[string]any{"properties": map[string]any{
		"mode":       "incremental",
		"template":   tpl,
		"parameters": map[string]any{"diskName": map[string]any{"value": "d"}, "diskResourceId": map[string]any{"value": diskID}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	req, err := ParseRequest(body)
	if err != nil {
		t.Fatalf("ParseRequest: %v", err)
	}
	if req.Mode != "Incremental" || req.Parameters["diskName"] != "d" || len(req.Template.Parameters) != 2 {
		t.Errorf("ParseRequest = %+v", req)
	}
}

func TestParseRequestErrors(t *testing.T) {
	good := readSnapshotTemplate(t)
	// A template file whose line 5 lacks a comma.
	broken := "{\n  \"$schema\": \"https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#\",\n  \"contentVersion\": \"1.0.0.0\",\n  \"parameters\": {}\n  \"resources\": []\n}\n"
	tests := []struct {
		name     string
		body     string
		wantCode string
		wantSub  string
		wantLine int
		wantCol  int
	}{
		{"template syntax error counts lines in the file", string(azBody(`{}`, broken)), CodeInvalidTemplate,
			"Deployment template parse failed: 'After parsing a value an unexpected character was encountered: '\"'. Path 'parameters' at line '5' and column '3'.'", 5, 3},
		{"lines count from the file's first byte", string(azBody(`{}`, "// header\n\n"+broken)), CodeInvalidTemplate,
			"Path 'parameters' at line '7' and column '3'", 7, 3},
		{"evaluation error lines count from the file's first byte", string(azBody(`{}`, "/* a\nb */ "+doc(`"resources": [], "variables": {"v": "[nope()]"}`))), CodeInvalidTemplate,
			"The template variable 'v' at line '2' and column '166' is not valid: The template function 'nope' is not found.", 2, 166},
		{"syntax error outside the template", `{"properties": {"mode": "Incremental" "template": {}}}`, CodeInvalidRequestContent,
			"The request content was invalid and could not be deserialized", 1, 39},
		{"syntax error after the template", `{"properties": {"mode": "Incremental", "template": {}, "templateLink": {"uri": }}}`, CodeInvalidRequestContent,
			"Path 'properties.templateLink.uri'", 1, 80},
		{"unquoted key elsewhere", `{properties: {}}`, CodeInvalidRequestContent, "Invalid property identifier character: 'p'", 1, 2},
		{"templateLink", `{"properties": {"mode": "Incremental", "templateLink": {"uri": "https://x"}}}`, CodeInvalidRequestContent,
			"'templateLink' is not supported by this server", 0, 0},
		{"parametersLink", `{"properties": {"mode": "Incremental", "template": {}, "parametersLink": {"uri": "https://x"}}}`, CodeInvalidRequestContent,
			"'parametersLink' is not supported", 0, 0},
		{"no mode", `{"properties": {"template": {}}}`, CodeInvalidRequestContent, "Required property 'mode' not found", 0, 0},
		{"bad mode", `{"properties": {"mode": "Sometimes", "template": {}}}`, CodeInvalidRequestContent, "The deployment mode 'Sometimes' is not valid", 0, 0},
		{"no template", `{"properties": {"mode": "Incremental"}}`, CodeInvalidRequestContent, "The request content has no template", 0, 0},
		{"no properties", `{"mode": "Incremental"}`, CodeInvalidRequestContent, "Required property 'properties' not found", 0, 0},
		{"key vault reference", string(azBody(`{"p": {"reference": {"keyVault": {"id": "x"}, "secretName": "s"}}}`, good)), CodeInvalidRequestContent,
			"parameter 'p' is a Key Vault reference", 0, 0},
		{"parameter without value", string(azBody(`{"p": "x"}`, good)), CodeInvalidRequestContent, `The parameter 'p' must be given as {"value": ...}`, 0, 0},
		{"template structure", string(azBody(`{}`, `{"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#", "contentVersion": "1.0", "resources": []}`)),
			CodeInvalidTemplate, "The template 'contentVersion' '1.0' is not valid", 1, 114},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := ParseRequest([]byte(tc.body))
			if err == nil { // errors found by evaluation are placed the same way
				_, err = req.Template.Evaluate(t.Context(), req.Parameters, testCtx)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("ParseRequest error = %v, want *Error", err)
			}
			if e.Code != tc.wantCode || !strings.Contains(e.Message, tc.wantSub) || e.Line != tc.wantLine || e.Column != tc.wantCol {
				t.Errorf("ParseRequest error = %s %q at %d:%d, want %s %q at %d:%d", e.Code, e.Message, e.Line, e.Column, tc.wantCode, tc.wantSub, tc.wantLine, tc.wantCol)
			}
		})
	}
}
