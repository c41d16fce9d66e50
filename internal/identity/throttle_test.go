package identity

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tokenAttempt asks id for a token for clientID with secret from remote
// (host:port) and returns the status, the Retry-After header and the
// OAuth error code.
func tokenAttempt(t *testing.T, id *Identity, clientID, secret, remote string) (status int, retryAfter, code string) {
	t.Helper()
	w := post(t, id, "/adfs/oauth2/token/", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret},
		"scope": {testAudience + ".default"},
	}, func(r *http.Request) { r.RemoteAddr = remote })
	var body struct{ Error string }
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("token answer %d %q: %v", w.Code, w.Body, err)
	}
	return w.Code, w.Header().Get("Retry-After"), body.Error
}

const (
	guesser   = "192.0.2.1:4444"
	elsewhere = "198.51.100.7:5555"
)

func TestTokenThrottle(t *testing.T) {
	now := testNow
	id, log := newTestIdentity(t, func(c *Config) { c.Now = func() time.Time { return now } })

	// The free failures.
	for i := range throttleFreeFailures {
		if st, ra, _ := tokenAttempt(t, id, readerID, fmt.Sprint("guess", i), guesser); st != 401 || ra != "" {
			t.Fatalf("failure %d = %d Retry-After %q, want 401 without", i+1, st, ra)
		}
	}
	// The next failure is answered as any other, and starts the wait.
	if st, _, _ := tokenAttempt(t, id, readerID, "guess", guesser); st != 401 {
		t.Fatalf("failure %d = %d, want 401", throttleFreeFailures+1, st)
	}
	// Waiting, even the right secret gets 429: a 200 would confirm a guess.
	if st, ra, code := tokenAttempt(t, id, readerID, readerSecret, guesser); st != 429 || ra != "1" || code != "temporarily_unavailable" {
		t.Errorf("right secret while waiting = %d %s Retry-After %q, want 429 temporarily_unavailable Retry-After 1", st, code, ra)
	}
	// The principal from another address is not locked out.
	if st, _, _ := tokenAttempt(t, id, readerID, readerSecret, elsewhere); st != 200 {
		t.Errorf("right secret from another address = %d, want 200", st)
	}
	// Each further failure doubles the wait.
	for _, want := range []string{"2", "4", "8"} {
		ra, _ := strconv.Atoi(tokenRetryAfter(t, id, readerID, guesser))
		now = now.Add(time.Duration(ra) * time.Second)
		if st, _, _ := tokenAttempt(t, id, readerID, "guess", guesser); st != 401 {
			t.Fatalf("failure after the wait = %d, want 401", st)
		}
		if got := tokenRetryAfter(t, id, readerID, guesser); got != want {
			t.Errorf("Retry-After = %q, want %q", got, want)
		}
	}
	if !strings.Contains(log.String(), "next attempt from this address waits") {
		t.Errorf("the log does not say a pair was throttled:\n%s", log)
	}
	// Waited out, the right secret works and clears the failures: the
	// free ones are free again.
	now = now.Add(8 * time.Second)
	if st, _, _ := tokenAttempt(t, id, readerID, readerSecret, guesser); st != 200 {
		t.Fatalf("right secret after the wait = %d, want 200", st)
	}
	for i := range throttleFreeFailures + 1 {
		if st, _, _ := tokenAttempt(t, id, readerID, "guess", guesser); st != 401 {
			t.Fatalf("failure %d after a success = %d, want 401", i+1, st)
		}
	}
	if st, _, _ := tokenAttempt(t, id, readerID, readerSecret, guesser); st != 429 {
		t.Errorf("right secret after %d new failures = %d, want 429", throttleFreeFailures+1, st)
	}
}

// tokenRetryAfter makes an attempt that must be refused as throttled and
// returns its Retry-After.
func tokenRetryAfter(t *testing.T, id *Identity, clientID, remote string) string {
	t.Helper()
	st, ra, _ := tokenAttempt(t, id, clientID, readerSecret, remote)
	if st != 429 {
		t.Fatalf("attempt while waiting = %d, want 429", st)
	}
	return ra
}

func TestTokenThrottleUnknownClient(t *testing.T) {
	// An unknown client id is throttled like a known one: a difference
	// would tell a guesser which ids exist.
	id, _ := newTestIdentity(t, nil)
	for range throttleFreeFailures + 1 {
		tokenAttempt(t, id, "no-such-client", "guess", guesser)
	}
	if st, ra, _ := tokenAttempt(t, id, "no-such-client", "guess", guesser); st != 429 || ra == "" {
		t.Errorf("unknown client after %d failures = %d Retry-After %q, want 429 with Retry-After", throttleFreeFailures+1, st, ra)
	}
}

