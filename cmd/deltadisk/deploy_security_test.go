package main_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// contributorB is Contributor on secondSub only; the default principal is
// Owner on the default subscription only.
const contributorB = "aaaaaaaa-0000-0000-0000-0000000000b2"

// deploymentAnswer is what a GET of a deployment shows of its outcome.
type deploymentAnswer struct {
	Properties struct {
		ProvisioningState string          `json:"provisioningState"`
		Outputs           json.RawMessage `json:"outputs"`
		Error             *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	} `json:"properties"`
}

// referenceTemplate is a deployment request whose only output is the
// whole of the resource id, read with reference(..., 'Full'), and whose
// snapshot's tags also read it, so that both the outputs (after
// deployment) and the resource bodies (at validation) are tried.
func referenceTemplate(id, sourceDisk string) []byte {
	ref := "[string(reference('" + id + "', '2023-04-02', 'Full'))]"
	tmpl := map[string]any{
		"$schema":        "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
		"contentVersion": "1.0.0.0",
		"resources":      []any{},
		"outputs":        map[string]any{"leak": map[string]any{"type": "string", "value": ref}},
	}
	if sourceDisk != "" {
		tmpl["resources"] = []any{map[string]any{
			"type": "Microsoft.Compute/snapshots", "apiVersion": "2023-04-02", "name": "s", "location": "eastus",
			"tags":       map[string]any{"leak": ref},
			"properties": map[string]any{"creationData": map[string]any{"createOption": "Copy", "sourceResourceId": sourceDisk}, "incremental": true},
		}}
	}
	b, _ := json.Marshal(map[string]any{"properties": map[string]any{"mode": "Incremental", "template": tmpl}})
	return b
}

// bearer returns an ARM token for a credential.
func bearer(t *testing.T, srv *server, cred azcore.TokenCredential) string {
	t.Helper()
	tok, err := cred.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{srv.creds.Audience + ".default"}})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

