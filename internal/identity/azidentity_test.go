package identity_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/deltadisk/deltadisk/internal/identity"
)

const (
	audience = "https://management.deltadisk.local/"
	tenant   = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	sub      = "3f2a1b9c-0000-4000-8000-00000000000a"
	clientID = "aaaaaaaa-1111-4111-8111-111111111111"
	secret   = "s3cret+/=0123456789"
)

// server is deltadisk's token service and one protected ARM route on a TLS
// test server, recording the token requests it gets.
type server struct {
	*httptest.Server
	id *identity.Identity

	mu    sync.Mutex
	forms []url.Values // bodies of the token requests
	gets  []string     // paths of the other requests
}

func newServer(t *testing.T) *server {
	t.Helper()
	s := &server{}
	mux := http.NewServeMux()
	s.Server = httptest.NewTLSServer(mux)
	t.Cleanup(s.Close)

	c := identity.DefaultConfig()
	c.Authority = s.URL + "/adfs" // known only once the server listens
	c.Audience = audience
	c.TenantID = tenant
	c.SigningKey = bytes.Repeat([]byte{7}, 32)
	c.Principals = []identity.Principal{{ClientID: clientID, ClientSecret: secret,
		Roles: []identity.Assignment{{Role: identity.RoleContributor, Scope: "/subscriptions/" + sub}}}}
	id, err := identity.New(c)
	if err != nil {
		t.Fatal(err)
	}
	s.id = id
	h := id.Handler()
	mux.HandleFunc("/adfs/", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(b))
			f, _ := url.ParseQuery(string(b))
			s.forms = append(s.forms, f)
		} else {
			s.gets = append(s.gets, r.URL.Path)
		}
		s.mu.Unlock()
		h.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /subscriptions/{sub}", func(w http.ResponseWriter, r *http.Request) {
		c, err := id.Authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", id.Challenge(err))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if !c.CanRead(r.PathValue("sub")) {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		w.Write([]byte(`{"subscriptionId":"` + r.PathValue("sub") + `"}`))
	})
	return s
}

// requests returns what the token service was asked so far.
func (s *server) requests() (forms []url.Values, gets []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.forms), slices.Clone(s.gets)
}

// credential is the Azure SDK's client-secret credential for s. MSAL Go
// treats an authority as ADFS only if its first path segment is "adfs", so
// the tenant must be "adfs" and the authority host the server's root:
// azidentity joins them into <server>/adfs, and MSAL then fetches
// <server>/adfs/.well-known/openid-configuration. A GUID tenant under an
// authority host of <server>/adfs/ is also taken for ADFS, but then fails
// ("ADFS authority doesn't support tenants") because the tenant differs
// from "adfs".
func (s *server) credential(t *testing.T, secret string) *azidentity.ClientSecretCredential {
	t.Helper()
	cred, err := azidentity.NewClientSecretCredential("adfs", clientID, secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions: azcore.ClientOptions{
			Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: s.URL + "/"},
			Transport: s.Client(),
		},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

func TestAzureSDKClientSecretCredential(t *testing.T) {
	tests := []struct {
		name  string
		scope string
	}{
		// What the SDK's ARM clients ask for: the audience plus ".default".
		{"audience.default", audience + ".default"},
		// What az asks for: the audience plus "/.default".
		{"audience/.default", audience + "/.default"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t)
			tok, err := s.credential(t, secret).GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{tc.scope}})
			if err != nil {
				t.Fatalf("GetToken: %v", err)
			}
			forms, gets := s.requests()
			if len(forms) != 1 {
				t.Fatalf("the SDK made %d token requests, want 1", len(forms))
			}
			// MSAL Go appends the OpenID scopes, sends the secret in the body
			// (not Basic) and nothing else of note.
			f := forms[0]
			if got, want := f.Get("scope"), tc.scope+" openid offline_access profile"; got != want {
				t.Errorf("scope = %q, want %q", got, want)
			}
			if f.Get("grant_type") != "client_credentials" || f.Get("client_id") != clientID || f.Get("client_secret") != secret {
				t.Errorf("token request form = %v", f)
			}
			t.Logf("token request: %v; other requests: %v", f, gets)
			if want := "/adfs/.well-known/openid-configuration"; len(gets) != 1 || gets[0] != want {
				t.Errorf("GETs = %v, want [%s]", gets, want)
			}

			r := httptest.NewRequest(http.MethodGet, "/subscriptions/"+sub, nil)
			r.Header.Set("Authorization", "Bearer "+tok.Token)
			c, err := s.id.Authenticate(r)
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if c.ClientID != clientID || !c.CanWrite(sub) {
				t.Errorf("Authenticate() = %+v, want %s with write access", c, clientID)
			}
		})
	}
}

func TestAzureSDKWrongSecret(t *testing.T) {
	s := newServer(t)
	_, err := s.credential(t, "wrong").GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{audience + ".default"}})
	if _, ok := errors.AsType[*azidentity.AuthenticationFailedError](err); !ok || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("GetToken with a wrong secret = %v, want an AuthenticationFailedError with invalid_client", err)
	}
}

// TestAzureSDKPipeline calls a protected route through azcore's bearer
// token policy, as the ARM clients do, and checks that a 401 with
// Challenge's header comes back to the caller instead of confusing it.
func TestAzureSDKPipeline(t *testing.T) {
	s := newServer(t)
	call := func(t *testing.T, cred azcore.TokenCredential) *http.Response {
		t.Helper()
		p := runtime.NewPipeline("test", "v0", runtime.PipelineOptions{
			PerRetry: []policy.Policy{runtime.NewBearerTokenPolicy(cred, []string{audience + ".default"}, nil)},
		}, &policy.ClientOptions{Transport: s.Client()})
		req, err := runtime.NewRequest(t.Context(), http.MethodGet, s.URL+"/subscriptions/"+sub)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := p.Do(req)
		if err != nil {
			t.Fatalf("Do: %v", err)
		}
		return resp
	}
	if resp := call(t, s.credential(t, secret)); resp.StatusCode != http.StatusOK {
		t.Errorf("GET with the SDK's token = %d, want 200", resp.StatusCode)
	}
	bad := staticToken("not-a-token")
	resp := call(t, bad)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("GET with a bad token = %d %q, want 401 with a challenge", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

type staticToken string

func (s staticToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(s), ExpiresOn: time.Now().Add(time.Hour)}, nil
}
