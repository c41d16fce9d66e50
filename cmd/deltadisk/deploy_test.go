package main_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
)

// snapshotTemplate is the example: an incremental snapshot named
// from a parameter, in the resource group's location, at apiVersion
// 2019-03-01, with an output that reads the created snapshot back.
const snapshotTemplate = `{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "parameters": {
    "diskName": {"type": "string"},
    "diskResourceId": {"type": "string"},
    "copies": {"type": "int", "defaultValue": 1, "minValue": 1, "maxValue": 3}
  },
  "resources": [
    {
      "type": "Microsoft.Compute/snapshots",
      "apiVersion": "2019-03-01",
      "name": "[concat(parameters('diskName'), '_snapshot', copyIndex(1))]",
      "location": "[resourceGroup().location]",
      "copy": {"name": "snaps", "count": "[parameters('copies')]", "mode": "Serial", "batchSize": 1},
      "properties": {
        "creationData": {"createOption": "Copy", "sourceResourceId": "[parameters('diskResourceId')]"},
        "incremental": true
      }
    }
  ],
  "outputs": {
    "firstSnapshot": {"type": "string", "value": "[reference(resourceId('Microsoft.Compute/snapshots', concat(parameters('diskName'), '_snapshot1'))).uniqueId]"}
  }
}`

// TestDeployments drives template deployments with the Go SDK: a
// deployment that creates incremental snapshots through a copy loop and
// reads one back in its outputs; validation; and templates that fail
// validation, which create nothing.
func TestDeployments(t *testing.T) {
	ctx := t.Context()
	srv := startServer(t, t.TempDir(), "")
	cred := srv.defaultCredential()
	c := srv.clients(srv.creds.SubscriptionID, cred)
	c.group(t, "rg", "eastus")
	disk := c.emptyDisk(t, "rg", "data", 1)
	deployments, err := armresources.NewDeploymentsClient(srv.creds.SubscriptionID, cred, srv.armOptions())
	if err != nil {
		t.Fatal(err)
	}
	var tmpl map[string]any
	if err := json.Unmarshal([]byte(snapshotTemplate), &tmpl); err != nil {
		t.Fatal(err)
	}
	params := map[string]any{"diskName": map[string]any{"value": "data"}, "diskResourceId": map[string]any{"value": *disk.ID}, "copies": map[string]any{"value": 2}}
	deployment := armresources.Deployment{Properties: &armresources.DeploymentProperties{
		Mode: to.Ptr(armresources.DeploymentModeIncremental), Template: tmpl, Parameters: params}}

	v, err := deployments.BeginValidate(ctx, "rg", "snaps", deployment, nil)
	if err != nil {
		t.Fatalf("validate: %v", err)
	}
	if _, err := v.PollUntilDone(ctx, nil); err != nil {
		t.Fatalf("validate: %v", err)
	}
	poller, err := deployments.BeginCreateOrUpdate(ctx, "rg", "snaps", deployment, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := poller.PollUntilDone(ctx, nil)
	if err != nil {
		t.Fatalf("deployment: %v", err)
	}
	p := res.Properties
	if *p.ProvisioningState != armresources.ProvisioningStateSucceeded || len(p.OutputResources) != 2 {
		t.Fatalf("deployment = %v with %d resources", *p.ProvisioningState, len(p.OutputResources))
	}
	first, err := c.snapshots.Get(ctx, "rg", "data_snapshot1", nil)
	if err != nil || !*first.Properties.Incremental || *first.Properties.CreationData.SourceUniqueID != *disk.Properties.UniqueID {
		t.Fatalf("data_snapshot1: %v", err)
	}
	if _, err := c.snapshots.Get(ctx, "rg", "data_snapshot2", nil); err != nil {
		t.Fatalf("data_snapshot2: %v", err)
	}
	outputs, _ := p.Outputs.(map[string]any)
	out, _ := outputs["firstSnapshot"].(map[string]any)
	if out["value"] != *first.Properties.UniqueID {
		t.Errorf("output firstSnapshot = %v, want the snapshot's uniqueId %s", outputs, *first.Properties.UniqueID)
	}
	opsClient, err := armresources.NewDeploymentOperationsClient(srv.creds.SubscriptionID, cred, srv.armOptions())
	if err != nil {
		t.Fatal(err)
	}
	ops := opsClient.NewListPager("rg", "snaps", nil)
	n := 0
	for ops.More() {
		page, err := ops.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, op := range page.Value {
			if *op.Properties.ProvisioningState != "Succeeded" {
				t.Errorf("operation %s: %s", *op.OperationID, *op.Properties.ProvisioningState)
			}
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d deployment operations, want 2", n)
	}

	// Templates that fail validation create nothing.
	bad := []struct {
		name, mutate, code, says string
	}{
		{"unknown function", `"[concatt(parameters('diskName'), '_x')]"`, "InvalidTemplate", "concatt"},
		{"unknown resource type", "", "InvalidTemplateDeployment", "Microsoft.Compute/virtualMachines"},
		{"missing parameter", "", "InvalidTemplate", "diskResourceId"},
		{"tag value over 256 characters", "", "InvalidTemplateDeployment", "at most 256"},
		{"51 tags", "", "InvalidTemplateDeployment", "at most 50 tags"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			var tm map[string]any
			_ = json.Unmarshal([]byte(snapshotTemplate), &tm)
			res := tm["resources"].([]any)[0].(map[string]any)
			ps := map[string]any{"diskName": map[string]any{"value": "bad"}, "diskResourceId": map[string]any{"value": *disk.ID}}
			switch tc.name {
			case "unknown function":
				res["name"] = strings.Trim(tc.mutate, `"`)
			case "unknown resource type":
				res["type"] = "Microsoft.Compute/virtualMachines"
			case "missing parameter":
				delete(ps, "diskResourceId")
			case "tag value over 256 characters":
				res["tags"] = map[string]any{"big": "[padLeft('x', 300, 'y')]"}
			case "51 tags":
				tags := map[string]any{}
				for i := range 51 {
					tags[fmt.Sprintf("t%d", i)] = "v"
				}
				res["tags"] = tags
			}
			_, err := deployments.BeginCreateOrUpdate(ctx, "rg", "bad", armresources.Deployment{Properties: &armresources.DeploymentProperties{
				Mode: to.Ptr(armresources.DeploymentModeIncremental), Template: tm, Parameters: ps}}, nil)
			wantARMError(t, err, http.StatusBadRequest, tc.code)
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error does not name %q: %v", tc.says, err)
			}
		})
	}
	pager := c.snapshots.NewListByResourceGroupPager("rg", nil)
	count := 0
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		count += len(page.Value)
	}
	if count != 2 {
		t.Errorf("%d snapshots after the failed deployments, want the 2 from the good one", count)
	}
}
