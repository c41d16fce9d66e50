package identity

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	testAuthority = "https://deltadisk.test/adfs"
	testAudience  = "https://management.deltadisk.local/"
	testTenant    = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	subA          = "3f2a1b9c-0000-4000-8000-00000000000a"
	subB          = "3f2a1b9c-0000-4000-8000-00000000000b"
	subC          = "3f2a1b9c-0000-4000-8000-00000000000c"
	ownerID       = "aaaaaaaa-1111-4111-8111-111111111111"
	ownerSecret   = "owner secret+plus:colon%41"
	readerID      = "bbbbbbbb-2222-4222-8222-222222222222"
	readerSecret  = "reader-secret-0123456789"
)

// testNow is the fixed time the test identities run at.
var testNow = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

func testConfig() Config {
	c := DefaultConfig()
	c.Authority = testAuthority
	c.Audience = testAudience
	c.TenantID = testTenant
	c.SigningKey = bytes.Repeat([]byte("k"), 32)
	c.Now = func() time.Time { return testNow }
	c.Principals = []Principal{
		{ClientID: ownerID, ClientSecret: ownerSecret, Roles: []Assignment{
			{Role: RoleReader, Scope: "/subscriptions/" + subA},
			{Role: RoleOwner, Scope: "/SUBSCRIPTIONS/" + strings.ToUpper(subA)},
			{Role: RoleContributor, Scope: "/subscriptions/" + subB},
		}},
		{ClientID: readerID, ClientSecret: readerSecret, Roles: []Assignment{
			{Role: RoleReader, Scope: "/subscriptions/" + subB},
		}},
	}
	return c
}

// newTestIdentity returns an Identity for testConfig as changed by edit,
// and what it logs.
func newTestIdentity(t *testing.T, edit func(*Config)) (*Identity, *bytes.Buffer) {
	t.Helper()
	c := testConfig()
	var log bytes.Buffer
	c.Logger = slog.New(slog.NewTextHandler(&log, nil))
	if edit != nil {
		edit(&c)
	}
	id, err := New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return id, &log
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string // substring; "" means valid
	}{
		{"valid", func(*Config) {}, ""},
		{"zero lifetime means default", func(c *Config) { c.TokenLifetime = 0 }, ""},
		{"http authority", func(c *Config) { c.Authority = "http://127.0.0.1:8080/adfs" }, ""},
		{"authority without /adfs", func(c *Config) { c.Authority = "https://127.0.0.1:8443" }, "authority"},
		{"authority under a prefix", func(c *Config) { c.Authority = "https://h/x/adfs" }, "authority"},
		{"authority with trailing slash", func(c *Config) { c.Authority = "https://h/adfs/" }, "authority"},
		{"relative authority", func(c *Config) { c.Authority = "/adfs" }, "authority"},
		{"no audience", func(c *Config) { c.Audience = "/" }, "audience"},
		{"tenant not a GUID", func(c *Config) { c.TenantID = "contoso" }, "tenant"},
		{"short key", func(c *Config) { c.SigningKey = make([]byte, 31) }, "signing key"},
		{"negative lifetime", func(c *Config) { c.TokenLifetime = -time.Second }, "lifetime"},
		{"long lifetime", func(c *Config) { c.TokenLifetime = 25 * time.Hour }, "lifetime"},
		{"no principals", func(c *Config) { c.Principals = nil }, "no principals"},
		{"duplicate client", func(c *Config) {
			c.Principals = append(c.Principals, Principal{ClientID: strings.ToUpper(ownerID), ClientSecret: "another secret, 16+ characters"})
		}, "twice"},
		{"empty client id", func(c *Config) { c.Principals[0].ClientID = "" }, "client id"},
		{"empty secret", func(c *Config) { c.Principals[0].ClientSecret = "" }, "secret"},
		{"15-character secret", func(c *Config) { c.Principals[1].ClientSecret = "123456789012345" }, "client secret has 15 characters, want at least 16"},
		{"15 characters in 30 bytes", func(c *Config) { c.Principals[1].ClientSecret = "ééééééééééééééé" }, "client secret has 15 characters"},
		{"16-character secret", func(c *Config) { c.Principals[1].ClientSecret = "1234567890123456" }, ""},
		{"unknown role", func(c *Config) { c.Principals[0].Roles[0].Role = "Admin" }, "role"},
		{"scope not a subscription", func(c *Config) { c.Principals[0].Roles[0].Scope = "/subscriptions/x" }, "scope"},
		{"scope with group", func(c *Config) {
			c.Principals[0].Roles[0].Scope = "/subscriptions/" + subA + "/resourceGroups/rg"
		}, "scope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig()
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Validate() = %v, want an error about %q", err, tc.wantErr)
			case err != nil && !strings.HasPrefix(err.Error(), "identity: "):
				t.Errorf("Validate() = %q, want the prefix \"identity: \"", err)
			}
			if _, nerr := New(c); (nerr == nil) != (err == nil) {
				t.Errorf("New() = %v, Validate() = %v: want the same verdict", nerr, err)
			}
		})
	}
}

func TestCallerRoles(t *testing.T) {
	id, _ := newTestIdentity(t, nil)
	tests := []struct {
		name      string
		clientID  string
		sub       string
		wantRole  Role
		wantRead  bool
		wantWrite bool
	}{
		{"strongest of two roles", ownerID, subA, RoleOwner, true, true},
		{"upper-case subscription", ownerID, strings.ToUpper(subA), RoleOwner, true, true},
		{"contributor", ownerID, subB, RoleContributor, true, true},
		{"reader", readerID, subB, RoleReader, true, false},
		{"no role elsewhere", readerID, subA, "", false, false},
		{"unknown subscription", ownerID, subC, "", false, false},
		{"scope form is not an id", ownerID, "/subscriptions/" + subA, "", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := authenticateAs(t, id, tc.clientID)
			role, ok := c.Role(tc.sub)
			if role != tc.wantRole || ok != (tc.wantRole != "") {
				t.Errorf("Role(%q) = %q, %v, want %q", tc.sub, role, ok, tc.wantRole)
			}
			if got := c.CanRead(tc.sub); got != tc.wantRead {
				t.Errorf("CanRead(%q) = %v, want %v", tc.sub, got, tc.wantRead)
			}
			if got := c.CanWrite(tc.sub); got != tc.wantWrite {
				t.Errorf("CanWrite(%q) = %v, want %v", tc.sub, got, tc.wantWrite)
			}
		})
	}

	subs := authenticateAs(t, id, ownerID).Subscriptions()
	if want := []string{subA, subB}; !slices.Equal(subs, want) {
		t.Errorf("Subscriptions() = %q, want %q", subs, want)
	}
	if subs := authenticateAs(t, id, readerID).Subscriptions(); !slices.Equal(subs, []string{subB}) {
		t.Errorf("reader: Subscriptions() = %q, want [%s]", subs, subB)
	}
}

func TestNewCopiesConfig(t *testing.T) {
	c := testConfig()
	id, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	c.Principals[1].ClientSecret = "changed"
	c.SigningKey[0] ^= 1
	authenticateAs(t, id, readerID) // still the old secret and key
}
