package template

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// function implements a template function. It gets the call unevaluated so
// that if() can evaluate only the branch it takes.
type function func(ev *evaluator, c *callExpr) (any, error)

// builtin returns the template function with the given name, ignoring
// case as ARM does. A switch rather than a map: the functions refer to the
// evaluator, which would make a package-level map an initialization cycle.
func builtin(name string) (function, bool) {
	switch strings.ToLower(name) {
	case "parameters":
		return fnParameters, true
	case "variables":
		return fnVariables, true
	case "reference":
		return fnReference, true
	case "copyindex":
		return fnCopyIndex, true
	case "resourcegroup":
		return fnResourceGroup, true
	case "subscription":
		return fnSubscription, true
	case "deployment":
		return fnDeployment, true
	case "resourceid":
		return fnResourceID, true
	case "concat":
		return fnConcat, true
	case "format":
		return fnFormat, true
	case "string":
		return fnString, true
	case "int":
		return fnInt, true
	case "bool":
		return fnBool, true
	case "length":
		return fnLength, true
	case "tolower":
		return strFn(strings.ToLower), true
	case "toupper":
		return strFn(strings.ToUpper), true
	case "trim":
		return strFn(strings.TrimSpace), true
	case "if":
		return fnIf, true
	case "equals":
		return fnEquals, true
	case "not":
		return fnNot, true
	case "and":
		return boolFold(true), true
	case "or":
		return boolFold(false), true
	case "true":
		return constFn(true), true
	case "false":
		return constFn(false), true
	case "null":
		return constFn(nil), true
	case "json":
		return fnJSON, true
	case "uniquestring":
		return hashFn(uniqueString), true
	case "guid":
		return hashFn(guid), true
	case "createarray":
		return fnCreateArray, true
	case "createobject":
		return fnCreateObject, true
	case "empty":
		return fnEmpty, true
	case "contains":
		return fnContains, true
	case "replace":
		return fnReplace, true
	case "substring":
		return fnSubstring, true
	case "split":
		return fnSplit, true
	case "startswith":
		return affixFn(hasPrefixFold), true
	case "endswith":
		return affixFn(hasSuffixFold), true
	case "padleft":
		return fnPadLeft, true
	case "first":
		return edgeFn(true), true
	case "last":
		return edgeFn(false), true
	case "coalesce":
		return fnCoalesce, true
	case "add":
		return arith(func(a, b int64) (int64, error) { return a + b, nil }), true
	case "sub":
		return arith(func(a, b int64) (int64, error) { return a - b, nil }), true
	case "mul":
		return arith(func(a, b int64) (int64, error) { return a * b, nil }), true
	case "div":
		return arith(func(a, b int64) (int64, error) { return divmod(a, b, true) }), true
	case "mod":
		return arith(func(a, b int64) (int64, error) { return divmod(a, b, false) }), true
	case "less":
		return compare(func(c int) bool { return c < 0 }), true
	case "lessorequals":
		return compare(func(c int) bool { return c <= 0 }), true
	case "greater":
		return compare(func(c int) bool { return c > 0 }), true
	case "greaterorequals":
		return compare(func(c int) bool { return c >= 0 }), true
	}
	return nil, false
}

// args evaluates all arguments of c, checking their number.
func (ev *evaluator) args(c *callExpr, lo, hi int) ([]any, error) {
	if err := arity(c, lo, hi); err != nil {
		return nil, err
	}
	out := make([]any, len(c.args))
	for i, a := range c.args {
		v, err := ev.eval(a)
		if err != nil {
			return nil, err
		}
		// A string argument is read (compared, searched, copied): that
		// work grows with its length, which a shared variable can make
		// long without any bytes being built.
		if s, ok := v.(string); ok {
			if err := ev.scan(len(s)); err != nil {
				return nil, err
			}
		}
		out[i] = v
	}
	return out, nil
}

// arity checks the number of arguments; hi < 0 means no upper bound.
func arity(c *callExpr, lo, hi int) error {
	n := len(c.args)
	switch {
	case lo == hi && n != lo:
		return exprErrorf("Unable to evaluate template language function '%s': function requires %d argument(s) while %d were provided", c.name, lo, n)
	case n < lo:
		return exprErrorf("Unable to evaluate template language function '%s': function requires at least %d argument(s) while %d were provided", c.name, lo, n)
	case hi >= 0 && n > hi:
		return exprErrorf("Unable to evaluate template language function '%s': function accepts at most %d argument(s) while %d were provided", c.name, hi, n)
	}
	return nil
}

