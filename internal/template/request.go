package template

import (
	"fmt"
	"strings"
)

// Request is a deployment request body (PUT or validate of
// Microsoft.Resources/deployments) as read by [ParseRequest].
type Request struct {
	Template *Template
	// Parameters are the parameter values by name, with their
	// {"value": x} wrappers removed.
	Parameters map[string]any
	// Mode is "Incremental" or "Complete".
	Mode string
}

// templatePath is where a request carries its template.
const templatePath = "properties.template"

// ParseRequest reads a deployment request body:
//
//	{"properties": {"mode": "Incremental", "parameters": {"p": {"value": 1}}, "template": {...}}}
//
// It accepts plain JSON, as the Go SDK sends, and what az sends: the same
// object with the template file spliced in verbatim after an unquoted
// template: key, comments included (the reader is as lenient as ARM's).
// Line and column numbers in template errors count from the template's
// first character, so they match the user's file. templateLink,
// parametersLink and Key Vault parameter references are refused with
// CodeInvalidRequestContent.
func ParseRequest(body []byte) (*Request, error) {
	r := newReader(body, func(path string) bool { return strings.EqualFold(path, templatePath) })
	r.mark = templatePath
	doc, err := r.document()
	if err != nil {
		se := err.(*syntaxError)
		if origin := r.markAt; origin >= 0 && inTemplate(se.path) {
			se.path = strings.TrimPrefix(se.path[len(templatePath):], ".")
			return nil, syntaxToError(body, origin, se, CodeInvalidTemplate)
		}
		return nil, syntaxToError(body, 0, se, CodeInvalidRequestContent)
	}
	bad := func(format string, args ...any) error {
		return &Error{Code: CodeInvalidRequestContent, Message: fmt.Sprintf(format, args...)}
	}
	props := doc.get("properties")
	if doc.kind != kindObject || props == nil || props.kind != kindObject {
		return nil, bad("The request content was invalid and could not be deserialized: 'Required property 'properties' not found in JSON.'")
	}
	for _, link := range []string{"templateLink", "parametersLink"} {
		if props.get(link) != nil {
			return nil, bad("The request property '%s' is not supported by this server: send the template and its parameters inline in 'properties.template' and 'properties.parameters'.", link)
		}
	}
	req := &Request{Parameters: map[string]any{}}
	mode := props.get("mode")
	switch {
	case mode == nil || mode.kind != kindString:
		return nil, bad("The request content was invalid and could not be deserialized: 'Required property 'mode' not found in JSON.'")
	case strings.EqualFold(mode.s, "Incremental"):
		req.Mode = "Incremental"
	case strings.EqualFold(mode.s, "Complete"):
		req.Mode = "Complete"
	default:
		return nil, bad("The deployment mode '%s' is not valid: expected 'Incremental' or 'Complete'.", mode.s)
	}
	tn := props.get("template")
	if tn == nil || tn.kind != kindObject {
		return nil, bad("The request content has no template: 'properties.template' must be the template object.")
	}
	// Count lines from the first byte after "template:", which is the
	// first byte of the user's file in what az sends.
	if req.Template, err = newTemplate(tn, body, r.markAt); err != nil {
		return nil, err
	}
	if ps := props.get("parameters"); ps != nil {
		if ps.kind != kindObject {
			return nil, bad("The request property 'properties.parameters' must be an object.")
		}
		for i, name := range ps.keys {
			w := ps.vals[i]
			if w.get("reference") != nil {
				return nil, bad("The value of parameter '%s' is a Key Vault reference, which this server does not support: pass the value itself.", name)
			}
			v := w.get("value")
			if w.kind != kindObject || v == nil {
				return nil, bad("The parameter '%s' must be given as {\"value\": ...}.", name)
			}
			req.Parameters[name] = v.value()
		}
	}
	return req, nil
}

// inTemplate reports whether a JSON path of the request lies inside its
// template.
func inTemplate(path string) bool {
	if len(path) < len(templatePath) || !strings.EqualFold(path[:len(templatePath)], templatePath) {
		return false
	}
	rest := path[len(templatePath):]
	return rest == "" || rest[0] == '.' || rest[0] == '['
}
