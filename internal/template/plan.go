package template

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// ErrContext reports a Context that lacks what every deployment needs; it
// is the caller's bug, not the client's.
var ErrContext = errors.New("template: Context needs SubscriptionID and ResourceGroup")

// Context is where a deployment runs: what resourceGroup(), subscription(),
// deployment() and reference() return.
type Context struct {
	SubscriptionID   string
	SubscriptionName string // subscription().displayName
	TenantID         string

	ResourceGroup         string
	ResourceGroupLocation string
	// ResourceGroupID is resourceGroup().id; when empty it is
	// /subscriptions/{SubscriptionID}/resourceGroups/{ResourceGroup}.
	ResourceGroupID string

	DeploymentName string

	// Reference returns a resource as a GET on its id would answer it (id,
	// name, type, location, properties...). reference() yields its
	// "properties" member, or all of it when called with 'Full'. apiVersion
	// is the one the template names; when it names none it is the
	// template resource's own apiVersion, or "" for a resource outside the
	// template. Reference may be nil, and then reference() fails. An error
	// it returns appears in the deployment error's message, so it must be
	// safe to show; errors.As finds it through the *Error. ctx is the one
	// given to Evaluate or Outputs.
	//
	// Reference is the only way a template reads a resource, so it is where
	// the caller's access is checked: it must answer a resource the caller
	// may not read exactly as one that does not exist.
	Reference func(ctx context.Context, resourceID, apiVersion string) (map[string]any, error)
}

func (c Context) groupID() string {
	if c.ResourceGroupID != "" {
		return c.ResourceGroupID
	}
	return "/subscriptions/" + c.SubscriptionID + "/resourceGroups/" + c.ResourceGroup
}

// Plan is an evaluated template: the resources to deploy, in an order that
// respects dependsOn, and the parameters as the deployment's answer shows
// them. A Plan is safe for concurrent use.
type Plan struct {
	// Resources are in deployment order: every resource comes after all
	// the resources it depends on. Among independent resources, template
	// order (and copy index) is kept.
	Resources []Resource
	// Parameters are the resolved parameters by declared name. Secure
	// parameters have a nil Value, as ARM's answers omit them.
	Parameters map[string]Value

	t         *Template
	params    map[string]any
	vars      map[string]any
	instances []*instance
	// bytes and steps are what Evaluate spent of the budget; Outputs goes
	// on from there, so that a deployment has one budget in all.
	bytes, steps int
}

// Resource is one resource to deploy (one instance of a copy loop).
type Resource struct {
	Type       string // e.g. Microsoft.Compute/snapshots, as the template spells it
	APIVersion string
	Name       string // full name: "parent/child" for a child type
	ID         string // resource id in the deployment's resource group
	Location   string // Body["location"] when it is a string
	// Body is the evaluated resource object as a PUT to the resource
	// provider would carry it: location, sku, tags, properties, ... without
	// the members that only steer the deployment (type, apiVersion, name,
	// dependsOn, copy, condition, comments).
	Body map[string]any
	// Properties is Body["properties"] when it is an object.
	Properties map[string]any
	// DependsOn are the ids of the resources that must be deployed first:
	// those named in dependsOn, and the previous batch of a serial copy
	// loop. Resources left out by a false condition are not listed.
	DependsOn []string

	// Path, Line and Column locate the resource in the template.
	Path         string
	Line, Column int
}

// Errorf returns an *Error that places a refusal of this resource in the
// template as ARM does: "The template resource 'x' at line 'l' and column
// 'c' is not valid: <message>". Use it to refuse a resource type or
// apiVersion with CodeInvalidTemplateDeployment.
func (r *Resource) Errorf(code, format string, args ...any) *Error {
	e := &Error{Code: code, Path: r.Path, Line: r.Line, Column: r.Column}
	e.Message = fmt.Sprintf("The template resource '%s'%s is not valid: %s", r.Name, e.lineCol(), fmt.Sprintf(format, args...))
	return e
}

// Value is a typed value as ARM shows parameters and outputs in a
// deployment's answer: {"type": "String", "value": "x"}.
type Value struct {
	Type  string `json:"type"` // String, SecureString, Int, Bool, Object, SecureObject or Array
	Value any    `json:"value,omitempty"`
}

// instance is one resource of the template, or one iteration of its copy
// loop, while it is evaluated.
type instance struct {
	n       *node
	path    string
	seq     int // position in template order, counting copies
	loop    string
	loopIdx int
	typ     string
	api     string
	name    string
	id      string
	skip    bool // condition evaluated to false
	body    map[string]any
	deps    []*instance
}