func wantType(c *callExpr, i int, want string, v any) error {
	return exprErrorf("The template language function '%s' expects its parameter %d to be of type '%s'. The provided value is of type '%s'", c.name, i+1, want, typeName(v))
}

func argString(c *callExpr, args []any, i int) (string, error) {
	s, ok := args[i].(string)
	if !ok {
		return "", wantType(c, i, "String", args[i])
	}
	return s, nil
}

func argInt(c *callExpr, args []any, i int) (int64, error) {
	n, ok := asInt(args[i])
	if !ok {
		return 0, wantType(c, i, "Integer", args[i])
	}
	return n, nil
}

func argBool(c *callExpr, args []any, i int) (bool, error) {
	b, ok := args[i].(bool)
	if !ok {
		return false, wantType(c, i, "Boolean", args[i])
	}
	return b, nil
}

func notHere(c *callExpr) error {
	return exprErrorf("The template function '%s' is not expected at this location", c.name)
}

func fnParameters(ev *evaluator, c *callExpr) (any, error) {
	args, err := ev.args(c, 1, 1)
	if err != nil {
		return nil, err
	}
	name, err := argString(c, args, 0)
	if err != nil {
		return nil, err
	}
	return ev.parameter(name)
}

func fnVariables(ev *evaluator, c *callExpr) (any, error) {
	if ev.phase == phaseParameters {
		return nil, notHere(c)
	}
	args, err := ev.args(c, 1, 1)
	if err != nil {
		return nil, err
	}
	name, err := argString(c, args, 0)
	if err != nil {
		return nil, err
	}
	return ev.variable(name)
}

func fnCopyIndex(ev *evaluator, c *callExpr) (any, error) {
	args, err := ev.args(c, 0, 2)
	if err != nil {
		return nil, err
	}
	var name string
	var offset int64
	switch len(args) {
	case 1:
		if s, ok := args[0].(string); ok {
			name = s
		} else if offset, err = argInt(c, args, 0); err != nil {
			return nil, err
		}
	case 2:
		if name, err = argString(c, args, 0); err != nil {
			return nil, err
		}
		if offset, err = argInt(c, args, 1); err != nil {
			return nil, err
		}
	}
	for i := len(ev.loops) - 1; i >= 0; i-- {
		l := ev.loops[i]
		if name == "" && l.unnamed || name != "" && strings.EqualFold(name, l.name) {
			return int64(l.index) + offset, nil
		}
	}
	if name != "" && len(ev.loops) > 0 {
		return nil, exprErrorf("The template function 'copyIndex' refers to the copy loop '%s', which does not enclose this expression", name)
	}
	return nil, notHere(c)
}

func fnResourceGroup(ev *evaluator, c *callExpr) (any, error) {
	if _, err := ev.args(c, 0, 0); err != nil {
		return nil, err
	}
	return ev.built(map[string]any{
		"id":         ev.ctx.groupID(),
		"name":       ev.ctx.ResourceGroup,
		"type":       "Microsoft.Resources/resourceGroups",
		"location":   ev.ctx.ResourceGroupLocation,
		"tags":       map[string]any{},
		"properties": map[string]any{"provisioningState": "Succeeded"},
	})
}

func fnSubscription(ev *evaluator, c *callExpr) (any, error) {
	if _, err := ev.args(c, 0, 0); err != nil {
		return nil, err
	}
	return ev.built(map[string]any{
		"id":             "/subscriptions/" + ev.ctx.SubscriptionID,
		"subscriptionId": ev.ctx.SubscriptionID,
		"tenantId":       ev.ctx.TenantID,
		"displayName":    ev.ctx.SubscriptionName,
	})
}

func fnDeployment(ev *evaluator, c *callExpr) (any, error) {
	if _, err := ev.args(c, 0, 0); err != nil {
		return nil, err
	}
	return ev.built(map[string]any{
		"name": ev.ctx.DeploymentName,
		"properties": map[string]any{
			"template": map[string]any{"contentVersion": ev.t.ContentVersion},
		},
	})
}

