package blob

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/meta"
	"github.com/deltadisk/deltadisk/internal/service"
)

// apiError is a refusal in the blob service's terms: a status, an error
// code (also sent as x-ms-error-code) and a message safe to show. detail
// adds the service's optional elements (HeaderName, QueryParameterName,
// AuthenticationErrorDetail, ...) to the XML body, and header adds response
// headers (Content-Range on a 416, Allow on a 405).
type apiError struct {
	status        int
	code, message string
	detail        [][2]string
	header        http.Header
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

// with adds an element to the error body.
func (e *apiError) with(name, value string) *apiError {
	e.detail = append(e.detail, [2]string{name, value})
	return e
}

// withHeader adds a response header to the error answer.
func (e *apiError) withHeader(name, value string) *apiError {
	if e.header == nil {
		e.header = http.Header{}
	}
	e.header.Set(name, value)
	return e
}

// The refusals of the blob protocol, by code.

func authFailed(detail string) *apiError {
	return errorf(http.StatusForbidden, "AuthenticationFailed",
		"Server failed to authenticate the request. Make sure the SAS URL is complete and its access has not been revoked or expired.").
		with("AuthenticationErrorDetail", detail)
}

func permissionMismatch(format string, args ...any) *apiError {
	return errorf(http.StatusForbidden, "AuthorizationPermissionMismatch",
		"This request is not authorized to perform this operation using this permission. "+format, args...)
}

func invalidHeader(name, value, format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, "InvalidHeaderValue",
		"The value for one of the HTTP headers is not in the correct format. "+format, args...).
		with("HeaderName", name).with("HeaderValue", value)
}

func missingHeader(name string) *apiError {
	return errorf(http.StatusBadRequest, "MissingRequiredHeader",
		"An HTTP header that is mandatory for this request is not specified.").with("HeaderName", name)
}

func invalidQuery(name, value, format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, "InvalidQueryParameterValue",
		"Value for one of the query parameters specified in the request URI is invalid. "+format, args...).
		with("QueryParameterName", name).with("QueryParameterValue", value)
}

func invalidPageRange(format string, args ...any) *apiError {
	return errorf(http.StatusRequestedRangeNotSatisfiable, "InvalidPageRange", "The page range specified is invalid. "+format, args...)
}

// invalidRange refuses a range that starts at or past the end of a blob of
// total bytes; the Content-Range tells the client the size.
func invalidRange(total int64) *apiError {
	return errorf(http.StatusRequestedRangeNotSatisfiable, "InvalidRange",
		"The range specified is invalid for the current size of the resource (%d bytes).", total).
		withHeader("Content-Range", "bytes */"+strconv.FormatInt(total, 10))
}

func conditionNotMet(status int) *apiError {
	return errorf(status, "ConditionNotMet", "The condition specified using HTTP conditional header(s) is not met.")
}

func blobNotFound(format string, args ...any) *apiError {
	return errorf(http.StatusNotFound, "BlobNotFound", "The specified blob does not exist. "+format, args...)
}

func unsupportedVerb(method, why string) *apiError {
	return errorf(http.StatusMethodNotAllowed, "UnsupportedHttpVerb", "The resource doesn't support the HTTP verb %s. %s", method, why).
		withHeader("Allow", "GET, HEAD, PUT")
}

// streamError is a failure after the answer's status and headers went
// out: the only honest signal left is to cut the connection, so the
// client sees a broken response rather than a short one it might trust.
type streamError struct{ err error }

func (e *streamError) Error() string { return "streaming the answer: " + e.err.Error() }

func (e *streamError) Unwrap() error { return e.err }

// zoneRetryAfter is the Retry-After, in seconds, of a write refused because
// a zone store is unavailable: a zone comes back in seconds (a remount, a
// restarted server) or not soon, so clients should not hammer it.
const zoneRetryAfter = "5"

