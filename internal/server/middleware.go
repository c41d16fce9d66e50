package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
)

// The request id headers, as Azure's clients and ARM name them.
const (
	// HeaderClientRequestID is the id a client may send; when valid it
	// becomes the request id, so the client's and server's logs match.
	HeaderClientRequestID = "x-ms-client-request-id"
	// HeaderRequestID carries the request id in every response. Handlers
	// below server read it back with w.Header().Get(HeaderRequestID).
	HeaderRequestID = "x-ms-request-id"
	// HeaderCorrelationRequestID carries the request id too, as ARM does.
	HeaderCorrelationRequestID = "x-ms-correlation-request-id"
)

// maxRequestIDLen bounds a client-sent request id; a longer one, or one
// with a byte outside printable ASCII, is replaced by a fresh UUID rather
// than copied into every log line and response.
const maxRequestIDLen = 128

type requestIDKey struct{}

// WithRequestID returns a copy of ctx that carries id as its request id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id ctx carries, or "" if none.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// requestID returns the client's request id if it is usable, else a new
// UUID.
func requestID(r *http.Request) string {
	id := r.Header.Get(HeaderClientRequestID)
	if id == "" || len(id) > maxRequestIDLen {
		return uuid.NewString()
	}
	for i := range len(id) {
		if id[i] <= ' ' || id[i] > '~' {
			return uuid.NewString()
		}
	}
	return id
}

// middleware gives every request an id, recovers its panics, counts it
// and logs one line for it.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := requestID(r)
		h := w.Header()
		h.Set(HeaderRequestID, id)
		h.Set(HeaderCorrelationRequestID, id)
		if id == r.Header.Get(HeaderClientRequestID) {
			h.Set(HeaderClientRequestID, id) // echoed, as ARM does
		}
		r = r.WithContext(WithRequestID(r.Context(), id))
		op := r.Method + " " + r.URL.Path
		rw := &responseWriter{ResponseWriter: w, r: r, id: id, timeout: s.cfg.BodyReadTimeout}
		if r.Body != nil && r.Body != http.NoBody {
			rw.body = &progressBody{ReadCloser: r.Body, ctl: http.NewResponseController(w), timeout: s.cfg.BodyReadTimeout}
			r.Body = rw.body
		}
		s.metrics.inFlight.Inc()
		s.handlers.Add(1)

		defer func() {
			defer s.handlers.Done()
			p := recover()
			abort := p == http.ErrAbortHandler
			if p != nil && !abort {
				s.log.Error("server: panic serving request",
					"request_id", id, "op", op, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				if rw.status == 0 {
					resetHeader(rw.Header(), id)
					writeError(rw, http.StatusInternalServerError, "InternalServerError",
						"The server met an internal error. Request id: "+id+".")
				} else {
					// Part of an answer is out: cut the connection, so
					// the client sees a broken response, not a short one.
					abort = true
				}
			}
			s.metrics.inFlight.Dec()
			status := rw.status
			if status == 0 && !abort {
				status = http.StatusOK // net/http's answer to a handler that wrote nothing
			}
			dur := time.Since(start)
			method := methodLabel(r.Method)
			route := routeName(r.URL.Path)
			s.metrics.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
			s.metrics.duration.WithLabelValues(route, method).Observe(dur.Seconds())
			level := slog.LevelInfo
			if status >= 500 || abort {
				level = slog.LevelError
			}
			attrs := []slog.Attr{
				slog.String("request_id", id),
				slog.String("op", op),
				slog.Int("status", status),
				slog.Duration("dur", dur),
				slog.Int64("bytes", rw.bytes),
			}
			if abort {
				attrs = append(attrs, slog.Bool("aborted", true))
			}
			s.log.LogAttrs(r.Context(), level, "request", attrs...)
			if abort {
				panic(http.ErrAbortHandler)
			}
		}()
		next.ServeHTTP(rw, r)
		if rw.status == 0 && rw.body.unread() {
			// net/http would answer 200 after this returns, past the
			// point where start can bound what it reads of the body.
			rw.WriteHeader(http.StatusOK)
		}
	})
}