func TestTokenThrottleLimits(t *testing.T) {
	now := testNow
	id, _ := newTestIdentity(t, func(c *Config) { c.Now = func() time.Time { return now } })
	for range 40 {
		if wait := id.throttle.wait(newPairKey(readerID, guesser), now); wait > 0 {
			now = now.Add(wait)
		}
		tokenAttempt(t, id, readerID, "guess", guesser)
	}
	if got, want := tokenRetryAfter(t, id, readerID, guesser), fmt.Sprint(int(throttleMaxWait/time.Second)); got != want {
		t.Errorf("Retry-After after 40 failures = %s, want the cap %s", got, want)
	}
	// A pair that stops failing is forgotten: its next failure is free.
	now = now.Add(throttleForget)
	for i := range throttleFreeFailures + 1 {
		if st, _, _ := tokenAttempt(t, id, readerID, "guess", guesser); st != 401 {
			t.Fatalf("failure %d an hour later = %d, want 401", i+1, st)
		}
	}
}

func TestThrottleMemoryBound(t *testing.T) {
	const maxPairs = 100
	th := newThrottle(maxPairs)
	now := testNow
	target := newPairKey(readerID, guesser)
	for range throttleFreeFailures + 3 {
		th.fail(target, now)
	}
	// A client cycling through made-up ids, with long ones.
	long := strings.Repeat("x", 60<<10)
	for i := range 20 * maxPairs {
		now = now.Add(time.Millisecond)
		th.fail(newPairKey(fmt.Sprint(i, long), guesser), now)
		if len(th.pairs) > maxPairs {
			t.Fatalf("after %d made-up ids the table holds %d pairs, want at most %d", i+1, len(th.pairs), maxPairs)
		}
	}
	for k := range th.pairs {
		if len(k.client) > throttleMaxClientID {
			t.Fatalf("a pair keeps a client id of %d bytes, want at most %d", len(k.client), throttleMaxClientID)
		}
	}
	// The pair being hammered was not the one dropped to make room.
	if th.wait(target, now) == 0 {
		t.Error("the throttled pair was dropped to make room for made-up ids")
	}
	// Pairs past throttleForget go first, whatever their failures.
	now = now.Add(throttleForget)
	th.fail(newPairKey("fresh", guesser), now)
	if len(th.pairs) != 1 {
		t.Errorf("after an hour, a new failure leaves %d pairs, want 1", len(th.pairs))
	}
}

func TestPairKey(t *testing.T) {
	tests := []struct {
		client, remote string
		want           pairKey
	}{
		{"AbC", "192.0.2.1:1234", pairKey{"abc", "192.0.2.1"}},
		{"abc", "[::ffff:192.0.2.1]:1234", pairKey{"abc", "192.0.2.1"}},
		// One host usually has a whole IPv6 /64.
		{"abc", "[2001:db8:1:2:3:4:5:6]:443", pairKey{"abc", "2001:db8:1:2::"}},
		{"abc", "[2001:db8:1:2::9]:443", pairKey{"abc", "2001:db8:1:2::"}},
		{"abc", "[2001:db8:1:3::9]:443", pairKey{"abc", "2001:db8:1:3::"}},
		{"abc", "not an address", pairKey{"abc", "not an address"}},
		{strings.Repeat("é", 100), "192.0.2.1:1", pairKey{strings.Repeat("é", 64), "192.0.2.1"}},
	}
	for _, tc := range tests {
		if got := newPairKey(tc.client, tc.remote); got != tc.want {
			t.Errorf("newPairKey(%.20q, %q) = %+v, want %+v", tc.client, tc.remote, got, tc.want)
		}
	}
}

// FuzzPairKey checks what newPairKey makes of any client id and address:
// a bounded client id, a key that ignores the port, and for an IP the
// address itself (IPv4) or its /64 (IPv6).
func FuzzPairKey(f *testing.F) {
	f.Add("aaaaaaaa-1111-4111-8111-111111111111", "192.0.2.1:1234")
	f.Add("ABC", "[2001:db8::1]:443")
	f.Add("x", "[::ffff:10.0.0.1]:1")
	f.Add("x", "[fe80::1%eth0]:1")
	f.Add(strings.Repeat("é", 100), "garbage")
	f.Fuzz(func(t *testing.T, client, remote string) {
		k := newPairKey(client, remote)
		if len(k.client) > throttleMaxClientID {
			t.Fatalf("client id of %d bytes kept, want at most %d", len(k.client), throttleMaxClientID)
		}
		host, _, err := net.SplitHostPort(remote)
		if err != nil {
			return
		}
		if other := newPairKey(client, net.JoinHostPort(host, "1")); other != k {
			t.Fatalf("newPairKey(%q) = %+v but with port 1 %+v: the port must not matter", remote, k, other)
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return
		}
		got, err := netip.ParseAddr(k.addr)
		a16 := got.As16()
		switch {
		case err != nil:
			t.Fatalf("address %q of IP %q does not parse: %v", k.addr, host, err)
		case ip.Unmap().Is4() && got != ip.Unmap():
			t.Fatalf("IPv4 %q keyed as %q", host, k.addr)
		case got.Is6() && ([8]byte(a16[8:]) != [8]byte{} || !netip.PrefixFrom(ip, 64).Contains(got)):
			t.Fatalf("IPv6 %q keyed as %q, want its /64", host, k.addr)
		}
	})
}
