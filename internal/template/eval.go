package template

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// phase is the template section being evaluated; it decides which
// functions are allowed.
type phase uint8

const (
	phaseParameters phase = iota // parameter default values
	phaseVariables
	phaseIdentity // copy counts, resource names, types, conditions, dependsOn
	phaseResource // resource bodies
	phaseOutputs
)

// loop is one copy loop being expanded.
type loop struct {
	name  string
	index int
	// unnamed marks a resource or output loop, which copyIndex() without a
	// name refers to.
	unnamed bool
}

// evaluator holds the state of one evaluation. It is not shared between
// goroutines.
type evaluator struct {
	t   *Template
	ctx Context
	// rctx is the context of the Evaluate or Outputs call, for
	// Context.Reference; an evaluator lives only as long as that call.
	rctx  context.Context
	phase phase
	loops []loop

	params     map[string]any // lower-cased name -> resolved value
	paramState map[string]uint8
	supplied   map[string]any // lower-cased name -> value from the request
	paramStack []string

	vars     map[string]any
	varState map[string]uint8
	varStack []string

	// exprs are the expressions parsed so far, by text.
	exprs map[string]expr
	// refs are the resources reference() has read, by lower-cased id and
	// apiVersion.
	refs map[string]map[string]any
	// instances are the resources of the template once their identity is
	// known; reference() resolves names and ids against them.
	instances []*instance
	// bytes, steps and depth are what the evaluation has spent of its
	// budget (see budget.go).
	bytes, steps, depth int
	// loopMembers are the resource copy loops by lower-cased name, with
	// their instances, so that a dependsOn entry naming a loop finds them
	// without a walk and without a new slice; a loop may have no
	// instances.
	loopMembers map[string][]*instance
}

const (
	stateDoing = 1
	stateDone  = 2
)

// placed is an evaluation error with the place in the template where it
// happened.
type placed struct {
	at
	err error
}

func (p *placed) Error() string { return p.err.Error() }
func (p *placed) Unwrap() error { return p.err }

// place attaches p to err unless err already has a place.
func place(p at, err error) error {
	var pl *placed
	var e *Error
	if errors.As(err, &pl) || errors.As(err, &e) {
		return err
	}
	return &placed{p, err}
}

// wrap turns an evaluation error inside a template section into an *Error,
// pointing at the innermost place known.
func (ev *evaluator) wrap(section, name string, def at, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	p := def
	var pl *placed
	if errors.As(err, &pl) {
		p = pl.at
		err = pl.err
	}
	return ev.t.withCause(section, name, p, err)
}

// evalString evaluates one JSON string: an expression or a literal.
func (ev *evaluator) evalString(s string, p at) (any, error) {
	text, isExpr := classify(s)
	if !isExpr {
		if err := ev.produce(valueOverhead + len(text)); err != nil {
			return nil, place(p, err)
		}
		return text, nil
	}
	// An expression in a copy loop is evaluated up to 800 times per loop:
	// parse it once.
	e, ok := ev.exprs[text]
	if !ok {
		var err error
		if e, err = parseExpr(text); err != nil {
			return nil, place(p, err)
		}
		if ev.exprs == nil {
			ev.exprs = map[string]expr{}
		}
		ev.exprs[text] = e
	}
	v, err := ev.eval(e)
	if err == nil {
		// The result is placed here: count it, however much of it is
		// shared with a variable or a parameter.
		err = ev.weigh(v)
	}
	if err != nil {
		var be *budgetError
		if errors.As(err, &be) && be.expr == "" {
			be.expr = s
		}
		return nil, place(p, err)
	}
	return v, nil
}

