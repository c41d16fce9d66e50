package identity

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

func testSAS() SAS {
	return SAS{
		Path:        "/g-3f2a1b9c4d5e/abcd",
		GrantID:     "3f2a1b9c4d5e",
		Permissions: "r",
		Start:       testNow.Add(-time.Minute),
		Expiry:      testNow.Add(time.Hour),
	}
}

func TestSASRoundTrip(t *testing.T) {
	id, _ := newTestIdentity(t, nil)
	tests := []struct {
		name string
		sas  SAS
	}{
		{"read", testSAS()},
		{"read-write", func() SAS { s := testSAS(); s.Permissions = "rw"; return s }()},
		{"now at start", func() SAS { s := testSAS(); s.Start = testNow; return s }()},
		{"now at expiry", func() SAS { s := testSAS(); s.Expiry = testNow; return s }()},
		{"path with spaces", func() SAS { s := testSAS(); s.Path = "/g 1/a b+c"; return s }()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := id.SignSAS(tc.sas)
			for k, want := range map[string]string{"sv": sasVersion, "sr": "b", "sp": tc.sas.Permissions, "si": tc.sas.GrantID,
				"st": tc.sas.Start.Format("2006-01-02T15:04:05Z"), "se": tc.sas.Expiry.Format("2006-01-02T15:04:05Z")} {
				if got := q.Get(k); got != want {
					t.Errorf("SignSAS(): %s = %q, want %q", k, got, want)
				}
			}
			// The query survives a URL, with the request's own parameters added.
			u, err := url.Parse("https://127.0.0.1:8443" + (&url.URL{Path: tc.sas.Path}).EscapedPath() + "?comp=pagelist&" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			got, err := id.VerifySAS(u.Path, u.Query())
			if err != nil {
				t.Fatalf("VerifySAS(%s) = %v", u, err)
			}
			if got != tc.sas {
				t.Errorf("VerifySAS() = %+v, want %+v", got, tc.sas)
			}
		})
	}
}

func TestSASPrecision(t *testing.T) {
	id, _ := newTestIdentity(t, nil)
	s := testSAS()
	s.Start = s.Start.Add(999 * time.Millisecond).In(time.FixedZone("X", 3600))
	got, err := id.VerifySAS(s.Path, id.SignSAS(s))
	if err != nil {
		t.Fatal(err)
	}
	if want := testSAS().Start; got.Start != want {
		t.Errorf("VerifySAS().Start = %v, want %v (UTC, whole seconds)", got.Start, want)
	}
}

