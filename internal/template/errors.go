package template

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// ARM error codes carried by [Error].
const (
	// CodeInvalidTemplate is what ARM answers for anything wrong with a
	// template or with the parameters given to it: JSON syntax, a bad
	// expression, an unknown function, a missing or ill-typed parameter, a
	// dependsOn cycle.
	CodeInvalidTemplate = "InvalidTemplate"
	// CodeInvalidTemplateDeployment is what ARM answers when a template
	// that is valid in itself fails preflight validation: a resource type
	// or apiVersion the provider does not serve. This package does not
	// produce it; [Resource.Errorf] lets the caller do so in ARM's words.
	CodeInvalidTemplateDeployment = "InvalidTemplateDeployment"
	// CodeInvalidRequestContent is for a request body that cannot be read
	// outside the template, or that asks for what this server refuses
	// (templateLink, parametersLink, Key Vault parameter references).
	CodeInvalidRequestContent = "InvalidRequestContent"
)

// Error is a deployment error worded as ARM words it, safe to show to the
// client. Path, Line and Column locate the offending value in the template
// (ARM's TemplateViolation additionalInfo); Line is 0 when unknown.
type Error struct {
	Code    string
	Message string
	Path    string // JSON path in the template, e.g. "resources[0].name"
	Line    int    // 1-based, counted in the template text as sent
	Column  int    // 1-based
	err     error  // underlying cause, e.g. from Context.Reference
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Unwrap returns the error that caused e, if any (a Context.Reference
// failure, for example).
func (e *Error) Unwrap() error { return e.err }

// exprError is an evaluation failure before it is placed: the template
// section that caught it wraps it into an *Error naming the spot.
type exprError struct {
	msg string
	err error
}

func (e *exprError) Error() string { return e.msg }
func (e *exprError) Unwrap() error { return e.err }

func exprErrorf(format string, args ...any) *exprError {
	return &exprError{msg: fmt.Sprintf(format, args...)}
}

// at is a place in the template: a JSON path and a byte offset.
type at struct {
	path string
	off  int
}

// Messages quote values from the template, which may be megabytes long;
// they are clipped so that an error stays readable and a failed
// deployment's stored record stays small.
const (
	maxMessage = 4 << 10 // a whole message
	maxQuoted  = 200     // a name or an expression quoted in a message
)

// clip shortens s to at most n bytes, cutting at a character boundary and
// marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// errorAt builds an InvalidTemplate *Error at a place in t.
func (t *Template) errorAt(p at, format string, args ...any) *Error {
	e := &Error{Code: CodeInvalidTemplate, Message: clip(fmt.Sprintf(format, args...), maxMessage), Path: p.path}
	if t != nil && t.src != nil && p.off >= 0 {
		e.Line, e.Column = t.position(p.off)
	}
	return e
}

// lineCol renders " at line 'L' and column 'C'" as ARM does, or nothing
// when the position is unknown.
func (e *Error) lineCol() string {
	if e.Line == 0 {
		return ""
	}
	return fmt.Sprintf(" at line '%d' and column '%d'", e.Line, e.Column)
}

// withCause wraps an evaluation error found at p inside the named template
// section ("resource", "variable", "output", "parameter") into an *Error.
func (t *Template) withCause(section, name string, p at, err error) *Error {
	if e, ok := err.(*Error); ok {
		return e
	}
	e := t.errorAt(p, "")
	if ee, ok := err.(*exprError); ok && ee.err != nil {
		e.err = ee.err
	}
	msg := clip(strings.TrimSuffix(err.Error(), "."), maxMessage)
	e.Message = fmt.Sprintf("The template %s '%s'%s is not valid: %s. Please see https://aka.ms/arm-functions for usage details.",
		section, clip(name, maxQuoted), e.lineCol(), msg)
	return e
}
