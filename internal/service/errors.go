package service

import (
	"errors"
	"fmt"
)

// Kinds of domain error. The API layers map a kind to a status in one place.
var (
	// ErrNotFound: a resource, group, subscription or source does not exist.
	ErrNotFound = errors.New("service: not found")
	// ErrInvalid: a field is malformed or out of range.
	ErrInvalid = errors.New("service: invalid request")
	// ErrConflict: the action is not allowed in the present state or by a rule.
	ErrConflict = errors.New("service: operation not allowed")
	// ErrForbidden: the caller may not act on the subscription.
	ErrForbidden = errors.New("service: forbidden")
)

// Error is a domain error whose code and message are safe to show the
// caller. Code is the ARM error code, Target the offending field if any.
type Error struct {
	Kind    error
	Code    string
	Message string
	Target  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

func (e *Error) Unwrap() error { return e.Kind }

func invalid(target, format string, args ...any) error {
	return &Error{Kind: ErrInvalid, Code: "InvalidParameter", Target: target, Message: fmt.Sprintf(format, args...)}
}

func notAllowed(format string, args ...any) error {
	return &Error{Kind: ErrConflict, Code: "OperationNotAllowed", Message: fmt.Sprintf(format, args...)}
}

func notFound(code, format string, args ...any) error {
	return &Error{Kind: ErrNotFound, Code: code, Message: fmt.Sprintf(format, args...)}
}