// Evaluate checks params against the template's parameters (params holds
// plain values by parameter name, as [Request.Parameters]), evaluates the
// variables and every resource, and orders the resources by their
// dependencies. It has no side effects: it is the whole of a deployment's
// validation, apart from what the resource providers check. reference()
// is allowed in resource bodies only for resources outside the template;
// outputs, which may reference the deployed resources, are evaluated after
// deployment by [Plan.Outputs].
//
// Errors are *Error values with ARM's codes and messages, except
// ErrContext. ctx is passed to dc.Reference.
func (t *Template) Evaluate(ctx context.Context, params map[string]any, dc Context) (*Plan, error) {
	if dc.SubscriptionID == "" || dc.ResourceGroup == "" {
		return nil, ErrContext
	}
	ev := &evaluator{t: t, ctx: dc, rctx: ctx}
	if err := ev.resolveParameters(params); err != nil {
		return nil, err
	}
	if err := ev.resolveVariables(); err != nil {
		return nil, err
	}
	if err := ev.identities(); err != nil {
		return nil, err
	}
	if err := ev.dependencies(); err != nil {
		return nil, err
	}
	if err := ev.bodies(); err != nil {
		return nil, err
	}
	order, err := ev.order()
	if err != nil {
		return nil, err
	}
	p := &Plan{t: t, params: ev.params, vars: ev.vars, instances: ev.instances, Parameters: map[string]Value{}, bytes: ev.bytes, steps: ev.steps}
	for _, prm := range t.Parameters {
		v := Value{Type: prm.Type}
		if !strings.HasPrefix(prm.Type, "Secure") {
			v.Value = clone(ev.params[strings.ToLower(prm.Name)])
		}
		p.Parameters[prm.Name] = v
	}
	listed := make([]int, len(ev.instances)) // listed[d] == in.seq+1: d already in in's DependsOn
	for _, in := range order {
		r := Resource{Type: in.typ, APIVersion: in.api, Name: in.name, ID: in.id, Body: clone(in.body).(map[string]any), Path: in.path}
		r.Line, r.Column = t.position(in.n.off)
		r.Location, _ = r.Body["location"].(string)
		r.Properties, _ = r.Body["properties"].(map[string]any)
		for _, d := range in.deps {
			if !d.skip && listed[d.seq] != in.seq+1 {
				listed[d.seq] = in.seq + 1
				r.DependsOn = append(r.DependsOn, d.id)
			}
		}
		p.Resources = append(p.Resources, r)
	}
	return p, nil
}

// resolveParameters resolves every declared parameter from supplied values
// and defaults, checking each against its declaration.
func (ev *evaluator) resolveParameters(supplied map[string]any) error {
	t := ev.t
	ev.params, ev.paramState, ev.supplied = map[string]any{}, map[string]uint8{}, map[string]any{}
	var unknown, twice []string
	for k, v := range supplied {
		if t.param(k) == nil {
			unknown = append(unknown, k)
		}
		if _, dup := ev.supplied[strings.ToLower(k)]; dup {
			twice = append(twice, strings.ToLower(k))
		}
		ev.supplied[strings.ToLower(k)] = v
	}
	if len(twice) > 0 {
		sort.Strings(twice)
		ps := t.root.get("parameters")
		return t.errorAt(at{"parameters", offOr(ps, t.root)}, "The template parameters '%s' are given more than once, in names that differ only in case.", strings.Join(twice, ", "))
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		names := make([]string, len(t.Parameters))
		for i, p := range t.Parameters {
			names[i] = p.Name
		}
		ps := t.root.get("parameters")
		return t.errorAt(at{"parameters", offOr(ps, t.root)},
			"The template parameters '%s' in the parameters file are not valid; they are not present in the original template and can therefore not be provided at deployment time. The only supported parameters for this template are '%s'. Please see https://aka.ms/arm-pass-parameter-values for usage details.",
			strings.Join(unknown, ", "), strings.Join(names, ", "))
	}
	for _, p := range t.Parameters {
		if _, err := ev.parameter(p.Name); err != nil {
			return err
		}
	}
	return nil
}

func (t *Template) param(name string) *Parameter {
	for i := range t.Parameters {
		if strings.EqualFold(t.Parameters[i].Name, name) {
			return &t.Parameters[i]
		}
	}
	return nil
}

