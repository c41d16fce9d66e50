package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// Paths under the authority. The token endpoint keeps its trailing slash
// because clients POST to token_endpoint verbatim; the form without it is
// served too.
const (
	metadataPath  = "/.well-known/openid-configuration"
	tokenPath     = "/oauth2/token/"
	authorizePath = "/oauth2/authorize/"
	keysPath      = "/discovery/keys"
)

// maxTokenRequest bounds a token request's body.
const maxTokenRequest = 64 << 10

// Handler serves the token service under the authority's path:
//
//	GET  /adfs/.well-known/openid-configuration           OpenID metadata; issuer = Authority
//	GET  /adfs/{tenant}/.well-known/openid-configuration  az's lookup of a --tenant that is not a GUID
//	POST /adfs/oauth2/token/ (and without the slash)      client-credentials grant
//	GET  /adfs/discovery/keys                             jwks_uri: an empty key set (tokens are HMAC-signed)
//	GET  /adfs/oauth2/authorize/                          named by the metadata; refuses every request
//
// The caller mounts it with mux.Handle("/adfs/", h).
func (i *Identity) Handler() http.Handler {
	return i.handler
}

func (i *Identity) newHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+adfsPath+metadataPath, i.serveMetadata)
	mux.HandleFunc("GET "+adfsPath+"/{tenant}"+metadataPath, i.serveTenantMetadata)
	mux.HandleFunc("POST "+adfsPath+tokenPath+"{$}", i.serveToken)
	mux.HandleFunc("POST "+strings.TrimSuffix(adfsPath+tokenPath, "/"), i.serveToken)
	mux.HandleFunc("GET "+adfsPath+keysPath, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string][]any{"keys": {}})
	})
	authorize := func(w http.ResponseWriter, r *http.Request) {
		writeOAuthError(w, http.StatusBadRequest, "unsupported_response_type",
			"deltadisk issues tokens only to service principals, by the client_credentials grant at the token endpoint")
	}
	mux.HandleFunc("GET "+adfsPath+authorizePath+"{$}", authorize)
	mux.HandleFunc("GET "+strings.TrimSuffix(adfsPath+authorizePath, "/"), authorize)
	return mux
}