// resetHeader drops what a handler put in h before its answer was
// replaced, keeping the request id headers.
func resetHeader(h http.Header, id string) {
	for k := range h {
		delete(h, k)
	}
	h.Set(HeaderRequestID, id)
	h.Set(HeaderCorrelationRequestID, id)
}

// writeError answers with an ARM-style JSON error. The message says
// nothing about the cause beyond what the client caused; the log does.
func writeError(w http.ResponseWriter, status int, code, message string) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]map[string]string{"error": {"code": code, "message": message}})
	_, _ = w.Write(append(b, '\n'))
}

// responseWriter records the status and size of an answer, and decides,
// when the answer starts, what becomes of a request body left unread.
// Unwrap lets http.ResponseController reach the connection's Flush and
// deadlines.
type responseWriter struct {
	http.ResponseWriter
	r       *http.Request
	id      string
	body    *progressBody // nil when the request has no body
	timeout time.Duration // Config.BodyReadTimeout
	status  int           // first final status written; 0 before
	bytes   int64         // body bytes written
	// cut is set when the body stalled before the handler answered: the
	// answer is then a 408, and the handler's writes are dropped.
	cut bool
}

// start runs once, as the first final status, code, is about to go out.
func (w *responseWriter) start(code int) {
	w.status = code
	if !w.body.unread() {
		return
	}
	if w.body.stalled.Load() {
		w.status, w.cut = http.StatusRequestTimeout, true
		resetHeader(w.Header(), w.id)
	}
	if w.r.ProtoMajor == 1 {
		// (HTTP/2 ends an unread stream with a reset of its own and
		// leaves the connection's other streams alone.)
		ctl := http.NewResponseController(w.ResponseWriter)
		if w.status >= 400 {
			// A refused request's body is not wanted. Without this,
			// net/http reads up to 256 KiB of it before sending the
			// answer, and then more, for as long as the client takes to
			// send it: an unauthenticated client could hold the
			// connection open. Closing sends the answer at once.
			w.Header().Set("Connection", "close")
			_ = ctl.SetReadDeadline(time.Now())
		} else {
			// net/http drains what the handler left (up to 256 KiB) to
			// reuse the connection; bound the wait for it.
			_ = ctl.SetReadDeadline(time.Now().Add(w.timeout))
		}
	}
	if w.cut {
		writeError(w.ResponseWriter, http.StatusRequestTimeout, "RequestTimeout",
			fmt.Sprintf("The request body stopped arriving: no data for %v.", w.timeout))
	}
}

func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.start(code)
	}
	if w.cut {
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.start(http.StatusOK)
	}
	if w.cut {
		return len(p), nil
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Flush makes the writer an http.Flusher, which streaming handlers test
// for with a type assertion.
func (w *responseWriter) Flush() {
	if w.status == 0 {
		w.start(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// metrics are the server's Prometheus collectors.
type metrics struct {
	requests *prometheus.CounterVec   // by handler, method, code
	duration *prometheus.HistogramVec // by handler, method
	inFlight prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "deltadisk_http_requests_total",
			Help: "HTTP requests answered, by handler (arm, blob, identity, healthz, metrics), method and status code.",
		}, []string{"handler", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "deltadisk_http_request_duration_seconds",
			Help: "Time from a request's headers to the end of its answer, by handler and method.",
			// Up to an hour: a VHD download streams for a long time.
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
		}, []string{"handler", "method"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "deltadisk_http_requests_in_flight",
			Help: "HTTP requests being served.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.inFlight} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("server: registering metrics: %w", err)
		}
	}
	return m, nil
}

// methodLabel keeps the method label to a fixed set: a client may send
// any token as a method.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}