// parameter returns a parameter's value, resolving its default on first
// use (a default may use other parameters).
func (ev *evaluator) parameter(name string) (any, error) {
	p := ev.t.param(name)
	if p == nil {
		return nil, exprErrorf("The template parameter '%s' is not found", name)
	}
	key := strings.ToLower(p.Name)
	switch ev.paramState[key] {
	case stateDone:
		return ev.params[key], nil
	case stateDoing:
		cycle := append(slices.Clone(ev.paramStack[slices.Index(ev.paramStack, p.Name):]), p.Name)
		return nil, ev.t.errorAt(p.at, "The template parameter '%s'%s is not valid: its default value refers to itself: %s.",
			p.Name, ev.t.lineColAt(p.at.off), strings.Join(cycle, " -> "))
	}
	v, ok := ev.supplied[key]
	if !ok {
		if !p.HasDefault {
			return nil, ev.t.errorAt(p.at, "The value for the template parameter '%s'%s is not provided. Please see https://aka.ms/arm-create-parameter-file for usage details.",
				p.Name, ev.t.lineColAt(p.at.off))
		}
		ev.paramState[key] = stateDoing
		ev.paramStack = append(ev.paramStack, p.Name)
		savedPhase, savedLoops := ev.phase, ev.loops
		ev.phase, ev.loops = phaseParameters, nil
		dv, err := ev.evalNode(p.def, p.at.path+".defaultValue", false)
		ev.phase, ev.loops = savedPhase, savedLoops
		ev.paramStack = ev.paramStack[:len(ev.paramStack)-1]
		if err != nil {
			return nil, ev.wrap("parameter", p.Name, at{p.at.path + ".defaultValue", p.def.off}, err)
		}
		v = dv
	}
	v, err := ev.check(p, v)
	if err != nil {
		return nil, err
	}
	ev.params[key], ev.paramState[key] = v, stateDone
	return v, nil
}

// jtokenTypes are the names ARM's type-mismatch message uses.
var jtokenTypes = map[string]string{
	"String": "String", "SecureString": "String", "Int": "Integer", "Bool": "Boolean",
	"Object": "Object", "SecureObject": "Object", "Array": "Array",
}

// check validates a parameter value against its declaration and returns it
// normalized (integral floats become integers).
func (ev *evaluator) check(p *Parameter, v any) (any, error) {
	t := ev.t
	bad := func(format string, args ...any) *Error {
		return t.errorAt(p.at, "The provided value for the template parameter '%s'%s is not valid. %s Please see https://aka.ms/arm-create-parameter-file for usage details.",
			p.Name, t.lineColAt(p.at.off), fmt.Sprintf(format, args...))
	}
	ok := false
	switch p.Type {
	case "String", "SecureString":
		_, ok = v.(string)
	case "Int":
		var n int64
		if n, ok = asInt(v); ok {
			v = n
		}
	case "Bool":
		_, ok = v.(bool)
	case "Object", "SecureObject":
		_, ok = v.(map[string]any)
	case "Array":
		_, ok = v.([]any)
	}
	if !ok {
		return nil, t.errorAt(p.at, "The template parameter '%s'%s is not valid: Template parameter JToken type is not valid. Expected '%s'. Actual '%s'. Please see https://aka.ms/arm-create-parameter-file for usage details.",
			p.Name, t.lineColAt(p.at.off), jtokenTypes[p.Type], typeName(v))
	}
	if p.allowed != nil {
		allowed := p.allowed.value().([]any)
		// Both lists come from the request, so comparing every pair could
		// take a quadratic time: the pairs are counted as steps, and the
		// search stops once they are over the budget.
		n := 0
		in := func(x any) bool {
			return slices.ContainsFunc(allowed, func(a any) bool { return ev.steps+n > maxSteps || equal(a, x, &n) })
		}
		okAll := in(v)
		if arr, isArr := v.([]any); isArr && !okAll {
			okAll = !slices.ContainsFunc(arr, func(x any) bool { return !in(x) })
		}
		if err := ev.steps1(n); err != nil {
			return nil, ev.wrap("parameter", p.Name, p.at, err)
		}
		if !okAll {
			shown := make([]string, len(allowed))
			for i, a := range allowed {
				shown[i] = toString(a)
			}
			return nil, bad("The parameter value is not part of the allowed value(s): '%s'.", strings.Join(shown, ","))
		}
	}
	if n, isInt := v.(int64); isInt {
		if p.minValue != nil && n < *p.minValue {
			return nil, bad("The parameter value '%d' is less than the minimum value '%d'.", n, *p.minValue)
		}
		if p.maxValue != nil && n > *p.maxValue {
			return nil, bad("The parameter value '%d' is greater than the maximum value '%d'.", n, *p.maxValue)
		}
	}
	length := int64(-1)
	switch v := v.(type) {
	case string:
		length = int64(utf16Len(v))
	case []any:
		length = int64(len(v))
	}
	if length >= 0 {
		if p.minLength != nil && length < *p.minLength {
			return nil, bad("The parameter value is %d long, shorter than the minimum length '%d'.", length, *p.minLength)
		}
		if p.maxLength != nil && length > *p.maxLength {
			return nil, bad("The parameter value is %d long, longer than the maximum length '%d'.", length, *p.maxLength)
		}
	}
	return v, nil
}