// deployAndWait PUTs a deployment and returns it once it is no longer
// running.
func deployAndWait(t *testing.T, srv *server, token, sub, rg, name string, body []byte) deploymentAnswer {
	t.Helper()
	path := "/subscriptions/" + sub + "/resourcegroups/" + rg + "/providers/Microsoft.Resources/deployments/" + name + "?api-version=2021-04-01"
	resp, answer := srv.do(http.MethodPut, path, token, body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT deployment %s: %d %s", name, resp.StatusCode, answer)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, answer = srv.do(http.MethodGet, path, token, nil)
		var d deploymentAnswer
		if resp.StatusCode != http.StatusOK || json.Unmarshal(answer, &d) != nil {
			t.Fatalf("GET deployment %s: %d %s", name, resp.StatusCode, answer)
		}
		if d.Properties.ProvisioningState != "Running" {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployment %s still running after 30s", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDeploymentReferenceAccess: a template cannot read, through
// reference(), a resource of a subscription its deployer has no role on,
// and cannot tell whether such a resource exists: reading another
// subscription's existing disk fails exactly as reading a disk that does
// not exist, in outputs (deploy) and in resource bodies (validate), in
// both directions. Reading one's own disk still works.
func TestDeploymentReferenceAccess(t *testing.T) {
	dir := t.TempDir()
	cfg := map[string]any{
		"subscriptions": []map[string]any{{"subscriptionId": secondSub, "displayName": "second"}},
		"principals": []map[string]any{
			{"clientId": contributorB, "clientSecret": secret, "roles": []map[string]any{{"role": "Contributor", "scope": "/subscriptions/" + secondSub}}},
		},
	}
	b, _ := json.Marshal(cfg)
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, dir, path)
	subA, subB := srv.creds.SubscriptionID, secondSub
	credA, credB := srv.defaultCredential(), srv.credential(contributorB, secret)
	a, bc := srv.clients(subA, credA), srv.clients(subB, credB)
	a.group(t, "ra", "eastus")
	diskA := a.emptyDisk(t, "ra", "da1", 1)
	bc.group(t, "rb", "eastus")
	diskB := bc.emptyDisk(t, "rb", "db1", 1)
	tokA, tokB := bearer(t, srv, credA), bearer(t, srv, credB)

	// The control: a principal reads its own disk, so the checks below
	// would see a leak if there were one.
	own := deployAndWait(t, srv, tokB, subB, "rb", "own", referenceTemplate(*diskB.ID, ""))
	if own.Properties.ProvisioningState != "Succeeded" || !strings.Contains(string(own.Properties.Outputs), *diskB.Properties.UniqueID) {
		t.Fatalf("reading one's own disk: %s, outputs %s", own.Properties.ProvisioningState, own.Properties.Outputs)
	}

	tests := []struct {
		name          string
		token         string
		sub, rg       string
		other         string // an existing disk of the other subscription
		otherUniqueID string
		ownDisk       string
	}{
		{"B reads A", tokB, subB, "rb", *diskA.ID, *diskA.Properties.UniqueID, *diskB.ID},
		{"A reads B", tokA, subA, "ra", *diskB.ID, *diskB.Properties.UniqueID, *diskA.ID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			missing := tc.other[:strings.LastIndex(tc.other, "/")+1] + "dx1" // same length as d?1
			// normalize hides the one thing that differs between the two
			// references: the id and name asked for.
			normalize := func(s, id string) string {
				s = strings.ReplaceAll(s, id, "<id>")
				return strings.ReplaceAll(s, id[strings.LastIndex(id, "/")+1:], "<name>")
			}

			existing := deployAndWait(t, srv, tc.token, tc.sub, tc.rg, "existing", referenceTemplate(tc.other, ""))
			absent := deployAndWait(t, srv, tc.token, tc.sub, tc.rg, "absent", referenceTemplate(missing, ""))
			for _, d := range []deploymentAnswer{existing, absent} {
				if d.Properties.ProvisioningState != "Failed" || d.Properties.Error == nil {
					t.Fatalf("deployment reading another subscription's disk: %s, error %v", d.Properties.ProvisioningState, d.Properties.Error)
				}
				if len(d.Properties.Outputs) > 0 && string(d.Properties.Outputs) != "null" {
					t.Errorf("a failed deployment kept outputs %s", d.Properties.Outputs)
				}
			}
			e, m := existing.Properties.Error, absent.Properties.Error
			if e.Code != m.Code || normalize(e.Message, tc.other) != normalize(m.Message, missing) {
				t.Errorf("existing disk: %s %q\nmissing disk:  %s %q\nwant the same answer", e.Code, e.Message, m.Code, m.Message)
			}
			if !strings.Contains(e.Message, "was not found") {
				t.Errorf("error %q does not say the resource was not found", e.Message)
			}
			if strings.Contains(e.Message, tc.otherUniqueID) {
				t.Errorf("error %q holds the other subscription's disk", e.Message)
			}

			// At validation, in a resource body: the same single answer.
			validate := func(id string) (int, string) {
				p := "/subscriptions/" + tc.sub + "/resourcegroups/" + tc.rg + "/providers/Microsoft.Resources/deployments/v/validate?api-version=2021-04-01"
				resp, body := srv.do(http.MethodPost, p, tc.token, referenceTemplate(id, tc.ownDisk))
				return resp.StatusCode, string(body)
			}
			es, eb := validate(tc.other)
			ms, mb := validate(missing)
			if es != http.StatusBadRequest || es != ms || normalize(eb, tc.other) != normalize(mb, missing) {
				t.Errorf("validate with the existing disk: %d %s\nwith a missing disk: %d %s\nwant the same 400", es, eb, ms, mb)
			}
			if strings.Contains(eb, tc.otherUniqueID) {
				t.Errorf("validate answer %s holds the other subscription's disk", eb)
			}
		})
	}
}

// budgetRequest is a deployment request whose template has the given
// members beside $schema, contentVersion and an empty resources list.
func budgetRequest(members string) []byte {
	return []byte(`{"properties": {"mode": "Incremental", "template": {"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
		"contentVersion": "1.0.0.0", "resources": [], ` + members + `}}}`)
}

// TestDeploymentBudget: the request that took the server past 4 GB (a
// 1 KiB string concat()ed 16 times, five levels deep) is refused with
// InvalidTemplate naming the expression, by validate and by deploy alike;
// parameters and outputs too large to keep are refused with a message.
func TestDeploymentBudget(t *testing.T) {
	srv := startServer(t, t.TempDir(), "")
	cred := srv.defaultCredential()
	srv.clients(srv.creds.SubscriptionID, cred).group(t, "rg", "eastus")
	tok := bearer(t, srv, cred)
	base := "/subscriptions/" + srv.creds.SubscriptionID + "/resourcegroups/rg/providers/Microsoft.Resources/deployments/"

	vars := []string{`"s0": "` + strings.Repeat("a", 1024) + `"`}
	for i := 1; i <= 5; i++ {
		prev := "variables('s" + string(rune('0'+i-1)) + "')"
		vars = append(vars, `"s`+string(rune('0'+i))+`": "[concat(`+strings.Repeat(prev+", ", 15)+prev+`)]"`)
	}
	attack := budgetRequest(`"variables": {` + strings.Join(vars, ", ") + `}`)
	if len(attack) > 3000 {
		t.Fatalf("attack request is %d bytes, want the issue's ~2.8 KB", len(attack))
	}
	for _, path := range []string{base + "attack/validate", base + "attack"} {
		method := http.MethodPost
		if !strings.HasSuffix(path, "/validate") {
			method = http.MethodPut
		}
		resp, body := srv.do(method, path+"?api-version=2021-04-01", tok, attack)
		var e struct {
			Error struct{ Code, Message string }
		}
		_ = json.Unmarshal(body, &e)
		if resp.StatusCode != http.StatusBadRequest || e.Error.Code != "InvalidTemplate" ||
			!strings.Contains(e.Error.Message, "[concat(variables('s") || !strings.Contains(e.Error.Message, "bytes of values") {
			t.Errorf("%s %s: %d %s, want 400 InvalidTemplate naming the concat", method, path, resp.StatusCode, body)
		}
	}

	// 200 control characters replace each of 16000 letters: 3.2 MB of
	// text, within the evaluation budget, that JSON writes as 19 MB.
	wide := `[replace(padLeft('', 16000, 'a'), 'a', padLeft('', 200, '\u0001'))]`
	resp, body := srv.do(http.MethodPost, base+"params/validate?api-version=2021-04-01", tok,
		budgetRequest(`"parameters": {"p": {"type": "string", "defaultValue": "`+wide+`"}}`))
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "The deployment parameters are") {
		t.Errorf("validate with 19 MB of parameters: %d %.300s, want 400 saying the parameters are too large", resp.StatusCode, body)
	}
	d := deployAndWait(t, srv, tok, srv.creds.SubscriptionID, "rg", "outs",
		budgetRequest(`"outputs": {"o": {"type": "string", "value": "`+wide+`"}}`))
	if d.Properties.ProvisioningState != "Failed" || d.Properties.Error == nil || !strings.Contains(d.Properties.Error.Message, "The template outputs are") {
		t.Errorf("deployment with 19 MB of outputs: %s %+v, want Failed saying the outputs are too large", d.Properties.ProvisioningState, d.Properties.Error)
	}
	if len(d.Properties.Outputs) > 4<<20 {
		t.Errorf("the deployment kept %d bytes of outputs", len(d.Properties.Outputs))
	}
}
