package service

import (
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"a", true}, {"disk_1.x-y_", true}, {strings.Repeat("a", 80), true},
		{"", false}, {strings.Repeat("a", 81), false}, {"-a", false}, {"_a", false},
		{"a.", false}, {"a-", false}, {"a b", false}, {"ä", false},
	}
	for _, tc := range tests {
		if got := ValidName(tc.name); got != tc.ok {
			t.Errorf("ValidName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

func TestValidGroupName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"rg", true}, {"my(rg).x_y-z", true}, {strings.Repeat("r", 90), true},
		{"", false}, {"rg.", false}, {strings.Repeat("r", 91), false}, {"r/g", false},
	}
	for _, tc := range tests {
		if got := ValidGroupName(tc.name); got != tc.ok {
			t.Errorf("ValidGroupName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

func FuzzParseResourceID(f *testing.F) {
	f.Add(ResourceID{Subscription: "s", Group: "g", Kind: KindDisk, Name: "d"}.String())
	f.Add("/SUBSCRIPTIONS/s/resourcegroups/g/providers/microsoft.compute/Snapshots/x")
	f.Add("/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/v")
	f.Add("//////")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseResourceID(s)
		if err != nil {
			return
		}
		again, err := ParseResourceID(id.String())
		if err != nil || again != id {
			t.Fatalf("ParseResourceID(%q) = %+v, but its String %q parses to %+v, %v", s, id, id.String(), again, err)
		}
		if !strings.EqualFold(id.String(), "/"+strings.TrimPrefix(s, "/")) {
			t.Fatalf("ParseResourceID(%q) = %q, not the same id", s, id.String())
		}
	})
}