// varDef is one variable: a plain definition, or one loop of the
// variables section's "copy" array.
type varDef struct {
	name string
	n    *node // the value, or the loop's input
	path string
	loop *node // the copy element {name, count, input}, or nil
}

// varDefs lists the template's variables in order.
func (t *Template) varDefs() ([]varDef, error) {
	if t.variables == nil {
		return nil, nil
	}
	var defs []varDef
	for i, k := range t.variables.keys {
		v := t.variables.vals[i]
		path := joinPath("variables", k)
		if !strings.EqualFold(k, "copy") || v.kind != kindArray {
			defs = append(defs, varDef{name: k, n: v, path: path})
			continue
		}
		for j, l := range v.arr {
			lp := path + "[" + strconv.Itoa(j) + "]"
			name := l.get("name")
			if l.kind != kindObject || name == nil || name.kind != kindString || name.s == "" || l.get("count") == nil || l.get("input") == nil {
				return nil, t.errorAt(at{lp, l.off}, "The template variable loop at '%s' is not valid: each 'copy' element must be an object with 'name', 'count' and 'input'.", lp)
			}
			defs = append(defs, varDef{name: name.s, n: l.get("input"), path: lp + ".input", loop: l})
		}
	}
	return defs, nil
}

func (ev *evaluator) resolveVariables() error {
	ev.vars, ev.varState = map[string]any{}, map[string]uint8{}
	for _, d := range ev.t.vars {
		if _, err := ev.variable(d.name); err != nil {
			return err
		}
	}
	return nil
}

// variable returns a variable's value, evaluating it on first use.
func (ev *evaluator) variable(name string) (any, error) {
	key := strings.ToLower(name)
	if ev.varState[key] == stateDone {
		return ev.vars[key], nil
	}
	i := slices.IndexFunc(ev.t.vars, func(d varDef) bool { return strings.EqualFold(d.name, name) })
	if i < 0 {
		return nil, exprErrorf("The template variable '%s' is not found", name)
	}
	d := ev.t.vars[i]
	p := at{d.path, d.n.off}
	if ev.varState[key] == stateDoing {
		cycle := append(slices.Clone(ev.varStack[slices.Index(ev.varStack, d.name):]), d.name)
		return nil, ev.t.errorAt(p, "The template variable '%s'%s is not valid: it refers to itself: %s.", d.name, ev.t.lineColAt(p.off), strings.Join(cycle, " -> "))
	}
	ev.varState[key] = stateDoing
	ev.varStack = append(ev.varStack, d.name)
	savedPhase, savedLoops := ev.phase, ev.loops
	ev.phase, ev.loops = phaseVariables, nil
	var v any
	var err error
	if d.loop == nil {
		v, err = ev.evalNode(d.n, d.path, true)
	} else {
		var n int
		if n, err = ev.count(d.loop.get("count"), strings.TrimSuffix(d.path, ".input")+".count"); err == nil {
			arr := make([]any, 0, n)
			for k := 0; k < n && err == nil; k++ {
				ev.loops = []loop{{name: d.name, index: k}}
				var x any
				if x, err = ev.evalNode(d.n, d.path, true); err == nil {
					arr = append(arr, x)
				}
			}
			v = arr
		}
	}
	ev.phase, ev.loops = savedPhase, savedLoops
	ev.varStack = ev.varStack[:len(ev.varStack)-1]
	if err != nil {
		ev.varState[key] = 0
		return nil, ev.wrap("variable", d.name, p, err)
	}
	ev.vars[key], ev.varState[key] = v, stateDone
	return v, nil
}

