package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/deltadisk/deltadisk/internal/identity"
	"github.com/deltadisk/deltadisk/internal/service"
	"github.com/google/uuid"
)

// serveConfig is the --config file. Every section is optional; an unknown
// field anywhere is an error that names it.
type serveConfig struct {
	// Subscriptions exist beside the default one, in the default tenant.
	Subscriptions []configSubscription `json:"subscriptions"`
	// Principals may log in beside the default one, with their roles.
	Principals []identity.Principal `json:"principals"`
	// Regions override a default region of the same (normalised) name, or
	// add a new one.
	Regions []service.Region `json:"regions"`
	// Policy fields present in the file override the defaults; the others
	// keep them.
	Policy service.Policy `json:"policy"`
}

type configSubscription struct {
	SubscriptionID string `json:"subscriptionId"`
	DisplayName    string `json:"displayName"`
}

// defaultServeConfig is the configuration with no file.
func defaultServeConfig() serveConfig {
	return serveConfig{Policy: service.DefaultPolicy()}
}

// loadServeConfig reads and checks a --config file.
func loadServeConfig(path string) (serveConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return serveConfig{}, fmt.Errorf("config: %w", err)
	}
	c, err := parseServeConfig(b)
	if err != nil {
		return serveConfig{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// parseServeConfig decodes a config file over the defaults and checks
// what can be checked without the data dir's state.
func parseServeConfig(b []byte) (serveConfig, error) {
	c := defaultServeConfig()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return serveConfig{}, withPosition(b, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return serveConfig{}, fmt.Errorf("unexpected data after the JSON object at %s", position(b, dec.InputOffset()))
	}
	if err := c.Policy.Validate(); err != nil {
		return serveConfig{}, err
	}
	return c, nil
}

// withPosition adds the line and column to a JSON decoding error that
// knows its offset.
func withPosition(b []byte, err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("%w (at %s)", err, position(b, se.Offset))
	case errors.As(err, &te):
		return fmt.Errorf("%w (at %s)", err, position(b, te.Offset))
	case errors.Is(err, io.EOF):
		return errors.New("the file is empty; want a JSON object")
	}
	return err
}

func position(b []byte, off int64) string {
	off = min(max(off, 0), int64(len(b)))
	line := 1 + bytes.Count(b[:off], []byte("\n"))
	col := off - int64(bytes.LastIndexByte(b[:off], '\n'))
	return fmt.Sprintf("line %d, column %d", line, col)
}

// settings are the service's and identity's inputs: the data dir's state
// and the config file merged.
type settings struct {
	subscriptions []service.Subscription
	principals    []identity.Principal
	regions       []service.Region
	policy        service.Policy
}

// resolve merges the config with the data dir's state: the default
// subscription and principal come first, and the default principal is
// always Owner of the default subscription.
func (c serveConfig) resolve(st state) (settings, error) {
	s := settings{policy: c.Policy}
	s.subscriptions = []service.Subscription{{ID: st.SubscriptionID, DisplayName: "deltadisk", TenantID: st.TenantID}}
	known := map[string]string{strings.ToLower(st.SubscriptionID): st.SubscriptionID}
	for i, cs := range c.Subscriptions {
		switch {
		case len(cs.SubscriptionID) != 36 || uuid.Validate(cs.SubscriptionID) != nil:
			return settings{}, fmt.Errorf("subscriptions[%d]: subscriptionId %q is not a GUID", i, cs.SubscriptionID)
		case known[strings.ToLower(cs.SubscriptionID)] != "":
			return settings{}, fmt.Errorf("subscriptions[%d]: subscription %s is listed twice, or is the default one", i, cs.SubscriptionID)
		case strings.TrimSpace(cs.DisplayName) == "":
			return settings{}, fmt.Errorf("subscriptions[%d]: subscription %s has no displayName", i, cs.SubscriptionID)
		}
		known[strings.ToLower(cs.SubscriptionID)] = cs.SubscriptionID
		s.subscriptions = append(s.subscriptions, service.Subscription{ID: cs.SubscriptionID, DisplayName: cs.DisplayName, TenantID: st.TenantID})
	}

	s.principals = []identity.Principal{{
		ClientID:     st.ClientID,
		ClientSecret: st.ClientSecret,
		Roles:        []identity.Assignment{{Role: identity.RoleOwner, Scope: "/subscriptions/" + st.SubscriptionID}},
	}}
	clients := map[string]bool{strings.ToLower(st.ClientID): true}
	for i, p := range c.Principals {
		switch {
		case p.ClientID == "":
			return settings{}, fmt.Errorf("principals[%d]: no clientId", i)
		case clients[strings.ToLower(p.ClientID)]:
			return settings{}, fmt.Errorf("principals[%d]: clientId %q is listed twice, or is the default principal's", i, p.ClientID)
		case p.ClientSecret == "":
			return settings{}, fmt.Errorf("principals[%d]: principal %q has no clientSecret", i, p.ClientID)
		case utf8.RuneCountInString(p.ClientSecret) < identity.MinSecretLength:
			// The token endpoint slows guessing down; a short secret
			// falls anyway.
			return settings{}, fmt.Errorf("principals[%d]: principal %q: clientSecret has %d characters, want at least %d (a random one: openssl rand -hex 16)",
				i, p.ClientID, utf8.RuneCountInString(p.ClientSecret), identity.MinSecretLength)
		}
		clients[strings.ToLower(p.ClientID)] = true
		roles := make([]identity.Assignment, 0, len(p.Roles))
		for j, a := range p.Roles {
			role, ok := canonicalRole(a.Role)
			if !ok {
				return settings{}, fmt.Errorf("principals[%d].roles[%d]: unknown role %q (want Owner, Contributor or Reader)", i, j, a.Role)
			}
			id, ok := strings.CutPrefix(a.Scope, "/subscriptions/")
			if !ok || known[strings.ToLower(id)] == "" {
				return settings{}, fmt.Errorf("principals[%d].roles[%d]: scope %q is not /subscriptions/<id> of a subscription served here", i, j, a.Scope)
			}
			roles = append(roles, identity.Assignment{Role: role, Scope: "/subscriptions/" + known[strings.ToLower(id)]})
		}
		s.principals = append(s.principals, identity.Principal{ClientID: p.ClientID, ClientSecret: p.ClientSecret, Roles: roles})
	}

	s.regions = service.DefaultRegions()
	seen := make(map[string]bool)
	for i, r := range c.Regions {
		name := service.NormalizeLocation(r.Name)
		switch {
		case name == "":
			return settings{}, fmt.Errorf("regions[%d]: no name", i)
		case strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789") != "":
			// A region names its zones' directories ("eastus-1"): letters
			// and digits only, as Azure's, so no name escapes the data dir
			// or clashes with another region's zone.
			return settings{}, fmt.Errorf("regions[%d]: region name %q: use lower-case letters and digits only (spaces are dropped)", i, r.Name)
		case seen[name]:
			return settings{}, fmt.Errorf("regions[%d]: region %q is listed twice", i, r.Name)
		case r.Zones < 0 || r.Zones > 3:
			return settings{}, fmt.Errorf("regions[%d]: region %q has %d zones, want 0 to 3", i, r.Name, r.Zones)
		}
		seen[name] = true
		r.Name = name
		if j := slices.IndexFunc(s.regions, func(d service.Region) bool { return d.Name == name }); j >= 0 {
			s.regions[j] = r
		} else {
			s.regions = append(s.regions, r)
		}
	}
	for _, ir := range s.policy.IncrementalRegions {
		if !slices.ContainsFunc(s.regions, func(r service.Region) bool { return r.Name == ir }) {
			return settings{}, fmt.Errorf("policy: incrementalRegions: %q is not a region (add it under regions)", ir)
		}
	}
	return s, nil
}

// canonicalRole accepts a role name in any case.
func canonicalRole(r identity.Role) (identity.Role, bool) {
	for _, known := range []identity.Role{identity.RoleOwner, identity.RoleContributor, identity.RoleReader} {
		if strings.EqualFold(string(r), string(known)) {
			return known, true
		}
	}
	return "", false
}
