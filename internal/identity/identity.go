// Package identity holds deltadisk's principals and their role assignments,
// the ADFS-style token service that az and the Azure SDKs log in to, the
// bearer-token check for the control plane, and SAS signing for the blob
// data plane. The token service makes a (client id, source address) pair
// that keeps failing wait longer and longer before its next attempt (see
// throttle.go).
//
// Its invariant: every token and every SAS that identity accepts was signed
// with the Config's SigningKey by this package, is inside its validity
// window, and (for tokens) names a principal of the Config, whose roles,
// fixed at [New], decide what the caller may do.
package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Role is a built-in Azure RBAC role, granted on a subscription.
type Role string

// The roles a principal may hold. Owner and Contributor may change
// resources; Reader may only read them.
const (
	RoleOwner       Role = "Owner"
	RoleContributor Role = "Contributor"
	RoleReader      Role = "Reader"
)

// rank orders roles by strength; an unknown role ranks 0.
func (r Role) rank() int {
	switch r {
	case RoleOwner:
		return 3
	case RoleContributor:
		return 2
	case RoleReader:
		return 1
	}
	return 0
}

// Assignment grants Role on Scope.
type Assignment struct {
	Role Role `json:"role"`
	// Scope is "/subscriptions/<guid>", compared case-insensitively.
	Scope string `json:"scope"`
}

// Principal is a service principal: an application that logs in with the
// client-credentials grant.
type Principal struct {
	// ClientID is the application (client) id, az's --username. It is
	// matched case-insensitively, as Entra ID matches application ids.
	ClientID string `json:"clientId"`
	// ClientSecret has at least [MinSecretLength] characters.
	ClientSecret string       `json:"clientSecret"`
	Roles        []Assignment `json:"roles"`
}

// Config configures an [Identity].
type Config struct {
	// Authority is the token service's absolute URL, whose path is exactly
	// "/adfs", e.g. "https://127.0.0.1:8443/adfs"; az and MSAL insist on
	// https (http is allowed for tests behind a proxy). The path is fixed because
	// MSAL recognises an ADFS authority by its first path segment and then
	// fetches <scheme>://<host>/adfs/.well-known/openid-configuration
	// whatever the rest of the path is. The OpenID issuer and every token's
	// iss are exactly this string. Clients must reach the service at this
	// host: MSAL Go rejects metadata whose issuer host differs from the
	// host it asked.
	Authority string
	// Audience is the resource that tokens are issued for, e.g.
	// "https://management.deltadisk.local/". Requested scopes and a token's
	// aud are compared with it case-insensitively, trailing slashes trimmed,
	// since az asks for "<audience>/.default".
	Audience string
	// TenantID is the single tenant's id, a GUID.
	TenantID string
	// Principals are the service principals that may log in. Client ids
	// must be unique. They are fixed at New.
	Principals []Principal
	// SigningKey (at least 32 bytes) is the secret from which the HMAC keys
	// for tokens and SAS are derived. The caller persists it (mode 0600) in
	// the data dir, and every node of a deployment must share it: changing it
	// invalidates every token and SAS issued before.
	SigningKey []byte
	// TokenLifetime is how long an access token is valid; zero means one
	// hour. At most 24 hours.
	TokenLifetime time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives one line per token issued or refused; nil discards.
	Logger *slog.Logger
}

const (
	defaultTokenLifetime = time.Hour
	maxTokenLifetime     = 24 * time.Hour
	minSigningKey        = 32
	// adfsPath is the only path an Authority may have.
	adfsPath = "/adfs"
)

// MinSecretLength is the fewest characters a client secret may have. The
// token endpoint slows guessing down (see throttle.go) but cannot make a
// short secret safe.
const MinSecretLength = 16

// DefaultConfig returns the defaults for a local server. The caller still
// has to set TenantID, Principals and SigningKey.
func DefaultConfig() Config {
	return Config{
		Authority:     "https://127.0.0.1:8443/adfs",
		Audience:      "https://management.deltadisk.local/",
		TokenLifetime: defaultTokenLifetime,
		Now:           time.Now,
	}
}

// Validate reports the first problem with c, or nil.
func (c Config) Validate() error {
	u, err := url.Parse(c.Authority)
	switch {
	case err != nil:
		return fmt.Errorf("identity: authority %q: %w", c.Authority, err)
	case u.Scheme != "https" && u.Scheme != "http", u.Host == "", u.User != nil,
		u.RawQuery != "", u.Fragment != "", u.Path != adfsPath:
		return fmt.Errorf("identity: authority %q: want an absolute URL with path %s, such as https://127.0.0.1:8443/adfs", c.Authority, adfsPath)
	}
	if trimAudience(c.Audience) == "" || strings.ContainsAny(c.Audience, " \t\r\n") {
		return fmt.Errorf("identity: audience %q: want a URI such as https://management.deltadisk.local/", c.Audience)
	}
	if !isGUID(c.TenantID) {
		return fmt.Errorf("identity: tenant id %q is not a GUID", c.TenantID)
	}
	if len(c.SigningKey) < minSigningKey {
		return fmt.Errorf("identity: signing key has %d bytes, want at least %d", len(c.SigningKey), minSigningKey)
	}
	if c.TokenLifetime < 0 || c.TokenLifetime > maxTokenLifetime {
		return fmt.Errorf("identity: token lifetime %v is outside [0, %v]", c.TokenLifetime, maxTokenLifetime)
	}
	if len(c.Principals) == 0 {
		return errors.New("identity: no principals")
	}
	seen := make(map[string]bool, len(c.Principals))
	for _, p := range c.Principals {
		id := strings.ToLower(p.ClientID)
		switch {
		case p.ClientID == "" || strings.ContainsAny(p.ClientID, " \t\r\n:"):
			return fmt.Errorf("identity: principal %q: client id must be non-empty, without spaces or colons", p.ClientID)
		case seen[id]:
			return fmt.Errorf("identity: principal %q is listed twice", p.ClientID)
		case p.ClientSecret == "":
			return fmt.Errorf("identity: principal %q has no client secret", p.ClientID)
		case utf8.RuneCountInString(p.ClientSecret) < MinSecretLength:
			return fmt.Errorf("identity: principal %q: client secret has %d characters, want at least %d", p.ClientID, utf8.RuneCountInString(p.ClientSecret), MinSecretLength)
		}
		seen[id] = true
		for _, a := range p.Roles {
			if a.Role.rank() == 0 {
				return fmt.Errorf("identity: principal %q: unknown role %q (want Owner, Contributor or Reader)", p.ClientID, a.Role)
			}
			if _, ok := subscriptionOf(a.Scope); !ok {
				return fmt.Errorf("identity: principal %q: scope %q is not /subscriptions/<guid>", p.ClientID, a.Scope)
			}
		}
	}
	return nil
}

