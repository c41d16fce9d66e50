package identity

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// The token endpoint's throttle. A few failures cost nothing (a typo, a
// client retrying with a stale secret); after them, each failure makes the
// (client id, source address) pair wait twice as long as the one before,
// up to throttleMaxWait, before its next attempt is even checked. Attempts
// while it waits get 429 with Retry-After, right secret or not: otherwise
// the 429 would tell a guesser that the secret it just sent is right. The
// same client from another address is not affected, so a guesser cannot
// lock the real principal out; a success clears the pair.
//
// A guesser of a 64-hex-digit generated secret gets nowhere either way;
// the throttle is for configured secrets, which are people's choice.
const (
	throttleFreeFailures = 5
	throttleFirstWait    = time.Second
	throttleMaxWait      = 5 * time.Minute
	// throttleForget drops a pair that has not failed for this long: its
	// next failure starts over. It exceeds throttleMaxWait so that no
	// pair is forgotten while it waits.
	throttleForget = time.Hour
	// throttleMaxPairs bounds the table (about 300 bytes a pair). Unknown
	// client ids count like known ones (a difference would tell which ids
	// exist), so a client cycling through made-up ids fills it; see
	// makeRoom for who goes then.
	throttleMaxPairs = 10000
	// throttleMaxClientID bounds the client id kept per pair: ids are
	// GUIDs or short names, and a 60 KiB one is only there to use memory.
	throttleMaxClientID = 128
	// throttleSweepEvery is how often a full table is swept for pairs to
	// forget; a sweep walks the whole table.
	throttleSweepEvery = time.Minute
	// throttleSample is how many pairs a full table compares to choose
	// one to drop.
	throttleSample = 32
)

// pairKey names a (client id, source address) pair.
type pairKey struct {
	client string // lower-case, at most throttleMaxClientID bytes
	addr   string // the source IP; for IPv6 its /64, which one host usually holds whole
}

// newPairKey returns the key of a request from remoteAddr (host:port, as
// http.Request.RemoteAddr) for clientID.
func newPairKey(clientID, remoteAddr string) pairKey {
	id := strings.ToLower(clientID)
	if len(id) > throttleMaxClientID {
		id = id[:throttleMaxClientID]
	}
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	addr := host
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if ip.Is6() {
			ip = netip.PrefixFrom(ip, 64).Masked().Addr()
		}
		addr = ip.String()
	}
	return pairKey{client: id, addr: addr}
}

// failures is a pair's record.
type failures struct {
	n     int       // failures since the last success or forgetting
	last  time.Time // the latest failure
	until time.Time // no attempt is checked before this
}

// throttle is the table of pairs with failures. It is safe for concurrent
// use.
type throttle struct {
	mu       sync.Mutex
	pairs    map[pairKey]*failures
	maxPairs int
	swept    time.Time // the last sweep for pairs to forget
}

func newThrottle(maxPairs int) *throttle {
	return &throttle{pairs: make(map[pairKey]*failures), maxPairs: maxPairs}
}

// wait returns how long k must still wait before an attempt of its is
// checked; 0 means now.
func (t *throttle) wait(k pairKey, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.pairs[k]
	if f == nil || now.Sub(f.last) >= throttleForget {
		return 0
	}
	return max(f.until.Sub(now), 0)
}

// fail records a failed attempt of k and returns the wait it now has
// before its next attempt.
func (t *throttle) fail(k pairKey, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.pairs[k]
	switch {
	case f == nil:
		t.makeRoom(now)
		f = new(failures)
		t.pairs[k] = f
	case now.Sub(f.last) >= throttleForget:
		*f = failures{}
	}
	f.n++
	f.last = now
	if f.n <= throttleFreeFailures {
		return 0
	}
	// Doubling from throttleFirstWait; the shift is capped long before
	// it could overflow.
	wait := min(throttleFirstWait<<min(f.n-throttleFreeFailures-1, 20), throttleMaxWait)
	f.until = now.Add(wait)
	return wait
}

// succeed forgets k's failures.
func (t *throttle) succeed(k pairKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.pairs, k)
}

// makeRoom makes room for one more pair in a full table: it forgets the
// pairs whose time has passed (at most once per throttleSweepEvery, since
// a sweep walks the table) and, if the table is still full, drops the pair
// with the fewest failures of a sample. A client cycling through made-up
// ids makes pairs of one failure each, so those go first, and the pairs a
// guesser has been hammering (the ones that must not be reset) stay.
// Map iteration starts at a random place, which makes the sample.
func (t *throttle) makeRoom(now time.Time) {
	if len(t.pairs) < t.maxPairs {
		return
	}
	if now.Sub(t.swept) >= throttleSweepEvery {
		t.swept = now
		for k, f := range t.pairs {
			if now.Sub(f.last) >= throttleForget {
				delete(t.pairs, k)
			}
		}
	}
	for len(t.pairs) >= t.maxPairs {
		var victim pairKey
		var least *failures
		seen := 0
		for k, f := range t.pairs {
			if least == nil || f.n < least.n || f.n == least.n && f.last.Before(least.last) {
				victim, least = k, f
			}
			if seen++; seen == throttleSample {
				break
			}
		}
		delete(t.pairs, victim)
	}
}
