package identity

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// clockSkew is how far apart the clocks of the nodes that issue and check a
// token may be.
const clockSkew = 2 * time.Minute

// AuthError is why a request was not authenticated. Its Code and Message are
// ARM's and safe to show the client; the status is always 401.
type AuthError struct {
	// Code is "AuthenticationFailed" when the Authorization header is
	// missing or malformed, and "InvalidAuthenticationToken" when the token
	// in it is not accepted (expired, forged, wrong audience or issuer).
	Code    string
	Message string
}

func (e *AuthError) Error() string {
	return "identity: " + e.Code + ": " + e.Message
}

// The AuthError codes.
const (
	codeAuthenticationFailed = "AuthenticationFailed"
	codeInvalidToken         = "InvalidAuthenticationToken"
)

func invalidToken(format string, args ...any) *AuthError {
	return &AuthError{Code: codeInvalidToken, Message: fmt.Sprintf(format, args...)}
}

// Authenticate checks r's "Authorization: Bearer <token>": the signature,
// the validity window (allowing a little clock skew), the issuer, the
// audience, the tenant, and that the principal still exists. Its errors are
// *[AuthError].
func (i *Identity) Authenticate(r *http.Request) (*Caller, error) {
	hs := r.Header.Values("Authorization")
	if len(hs) == 0 {
		return nil, &AuthError{Code: codeAuthenticationFailed,
			Message: "Authentication failed. The 'Authorization' header is missing."}
	}
	scheme, tok, _ := strings.Cut(hs[0], " ")
	tok = strings.TrimSpace(tok)
	if len(hs) > 1 || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return nil, &AuthError{Code: codeAuthenticationFailed,
			Message: "Authentication failed. The 'Authorization' header is provided in an invalid format: want 'Bearer <token>'."}
	}

	var c claims
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(i.cfg.Authority),
		jwt.WithLeeway(clockSkew),
		jwt.WithTimeFunc(i.cfg.Now),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	)
	_, err := p.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return i.tokenKey, nil })
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenMalformed):
		// Claims are only checked once the signature is good, so the
		// cases below all concern tokens deltadisk issued.
		return nil, invalidToken("The access token is invalid: it was not issued by this server.")
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, invalidToken("The access token expiry UTC time '%s' is earlier than current UTC time '%s'.",
			c.Expires.UTC().Format(time.RFC3339), i.cfg.Now().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return nil, invalidToken("The access token is not valid yet.")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return nil, invalidToken("The access token is from the wrong issuer '%s'. It must be '%s'.", c.Issuer, i.cfg.Authority)
	default:
		return nil, invalidToken("The access token is invalid.")
	}
	if !sameAudience(c.Audience, i.cfg.Audience) {
		return nil, invalidToken("The access token has been obtained for wrong audience or resource '%s'. It should match '%s'.",
			c.Audience, i.cfg.Audience)
	}
	if !strings.EqualFold(c.TenantID, i.cfg.TenantID) {
		return nil, invalidToken("The access token is for the wrong tenant '%s'.", c.TenantID)
	}
	pr := i.principal[strings.ToLower(c.AppID)]
	if pr == nil {
		return nil, invalidToken("The access token is for client '%s', which is not a principal of this server.", c.AppID)
	}
	return &Caller{ClientID: pr.clientID, TenantID: i.cfg.TenantID, ExpiresOn: c.Expires.UTC(), roles: pr.roles}, nil
}

// Challenge returns the WWW-Authenticate header for a 401 caused by err:
//
//	Bearer authorization_uri="<authority>", error="invalid_token", error_description="..."
//
// ARM sends error="invalid_token" even when the header is missing, and so
// does Challenge. The description has no quotes or backslashes, which azcore
// cannot parse inside a quoted value.
func (i *Identity) Challenge(err error) string {
	desc := "The access token is missing or invalid."
	if ae, ok := errors.AsType[*AuthError](err); ok {
		desc = ae.Message
	}
	desc = strings.Map(func(r rune) rune {
		switch {
		case r == '"':
			return '\''
		case r == '\\', r < ' ', r == 0x7f:
			return ' '
		}
		return r
	}, desc)
	return fmt.Sprintf(`Bearer authorization_uri="%s", error="invalid_token", error_description="%s"`, i.cfg.Authority, desc)
}