// Identity issues and checks tokens and SAS. It is safe for concurrent use.
type Identity struct {
	cfg       Config
	tokenKey  []byte // HMAC key for JWTs
	sasKey    []byte // HMAC key for SAS signatures
	principal map[string]*principal
	// dummySecret is compared against when the client is unknown, so that
	// an unknown client costs the same as a wrong secret.
	dummySecret [sha256.Size]byte
	metadata    []byte // the OpenID configuration under Authority
	handler     http.Handler
	throttle    *throttle // failed token requests per (client id, address)
	log         *slog.Logger
}

// principal is a Principal as Identity uses it.
type principal struct {
	clientID string
	secret   [sha256.Size]byte // SHA-256 of the secret, compared in constant time
	roles    map[string]Role   // lower-case subscription id → strongest role
}

// New returns an Identity for cfg, after cfg.Validate.
func New(cfg Config) (*Identity, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.TokenLifetime == 0 {
		cfg.TokenLifetime = defaultTokenLifetime
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.SigningKey = slices.Clone(cfg.SigningKey)
	cfg.Principals = slices.Clone(cfg.Principals)
	i := &Identity{
		cfg: cfg,
		// Separate keys per use, so that no signature made for one purpose
		// can ever be presented for the other.
		tokenKey:  deriveKey(cfg.SigningKey, "deltadisk identity token v1"),
		sasKey:    deriveKey(cfg.SigningKey, "deltadisk identity sas v1"),
		principal: make(map[string]*principal, len(cfg.Principals)),
		throttle:  newThrottle(throttleMaxPairs),
		log:       cfg.Logger,
	}
	i.dummySecret = sha256.Sum256(deriveKey(cfg.SigningKey, "deltadisk identity dummy secret"))
	for _, p := range cfg.Principals {
		roles := make(map[string]Role, len(p.Roles))
		for _, a := range p.Roles {
			sub, _ := subscriptionOf(a.Scope)
			if a.Role.rank() > roles[sub].rank() {
				roles[sub] = a.Role
			}
		}
		i.principal[strings.ToLower(p.ClientID)] = &principal{
			clientID: p.ClientID,
			secret:   sha256.Sum256([]byte(p.ClientSecret)),
			roles:    roles,
		}
	}
	var err error
	if i.metadata, err = i.openIDConfiguration(cfg.Authority); err != nil {
		return nil, err
	}
	i.handler = i.newHandler()
	return i, nil
}

func deriveKey(secret []byte, purpose string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// Caller is an authenticated principal, as Authenticate returns it.
type Caller struct {
	ClientID string // as configured
	TenantID string
	// ExpiresOn is when the caller's token expires.
	ExpiresOn time.Time
	roles     map[string]Role // shared with the principal; never written
}

// Role returns the caller's strongest role on the subscription, and false if
// it has none. subscriptionID is a bare GUID, in any case.
func (c *Caller) Role(subscriptionID string) (Role, bool) {
	r, ok := c.roles[strings.ToLower(subscriptionID)]
	return r, ok
}

// CanRead reports whether the caller holds any role on the subscription.
func (c *Caller) CanRead(subscriptionID string) bool {
	_, ok := c.Role(subscriptionID)
	return ok
}

// CanWrite reports whether the caller is Owner or Contributor on the
// subscription.
func (c *Caller) CanWrite(subscriptionID string) bool {
	r, _ := c.Role(subscriptionID)
	return r == RoleOwner || r == RoleContributor
}

// Subscriptions returns the ids of the subscriptions the caller holds any
// role on, lower-case and sorted.
func (c *Caller) Subscriptions() []string {
	subs := make([]string, 0, len(c.roles))
	for s := range c.roles {
		subs = append(subs, s)
	}
	slices.Sort(subs)
	return subs
}

// subscriptionOf returns the lower-case subscription id of a scope
// "/subscriptions/<guid>".
func subscriptionOf(scope string) (string, bool) {
	const prefix = "/subscriptions/"
	if len(scope) < len(prefix) || !strings.EqualFold(scope[:len(prefix)], prefix) {
		return "", false
	}
	sub := scope[len(prefix):]
	if !isGUID(sub) {
		return "", false
	}
	return strings.ToLower(sub), true
}

// isGUID reports whether s is a GUID in its 36-character form.
func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	_, err := uuid.Parse(s)
	return err == nil
}

// trimAudience is an audience in the form that audiences compare in.
func trimAudience(s string) string {
	return strings.TrimRight(s, "/")
}

// sameAudience reports whether a names the audience b.
func sameAudience(a, b string) bool {
	return trimAudience(a) != "" && strings.EqualFold(trimAudience(a), trimAudience(b))
}
