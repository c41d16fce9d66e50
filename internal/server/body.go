package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// errBodyStalled is what a handler's Read returns when the request body
// stopped arriving for Config.BodyReadTimeout.
var errBodyStalled = errors.New("server: request body stopped arriving")

// deadlineRefresh is the fraction of the timeout after which a Read pushes
// the deadline again. Setting a deadline is a syscall on HTTP/1 and a
// message to the connection's goroutine on HTTP/2; a 4 MiB Put Page body
// arrives in hundreds of Reads, and pushing on every one would cost more
// than the read. The price: a stall is cut after between 7/8 and all of
// the timeout.
const deadlineRefresh = 8

// progressBody is a request body with a read-progress deadline: each Read
// may wait at most timeout for data, however long the whole body takes.
// A body that keeps flowing, even slowly, is never cut; one that stops is.
//
// Reads come from one goroutine at a time (io.Reader's contract), so
// pushed needs no lock; eof and stalled are read by the middleware, which
// may run beside a handler's reading goroutine.
type progressBody struct {
	io.ReadCloser
	ctl     *http.ResponseController
	timeout time.Duration
	pushed  time.Time // when the deadline was last set; zero before the first Read
	eof     atomic.Bool
	stalled atomic.Bool
}

func (b *progressBody) Read(p []byte) (int, error) {
	if now := time.Now(); now.Sub(b.pushed) >= b.timeout/deadlineRefresh {
		// An error means the connection has no deadlines (a test's
		// recorder); the body is then read as it is.
		_ = b.ctl.SetReadDeadline(now.Add(b.timeout))
		b.pushed = now
	}
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		// The deadline may stay: net/http clears it for the read that
		// watches an HTTP/1 client going away, and an HTTP/2 stream that
		// has ended ignores it.
		b.eof.Store(true)
	case errors.Is(err, os.ErrDeadlineExceeded):
		b.stalled.Store(true)
		err = fmt.Errorf("%w: no data for %v (%w)", errBodyStalled, b.timeout, err)
	}
	return n, err
}

// unread reports whether the client may still be sending body bytes that
// no handler will read.
func (b *progressBody) unread() bool { return b != nil && !b.eof.Load() }