// fnResourceID is resourceId([subscriptionId], [resourceGroupName],
// resourceType, name1, [name2...]). The resource type is the first argument
// holding a "/"; the arguments before it are the subscription and group.
func fnResourceID(ev *evaluator, c *callExpr) (any, error) {
	args, err := ev.args(c, 2, -1)
	if err != nil {
		return nil, err
	}
	strs := make([]string, len(args))
	for i := range args {
		if strs[i], err = argString(c, args, i); err != nil {
			return nil, err
		}
	}
	ti := slices.IndexFunc(strs, func(s string) bool { return strings.Contains(s, "/") })
	if ti < 0 || ti > 2 {
		return nil, exprErrorf("Unable to evaluate template language function 'resourceId': function requires exactly one multi-segmented argument which must be resource type including resource provider namespace. Current function arguments '%s'", strings.Join(strs, ","))
	}
	sub, group := ev.ctx.SubscriptionID, ev.ctx.ResourceGroup
	switch ti {
	case 1:
		group = strs[0]
	case 2:
		sub, group = strs[0], strs[1]
	}
	var names []string
	for _, n := range strs[ti+1:] {
		names = append(names, strings.Split(n, "/")...)
	}
	id, err := resourceID(sub, group, strs[ti], names)
	if err != nil {
		return nil, exprErrorf("Unable to evaluate template language function 'resourceId': %s. Current function arguments '%s'", err.Error(), strings.Join(strs, ","))
	}
	// Counted once built: an id is as long as its arguments and a few
	// fixed segments.
	return id, ev.produce(valueOverhead + len(id))
}

// resourceID builds /subscriptions/s/resourceGroups/g/providers/NS/t1/n1/t2/n2.
func resourceID(sub, group, typ string, names []string) (string, error) {
	segs := strings.Split(typ, "/")
	if len(segs) < 2 || slices.Contains(segs, "") {
		return "", fmt.Errorf("the type '%s' is not a resource type: expected 'Namespace/type[/childType...]'", typ)
	}
	if len(names) != len(segs)-1 || slices.Contains(names, "") {
		return "", fmt.Errorf("the type '%s' requires %d resource name segment(s) and %d were given", typ, len(segs)-1, len(names))
	}
	var b strings.Builder
	b.WriteString("/subscriptions/" + sub + "/resourceGroups/" + group + "/providers/" + segs[0])
	for i, n := range names {
		b.WriteString("/" + segs[i+1] + "/" + n)
	}
	return b.String(), nil
}

func fnConcat(ev *evaluator, c *callExpr) (any, error) {
	args, err := ev.args(c, 1, -1)
	if err != nil {
		return nil, err
	}
	if slices.ContainsFunc(args, func(v any) bool { _, ok := v.([]any); return ok }) {
		var out []any
		for i, a := range args {
			arr, ok := a.([]any)
			if !ok {
				return nil, wantType(c, i, "Array", a)
			}
			// The same array may be given many times: count each copy
			// in full before appending it.
			if err := ev.weigh(arr); err != nil {
				return nil, err
			}
			out = append(out, arr...)
		}
		if out == nil {
			out = []any{}
		}
		return out, nil
	}
	parts := make([]string, len(args))
	n := valueOverhead
	for i, a := range args {
		switch a.(type) {
		case map[string]any:
			return nil, wantType(c, i, "String", a)
		}
		parts[i] = toString(a) // a string itself, or a short number or boolean
		n += len(parts[i])
	}
	// Counted before it is built: concat(v, v, v, ...) of a long v is
	// how a small template asks for gigabytes.
	if err := ev.produce(n); err != nil {
		return nil, err
	}
	return strings.Join(parts, ""), nil
}

func fnFormat(ev *evaluator, c *callExpr) (any, error) {
	args, err := ev.args(c, 1, -1)
	if err != nil {
		return nil, err
	}
	f, err := argString(c, args, 0)
	if err != nil {
		return nil, err
	}
	s, err := formatNET(f, args[1:], ev.produce)
	var be *budgetError
	if errors.As(err, &be) {
		return nil, err
	}
	if err != nil {
		return nil, exprErrorf("Unable to evaluate template language function 'format': %s", err.Error())
	}
	return s, nil
}

func fnString(ev *evaluator, c *callExpr) (any, error) {
	args, err := ev.args(c, 1, 1)
	if err != nil {
		return nil, err
	}
	return ev.text(args[0])
}