func TestVerifySASRejects(t *testing.T) {
	id, _ := newTestIdentity(t, nil)
	other, _ := newTestIdentity(t, func(c *Config) { c.SigningKey = []byte(strings.Repeat("x", 32)) })
	s := testSAS()
	signed := id.SignSAS(s)
	// set returns the signed query with k set to v ("" deletes k).
	set := func(kv ...string) url.Values {
		q := url.Values{}
		for k, v := range signed {
			q[k] = append([]string(nil), v...)
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				q.Del(kv[i])
			} else {
				q.Set(kv[i], kv[i+1])
			}
		}
		return q
	}
	sig := signed.Get("sig")
	flipped := []byte(sig)
	flipped[3] ^= 1
	tests := []struct {
		name string
		path string // default s.Path
		q    url.Values
		now  time.Time
		want error
	}{
		{name: "no sig", q: set("sig", ""), want: ErrSASMissing},
		{name: "nothing", q: url.Values{}, want: ErrSASMissing},
		{name: "empty sig", q: set("sig", "="), want: ErrSASInvalid},
		{name: "other path", path: "/g-3f2a1b9c4d5e/abce", q: signed, want: ErrSASInvalid},
		{name: "other container", path: "/g-other/abcd", q: signed, want: ErrSASInvalid},
		{name: "path case", path: "/G-3f2a1b9c4d5e/abcd", q: signed, want: ErrSASInvalid},
		{name: "sp raised", q: set("sp", "rw"), want: ErrSASInvalid},
		{name: "sp unknown", q: set("sp", "racwd"), want: ErrSASInvalid},
		{name: "se extended", q: set("se", testNow.Add(2*time.Hour).Format(sasTimeLayout)), want: ErrSASInvalid},
		{name: "st moved", q: set("st", testNow.Add(-2*time.Minute).Format(sasTimeLayout)), want: ErrSASInvalid},
		{name: "st with fraction", q: set("st", strings.TrimSuffix(signed.Get("st"), "Z")+".0Z"), want: ErrSASInvalid},
		{name: "se malformed", q: set("se", "tomorrow"), want: ErrSASInvalid},
		{name: "sig flipped", q: set("sig", string(flipped)), want: ErrSASInvalid},
		{name: "sig truncated", q: set("sig", sig[:len(sig)-1]), want: ErrSASInvalid},
		{name: "sig from other key", q: other.SignSAS(s), want: ErrSASInvalid},
		{name: "grant id changed", q: set("si", "3f2a1b9c4d5f"), want: ErrSASInvalid},
		{name: "grant id missing", q: set("si", ""), want: ErrSASInvalid},
		{name: "sv changed", q: set("sv", "2014-02-14"), want: ErrSASInvalid},
		{name: "sr changed", q: set("sr", "c"), want: ErrSASInvalid},
		{name: "sig repeated", q: func() url.Values { q := set(); q.Add("sig", sig); return q }(), want: ErrSASInvalid},
		{name: "sp repeated", q: func() url.Values { q := set(); q.Add("sp", "rw"); return q }(), want: ErrSASInvalid},
		{name: "expired", q: signed, now: s.Expiry.Add(time.Second), want: ErrSASExpired},
		{name: "not yet valid", q: signed, now: s.Start.Add(-time.Second), want: ErrSASExpired},
		{name: "expired and tampered", q: set("sp", "rw"), now: s.Expiry.Add(time.Second), want: ErrSASInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := testNow
			if !tc.now.IsZero() {
				now = tc.now
			}
			id.cfg.Now = func() time.Time { return now }
			defer func() { id.cfg.Now = func() time.Time { return testNow } }()
			path := tc.path
			if path == "" {
				path = s.Path
			}
			got, err := id.VerifySAS(path, tc.q)
			if !errors.Is(err, tc.want) {
				t.Fatalf("VerifySAS(%q, %s) = %+v, %v, want %v", path, tc.q.Encode(), got, err, tc.want)
			}
			if got != (SAS{}) {
				t.Errorf("VerifySAS() = %+v with error %v, want the zero SAS", got, err)
			}
			if !strings.HasPrefix(err.Error(), "identity: ") {
				t.Errorf("error %q lacks the prefix \"identity: \"", err)
			}
		})
	}
}

func TestSignSASPanics(t *testing.T) {
	id, _ := newTestIdentity(t, nil)
	for _, s := range []SAS{{Path: "/c/abcd", GrantID: "g", Permissions: "w"}, {Path: "/c/abcd", Permissions: "r"}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("SignSAS(%+v) did not panic", s)
				}
			}()
			id.SignSAS(s)
		}()
	}
}

// FuzzVerifySAS checks that VerifySAS never panics, and accepts a query only
// if its SAS fields are exactly what SignSAS wrote for that path.
func FuzzVerifySAS(f *testing.F) {
	id, err := New(testConfig())
	if err != nil {
		f.Fatal(err)
	}
	s := testSAS()
	f.Add(s.Path, id.SignSAS(s).Encode())
	f.Add(s.Path, "comp=pagelist&"+id.SignSAS(s).Encode()+"&timeout=30")
	rw := s
	rw.Permissions, rw.Path = "rw", "/g-upload/abcd"
	f.Add(rw.Path, id.SignSAS(rw).Encode())
	f.Add(s.Path, strings.Replace(id.SignSAS(s).Encode(), "sp=r", "sp=rw", 1))
	f.Add(s.Path, "sig=&sv=&sr=&st=&se=&sp=&si=")
	f.Add(s.Path, "sig=%ZZ;;&&==")
	f.Add("", "")

	f.Fuzz(func(t *testing.T, path, rawQuery string) {
		q, _ := url.ParseQuery(rawQuery) // a partial parse is what a server sees too
		got, err := id.VerifySAS(path, q)
		if err != nil {
			if !errors.Is(err, ErrSASMissing) && !errors.Is(err, ErrSASInvalid) && !errors.Is(err, ErrSASExpired) {
				t.Fatalf("VerifySAS() = %v, want one of the SAS errors", err)
			}
			return
		}
		if got.Path != path {
			t.Fatalf("VerifySAS(%q) accepted a SAS for path %q", path, got.Path)
		}
		want := id.SignSAS(got)
		for k, v := range want {
			if len(q[k]) != 1 || q[k][0] != v[0] {
				t.Fatalf("VerifySAS(%q, %q) accepted %s=%q, but SignSAS(%+v) writes %q", path, rawQuery, k, q[k], got, v[0])
			}
		}
	})
}
