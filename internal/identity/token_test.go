package identity

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// post sends a token request to id's Handler and returns the response.
func post(t *testing.T, id *Identity, path string, form url.Values, edit func(*http.Request)) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if edit != nil {
		edit(r)
	}
	w := httptest.NewRecorder()
	id.Handler().ServeHTTP(w, r)
	return w
}

// tokenFor gets a token for clientID from id's token endpoint.
func tokenFor(t *testing.T, id *Identity, clientID string) string {
	t.Helper()
	secret := map[string]string{ownerID: ownerSecret, readerID: readerSecret}[clientID]
	w := post(t, id, "/adfs/oauth2/token/", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret},
		"scope": {testAudience + "/.default"},
	}, nil)
	var resp tokenResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); w.Code != http.StatusOK || err != nil {
		t.Fatalf("token for %s: %d %s", clientID, w.Code, w.Body)
	}
	return resp.AccessToken
}

// authenticateAs returns the Caller for a fresh token of clientID.
func authenticateAs(t *testing.T, id *Identity, clientID string) *Caller {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/subscriptions", nil)
	r.Header.Set("Authorization", "Bearer "+tokenFor(t, id, clientID))
	c, err := id.Authenticate(r)
	if err != nil {
		t.Fatalf("Authenticate(%s) = %v", clientID, err)
	}
	return c
}

func basic(id, secret string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(id, secret) }
}