// evalNode evaluates every expression in n. copyOK enables property
// iteration: an object member "copy" holding an array of {name, count,
// input} loops becomes one array-valued member per loop.
func (ev *evaluator) evalNode(n *node, path string, copyOK bool) (any, error) {
	if err := ev.enter(); err != nil {
		return nil, place(at{path, n.off}, err)
	}
	defer ev.leave()
	if err := ev.step(); err != nil {
		return nil, place(at{path, n.off}, err)
	}
	if n.kind == kindString {
		return ev.evalString(n.s, at{path, n.off})
	}
	if err := ev.produce(valueOverhead); err != nil {
		return nil, place(at{path, n.off}, err)
	}
	switch n.kind {
	case kindArray:
		out := make([]any, len(n.arr))
		for i, e := range n.arr {
			v, err := ev.evalNode(e, path+"["+strconv.Itoa(i)+"]", copyOK)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case kindObject:
		out := make(map[string]any, len(n.keys))
		for i, k := range n.keys {
			vn := n.vals[i]
			kp := joinPath(path, k)
			if err := ev.produce(len(k)); err != nil {
				return nil, place(at{kp, vn.off}, err)
			}
			if copyOK && strings.EqualFold(k, "copy") && vn.kind == kindArray {
				if err := ev.propertyCopy(vn, kp, out); err != nil {
					return nil, err
				}
				continue
			}
			v, err := ev.evalNode(vn, kp, copyOK)
			if err != nil {
				return nil, err
			}
			out[k] = v
		}
		return out, nil
	}
	return n.value(), nil
}

// maxCopy is ARM's limit on the count of a copy loop.
const maxCopy = 800

// propertyCopy expands property (or variable) iteration loops into out.
func (ev *evaluator) propertyCopy(n *node, path string, out map[string]any) error {
	for i, l := range n.arr {
		lp := path + "[" + strconv.Itoa(i) + "]"
		if l.kind != kindObject {
			return place(at{lp, l.off}, exprErrorf("each 'copy' element must be an object with 'name', 'count' and 'input'"))
		}
		name, count, input := l.get("name"), l.get("count"), l.get("input")
		if name == nil || name.kind != kindString || name.s == "" || count == nil || input == nil {
			return place(at{lp, l.off}, exprErrorf("each 'copy' element must be an object with 'name', 'count' and 'input'"))
		}
		n, err := ev.count(count, lp+".count")
		if err != nil {
			return err
		}
		arr := make([]any, 0, n)
		for k := range n {
			ev.loops = append(ev.loops, loop{name: name.s, index: k})
			v, err := ev.evalNode(input, lp+".input", true)
			ev.loops = ev.loops[:len(ev.loops)-1]
			if err != nil {
				return err
			}
			arr = append(arr, v)
		}
		out[name.s] = arr
	}
	return nil
}

// count evaluates a copy count: an integer from 0 to maxCopy.
func (ev *evaluator) count(n *node, path string) (int, error) {
	v, err := ev.evalNode(n, path, false)
	if err != nil {
		return 0, err
	}
	c, ok := v.(int64)
	if !ok {
		return 0, place(at{path, n.off}, exprErrorf("The copy count must be an integer; the value is of type '%s'", typeName(v)))
	}
	if c < 0 || c > maxCopy {
		return 0, place(at{path, n.off}, exprErrorf("The copy count '%d' is not valid: it must be between 0 and %d", c, maxCopy))
	}
	return int(c), nil
}

// eval evaluates a parsed expression.
func (ev *evaluator) eval(e expr) (any, error) {
	if err := ev.enter(); err != nil {
		return nil, err
	}
	defer ev.leave()
	if err := ev.step(); err != nil {
		return nil, err
	}
	switch e := e.(type) {
	case *stringExpr:
		return e.v, nil
	case *intExpr:
		return e.v, nil
	case *callExpr:
		f, ok := builtin(e.name)
		if !ok {
			return nil, exprErrorf("The template function '%s' is not found", e.name)
		}
		return f(ev, e)
	case *memberExpr:
		x, err := ev.eval(e.x)
		if err != nil {
			return nil, err
		}
		return ev.member(x, e.name)
	case *indexExpr:
		x, err := ev.eval(e.x)
		if err != nil {
			return nil, err
		}
		i, err := ev.eval(e.index)
		if err != nil {
			return nil, err
		}
		switch i := i.(type) {
		case string:
			return ev.member(x, i)
		case int64:
			a, ok := x.([]any)
			if !ok {
				return nil, exprErrorf("The language expression property array index '%d' can't be applied to a value of type '%s'", i, typeName(x))
			}
			if i < 0 || i >= int64(len(a)) {
				return nil, exprErrorf("The language expression property array index '%d' is out of bounds", i)
			}
			return a[i], nil
		}
		return nil, exprErrorf("The language expression property index must be a string or an integer; it is of type '%s'", typeName(i))
	}
	panic("template: unknown expression node")
}

// member returns property name of object x, matching exactly first and
// then ignoring case, as ARM does.
func (ev *evaluator) member(x any, name string) (any, error) {
	m, ok := x.(map[string]any)
	if !ok {
		return nil, exprErrorf("The language expression property '%s' can't be evaluated on a value of type '%s'", name, typeName(x))
	}
	if v, ok := m[name]; ok {
		return v, nil
	}
	// Matching ignoring case walks the members: count it, as an object
	// may have many.
	if err := ev.steps1(len(m) / instancesPerStep); err != nil {
		return nil, err
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v, nil
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return nil, exprErrorf("The language expression property '%s' doesn't exist, available properties are '%s'", name, strings.Join(keys, ", "))
}

// typeName names a value's type as ARM's messages do.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "Null"
	case bool:
		return "Boolean"
	case int64:
		return "Integer"
	case float64:
		return "Float"
	case string:
		return "String"
	case []any:
		return "Array"
	case map[string]any:
		return "Object"
	}
	return "Unknown"
}

// toString converts a primitive the way ARM's string(), concat() and
// format() do; objects and arrays become compact JSON.
func toString(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case bool:
		if v {
			return "True"
		}
		return "False"
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	return compactJSON(v)
}

// compactJSON writes v without white space and without HTML escaping (ARM
// writes "<" as is). Map keys come out sorted.
func compactJSON(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// equal is ARM's deep equality: case-sensitive strings, integers equal to
// integral floats, objects compared member by member. It adds to *n the
// number of pairs of values it compared.
func equal(a, b any, n *int) bool {
	*n++
	switch a := a.(type) {
	case int64:
		switch b := b.(type) {
		case int64:
			return a == b
		case float64:
			return float64(a) == b
		}
		return false
	case float64:
		switch b := b.(type) {
		case int64:
			return a == float64(b)
		case float64:
			return a == b
		}
		return false
	case []any:
		b, ok := b.([]any)
		return ok && slices.EqualFunc(a, b, func(x, y any) bool { return equal(x, y, n) })
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, av := range a {
			bv, ok := b[k]
			if !ok || !equal(av, bv, n) {
				return false
			}
		}
		return true
	}
	return a == b
}

// asInt accepts integers, and floats that hold an integer (JSON from some
// clients writes 5 as 5.0).
func asInt(v any) (int64, bool) {
	switch v := v.(type) {
	case int64:
		return v, true
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return int64(v), true
		}
	}
	return 0, false
}
