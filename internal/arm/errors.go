package arm

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/identity"
	"github.com/deltadisk/deltadisk/internal/meta"
	"github.com/deltadisk/deltadisk/internal/service"
)

// apiError is an error answered as it is: a wire-level refusal that is not
// a domain rule (bad api-version, bad JSON, unknown route, auth).
type apiError struct {
	status                int
	code, message, target string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Target  string `json:"target,omitempty"`
}

// writeError maps err to ARM's status, code and body: the one place where
// domain errors become HTTP. Anything unexpected is a 500 whose detail is
// logged with the request id and never sent.
func (h *handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var (
		status int
		detail errorDetail
		ae     *apiError
		se     *service.Error
		auth   *identity.AuthError
	)
	switch {
	case errors.As(err, &ae):
		status, detail = ae.status, errorDetail{Code: ae.code, Message: ae.message, Target: ae.target}
	case errors.As(err, &auth):
		status, detail = http.StatusUnauthorized, errorDetail{Code: auth.Code, Message: auth.Message}
		w.Header().Set("WWW-Authenticate", h.id.Challenge(err))
	case errors.As(err, &se):
		status = statusOf(se.Kind)
		detail = errorDetail{Code: se.Code, Message: se.Message, Target: se.Target}
	case errors.Is(err, meta.ErrBusy):
		// Contention, not a fault: nothing was written, and a retry a
		// moment later (Azure's clients make it after Retry-After) goes
		// through.
		status = http.StatusServiceUnavailable
		detail = errorDetail{Code: "ServerBusy", Message: "The server is busy with conflicting changes to the same resources; nothing was changed. Retry the request."}
		w.Header().Set("Retry-After", "1")
	case engine.NoSpace(err):
		// 507, not a 500 or 503 that clients retry: a full store stays
		// full until someone frees space. The log names the store and its
		// path (bbolt's and the zone stores' errors carry both).
		status = http.StatusInsufficientStorage
		detail = errorDetail{Code: "InsufficientStorage", Message: "The server has no space left in its storage to complete the operation. Retry once space has been freed."}
		h.log.Error("storage full", "request_id", w.Header().Get("x-ms-request-id"), "op", r.Method+" "+r.URL.Path, "err", err)
	case engine.NotWritable(err):
		status = http.StatusInsufficientStorage
		detail = errorDetail{Code: "StorageNotWritable", Message: "The server cannot write to its storage (permission denied or a read-only filesystem). Retry once an operator has fixed it."}
		h.log.Error("storage not writable", "request_id", w.Header().Get("x-ms-request-id"), "op", r.Method+" "+r.URL.Path, "err", err)
	default:
		status = http.StatusInternalServerError
		id := w.Header().Get("x-ms-request-id")
		detail = errorDetail{Code: "InternalServerError", Message: "The server encountered an internal error; request id " + id + "."}
		h.log.Error("request failed", "request_id", id, "op", r.Method+" "+r.URL.Path, "err", err)
	}
	w.Header().Set("x-ms-error-code", detail.Code)
	writeJSON(w, status, errorBody{Error: detail})
}

func statusOf(kind error) int {
	switch kind {
	case service.ErrNotFound:
		return http.StatusNotFound
	case service.ErrInvalid:
		return http.StatusBadRequest
	case service.ErrConflict:
		return http.StatusConflict
	case service.ErrForbidden:
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"InternalServerError","message":"encoding the answer failed"}}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