// openIDConfiguration is the OpenID metadata whose issuer is issuer. MSAL
// Python needs authorization_endpoint and token_endpoint, and takes the
// tenant from token_endpoint's first path segment ("adfs"); MSAL Go needs
// those two and issuer, whose scheme and host must be the authority's.
func (i *Identity) openIDConfiguration(issuer string) ([]byte, error) {
	a := i.cfg.Authority
	return json.Marshal(map[string]any{
		"issuer":                                issuer,
		"access_token_issuer":                   a,
		"authorization_endpoint":                a + authorizePath,
		"token_endpoint":                        a + tokenPath,
		"jwks_uri":                              a + keysPath,
		"grant_types_supported":                 []string{"client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "client_secret_basic"},
		"scopes_supported":                      []string{trimAudience(i.cfg.Audience) + "/.default"},
	})
}

func (i *Identity) serveMetadata(w http.ResponseWriter, r *http.Request) {
	writeRawJSON(w, http.StatusOK, i.metadata)
}

// serveTenantMetadata answers az's tenant lookup: for a --tenant that is not
// a GUID, az 2.45 GETs {authority}/{tenant}/.well-known/openid-configuration
// and takes issuer.split("/")[3] as the tenant id, so the issuer here is
// "<scheme>://<host>/<tenant id>/", as Entra ID's is. With a single tenant,
// every name resolves to it; a GUID names it only if it is its id.
func (i *Identity) serveTenantMetadata(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	if isGUID(tenant) && !strings.EqualFold(tenant, i.cfg.TenantID) {
		writeOAuthError(w, http.StatusNotFound, "invalid_tenant", fmt.Sprintf("tenant %q was not found", tenant))
		return
	}
	u, _ := url.Parse(i.cfg.Authority) // checked by Validate
	body, err := i.openIDConfiguration(u.Scheme + "://" + u.Host + "/" + strings.ToLower(i.cfg.TenantID) + "/")
	if err != nil {
		writeOAuthError(w, http.StatusInternalServerError, "server_error", "")
		return
	}
	writeRawJSON(w, http.StatusOK, body)
}

// tokenResponse is a successful token endpoint answer (RFC 6749 §5.1).
type tokenResponse struct {
	TokenType    string `json:"token_type"`
	AccessToken  string `json:"access_token"`
	ExpiresIn    int64  `json:"expires_in"`
	ExtExpiresIn int64  `json:"ext_expires_in"`
}

// oauthError is a failed token request (RFC 6749 §5.2). az prints its
// description.
type oauthError struct {
	status      int
	code        string
	description string
	logReason   string        // for the log only: why, beyond what the client is told
	retryAfter  time.Duration // for a 429: how long the client must wait
}

func (i *Identity) serveToken(w http.ResponseWriter, r *http.Request) {
	clientID, tok, exp, oerr := i.token(w, r)
	if oerr != nil {
		i.log.LogAttrs(r.Context(), slog.LevelWarn, "token refused",
			slog.String("client_id", truncate(clientID, 100)),
			slog.String("code", oerr.code),
			slog.String("err", oerr.logReason),
			slog.String("remote", r.RemoteAddr))
		switch oerr.status {
		case http.StatusUnauthorized:
			if _, _, basic := r.BasicAuth(); basic {
				w.Header().Set("WWW-Authenticate", `Basic realm="deltadisk"`)
			}
		case http.StatusTooManyRequests:
			w.Header().Set("Retry-After", strconv.FormatInt(retryAfterSeconds(oerr.retryAfter), 10))
		}
		writeOAuthError(w, oerr.status, oerr.code, oerr.description)
		return
	}
	i.log.LogAttrs(r.Context(), slog.LevelInfo, "token issued",
		slog.String("client_id", clientID),
		slog.Time("expires", exp),
		slog.String("remote", r.RemoteAddr))
	w.Header().Set("Pragma", "no-cache")
	secs := int64(i.cfg.TokenLifetime / time.Second)
	writeJSON(w, http.StatusOK, tokenResponse{
		TokenType:    "Bearer",
		AccessToken:  tok,
		ExpiresIn:    secs,
		ExtExpiresIn: secs,
	})
}

// token handles a client-credentials request. It returns the client id as
// presented (for the log) and either a token or why not.
func (i *Identity) token(w http.ResponseWriter, r *http.Request) (clientID, token string, exp time.Time, oerr *oauthError) {
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenRequest)
	if err := r.ParseForm(); err != nil {
		// Not err itself: a malformed escape it quotes may be part of a secret.
		return "", "", exp, invalidRequest("The request body must be application/x-www-form-urlencoded.", "malformed or oversized form")
	}
	form := r.PostForm
	for k, v := range form {
		if len(v) > 1 {
			return "", "", exp, invalidRequest(fmt.Sprintf("The parameter %q is repeated.", truncate(k, 40)), "")
		}
	}

	clientID = form.Get("client_id")
	secret, hasSecret := form.Get("client_secret"), form.Has("client_secret")
	if id, sec, ok := r.BasicAuth(); ok {
		// RFC 6749 §2.3.1: both parts are form-encoded before the Basic
		// encoding. Clients that skip that send them raw: if the decoded
		// pair is not a client's, the raw pair is tried.
		decID, decSecret := formDecode(id), formDecode(sec)
		switch {
		case hasSecret:
			return clientID, "", exp, invalidRequest("The client authenticated with more than one method.", "")
		case clientID != "" && clientID != id && clientID != decID:
			return clientID, "", exp, invalidRequest("client_id does not match the Authorization header.", "")
		}
		clientID, secret, hasSecret = decID, decSecret, true
		if decID != id || decSecret != sec {
			if _, err := i.checkClient(decID, decSecret); err != nil {
				clientID, secret = id, sec
			}
		}
	}

	switch gt := form.Get("grant_type"); gt {
	case "client_credentials":
	case "":
		return clientID, "", exp, invalidRequest("The request must have a grant_type.", "")
	default:
		return clientID, "", exp, &oauthError{status: http.StatusBadRequest, code: "unsupported_grant_type",
			description: fmt.Sprintf("The grant type %q is not supported: deltadisk supports client_credentials only.", truncate(gt, 40))}
	}
	if clientID == "" || !hasSecret {
		return clientID, "", exp, &oauthError{status: http.StatusUnauthorized, code: "invalid_client",
			description: "The request must have client_id and client_secret.", logReason: "no client credentials"}
	}
	pair := newPairKey(clientID, r.RemoteAddr)
	if wait := i.throttle.wait(pair, i.cfg.Now()); wait > 0 {
		return clientID, "", exp, throttled(wait)
	}
	p, err := i.checkClient(clientID, secret)
	if err != nil {
		if wait := i.throttle.fail(pair, i.cfg.Now()); wait > 0 {
			err.logReason += fmt.Sprintf("; its next attempt from this address waits %v", wait)
		}
		return clientID, "", exp, err
	}
	i.throttle.succeed(pair)
	if err := i.checkResource(form); err != nil {
		return clientID, "", exp, err
	}
	token, exp, sErr := i.issue(p)
	if sErr != nil {
		return clientID, "", exp, &oauthError{status: http.StatusInternalServerError, code: "server_error", logReason: sErr.Error()}
	}
	return p.clientID, token, exp, nil
}