// identities expands copy loops and evaluates each instance's type,
// apiVersion, name and condition.
func (ev *evaluator) identities() error {
	t := ev.t
	ev.phase = phaseIdentity
	loops := map[string][]*instance{}
	ev.loopMembers = loops
	deployed := map[string]bool{} // lower-cased ids of instances not skipped
	for i, rn := range t.resources.arr {
		path := "resources[" + strconv.Itoa(i) + "]"
		raw := rn.get("name").s
		count, loopName := 1, ""
		if c := rn.get("copy"); c != nil {
			loopName = c.get("name").s
			if _, dup := loops[strings.ToLower(loopName)]; dup {
				return t.errorAt(at{path + ".copy.name", c.get("name").off}, "The template resource '%s'%s is not valid: the copy loop name '%s' is used more than once.", raw, t.lineColAt(c.off), loopName)
			}
			loops[strings.ToLower(loopName)] = nil
			ev.loops = nil
			n, err := ev.count(c.get("count"), path+".copy.count")
			if err != nil {
				return ev.wrap("resource", raw, at{path, rn.off}, err)
			}
			count = n
		}
		if len(ev.instances)+count > maxResources {
			return t.errorAt(at{path, rn.off}, "The template resource '%s'%s is not valid: the template would deploy more than %d resources, the most ARM allows in one deployment.", raw, t.lineColAt(rn.off), maxResources)
		}
		for k := range count {
			in := &instance{n: rn, path: path, seq: len(ev.instances), loop: loopName, loopIdx: k}
			ev.loops = nil
			if loopName != "" {
				ev.loops = []loop{{name: loopName, index: k, unnamed: true}}
			}
			label := raw
			field := func(key string) (string, error) {
				fn := rn.get(key)
				v, err := ev.evalNode(fn, joinPath(path, key), false)
				if err != nil {
					return "", err
				}
				s, ok := v.(string)
				if !ok || s == "" {
					return "", place(at{joinPath(path, key), fn.off}, exprErrorf("The resource '%s' must be a non-empty string; it is of type '%s'", key, typeName(v)))
				}
				return s, nil
			}
			var err error
			if in.name, err = field("name"); err == nil {
				label = in.name
				if in.typ, err = field("type"); err == nil {
					in.api, err = field("apiVersion")
				}
			}
			if err == nil {
				if cn := rn.get("condition"); cn != nil {
					var v any
					if v, err = ev.evalNode(cn, path+".condition", false); err == nil {
						b, ok := v.(bool)
						if !ok {
							err = place(at{path + ".condition", cn.off}, exprErrorf("The resource condition must be a boolean; it is of type '%s'", typeName(v)))
						}
						in.skip = !b
					}
				}
			}
			if err != nil {
				return ev.wrap("resource", label, at{path, rn.off}, err)
			}
			typeSegs := strings.Split(in.typ, "/")
			nameSegs := strings.Split(in.name, "/")
			if len(typeSegs) < 2 || len(nameSegs) != len(typeSegs)-1 {
				return t.errorAt(at{path, rn.off}, "The template resource '%s' for type '%s'%s has incorrect segment lengths. A nested resource type must have identical number of segments as its resource name. A root resource type must have segment length one greater than its resource name. Please see https://aka.ms/arm-template/#resources for usage details.",
					in.name, in.typ, t.lineColAt(rn.off))
			}
			id, err := resourceID(ev.ctx.SubscriptionID, ev.ctx.ResourceGroup, in.typ, nameSegs)
			if err != nil {
				return t.errorAt(at{path, rn.off}, "The template resource '%s'%s is not valid: %s.", in.name, t.lineColAt(rn.off), err.Error())
			}
			in.id = id
			if !in.skip {
				if deployed[strings.ToLower(id)] {
					return t.errorAt(at{path, rn.off}, "The resource '%s'%s is defined multiple times in a template. Please see https://aka.ms/arm-template/#resources for usage details.", in.id, t.lineColAt(rn.off))
				}
				deployed[strings.ToLower(id)] = true
			}
			ev.instances = append(ev.instances, in)
			if loopName != "" {
				loops[strings.ToLower(loopName)] = append(loops[strings.ToLower(loopName)], in)
			}
		}
	}
	ev.loops = nil
	return nil
}