// writeError answers err in the blob service's XML: the one place where
// refusals and failures become HTTP. Domain errors map by kind; anything
// unexpected is a 500 whose detail is logged with the request id and
// never sent.
func (h *handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	id := w.Header().Get(headerRequestID)
	op := r.Method + " " + r.URL.Path
	var (
		ae *apiError
		se *service.Error
		st *streamError
	)
	switch {
	case errors.As(err, &st):
		if r.Context().Err() == nil {
			h.log.Error("blob: answer cut short", "request_id", id, "op", op, "err", st.err)
		}
		panic(http.ErrAbortHandler)
	case errors.As(err, &ae):
	case errors.As(err, &se):
		ae = fromService(se)
	case errors.Is(err, engine.ErrNotFound):
		ae = blobNotFound("Its data no longer exists.")
	case errors.Is(err, meta.ErrBusy):
		// Contention, not a fault: nothing was written; the SDKs retry
		// after Retry-After.
		ae = errorf(http.StatusServiceUnavailable, "ServerBusy", "The server is currently unable to receive requests: too many conflicting changes to this disk. Please retry your request.").
			withHeader("Retry-After", "1")
	case engine.NoSpace(err):
		// Not 503: clients retry that without end, and a full store stays
		// full until someone frees space. The error names the store and
		// its path; the client is told only what happened.
		h.log.Error("blob: storage full", "request_id", id, "op", op, "err", err)
		ae = errorf(http.StatusInsufficientStorage, "InsufficientStorage",
			"The server has no space left in its storage to take this write; nothing was written. Retry once space has been freed.")
	case engine.NotWritable(err):
		h.log.Error("blob: storage not writable", "request_id", id, "op", op, "err", err)
		ae = errorf(http.StatusInsufficientStorage, "StorageNotWritable",
			"The server cannot write to its storage (permission denied or a read-only filesystem); nothing was written. Retry once an operator has fixed it.")
	case errors.Is(err, engine.ErrZoneUnavailable) && r.Context().Err() == nil:
		// Azure's answer when storage cannot take a request for now; the
		// SDKs retry it, after Retry-After.
		h.log.Error("blob: a zone store refused a write", "request_id", id, "op", op, "err", err)
		ae = errorf(http.StatusServiceUnavailable, "ServerBusy", "The server is currently unable to receive requests: a zone of this disk's storage is unavailable. Please retry your request.").
			withHeader("Retry-After", zoneRetryAfter)
	default:
		if r.Context().Err() == nil || !errors.Is(err, context.Canceled) {
			h.log.Error("blob: request failed", "request_id", id, "op", op, "err", err)
		} // else the client went away and reads no answer
		ae = errorf(http.StatusInternalServerError, "InternalError", "Server encountered an internal error. Please try again after some time.")
	}

	hdr := w.Header()
	// Headers that describe a successful answer must not leak into a refusal.
	for _, k := range []string{"ETag", "Last-Modified", "Content-Range", "Content-MD5", "Accept-Ranges"} {
		hdr.Del(k)
	}
	for k, v := range ae.header {
		hdr[k] = v
	}
	hdr.Set("x-ms-error-code", ae.code)
	if ae.status == http.StatusNotModified {
		w.WriteHeader(ae.status) // 304 carries no body
		return
	}
	body := errorBody(ae, id, h.svc.Now())
	hdr.Set("Content-Type", "application/xml")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(ae.status)
	_, _ = w.Write(body)
}

// errorBody is the blob service's error document; its Message ends with
// the request id and time, as the service's does.
func errorBody(e *apiError, requestID string, now time.Time) []byte {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?><Error><Code>`)
	xmlText(&b, e.code)
	b.WriteString("</Code><Message>")
	xmlText(&b, e.message+"\nRequestId:"+requestID+"\nTime:"+now.UTC().Format("2006-01-02T15:04:05.0000000Z"))
	b.WriteString("</Message>")
	for _, d := range e.detail {
		b.WriteString("<" + d[0] + ">")
		xmlText(&b, d[1])
		b.WriteString("</" + d[0] + ">")
	}
	b.WriteString("</Error>")
	return []byte(b.String())
}

// fromService maps a domain error to the blob protocol. The data plane
// meets few of them: a resource deleted or changed between the grant check
// and the action.
func fromService(se *service.Error) *apiError {
	switch {
	case errors.Is(se, service.ErrNotFound):
		return blobNotFound("%s", se.Message)
	case errors.Is(se, service.ErrConflict):
		return errorf(http.StatusConflict, se.Code, "%s", se.Message)
	case errors.Is(se, service.ErrInvalid):
		return errorf(http.StatusBadRequest, "InvalidInput", "%s", se.Message)
	case errors.Is(se, service.ErrForbidden):
		return errorf(http.StatusForbidden, "AuthorizationFailure", "%s", se.Message)
	}
	return errorf(http.StatusInternalServerError, "InternalError", "Server encountered an internal error. Please try again after some time.")
}