func TestTokenEndpoint(t *testing.T) {
	id, log := newTestIdentity(t, nil)
	ok := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {readerID},
		"client_secret": {readerSecret},
		"scope":         {testAudience + ".default"},
	}
	with := func(kv ...string) url.Values {
		f := url.Values{}
		for k, v := range ok {
			f[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				f.Del(kv[i])
			} else {
				f.Set(kv[i], kv[i+1])
			}
		}
		return f
	}
	// basicOnly is ok without client_id and client_secret in the body.
	basicOnly := with("client_id", "", "client_secret", "")
	tests := []struct {
		name      string
		path      string // default: the advertised token endpoint
		form      url.Values
		edit      func(*http.Request)
		wantCode  int
		wantError string // OAuth error code; "" for success
		wantID    string
	}{
		{name: "success", form: ok, wantCode: 200, wantID: readerID},
		{name: "path without slash", path: "/adfs/oauth2/token", form: ok, wantCode: 200, wantID: readerID},
		{name: "az scope form", form: with("scope", testAudience+"/.default"), wantCode: 200, wantID: readerID},
		{name: "audience without slash", form: with("scope", "https://management.deltadisk.local/.default"), wantCode: 200, wantID: readerID},
		{name: "bare audience", form: with("scope", testAudience), wantCode: 200, wantID: readerID},
		{name: "MSAL Go adds OpenID scopes", form: with("scope", testAudience+".default openid offline_access profile"), wantCode: 200, wantID: readerID},
		{name: "v1 resource", form: with("scope", "", "resource", testAudience), wantCode: 200, wantID: readerID},
		{name: "az extras ignored", form: with("client_info", "1", "claims", `{"access_token":{"xms_cc":{"values":["CP1"]}}}`), wantCode: 200, wantID: readerID},
		{name: "client id in another case", form: with("client_id", strings.ToUpper(readerID)), wantCode: 200, wantID: readerID},
		{name: "basic auth", form: basicOnly, edit: basic(readerID, readerSecret), wantCode: 200, wantID: readerID},
		{name: "basic auth form-encoded", form: basicOnly,
			edit: basic(url.QueryEscape(ownerID), url.QueryEscape(ownerSecret)), wantCode: 200, wantID: ownerID},
		{name: "basic auth raw", form: basicOnly, edit: basic(ownerID, ownerSecret), wantCode: 200, wantID: ownerID},
		{name: "basic auth with client_id", form: with("client_secret", ""), edit: basic(readerID, readerSecret), wantCode: 200, wantID: readerID},

		{name: "bad secret", form: with("client_secret", "not-the-secret"), wantCode: 401, wantError: "invalid_client"},
		{name: "other client's secret", form: with("client_secret", ownerSecret), wantCode: 401, wantError: "invalid_client"},
		{name: "unknown client", form: with("client_id", "cccccccc-3333-4333-8333-333333333333"), wantCode: 401, wantError: "invalid_client"},
		{name: "no secret", form: with("client_secret", ""), wantCode: 401, wantError: "invalid_client"},
		{name: "basic auth bad secret", form: basicOnly, edit: basic(readerID, "not-the-secret"), wantCode: 401, wantError: "invalid_client"},
		{name: "basic and body secret", form: ok, edit: basic(readerID, readerSecret), wantCode: 400, wantError: "invalid_request"},
		{name: "basic and other client_id", form: with("client_secret", ""), edit: basic(ownerID, ownerSecret), wantCode: 400, wantError: "invalid_request"},
		{name: "wrong scope", form: with("scope", "https://graph.local//.default"), wantCode: 400, wantError: "invalid_scope"},
		{name: "audience prefix", form: with("scope", "https://management.deltadisk.local.evil/.default"), wantCode: 400, wantError: "invalid_scope"},
		{name: "other scope suffix", form: with("scope", testAudience+"user_impersonation"), wantCode: 400, wantError: "invalid_scope"},
		{name: "wrong resource", form: with("scope", "", "resource", "https://graph.local/"), wantCode: 400, wantError: "invalid_scope"},
		{name: "no scope", form: with("scope", ""), wantCode: 400, wantError: "invalid_request"},
		{name: "only OpenID scopes", form: with("scope", "openid profile"), wantCode: 400, wantError: "invalid_request"},
		{name: "wrong grant type", form: with("grant_type", "password"), wantCode: 400, wantError: "unsupported_grant_type"},
		{name: "no grant type", form: with("grant_type", ""), wantCode: 400, wantError: "invalid_request"},
		{name: "repeated parameter", form: func() url.Values { f := with(); f.Add("scope", "x"); return f }(), wantCode: 400, wantError: "invalid_request"},
		{name: "not a form", form: ok, edit: func(r *http.Request) { r.Header.Set("Content-Type", "application/json") },
			wantCode: 400, wantError: "invalid_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log.Reset()
			path := tc.path
			if path == "" {
				path = "/adfs/oauth2/token/"
			}
			w := post(t, id, path, tc.form, tc.edit)
			if w.Code != tc.wantCode {
				t.Fatalf("POST %s = %d %s, want %d", path, w.Code, w.Body, tc.wantCode)
			}
			if got := w.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
			if got := w.Header().Get("Content-Type"); !strings.HasPrefix(got, "application/json") {
				t.Errorf("Content-Type = %q, want application/json", got)
			}
			for _, secret := range []string{ownerSecret, readerSecret, "not-the-secret"} {
				if strings.Contains(log.String(), secret) {
					t.Errorf("the log has the secret %q:\n%s", secret, log)
				}
			}
			if tc.wantError != "" {
				var e struct {
					Error       string `json:"error"`
					Description string `json:"error_description"`
				}
				if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error != tc.wantError || e.Description == "" {
					t.Errorf("body = %s, want error %q with a description", w.Body, tc.wantError)
				}
				if !strings.Contains(log.String(), "token refused") {
					t.Errorf("log = %q, want a line about the refusal", log)
				}
				return
			}
			var resp struct {
				TokenType    string `json:"token_type"`
				AccessToken  string `json:"access_token"`
				ExpiresIn    int64  `json:"expires_in"`
				ExtExpiresIn int64  `json:"ext_expires_in"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
				t.Fatalf("body %s: %v", w.Body, err)
			}
			if resp.TokenType != "Bearer" || resp.ExpiresIn != 3600 || resp.ExtExpiresIn != 3600 || resp.AccessToken == "" {
				t.Errorf("body = %s, want a Bearer token for 3600 s", w.Body)
			}
			c := tokenClaims(t, resp.AccessToken)
			want := map[string]any{
				"iss": testAuthority, "aud": testAudience, "tid": testTenant, "appid": tc.wantID, "sub": tc.wantID, "oid": tc.wantID,
				"iat": float64(testNow.Unix()), "nbf": float64(testNow.Unix()), "exp": float64(testNow.Add(time.Hour).Unix()),
			}
			for k, v := range want {
				if c[k] != v {
					t.Errorf("claim %s = %v, want %v", k, c[k], v)
				}
			}
			if c["jti"] == "" || c["jti"] == nil {
				t.Errorf("claims %v have no jti", c)
			}
			if !strings.Contains(log.String(), "token issued") {
				t.Errorf("log = %q, want a line about the token", log)
			}
		})
	}
}

// tokenClaims decodes a JWT's claims without checking it.
func tokenClaims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a JWS", jwt)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTokenEndpointMethod(t *testing.T) {
	id, _ := newTestIdentity(t, nil)
	w := httptest.NewRecorder()
	id.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/adfs/oauth2/token/", nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET token endpoint = %d, want 405", w.Code)
	}
}

func TestMetadata(t *testing.T) {
	id, _ := newTestIdentity(t, nil)
	tests := []struct {
		path       string
		wantCode   int
		wantIssuer string
	}{
		{"/adfs/.well-known/openid-configuration", 200, testAuthority},
		{"/adfs/contoso.onmicrosoft.com/.well-known/openid-configuration", 200, "https://deltadisk.test/" + testTenant + "/"},
		{"/adfs/" + strings.ToUpper(testTenant) + "/.well-known/openid-configuration", 200, "https://deltadisk.test/" + testTenant + "/"},
		{"/adfs/" + subA + "/.well-known/openid-configuration", 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			w := httptest.NewRecorder()
			id.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, tc.path, nil))
			if w.Code != tc.wantCode {
				t.Fatalf("GET %s = %d %s, want %d", tc.path, w.Code, w.Body, tc.wantCode)
			}
			if tc.wantCode != 200 {
				return
			}
			var m map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{
				"issuer":                 tc.wantIssuer,
				"token_endpoint":         testAuthority + "/oauth2/token/",
				"authorization_endpoint": testAuthority + "/oauth2/authorize/",
				"jwks_uri":               testAuthority + "/discovery/keys",
			}
			for k, v := range want {
				if m[k] != v {
					t.Errorf("%s = %v, want %q", k, m[k], v)
				}
			}
			// az: tenant_id = issuer.split("/")[3]
			if tc.wantIssuer != testAuthority {
				if got := strings.Split(m["issuer"].(string), "/")[3]; got != testTenant {
					t.Errorf("issuer.split(\"/\")[3] = %q, want %q", got, testTenant)
				}
			}
			// Every URL the metadata names is served.
			for _, k := range []string{"jwks_uri", "authorization_endpoint"} {
				u, _ := url.Parse(m[k].(string))
				w := httptest.NewRecorder()
				id.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, u.Path, nil))
				if w.Code == http.StatusNotFound || !json.Valid(w.Body.Bytes()) {
					t.Errorf("GET %s (%s) = %d %s, want a JSON answer", u.Path, k, w.Code, w.Body)
				}
			}
		})
	}
}
