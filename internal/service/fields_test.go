package service_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/deltadisk/deltadisk/internal/service"
)

// TestFreeFormFields: tags and the other free-form fields are bounded as
// ARM bounds them, on every path that stores them (PUT, PATCH, groups), and
// a refused request changes nothing.
func TestFreeFormFields(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, nil)
	d := f.disk(t, diskID("d"), 1)

	many := map[string]string{}
	for i := range 51 {
		many[fmt.Sprintf("t%d", i)] = "v"
	}
	fifty := map[string]string{}
	for i := range 50 {
		fifty[fmt.Sprintf("t%d", i)] = "v"
	}
	bad := []struct {
		name string
		tags map[string]string
	}{
		{"51 tags", many},
		{"value of 257 characters", map[string]string{"k": strings.Repeat("v", 257)}},
		{"name of 513 characters", map[string]string{strings.Repeat("k", 513): "v"}},
		{"empty name", map[string]string{"": "v"}},
		{"reserved character", map[string]string{"a/b": "v"}},
		{"control character", map[string]string{"a\nb": "v"}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.s.Put(ctx, diskID("new"), service.Spec{Location: "eastus", Tags: tc.tags, DiskSizeGB: 1, CreationData: service.CreationData{CreateOption: "Empty"}})
			wantCode(t, err, service.ErrInvalid, "InvalidParameter")
			if _, err := f.s.Get(ctx, diskID("new")); err == nil {
				t.Fatal("a refused PUT created the disk")
			}
			_, err = f.s.Patch(ctx, d.ID(), service.Patch{Tags: tc.tags})
			wantCode(t, err, service.ErrInvalid, "InvalidParameter")
			_, _, err = f.s.PutGroup(ctx, sub, "rg", "eastus", tc.tags)
			wantCode(t, err, service.ErrInvalid, "InvalidParameter")
		})
	}
	// What refused requests did not change; the limits themselves pass.
	if got := f.show(t, d.ID()); len(got.Tags) != 0 {
		t.Fatalf("a refused PATCH changed tags: %v", got.Tags)
	}
	edge := map[string]string{strings.Repeat("k", 512): strings.Repeat("v", 256), "ünï-cødé": strings.Repeat("é", 256)}
	if _, err := f.s.Patch(ctx, d.ID(), service.Patch{Tags: edge}); err != nil {
		t.Fatalf("tags at the limits: %v", err)
	}
	if _, _, err := f.s.PutGroup(ctx, sub, "rg", "eastus", fifty); err != nil {
		t.Fatalf("50 tags on a group: %v", err)
	}

	// osType and hyperVGeneration are enumerations, stored in Azure's spelling.
	_, err := f.s.Put(ctx, diskID("os"), service.Spec{Location: "eastus", OSType: strings.Repeat("x", 1000), DiskSizeGB: 1, CreationData: service.CreationData{CreateOption: "Empty"}})
	wantCode(t, err, service.ErrInvalid, "InvalidParameter")
	_, err = f.s.Put(ctx, diskID("os"), service.Spec{Location: "eastus", HyperVGeneration: "V9", DiskSizeGB: 1, CreationData: service.CreationData{CreateOption: "Empty"}})
	wantCode(t, err, service.ErrInvalid, "InvalidParameter")
	r, err := f.s.Put(ctx, diskID("os"), service.Spec{Location: "eastus", OSType: "linux", HyperVGeneration: "v2", DiskSizeGB: 1, CreationData: service.CreationData{CreateOption: "Empty"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.OSType != "Linux" || r.HyperVGeneration != "V2" {
		t.Fatalf("osType %q hyperVGeneration %q, want Linux V2", r.OSType, r.HyperVGeneration)
	}
}

// TestDeploymentName: a deployment record is stored only under a name ARM
// allows.
func TestDeploymentName(t *testing.T) {
	f := newFixture(t, nil)
	for _, name := range []string{"", strings.Repeat("d", 65), "a/b", "a b", "é"} {
		err := f.s.PutDeployment(t.Context(), &service.Deployment{Subscription: sub, Group: "rg", Name: name, State: "Succeeded"})
		wantCode(t, err, service.ErrInvalid, "InvalidParameter")
	}
	if err := f.s.PutDeployment(t.Context(), &service.Deployment{Subscription: sub, Group: "rg", Name: "dep_1.(x)-" + strings.Repeat("d", 54), State: "Succeeded"}); err != nil {
		t.Fatal(err)
	}
}