func fnInt(ev *evaluator, c *callExpr) (any, error) {
	args, err := ev.args(c, 1, 1)
	if err != nil {
		return nil, err
	}
	switch v := args[0].(type) {
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return nil, exprErrorf("The template language function 'int' cannot convert the string '%s' to an integer", v)
		}
		return n, nil
	default:
		if n, ok := asInt(v); ok {
			return n, nil
		}
	}
	return nil, wantType(c, 0, "String", args[0])
}

func fnBool(ev *evaluator, c *callExpr) (any, error) {
	args, err := ev.args(c, 1, 1)
	if err != nil {
		return nil, err
	}
	switch v := args[0].(type) {
	case bool:
		return v, nil
	case int64:
		return v != 0, nil
	case string:
		switch t := strings.TrimSpace(v); {
		case strings.EqualFold(t, "true"):
			return true, nil
		case strings.EqualFold(t, "false"):
			return false, nil
		}
		return nil, exprErrorf("The template language function 'bool' cannot convert the string '%s' to a boolean", v)
	}
	return nil, wantType(c, 0, "Boolean", args[0])
}

// utf16Len counts a string as .NET does, in UTF-16 code units, without
// converting it.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

func fnLength(ev *evaluator, c *callExpr) (any, error) {
	args, err := ev.args(c, 1, 1)
	if err != nil {
		return nil, err
	}
	switch v := args[0].(type) {
	case string:
		return int64(utf16Len(v)), nil
	case []any:
		return int64(len(v)), nil
	case map[string]any:
		return int64(len(v)), nil
	}
	return nil, wantType(c, 0, "String, Array or Object", args[0])
}

func strFn(f func(string) string) function {
	return func(ev *evaluator, c *callExpr) (any, error) {
		args, err := ev.args(c, 1, 1)
		if err != nil {
			return nil, err
		}
		s, err := argString(c, args, 0)
		if err != nil {
			return nil, err
		}
		// Counted once built: case mapping changes a string's length
		// by a small factor at most.
		out := f(s)
		return out, ev.produce(valueOverhead + len(out))
	}
}

// fnIf evaluates only the branch it takes, as ARM does.
func fnIf(ev *evaluator, c *callExpr) (any, error) {
	if err := arity(c, 3, 3); err != nil {
		return nil, err
	}
	cond, err := ev.eval(c.args[0])
	if err != nil {
		return nil, err
	}
	b, ok := cond.(bool)
	if !ok {
		return nil, wantType(c, 0, "Boolean", cond)
	}
	if b {
		return ev.eval(c.args[1])
	}
	return ev.eval(c.args[2])
}

func fnEquals(ev *evaluator, c *callExpr) (any, error) {
	args, err := ev.args(c, 2, 2)
	if err != nil {
		return nil, err
	}
	return ev.equal(args[0], args[1])
}

func fnNot(ev *evaluator, c *callExpr) (any, error) {
	args, err := ev.args(c, 1, 1)
	if err != nil {
		return nil, err
	}
	b, err := argBool(c, args, 0)
	return !b, err
}

// boolFold is and() (all true) or or() (any true); every argument is
// evaluated and must be a boolean.
func boolFold(all bool) function {
	return func(ev *evaluator, c *callExpr) (any, error) {
		args, err := ev.args(c, 2, -1)
		if err != nil {
			return nil, err
		}
		result := all
		for i := range args {
			b, err := argBool(c, args, i)
			if err != nil {
				return nil, err
			}
			if b != all {
				result = !all
			}
		}
		return result, nil
	}
}

func constFn(v any) function {
	return func(ev *evaluator, c *callExpr) (any, error) {
		if _, err := ev.args(c, 0, 0); err != nil {
			return nil, err
		}
		return v, nil
	}
}

// parsedValueCost is what json() builds for one value of its text: a
// parsed node (about 130 bytes) and the value made from it.
const parsedValueCost = 160