// dependencies resolves every dependsOn entry, and adds the implicit
// dependencies of serial copy loops.
func (ev *evaluator) dependencies() error {
	t := ev.t
	ev.phase = phaseIdentity
	// listed[d.seq] == in.seq+1: d is already one of in's dependencies. A
	// dependsOn list naming a copy loop again and again would otherwise
	// add the loop's every instance each time: 800 instances naming a
	// loop of 800 a thousand times is 640 million entries.
	listed := make([]int, len(ev.instances))
	for _, in := range ev.instances {
		deps := in.n.get("dependsOn")
		if deps == nil {
			continue
		}
		ev.loops = nil
		if in.loop != "" {
			ev.loops = []loop{{name: in.loop, index: in.loopIdx, unnamed: true}}
		}
		for j, dn := range deps.arr {
			dp := at{in.path + ".dependsOn[" + strconv.Itoa(j) + "]", dn.off}
			v, err := ev.evalNode(dn, dp.path, false)
			if err != nil {
				return ev.wrap("resource", in.name, dp, err)
			}
			s, ok := v.(string)
			if !ok {
				return ev.wrap("resource", in.name, dp, exprErrorf("a dependsOn entry must be a string; it is of type '%s'", typeName(v)))
			}
			targets, err := ev.resolveDependency(s)
			if err != nil {
				return ev.wrap("resource", in.name, dp, err)
			}
			for _, d := range targets {
				if listed[d.seq] != in.seq+1 {
					listed[d.seq] = in.seq + 1
					in.deps = append(in.deps, d)
				}
			}
		}
	}
	ev.loops = nil
	// Serial copy loops: each batch waits for the one before.
	for i, rn := range t.resources.arr {
		c := rn.get("copy")
		if c == nil {
			continue
		}
		cp := "resources[" + strconv.Itoa(i) + "].copy"
		mode := "parallel"
		if m := c.get("mode"); m != nil {
			if m.kind != kindString || !strings.EqualFold(m.s, "serial") && !strings.EqualFold(m.s, "parallel") {
				return t.errorAt(at{cp + ".mode", m.off}, "The template resource '%s'%s is not valid: the copy mode must be 'Serial' or 'Parallel'.", rn.get("name").s, t.lineColAt(m.off))
			}
			mode = strings.ToLower(m.s)
		}
		batch := int64(1)
		if b := c.get("batchSize"); b != nil {
			if b.kind != kindInt || b.i < 1 {
				return t.errorAt(at{cp + ".batchSize", b.off}, "The template resource '%s'%s is not valid: the copy batchSize must be a positive integer.", rn.get("name").s, t.lineColAt(b.off))
			}
			batch = b.i
		}
		if mode != "serial" {
			continue
		}
		var members []*instance
		for _, in := range ev.instances {
			if in.n == rn {
				members = append(members, in)
			}
		}
		for k, in := range members {
			b := int64(k) / batch
			if b == 0 {
				continue
			}
			in.deps = append(in.deps, members[(b-1)*batch:b*batch]...)
		}
	}
	return nil
}

// resolveDependency finds the resources a dependsOn entry names: a copy
// loop name (all its instances), a resource id, "type/name", or a name.
func (ev *evaluator) resolveDependency(s string) ([]*instance, error) {
	if err := ev.scanInstances(); err != nil {
		return nil, err
	}
	if members, ok := ev.loopMembers[strings.ToLower(s)]; ok {
		return members, nil // possibly none: a loop may have a count of 0
	}
	var out []*instance
	if strings.HasPrefix(s, "/") {
		for _, in := range ev.instances {
			if strings.EqualFold(in.id, s) {
				return []*instance{in}, nil
			}
		}
	} else {
		for _, in := range ev.instances {
			if strings.EqualFold(in.typ+"/"+in.name, s) {
				return []*instance{in}, nil
			}
		}
		var types []string
		for _, in := range ev.instances {
			if strings.EqualFold(in.name, s) {
				out = append(out, in)
				if !slices.Contains(types, in.typ) {
					types = append(types, in.typ)
				}
			}
		}
		if len(types) > 1 {
			return nil, exprErrorf("The dependsOn entry '%s' is ambiguous: it names resources of types '%s'; use resourceId()", s, strings.Join(types, ", "))
		}
		if len(out) > 0 {
			return out, nil
		}
	}
	return nil, exprErrorf("The resource '%s' named in dependsOn is not defined in the template", s)
}

// bodyOnly lists the resource members that steer the deployment and are
// not sent to the resource provider.
var bodyOnly = []string{"type", "apiVersion", "name", "dependsOn", "copy", "condition", "comments"}

func (ev *evaluator) bodies() error {
	ev.phase = phaseResource
	for _, in := range ev.instances {
		if in.skip {
			continue
		}
		ev.loops = nil
		if in.loop != "" {
			ev.loops = []loop{{name: in.loop, index: in.loopIdx, unnamed: true}}
		}
		in.body = map[string]any{}
		for i, k := range in.n.keys {
			if slices.ContainsFunc(bodyOnly, func(b string) bool { return strings.EqualFold(b, k) }) {
				continue
			}
			v, err := ev.evalNode(in.n.vals[i], joinPath(in.path, k), strings.EqualFold(k, "properties"))
			if err != nil {
				return ev.wrap("resource", in.name, at{in.path, in.n.off}, err)
			}
			in.body[k] = v
		}
	}
	ev.loops = nil
	return nil
}

