package identity

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// validClaims are the claims the token endpoint would issue to the reader.
func validClaims() claims {
	return claims{
		Issuer:    testAuthority,
		Audience:  testAudience,
		Subject:   readerID,
		AppID:     readerID,
		ObjectID:  readerID,
		TenantID:  testTenant,
		IssuedAt:  jwt.NewNumericDate(testNow),
		NotBefore: jwt.NewNumericDate(testNow),
		Expires:   jwt.NewNumericDate(testNow.Add(time.Hour)),
		ID:        uuid.NewString(),
		Version:   "1.0",
	}
}

func TestAuthenticate(t *testing.T) {
	id, _ := newTestIdentity(t, nil)
	sign := func(edit func(*claims)) string {
		c := validClaims()
		if edit != nil {
			edit(&c)
		}
		tok, err := id.sign(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	other, _ := newTestIdentity(t, func(c *Config) { c.SigningKey = []byte(strings.Repeat("x", 32)) })
	forged, err := other.sign(validClaims())
	if err != nil {
		t.Fatal(err)
	}
	valid := sign(nil)
	parts := strings.Split(valid, ".")
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, validClaims()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		header   []string // Authorization header values
		now      time.Time
		wantCode string // "" for success
	}{
		{name: "valid", header: []string{"Bearer " + valid}},
		{name: "scheme in lower case", header: []string{"bearer " + valid}},
		{name: "from the token endpoint", header: []string{"Bearer " + tokenFor(t, id, readerID)}},
		{name: "audience without trailing slash", header: []string{"Bearer " + sign(func(c *claims) { c.Audience = "https://management.deltadisk.local" })}},
		{name: "audience with two slashes", header: []string{"Bearer " + sign(func(c *claims) { c.Audience = testAudience + "/" })}},
		{name: "within clock skew after expiry", header: []string{"Bearer " + valid}, now: testNow.Add(time.Hour + clockSkew - time.Second)},
		{name: "within clock skew before issue", header: []string{"Bearer " + valid}, now: testNow.Add(-clockSkew + time.Second)},

		{name: "missing header", wantCode: "AuthenticationFailed"},
		{name: "empty header", header: []string{""}, wantCode: "AuthenticationFailed"},
		{name: "basic scheme", header: []string{"Basic dXNlcjpwYXNz"}, wantCode: "AuthenticationFailed"},
		{name: "no token", header: []string{"Bearer "}, wantCode: "AuthenticationFailed"},
		{name: "token without scheme", header: []string{valid}, wantCode: "AuthenticationFailed"},
		{name: "two headers", header: []string{"Bearer " + valid, "Bearer " + valid}, wantCode: "AuthenticationFailed"},
		{name: "not a JWT", header: []string{"Bearer not-a-jwt"}, wantCode: "InvalidAuthenticationToken"},
		{name: "tampered claims", header: []string{"Bearer " + parts[0] + "." + strings.Split(sign(func(c *claims) { c.AppID = ownerID }), ".")[1] + "." + parts[2]},
			wantCode: "InvalidAuthenticationToken"},
		{name: "expired", header: []string{"Bearer " + valid}, now: testNow.Add(time.Hour + clockSkew + time.Second), wantCode: "InvalidAuthenticationToken"},
		{name: "not yet valid", header: []string{"Bearer " + valid}, now: testNow.Add(-clockSkew - time.Second), wantCode: "InvalidAuthenticationToken"},
		{name: "no expiry", header: []string{"Bearer " + sign(func(c *claims) { c.Expires = nil })}, wantCode: "InvalidAuthenticationToken"},
		{name: "forged with another key", header: []string{"Bearer " + forged}, wantCode: "InvalidAuthenticationToken"},
		{name: "alg none", header: []string{"Bearer " + none}, wantCode: "InvalidAuthenticationToken"},
		{name: "wrong audience", header: []string{"Bearer " + sign(func(c *claims) { c.Audience = "https://graph.local/" })}, wantCode: "InvalidAuthenticationToken"},
		{name: "other issuer", header: []string{"Bearer " + sign(func(c *claims) { c.Issuer = "https://other.test/adfs" })}, wantCode: "InvalidAuthenticationToken"},
		{name: "other tenant", header: []string{"Bearer " + sign(func(c *claims) { c.TenantID = subA })}, wantCode: "InvalidAuthenticationToken"},
		{name: "unknown principal", header: []string{"Bearer " + sign(func(c *claims) { c.AppID = "gone" })}, wantCode: "InvalidAuthenticationToken"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := testNow
			if !tc.now.IsZero() {
				now = tc.now
			}
			id.cfg.Now = func() time.Time { return now }
			defer func() { id.cfg.Now = func() time.Time { return testNow } }()

			r := httptest.NewRequest(http.MethodGet, "/subscriptions", nil)
			for _, h := range tc.header {
				r.Header.Add("Authorization", h)
			}
			c, err := id.Authenticate(r)
			if tc.wantCode == "" {
				if err != nil {
					t.Fatalf("Authenticate() = %v, want success", err)
				}
				if c.ClientID != readerID || c.TenantID != testTenant || !c.ExpiresOn.Equal(testNow.Add(time.Hour)) {
					t.Errorf("Authenticate() = %+v, want the reader until %v", c, testNow.Add(time.Hour))
				}
				return
			}
			ae, ok := errors.AsType[*AuthError](err)
			if !ok || ae.Code != tc.wantCode || ae.Message == "" {
				t.Fatalf("Authenticate() = %v, %v, want an *AuthError with code %s", c, err, tc.wantCode)
			}
			if c != nil {
				t.Errorf("Authenticate() returned a caller with the error %v", err)
			}
			checkChallenge(t, id.Challenge(err), ae.Message)
		})
	}
}

// challengeRE is what azcore's BearerTokenPolicy parses a challenge with.
var challengeRE = regexp.MustCompile(`(\w+)="([^"]*)"`)

func checkChallenge(t *testing.T, ch, msg string) {
	t.Helper()
	if !strings.HasPrefix(ch, "Bearer ") {
		t.Errorf("Challenge() = %q, want a Bearer challenge", ch)
	}
	params := map[string]string{}
	for _, m := range challengeRE.FindAllStringSubmatch(ch, -1) {
		params[m[1]] = m[2]
	}
	if params["authorization_uri"] != testAuthority || params["error"] != "invalid_token" || params["error_description"] == "" {
		t.Errorf("Challenge() = %q: params %v, want authorization_uri, error=invalid_token and a description", ch, params)
	}
	if want := strings.ReplaceAll(msg, `"`, "'"); params["error_description"] != want {
		t.Errorf("Challenge() description = %q, want %q", params["error_description"], want)
	}
}

func TestChallenge(t *testing.T) {
	id, _ := newTestIdentity(t, nil)
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"auth error", &AuthError{Code: "InvalidAuthenticationToken", Message: "The access token is invalid."},
			`Bearer authorization_uri="https://deltadisk.test/adfs", error="invalid_token", error_description="The access token is invalid."`},
		{"quotes and control characters", &AuthError{Code: "InvalidAuthenticationToken", Message: "a \"b\"\\c\r\nd"},
			`Bearer authorization_uri="https://deltadisk.test/adfs", error="invalid_token", error_description="a 'b' c  d"`},
		{"other error", errors.New("boom"),
			`Bearer authorization_uri="https://deltadisk.test/adfs", error="invalid_token", error_description="The access token is missing or invalid."`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := id.Challenge(tc.err); got != tc.want {
				t.Errorf("Challenge(%v) = %s, want %s", tc.err, got, tc.want)
			}
		})
	}
}