func fnJSON(ev *evaluator, c *callExpr) (any, error) {
	args, err := ev.args(c, 1, 1)
	if err != nil {
		return nil, err
	}
	s, err := argString(c, args, 0)
	if err != nil {
		return nil, err
	}
	// Counted before parsing: a short JSON text such as [0,0,0,...] makes
	// one parsed node and one value for every two bytes. Every value but
	// the first follows a '[', ',' or ':', so their count bounds the values.
	values := 1
	for i := range len(s) {
		switch s[i] {
		case '[', ',', ':':
			values++
		}
	}
	if err := ev.produce(len(s) + values*parsedValueCost); err != nil {
		return nil, err
	}
	n, err := parseJSONC([]byte(s))
	if err != nil {
		return nil, exprErrorf("The template language function 'json' cannot parse its argument as JSON: %s", err.Error())
	}
	return n.value(), nil
}

// hashFn is uniqueString() or guid(): one or more strings.
func hashFn(h func([]string) string) function {
	return func(ev *evaluator, c *callExpr) (any, error) {
		args, err := ev.args(c, 1, -1)
		if err != nil {
			return nil, err
		}
		parts := make([]string, len(args))
		n := 0
		for i := range args {
			if parts[i], err = argString(c, args, i); err != nil {
				return nil, err
			}
			n += len(parts[i]) + 1
		}
		// The hashes read their arguments joined: count the joined copy.
		if err := ev.produce(n); err != nil {
			return nil, err
		}
		return h(parts), nil
	}
}

func fnCreateArray(ev *evaluator, c *callExpr) (any, error) {
	args, err := ev.args(c, 0, -1)
	if err != nil {
		return nil, err
	}
	// Counted in full: an array may hold one long value many times.
	return args, ev.weigh(args)
}

func fnCreateObject(ev *evaluator, c *callExpr) (any, error) {
	args, err := ev.args(c, 0, -1)
	if err != nil {
		return nil, err
	}
	if len(args)%2 != 0 {
		return nil, exprErrorf("Unable to evaluate template language function 'createObject': function requires an even number of arguments while %d were provided", len(args))
	}
	// Counted in full: an object may hold one long value many times.
	if err := ev.weigh(args); err != nil {
		return nil, err
	}
	m := make(map[string]any, len(args)/2)
	for i := 0; i < len(args); i += 2 {
		k, err := argString(c, args, i)
		if err != nil {
			return nil, err
		}
		m[k] = args[i+1]
	}
	return m, nil
}

func fnEmpty(ev *evaluator, c *callExpr) (any, error) {
	args, err := ev.args(c, 1, 1)
	if err != nil {
		return nil, err
	}
	switch v := args[0].(type) {
	case nil:
		return true, nil
	case string:
		return v == "", nil
	case []any:
		return len(v) == 0, nil
	case map[string]any:
		return len(v) == 0, nil
	}
	return nil, wantType(c, 0, "String, Array or Object", args[0])
}

func fnContains(ev *evaluator, c *callExpr) (any, error) {
	args, err := ev.args(c, 2, 2)
	if err != nil {
		return nil, err
	}
	switch v := args[0].(type) {
	case string:
		s, err := ev.text(args[1])
		if err != nil {
			return nil, err
		}
		return strings.Contains(v, s), nil
	case []any:
		for _, e := range v {
			eq, err := ev.equal(e, args[1])
			if eq || err != nil {
				return eq, err
			}
		}
		return false, nil
	case map[string]any:
		k, err := argString(c, args, 1)
		if err != nil {
			return nil, err
		}
		_, err = ev.member(v, k)
		var be *budgetError
		if errors.As(err, &be) {
			return nil, err
		}
		return err == nil, nil
	}
	return nil, wantType(c, 0, "String, Array or Object", args[0])
}

func fnReplace(ev *evaluator, c *callExpr) (any, error) {
	args, err := ev.args(c, 3, 3)
	if err != nil {
		return nil, err
	}
	var s [3]string
	for i := range s {
		if s[i], err = argString(c, args, i); err != nil {
			return nil, err
		}
	}
	if s[1] == "" {
		return nil, exprErrorf("The template language function 'replace' cannot replace an empty string")
	}
	// Counted before it is built: the result's length is known.
	n := strings.Count(s[0], s[1])
	if err := ev.produce(valueOverhead + len(s[0]) + n*(len(s[2])-len(s[1]))); err != nil {
		return nil, err
	}
	return strings.ReplaceAll(s[0], s[1], s[2]), nil
}