// order sorts the deployed instances topologically, keeping template order
// among independent ones, and names a cycle if there is one.
func (ev *evaluator) order() ([]*instance, error) {
	n := len(ev.instances) // instance seq is its index in ev.instances
	indeg := make([]int, n)
	users := make([][]int, n)
	mark := make([]int, n) // mark[d] == in.seq+1: d already counted for in
	live := 0
	for _, in := range ev.instances {
		if in.skip {
			continue
		}
		live++
		for _, d := range in.deps {
			if d.skip || mark[d.seq] == in.seq+1 {
				continue
			}
			mark[d.seq] = in.seq + 1
			indeg[in.seq]++
			users[d.seq] = append(users[d.seq], in.seq)
		}
	}
	var ready []int
	for _, in := range ev.instances {
		if !in.skip && indeg[in.seq] == 0 {
			ready = append(ready, in.seq)
		}
	}
	var out []*instance
	for len(ready) > 0 {
		i := ready[0]
		ready = ready[1:]
		out = append(out, ev.instances[i])
		for _, u := range users[i] {
			if indeg[u]--; indeg[u] == 0 {
				k, _ := slices.BinarySearch(ready, u)
				ready = slices.Insert(ready, k, u)
			}
		}
	}
	if len(out) == live {
		return out, nil
	}
	return nil, ev.cycle(indeg)
}

// cycle finds a dependency cycle among the instances left unordered and
// reports it from the first of them in template order.
func (ev *evaluator) cycle(indeg []int) error {
	var start *instance
	for _, in := range ev.instances {
		if !in.skip && indeg[in.seq] > 0 {
			start = in
			break
		}
	}
	// Walk dependencies that are themselves stuck until a node repeats.
	path := []*instance{start}
	pos := map[*instance]int{start: 0}
	cur := start
	for {
		var next *instance
		for _, d := range cur.deps {
			if !d.skip && indeg[d.seq] > 0 {
				next = d
				break
			}
		}
		if next == nil { // cannot happen: a stuck node has a stuck dependency
			break
		}
		if i, ok := pos[next]; ok {
			path = append(path[i:], next)
			break
		}
		pos[next] = len(path)
		path = append(path, next)
		cur = next
	}
	names := make([]string, len(path))
	for i, in := range path {
		names[i] = "'" + in.typ + "/" + in.name + "'"
	}
	first := path[0]
	p := at{first.path + ".dependsOn", first.n.off}
	if d := first.n.get("dependsOn"); d != nil {
		p.off = d.off
	}
	return ev.t.errorAt(p, "Circular dependency detected on resource: '%s'%s: %s. Please see https://aka.ms/arm-template/#resources for usage details.",
		first.id, ev.t.lineColAt(p.off), strings.Join(names, " -> "))
}

// findInstance finds a template resource by id, or by name when target is
// not an id.
func (ev *evaluator) findInstance(target string) *instance {
	for _, in := range ev.instances {
		if strings.EqualFold(in.id, target) || !strings.HasPrefix(target, "/") && strings.EqualFold(in.name, target) {
			return in
		}
	}
	return nil
}

func fnReference(ev *evaluator, c *callExpr) (any, error) {
	if ev.phase != phaseResource && ev.phase != phaseOutputs {
		return nil, notHere(c)
	}
	args, err := ev.args(c, 1, 3)
	if err != nil {
		return nil, err
	}
	target, err := argString(c, args, 0)
	if err != nil {
		return nil, err
	}
	var api string
	if len(args) > 1 {
		if api, err = argString(c, args, 1); err != nil {
			return nil, err
		}
	}
	full := false
	if len(args) > 2 {
		s, err := argString(c, args, 2)
		if err != nil || !strings.EqualFold(s, "Full") {
			return nil, exprErrorf("The template function 'reference' expects 'Full' as its third argument")
		}
		full = true
	}
	if err := ev.scanInstances(); err != nil {
		return nil, err
	}
	id := target
	if in := ev.findInstance(target); in != nil {
		if ev.phase == phaseResource {
			return nil, exprErrorf("The template function 'reference' refers to '%s', which this template deploys; this server evaluates such references only in outputs", in.name)
		}
		id = in.id
		if api == "" {
			api = in.api
		}
	} else if !strings.HasPrefix(target, "/") {
		return nil, exprErrorf("The template function 'reference' names the resource '%s', which is not defined in the template; use resourceId() for a resource outside it", target)
	}
	if ev.ctx.Reference == nil {
		return nil, exprErrorf("The template function 'reference' cannot be evaluated here")
	}
	// Each resource is read once per evaluation: reference() in a copy
	// loop of 800 would otherwise read the store 800 times, and a template
	// could turn its step budget into as many reads.
	key := strings.ToLower(id) + "\x00" + api
	r, ok := ev.refs[key]
	if !ok {
		if r, err = ev.ctx.Reference(ev.rctx, id, api); err != nil {
			return nil, &exprError{msg: fmt.Sprintf("The template function 'reference' failed for '%s': %s", id, strings.TrimSuffix(err.Error(), ".")), err: err}
		}
		if ev.refs == nil {
			ev.refs = map[string]map[string]any{}
		}
		ev.refs[key] = r
	}
	var v any = r
	if !full {
		if v, ok = r["properties"]; !ok {
			return map[string]any{}, nil
		}
	}
	// A copy is built: count it.
	if err := ev.weigh(v); err != nil {
		return nil, err
	}
	return clone(v), nil
}

