package template

import (
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Template is a parsed ARM template for a resource-group deployment. It is
// checked for structure when parsed; expressions are evaluated by
// [Template.Evaluate]. A Template is immutable and safe for concurrent use.
type Template struct {
	Schema         string
	ContentVersion string
	// Parameters are the declared parameters in template order.
	Parameters []Parameter

	root      *node
	variables *node // object or nil
	vars      []varDef
	resources *node // array
	outputs   *node // object or nil

	// src holds the text the node offsets point into, and origin the
	// offset of the template's first byte in it (non-zero when the
	// template came inside a request body).
	src    []byte
	origin int
	// lines are the offsets in src of the template's lines after the
	// first.
	lines []int
}

// Parameter is a declared template parameter.
type Parameter struct {
	Name string
	// Type is the declared type as ARM shows it: String, SecureString,
	// Int, Bool, Object, SecureObject or Array.
	Type string
	// HasDefault reports whether the template gives a defaultValue; the
	// default itself may be an expression and is evaluated by Evaluate.
	HasDefault bool

	def                  *node
	allowed              *node
	minValue, maxValue   *int64
	minLength, maxLength *int64
	at                   at
}

// paramTypes maps a template's parameter type keyword (any case) to the
// name ARM shows in answers.
var paramTypes = map[string]string{
	"string": "String", "securestring": "SecureString", "int": "Int", "bool": "Bool",
	"object": "Object", "secureobject": "SecureObject", "array": "Array",
}

var contentVersionRE = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$`)

// Parse reads a template from JSON with comments ("JSONC": // and /* */
// comments and trailing commas are accepted, as ARM accepts them) and
// checks its structure.
func Parse(jsonc []byte) (*Template, error) {
	root, err := parseJSONC(jsonc)
	if err != nil {
		return nil, syntaxToError(jsonc, 0, err.(*syntaxError), CodeInvalidTemplate)
	}
	return newTemplate(root, jsonc, 0)
}

// syntaxToError turns a JSON syntax error into an *Error with ARM's
// wording, counting lines from origin.
func syntaxToError(src []byte, origin int, se *syntaxError, code string) *Error {
	e := &Error{Code: code, Path: se.path, err: se}
	e.Line, e.Column = position(src, origin, se.off)
	what := "The request content was invalid and could not be deserialized"
	if code == CodeInvalidTemplate {
		what = "Deployment template parse failed"
	}
	e.Message = what + ": '" + se.msg + ". Path '" + se.path + "'" + e.lineCol() + ".'"
	return e
}

// topLevel lists the template members ARM knows; those this package
// cannot honour are refused by name in newTemplate.
var topLevel = []string{"$schema", "contentVersion", "apiProfile", "parameters", "variables", "functions",
	"resources", "outputs", "metadata", "definitions", "languageVersion"}

func newTemplate(root *node, src []byte, origin int) (*Template, error) {
	t := &Template{root: root, src: src, origin: origin}
	for i := origin; i < len(src); i++ {
		if src[i] == '\n' {
			t.lines = append(t.lines, i+1)
		}
	}
	if root.kind != kindObject {
		return nil, t.errorAt(at{"", root.off}, "The template must be a JSON object.")
	}
	for i, k := range root.keys {
		if !slices.ContainsFunc(topLevel, func(s string) bool { return strings.EqualFold(s, k) }) {
			return nil, t.errorAt(at{k, root.vals[i].off}, "Could not find member '%s' on object of type 'Template'. Path '%s'.", k, k)
		}
	}
	schema := root.get("$schema")
	if schema == nil || schema.kind != kindString || schema.s == "" {
		return nil, t.errorAt(at{"$schema", offOr(schema, root)}, "The template is missing the required property '$schema'.")
	}
	t.Schema = schema.s
	lower := strings.ToLower(t.Schema)
	if !strings.Contains(lower, "/deploymenttemplate.json") {
		return nil, t.errorAt(at{"$schema", schema.off},
			"The template schema '%s' is not supported for a resource group deployment: use https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#.", t.Schema)
	}
	cv := root.get("contentVersion")
	if cv == nil || cv.kind != kindString {
		return nil, t.errorAt(at{"contentVersion", offOr(cv, root)}, "The template is missing the required property 'contentVersion'.")
	}
	if !contentVersionRE.MatchString(cv.s) {
		return nil, t.errorAt(at{"contentVersion", cv.off},
			"The template 'contentVersion' '%s' is not valid: it must be four numbers separated by dots, such as '1.0.0.0'.", cv.s)
	}
	t.ContentVersion = cv.s
	if lv := root.get("languageVersion"); lv != nil {
		return nil, t.errorAt(at{"languageVersion", lv.off}, "The template 'languageVersion' is not supported by this server: use a template without symbolic resource names.")
	}
	if fn := root.get("functions"); fn != nil && !(fn.kind == kindArray && len(fn.arr) == 0) {
		return nil, t.errorAt(at{"functions", fn.off}, "User-defined template functions are not supported by this server.")
	}
	if def := root.get("definitions"); def != nil && !(def.kind == kindObject && len(def.keys) == 0) {
		return nil, t.errorAt(at{"definitions", def.off}, "User-defined template types ('definitions') are not supported by this server.")
	}
	if err := t.parseParameters(); err != nil {
		return nil, err
	}
	if len(t.Parameters) > maxParameters {
		return nil, t.errorAt(at{"parameters", root.get("parameters").off}, "The template has %d parameters; ARM allows at most %d.", len(t.Parameters), maxParameters)
	}
	if v := root.get("variables"); v != nil {
		if v.kind != kindObject {
			return nil, t.errorAt(at{"variables", v.off}, "The template 'variables' must be an object.")
		}
		t.variables = v
		defs, err := t.varDefs()
		if err != nil {
			return nil, err
		}
		t.vars = defs
		if len(defs) > maxVariables {
			return nil, t.errorAt(at{"variables", v.off}, "The template has %d variables; ARM allows at most %d.", len(defs), maxVariables)
		}
	}
	res := root.get("resources")
	if res == nil {
		return nil, t.errorAt(at{"resources", root.off}, "The template is missing the required property 'resources'.")
	}
	if res.kind != kindArray {
		return nil, t.errorAt(at{"resources", res.off}, "The template 'resources' must be an array.")
	}
	t.resources = res
	for i, r := range res.arr {
		if err := t.checkResource(r, i); err != nil {
			return nil, err
		}
	}
	if o := root.get("outputs"); o != nil {
		if o.kind != kindObject {
			return nil, t.errorAt(at{"outputs", o.off}, "The template 'outputs' must be an object.")
		}
		if len(o.keys) > maxOutputs {
			return nil, t.errorAt(at{"outputs", o.off}, "The template has %d outputs; ARM allows at most %d.", len(o.keys), maxOutputs)
		}
		for i, name := range o.keys {
			out := o.vals[i]
			p := at{joinPath("outputs", name), out.off}
			if out.kind != kindObject {
				return nil, t.errorAt(p, "The template output '%s' must be an object.", name)
			}
			typ := out.get("type")
			if typ == nil || typ.kind != kindString || paramTypes[strings.ToLower(typ.s)] == "" {
				return nil, t.errorAt(p, "The template output '%s' has no valid 'type': expected one of 'string, securestring, int, bool, object, secureobject, array'.", name)
			}
			if out.get("value") == nil && out.get("copy") == nil {
				return nil, t.errorAt(p, "The template output '%s' has no 'value'.", name)
			}
		}
		t.outputs = o
	}
	return t, nil
}

func offOr(n, parent *node) int {
	if n != nil {
		return n.off
	}
	return parent.off
}

var paramMembers = []string{"type", "defaultValue", "allowedValues", "minValue", "maxValue", "minLength", "maxLength", "metadata", "nullable"}

func (t *Template) parseParameters() error {
	ps := t.root.get("parameters")
	if ps == nil {
		return nil
	}
	if ps.kind != kindObject {
		return t.errorAt(at{"parameters", ps.off}, "The template 'parameters' must be an object.")
	}
	for i, name := range ps.keys {
		d := ps.vals[i]
		p := Parameter{Name: name, at: at{joinPath("parameters", name), d.off}}
		if d.kind != kindObject {
			return t.errorAt(p.at, "The template parameter '%s' must be an object with a 'type'.", name)
		}
		for j, k := range d.keys {
			if !slices.ContainsFunc(paramMembers, func(s string) bool { return strings.EqualFold(s, k) }) {
				return t.errorAt(at{joinPath(p.at.path, k), d.vals[j].off},
					"Could not find member '%s' on object of type 'TemplateParameter'. Path '%s'.", k, joinPath(p.at.path, k))
			}
		}
		typ := d.get("type")
		if typ == nil || typ.kind != kindString || paramTypes[strings.ToLower(typ.s)] == "" {
			return t.errorAt(p.at, "The template parameter '%s' has no valid 'type': expected one of 'string, securestring, int, bool, object, secureobject, array'.", name)
		}
		p.Type = paramTypes[strings.ToLower(typ.s)]
		if def := d.get("defaultValue"); def != nil {
			p.HasDefault, p.def = true, def
		}
		if av := d.get("allowedValues"); av != nil {
			if av.kind != kindArray || len(av.arr) == 0 {
				return t.errorAt(at{p.at.path + ".allowedValues", av.off}, "The template parameter '%s' has 'allowedValues' that is not a non-empty array.", name)
			}
			p.allowed = av
		}
		for _, lim := range []struct {
			key string
			dst **int64
		}{{"minValue", &p.minValue}, {"maxValue", &p.maxValue}, {"minLength", &p.minLength}, {"maxLength", &p.maxLength}} {
			v := d.get(lim.key)
			if v == nil {
				continue
			}
			if v.kind != kindInt {
				return t.errorAt(at{p.at.path + "." + lim.key, v.off}, "The template parameter '%s' has a '%s' that is not an integer.", name, lim.key)
			}
			*lim.dst = &v.i
		}
		t.Parameters = append(t.Parameters, p)
	}
	return nil
}

// refusedResourceMembers are resource members this package refuses, with
// the reason.
var refusedResourceMembers = []struct{ key, why string }{
	{"resources", "nested child resources are not supported by this server: declare the child at the top level with its full type and name"},
	{"scope", "the 'scope' property is not supported by this server: deploy to the resource group of the deployment"},
	{"subscriptionId", "cross-subscription resources are not supported by this server"},
	{"resourceGroup", "cross-resource-group resources are not supported by this server"},
}

func (t *Template) checkResource(r *node, i int) error {
	path := "resources[" + strconv.Itoa(i) + "]"
	p := at{path, r.off}
	if r.kind != kindObject {
		return t.errorAt(p, "The template resource at '%s' must be an object.", path)
	}
	name := r.get("name")
	label := path
	if name != nil && name.kind == kindString {
		label = name.s
	}
	for _, key := range []string{"type", "apiVersion", "name"} {
		v := r.get(key)
		if v == nil || v.kind != kindString || v.s == "" {
			return t.errorAt(p, "The template resource '%s'%s is not valid: the required property '%s' is missing or is not a non-empty string.", label, t.lineColAt(r.off), key)
		}
	}
	for _, m := range refusedResourceMembers {
		if v := r.get(m.key); v != nil {
			return t.errorAt(at{joinPath(path, m.key), v.off}, "The template resource '%s'%s is not valid: %s.", label, t.lineColAt(v.off), m.why)
		}
	}
	if d := r.get("dependsOn"); d != nil && d.kind != kindArray {
		return t.errorAt(at{path + ".dependsOn", d.off}, "The template resource '%s'%s is not valid: 'dependsOn' must be an array of strings.", label, t.lineColAt(d.off))
	}
	if c := r.get("copy"); c != nil {
		if c.kind != kindObject {
			return t.errorAt(at{path + ".copy", c.off}, "The template resource '%s'%s is not valid: 'copy' must be an object with 'name' and 'count'.", label, t.lineColAt(c.off))
		}
		if n := c.get("name"); n == nil || n.kind != kindString || n.s == "" {
			return t.errorAt(at{path + ".copy", c.off}, "The template resource '%s'%s is not valid: the copy loop has no 'name'.", label, t.lineColAt(c.off))
		}
		if c.get("count") == nil {
			return t.errorAt(at{path + ".copy", c.off}, "The template resource '%s'%s is not valid: the copy loop has no 'count'.", label, t.lineColAt(c.off))
		}
	}
	return nil
}

func (t *Template) lineColAt(off int) string {
	e := t.errorAt(at{"", off}, "")
	return e.lineCol()
}

// position returns the 1-based line and column of a byte offset, counted
// from the template's first character (see the function position).
func (t *Template) position(off int) (line, col int) {
	off = max(min(off, len(t.src)), t.origin)
	n := sort.SearchInts(t.lines, off+1) // lines starting at or before off
	start := t.origin
	if n > 0 {
		start = t.lines[n-1]
	}
	return n + 1, utf8.RuneCount(t.src[start:off]) + 1
}