// fnSubstring counts in UTF-16 code units, as .NET does.
func fnSubstring(ev *evaluator, c *callExpr) (any, error) {
	args, err := ev.args(c, 2, 3)
	if err != nil {
		return nil, err
	}
	s, err := argString(c, args, 0)
	if err != nil {
		return nil, err
	}
	units := int64(utf16Len(s))
	start, err := argInt(c, args, 1)
	if err != nil {
		return nil, err
	}
	length := units - start
	if len(args) == 3 {
		if length, err = argInt(c, args, 2); err != nil {
			return nil, err
		}
	}
	if start < 0 || length < 0 || start > units || length > units-start {
		return nil, exprErrorf("The index and length parameters must refer to a location within the string. The index parameter: '%d', the length parameter: '%d', the length of the string parameter: '%d'", start, length, units)
	}
	out := utf16Slice(s, int(start), int(start+length))
	return out, ev.produce(valueOverhead + len(out))
}

// utf16Slice is s[start:end] counted in UTF-16 code units, as .NET's
// Substring counts: a surrogate pair cut in half leaves U+FFFD, as
// utf16.Decode makes of a lone surrogate. It reads s once and builds only
// the result, rather than converting the whole string twice.
func utf16Slice(s string, start, end int) string {
	var b strings.Builder
	pos := 0
	for _, r := range s {
		if pos >= end {
			break
		}
		n := utf16.RuneLen(r)
		lo, hi := max(pos, start), min(pos+n, end)
		switch {
		case lo >= hi:
		case hi-lo == n:
			b.WriteRune(r)
		default:
			b.WriteRune(utf8.RuneError)
		}
		pos += n
	}
	return b.String()
}

func fnSplit(ev *evaluator, c *callExpr) (any, error) {
	args, err := ev.args(c, 2, 2)
	if err != nil {
		return nil, err
	}
	s, err := argString(c, args, 0)
	if err != nil {
		return nil, err
	}
	var seps []string
	switch d := args[1].(type) {
	case string:
		seps = []string{d}
	case []any:
		for _, e := range d {
			es, ok := e.(string)
			if !ok {
				return nil, wantType(c, 1, "String", e)
			}
			seps = append(seps, es)
		}
	default:
		return nil, wantType(c, 1, "String or Array", args[1])
	}
	seps = slices.DeleteFunc(seps, func(s string) bool { return s == "" })
	out := []any{}
	for {
		// Each piece is counted as it is cut: splitting a long string
		// on a frequent separator makes many values.
		if err := ev.produce(valueOverhead); err != nil {
			return nil, err
		}
		// Each piece searches the rest of the string for every
		// separator, up to its next occurrence or to the end: count that
		// reading, since a separator that occurs once makes every piece
		// read to the end.
		best, bestLen, read := -1, 0, 0
		for _, sep := range seps {
			i := strings.Index(s, sep)
			if i < 0 {
				read += len(s)
				continue
			}
			read += i + len(sep)
			if best < 0 || i < best {
				best, bestLen = i, len(sep)
			}
		}
		if err := ev.scan(read); err != nil {
			return nil, err
		}
		if best < 0 {
			return append(out, s), ev.produce(len(s))
		}
		if err := ev.produce(best); err != nil {
			return nil, err
		}
		out = append(out, s[:best])
		s = s[best+bestLen:]
	}
}

// affixFn is startsWith() or endsWith(), which ignore case.
func affixFn(has func(s, affix string) bool) function {
	return func(ev *evaluator, c *callExpr) (any, error) {
		args, err := ev.args(c, 2, 2)
		if err != nil {
			return nil, err
		}
		s, err := argString(c, args, 0)
		if err != nil {
			return nil, err
		}
		a, err := argString(c, args, 1)
		if err != nil {
			return nil, err
		}
		return has(s, a), nil
	}
}

// hasPrefixFold is strings.HasPrefix of both strings lower-cased, compared
// rune by rune instead of building lower-cased copies of a long string at
// every call.
func hasPrefixFold(s, prefix string) bool {
	for prefix != "" {
		if s == "" {
			return false
		}
		r1, n1 := utf8.DecodeRuneInString(s)
		r2, n2 := utf8.DecodeRuneInString(prefix)
		if unicode.ToLower(r1) != unicode.ToLower(r2) {
			return false
		}
		s, prefix = s[n1:], prefix[n2:]
	}
	return true
}