// Outputs evaluates the template's outputs, after deployment: reference()
// may name the deployed resources, and ctx.Reference must answer for them.
// Outputs whose condition is false are left out; secure outputs have a nil
// Value. ctx is passed to dc.Reference.
func (p *Plan) Outputs(ctx context.Context, dc Context) (map[string]Value, error) {
	t := p.t
	out := map[string]Value{}
	if t.outputs == nil {
		return out, nil
	}
	ev := &evaluator{t: t, ctx: dc, rctx: ctx, phase: phaseOutputs, params: p.params, paramState: map[string]uint8{}, vars: p.vars, varState: map[string]uint8{}, instances: p.instances,
		bytes: p.bytes, steps: p.steps}
	for k := range p.params {
		ev.paramState[k] = stateDone
	}
	for k := range p.vars {
		ev.varState[k] = stateDone
	}
	for i, name := range t.outputs.keys {
		on := t.outputs.vals[i]
		path := joinPath("outputs", name)
		typ := paramTypes[strings.ToLower(on.get("type").s)]
		v, skip, err := ev.output(on, path)
		if err != nil {
			return nil, ev.wrap("output", name, at{path, on.off}, err)
		}
		if skip {
			continue
		}
		if !outputTypeOK(typ, v) {
			return nil, t.withCause("output", name, at{path, on.off},
				exprErrorf("Template output JToken type is not valid. Expected '%s'. Actual '%s'", jtokenTypes[typ], typeName(v)))
		}
		if n, ok := asInt(v); ok && typ == "Int" {
			v = n
		}
		val := Value{Type: typ}
		if !strings.HasPrefix(typ, "Secure") {
			val.Value = clone(v)
		}
		out[name] = val
	}
	return out, nil
}

func (ev *evaluator) output(on *node, path string) (v any, skip bool, err error) {
	if cn := on.get("condition"); cn != nil {
		c, err := ev.evalNode(cn, path+".condition", false)
		if err != nil {
			return nil, false, err
		}
		b, ok := c.(bool)
		if !ok {
			return nil, false, place(at{path + ".condition", cn.off}, exprErrorf("The output condition must be a boolean; it is of type '%s'", typeName(c)))
		}
		if !b {
			return nil, true, nil
		}
	}
	cp := on.get("copy")
	if cp == nil {
		v, err := ev.evalNode(on.get("value"), path+".value", false)
		return v, false, err
	}
	input := cp.get("input")
	if cp.kind != kindObject || cp.get("count") == nil || input == nil {
		return nil, false, place(at{path + ".copy", cp.off}, exprErrorf("The output 'copy' must be an object with 'count' and 'input'"))
	}
	n, err := ev.count(cp.get("count"), path+".copy.count")
	if err != nil {
		return nil, false, err
	}
	arr := make([]any, 0, n)
	for k := range n {
		ev.loops = []loop{{index: k, unnamed: true}}
		x, err := ev.evalNode(input, path+".copy.input", false)
		ev.loops = nil
		if err != nil {
			return nil, false, err
		}
		arr = append(arr, x)
	}
	return arr, false, nil
}

func outputTypeOK(typ string, v any) bool {
	switch typ {
	case "String", "SecureString":
		_, ok := v.(string)
		return ok
	case "Int":
		_, ok := asInt(v)
		return ok
	case "Bool":
		_, ok := v.(bool)
		return ok
	case "Object", "SecureObject":
		_, ok := v.(map[string]any)
		return ok
	case "Array":
		_, ok := v.([]any)
		return ok
	}
	return false
}

// clone deep-copies a value so that callers may change what they get
// without changing the plan (variables are shared between resources).
func clone(v any) any {
	switch v := v.(type) {
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = clone(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = clone(e)
		}
		return out
	}
	return v
}
