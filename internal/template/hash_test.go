package template

import (
	"regexp"
	"testing"
)

// TestUniqueString checks uniqueString against outputs that came from
// Azure or from Microsoft's own expression engine.
func TestUniqueString(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want string
	}{
		// Outputs of real deployments recorded in
		// KingslandConsulting/Kingsland.ArmLinter,
		// src/Kingsland.ArmLinter/Functions/ArmFunctions_UniqueString.cs.
		{"deployment aaa", []string{"aaa"}, "zavj67f3en4hc"},
		{"deployment bbb", []string{"bbb"}, "w5eragfxe33cy"},
		{"deployment zzz", []string{"zzz"}, "cryksdzzzawae"},
		{"deployment three args", []string{"xxx", "yyy", "zzz"}, "lghi7k5js7itq"},
		// Computed with Microsoft's Azure.Deployments.Expression package,
		// StackOverflow question 43295720.
		{"expression engine", []string{"tyeth"}, "zcztcwvu6iyg6"},
		// Azure/terraform-provider-azapi, unique_string_function_test.go
		// (7 full blocks and a 7-byte tail).
		{"azapi", []string{"/subscriptions/00000000-0000-0000-0000-000000000000", "resource-id"}, "cwvxuqg24sifi"},
		// JasonWhall/go-azure-uniquestring README.
		{"reimplementation", []string{"hello", "world"}, "a7wkljktk6wne"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := uniqueString(tc.in); got != tc.want {
				t.Errorf("uniqueString(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestUniqueStringTails(t *testing.T) {
	// Every tail length of the 8-byte blocks gives a distinct,
	// well-formed result.
	seen := map[string]string{}
	re := regexp.MustCompile(`^[a-z2-7]{13}$`)
	for n := 0; n <= 17; n++ {
		in := "abcdefghijklmnopq"[:n]
		got := uniqueString([]string{in})
		if !re.MatchString(got) {
			t.Errorf("uniqueString(%q) = %q, not 13 base32 characters", in, got)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("uniqueString(%q) = uniqueString(%q) = %q", in, prev, got)
		}
		seen[got] = in
	}
}

func TestUUID5(t *testing.T) {
	// RFC 9562 appendix A.4: the DNS namespace and "www.example.com".
	dns := [16]byte{0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}
	if got, want := uuid5(dns, "www.example.com"), "2ed6657d-e927-568b-95e1-2665a8aea6a2"; got != want {
		t.Errorf("uuid5(dns, www.example.com) = %s, want %s", got, want)
	}
}

func TestGUID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	tests := []struct {
		in   []string
		want string // pinned (equal to Python's uuid.uuid5), not checked against Azure: see the package doc
	}{
		{[]string{"hello", "world"}, guid([]string{"hello-world"})},
		{[]string{"/subscriptions/s/resourceGroups/rg"}, "43af9c26-aedc-52c3-b2fc-7e1d61b44b82"},
	}
	for _, tc := range tests {
		got := guid(tc.in)
		if !re.MatchString(got) {
			t.Errorf("guid(%q) = %s, not a version 5 UUID", tc.in, got)
		}
		if got != tc.want {
			t.Errorf("guid(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
	if guid([]string{"hello", "world"}) == guid([]string{"world", "hello"}) {
		t.Error("guid ignores the order of its arguments")
	}
}
