package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"time"
)

var (
	// ErrSASMissing means the request carries no SAS signature (sig).
	ErrSASMissing = errors.New("identity: SAS signature missing")
	// ErrSASInvalid means a SAS field is missing, repeated or malformed, or
	// the signature does not match the path and fields.
	ErrSASInvalid = errors.New("identity: SAS invalid")
	// ErrSASExpired means the SAS is authentic but now is outside [st, se].
	ErrSASExpired = errors.New("identity: SAS expired or not yet valid")
)

// SAS is a shared access signature for one blob: who may do what to which
// path, and when. A SAS URL is <public URL><Path>?<SignSAS(s).Encode()>.
type SAS struct {
	// Path is the blob's URL path, e.g. "/g-3f2a.../abcd"; the container
	// names the grant.
	Path    string
	GrantID string
	// Permissions is "r" (read) or "rw" (read and write).
	Permissions string
	// Start and Expiry bound the SAS's validity, inclusive, at second
	// precision in UTC.
	Start, Expiry time.Time
}

// SAS query fields.
const (
	sasVersion    = "2018-03-28" // sv: a storage service version that managed-disk SAS carry
	sasResource   = "b"          // sr: a blob
	sasTimeLayout = "2006-01-02T15:04:05Z"
)

// SignSAS returns the query of s's SAS URL, with Azure's keys: sv, sr=b,
// st, se, sp, si (the grant id, as a stored access policy's id) and sig,
// the base64 HMAC-SHA256 of the path and the other fields. Start and Expiry
// are truncated to the second. It panics if s.Permissions is not "r" or "rw"
// or s.GrantID is empty: such a SAS could never verify.
func (i *Identity) SignSAS(s SAS) url.Values {
	if !validPermissions(s.Permissions) || s.GrantID == "" {
		panic(fmt.Sprintf("identity: SignSAS with permissions %q and grant id %q: want r or rw and an id", s.Permissions, s.GrantID))
	}
	st, se := s.Start.UTC().Format(sasTimeLayout), s.Expiry.UTC().Format(sasTimeLayout)
	return url.Values{
		"sv":  {sasVersion},
		"sr":  {sasResource},
		"st":  {st},
		"se":  {se},
		"sp":  {s.Permissions},
		"si":  {s.GrantID},
		"sig": {i.sasSignature(sasVersion, s.Path, s.GrantID, s.Permissions, st, se)},
	}
}

// VerifySAS checks the SAS in q for a request to path and returns what it
// grants. Keys of q that are not SAS fields (comp, timeout, ...) are
// ignored. It returns [ErrSASMissing] if q has no sig, [ErrSASInvalid] if a
// field is malformed or the signature does not cover exactly path and
// these fields, and [ErrSASExpired] if the SAS is authentic but now is
// outside [st, se]. It does not know about revocation: the caller checks
// that the grant is still active.
func (i *Identity) VerifySAS(path string, q url.Values) (SAS, error) {
	if _, ok := q["sig"]; !ok {
		return SAS{}, ErrSASMissing
	}
	f := make(map[string]string, 7)
	for _, k := range []string{"sv", "sr", "st", "se", "sp", "si", "sig"} {
		switch v := q[k]; {
		case len(v) == 0 || v[0] == "":
			return SAS{}, fmt.Errorf("%w: %s is missing", ErrSASInvalid, k)
		case len(v) > 1:
			return SAS{}, fmt.Errorf("%w: %s is repeated", ErrSASInvalid, k)
		default:
			f[k] = v[0]
		}
	}
	if f["sv"] != sasVersion || f["sr"] != sasResource || !validPermissions(f["sp"]) {
		return SAS{}, fmt.Errorf("%w: sv, sr or sp has a value never signed", ErrSASInvalid)
	}
	st, err := parseSASTime(f["st"])
	if err != nil {
		return SAS{}, fmt.Errorf("%w: st: %v", ErrSASInvalid, err)
	}
	se, err := parseSASTime(f["se"])
	if err != nil {
		return SAS{}, fmt.Errorf("%w: se: %v", ErrSASInvalid, err)
	}
	want := i.sasSignature(f["sv"], path, f["si"], f["sp"], f["st"], f["se"])
	if !hmac.Equal([]byte(f["sig"]), []byte(want)) {
		return SAS{}, fmt.Errorf("%w: signature mismatch", ErrSASInvalid)
	}
	if now := i.cfg.Now(); now.Before(st) || now.After(se) {
		return SAS{}, fmt.Errorf("%w: valid from %s to %s", ErrSASExpired, f["st"], f["se"])
	}
	return SAS{Path: path, GrantID: f["si"], Permissions: f["sp"], Start: st, Expiry: se}, nil
}

// sasSignature is the base64 HMAC of the fields, each length-prefixed so
// that no two different field lists share a signed string.
func (i *Identity) sasSignature(fields ...string) string {
	var b []byte
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	m := hmac.New(sha256.New, i.sasKey)
	m.Write(b)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func validPermissions(sp string) bool {
	return sp == "r" || sp == "rw"
}

// parseSASTime parses t in the one form SignSAS writes. time.Parse alone
// would also take fractional seconds.
func parseSASTime(s string) (time.Time, error) {
	t, err := time.Parse(sasTimeLayout, s)
	if err != nil {
		return time.Time{}, err
	}
	if t.Format(sasTimeLayout) != s {
		return time.Time{}, fmt.Errorf("%q is not in the form %s", s, sasTimeLayout)
	}
	return t, nil
}