// hasSuffixFold is hasPrefixFold from the end.
func hasSuffixFold(s, suffix string) bool {
	for suffix != "" {
		if s == "" {
			return false
		}
		r1, n1 := utf8.DecodeLastRuneInString(s)
		r2, n2 := utf8.DecodeLastRuneInString(suffix)
		if unicode.ToLower(r1) != unicode.ToLower(r2) {
			return false
		}
		s, suffix = s[:len(s)-n1], suffix[:len(suffix)-n2]
	}
	return true
}

// maxPad bounds padLeft and format alignment so that a template cannot ask
// for gigabytes.
const maxPad = 16 << 10

func fnPadLeft(ev *evaluator, c *callExpr) (any, error) {
	args, err := ev.args(c, 2, 3)
	if err != nil {
		return nil, err
	}
	var s string
	switch v := args[0].(type) {
	case string:
		s = v
	case int64:
		s = strconv.FormatInt(v, 10)
	default:
		return nil, wantType(c, 0, "String or Integer", v)
	}
	total, err := argInt(c, args, 1)
	if err != nil {
		return nil, err
	}
	if total > maxPad {
		return nil, exprErrorf("The template language function 'padLeft' cannot pad to more than %d characters", maxPad)
	}
	pad := " "
	if len(args) == 3 {
		if pad, err = argString(c, args, 2); err != nil {
			return nil, err
		}
		if len([]rune(pad)) != 1 {
			return nil, exprErrorf("The template language function 'padLeft' expects a single padding character; got '%s'", pad)
		}
	}
	n := max(int(total)-utf16Len(s), 0)
	if err := ev.produce(valueOverhead + len(s) + n*len(pad)); err != nil {
		return nil, err
	}
	return strings.Repeat(pad, n) + s, nil
}

// edgeFn is first() or last() of a string or an array.
func edgeFn(first bool) function {
	return func(ev *evaluator, c *callExpr) (any, error) {
		args, err := ev.args(c, 1, 1)
		if err != nil {
			return nil, err
		}
		switch v := args[0].(type) {
		case string:
			if v == "" {
				return "", nil
			}
			// One character, decoded in place rather than by converting
			// the whole string.
			r, _ := utf8.DecodeRuneInString(v)
			if !first {
				r, _ = utf8.DecodeLastRuneInString(v)
			}
			return string(r), nil
		case []any:
			if len(v) == 0 {
				return nil, nil
			}
			if first {
				return v[0], nil
			}
			return v[len(v)-1], nil
		}
		return nil, wantType(c, 0, "String or Array", args[0])
	}
}

func fnCoalesce(ev *evaluator, c *callExpr) (any, error) {
	args, err := ev.args(c, 1, -1)
	if err != nil {
		return nil, err
	}
	for _, a := range args {
		if a != nil {
			return a, nil
		}
	}
	return nil, nil
}

func arith(op func(a, b int64) (int64, error)) function {
	return func(ev *evaluator, c *callExpr) (any, error) {
		args, err := ev.args(c, 2, 2)
		if err != nil {
			return nil, err
		}
		a, err := argInt(c, args, 0)
		if err != nil {
			return nil, err
		}
		b, err := argInt(c, args, 1)
		if err != nil {
			return nil, err
		}
		return op(a, b)
	}
}

func divmod(a, b int64, div bool) (int64, error) {
	if b == 0 {
		return 0, exprErrorf("Attempted to divide by zero")
	}
	if b == -1 { // avoid MinInt64 / -1 overflow trap
		if div {
			return -a, nil
		}
		return 0, nil
	}
	if div {
		return a / b, nil
	}
	return a % b, nil
}

// compare is less() and friends over two integers or two strings (ordinal).
func compare(ok func(int) bool) function {
	return func(ev *evaluator, c *callExpr) (any, error) {
		args, err := ev.args(c, 2, 2)
		if err != nil {
			return nil, err
		}
		if a, isInt := asInt(args[0]); isInt {
			b, err := argInt(c, args, 1)
			if err != nil {
				return nil, err
			}
			return ok(cmpInt(a, b)), nil
		}
		a, err := argString(c, args, 0)
		if err != nil {
			return nil, wantType(c, 0, "Integer or String", args[0])
		}
		b, err := argString(c, args, 1)
		if err != nil {
			return nil, err
		}
		return ok(strings.Compare(a, b)), nil
	}
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