// checkClient returns the principal whose id and secret these are. Unknown
// clients and wrong secrets get the same answer in about the same time.
func (i *Identity) checkClient(clientID, secret string) (*principal, *oauthError) {
	got := sha256.Sum256([]byte(secret))
	p := i.principal[strings.ToLower(clientID)]
	want := i.dummySecret
	if p != nil {
		want = p.secret
	}
	if !hmac.Equal(got[:], want[:]) || p == nil {
		reason := "wrong client secret"
		if p == nil {
			reason = "unknown client"
		}
		return nil, &oauthError{status: http.StatusUnauthorized, code: "invalid_client",
			description: "Invalid client credentials: the client id is unknown or the client secret is wrong.", logReason: reason}
	}
	return p, nil
}

// checkResource accepts a request for the audience, named by scope (v2:
// "<audience>/.default", "<audience>//.default" as az sends it when the
// audience ends in "/", or the bare audience) and/or resource (v1). The
// OpenID scopes MSAL adds (openid, profile, offline_access) are ignored.
func (i *Identity) checkResource(form url.Values) *oauthError {
	named := false
	if form.Has("resource") {
		res := form.Get("resource")
		if !sameAudience(res, i.cfg.Audience) {
			return invalidScope(res, i.cfg.Audience)
		}
		named = true
	}
	for s := range strings.FieldsSeq(form.Get("scope")) {
		switch s {
		case "openid", "profile", "offline_access":
			continue
		}
		if !sameAudience(strings.TrimSuffix(s, "/.default"), i.cfg.Audience) {
			return invalidScope(s, i.cfg.Audience)
		}
		named = true
	}
	if !named {
		return invalidRequest(fmt.Sprintf("The request must have a scope, such as %s/.default.", trimAudience(i.cfg.Audience)), "")
	}
	return nil
}

// throttled is the answer to an attempt of a (client id, address) pair
// that has failed too often (see throttle.go), in Entra ID's words for
// throttling.
func throttled(wait time.Duration) *oauthError {
	return &oauthError{status: http.StatusTooManyRequests, code: "temporarily_unavailable",
		description: fmt.Sprintf("Too many failed sign-ins for this client from this address. Retry after %d seconds.", retryAfterSeconds(wait)),
		logReason:   "repeated failures from this address", retryAfter: wait}
}

// retryAfterSeconds is d in whole seconds, rounded up: a client that waits
// exactly that long is let in.
func retryAfterSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

func invalidScope(got, audience string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: "invalid_scope",
		description: fmt.Sprintf("The scope %q is not offered: ask for %s/.default.", truncate(got, 200), trimAudience(audience))}
}

func invalidRequest(description, reason string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: "invalid_request", description: description, logReason: reason}
}

// claims are an access token's claims, named as Entra ID v1 tokens name
// them. aud is a single string, as in Entra ID tokens.
type claims struct {
	Issuer    string           `json:"iss"`
	Audience  string           `json:"aud"`
	Subject   string           `json:"sub"`
	AppID     string           `json:"appid"`
	ObjectID  string           `json:"oid"`
	TenantID  string           `json:"tid"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	Expires   *jwt.NumericDate `json:"exp"`
	ID        string           `json:"jti"`
	Version   string           `json:"ver"`
}

var _ jwt.Claims = claims{}

func (c claims) GetExpirationTime() (*jwt.NumericDate, error) { return c.Expires, nil }
func (c claims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt, nil }
func (c claims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore, nil }
func (c claims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c claims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c claims) GetAudience() (jwt.ClaimStrings, error)       { return jwt.ClaimStrings{c.Audience}, nil }

// issue returns a new access token for p and its expiry.
func (i *Identity) issue(p *principal) (string, time.Time, error) {
	now := i.cfg.Now().UTC()
	exp := now.Add(i.cfg.TokenLifetime)
	c := claims{
		Issuer:    i.cfg.Authority,
		Audience:  i.cfg.Audience,
		Subject:   p.clientID,
		AppID:     p.clientID,
		ObjectID:  p.clientID,
		TenantID:  i.cfg.TenantID,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		Expires:   jwt.NewNumericDate(exp),
		ID:        uuid.NewString(),
		Version:   "1.0",
	}
	tok, err := i.sign(c)
	return tok, exp.Truncate(time.Second), err
}

func (i *Identity) sign(c claims) (string, error) {
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(i.tokenKey)
}

// formDecode undoes application/x-www-form-urlencoded, or returns s if it is
// not validly encoded.
func formDecode(s string) string {
	d, err := url.QueryUnescape(s)
	if err != nil {
		return s
	}
	return d
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func writeOAuthError(w http.ResponseWriter, status int, code, description string) {
	body := map[string]string{"error": code}
	if description != "" {
		body["error_description"] = description
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("identity: marshal %T: %v", v, err)) // only fixed types reach here
	}
	writeRawJSON(w, status, b)
}

func writeRawJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(body)
}
