package template

import (
	"fmt"
	"strconv"
)

// One deployment's evaluation (Evaluate, then Outputs, which goes on from
// what Evaluate spent) runs under one budget of bytes, steps and nesting,
// so that no request can make the server build more than a few times the
// budget: a 2.8 KB template that concat()s a 1 KiB string 16 times at
// five levels asks for a gigabyte at the last level. Costs are counted as
// values are built, before building whenever the size is known beforehand
// (concat, format piece by piece, replace, padLeft, createArray, split,
// json, the hashes), otherwise as soon as it is built when the result is
// at most a small multiple of an argument that already exists (toUpper,
// substring, string of an object).
//
// A value is counted where a function builds it and again each time it is
// placed in the evaluated template (a variable, a resource body, an
// output), because the plan and the deployment copy and serialize every
// placed occurrence: a 1 MiB variable used by 800 resources costs 800 MiB
// downstream even though evaluation shares one string.
const (
	// maxBytes bounds the bytes of values one deployment builds. ARM
	// refuses templates over 4 MB and this server request bodies over
	// 4 MiB; 8 MiB lets the largest template be placed in full once, with
	// room for what its expressions build.
	maxBytes = 8 << 20
	// maxSteps bounds the work: a step is one template value or expression
	// visited, one function called, one pair of values compared, or
	// scanBytes of a string argument read. A million steps take well under
	// a second; a template of ARM's largest size needs a fraction of them.
	maxSteps = 1 << 20
	// scanBytes is how many bytes of string argument one step pays for, so
	// that functions that read a long string without building one
	// (length, contains, equals, startsWith) are not free when repeated.
	scanBytes = 256
	// maxNesting bounds how deep evaluation goes (values in values, calls
	// in calls, variables using variables) and how deep a value built by a
	// function nests. Real templates stay under 20 levels; 128 keeps the
	// stack small and values far from encoding/json's 10000-level limit.
	maxNesting = 128
	// valueOverhead is what every value, array element and object member
	// costs beyond its text, about a Go interface value, so that an array
	// of a million empty strings is not free.
	valueOverhead = 16
)

// ARM's limits on a template's size, which this server keeps as ARM does.
const (
	maxParameters = 256
	maxVariables  = 256
	maxOutputs    = 64
	maxResources  = 800 // resources after copy loops are expanded
)

// budgetError is an evaluation that went over its budget. expr is the
// expression that was being evaluated, filled in by evalString; it is
// empty when the template's own values went over.
type budgetError struct {
	msg  string
	expr string
}

func (e *budgetError) Error() string {
	if e.expr == "" {
		return "The template " + e.msg
	}
	return "The expression '" + clip(e.expr, maxQuoted) + "' " + e.msg
}

// produce counts n bytes built.
func (ev *evaluator) produce(n int) error {
	ev.bytes += n
	if ev.bytes > maxBytes {
		return &budgetError{msg: fmt.Sprintf("builds more than %d bytes of values, the most this server evaluates for one deployment", maxBytes)}
	}
	return nil
}

// step counts one unit of work.
func (ev *evaluator) step() error { return ev.steps1(1) }

// scan counts the work of reading n bytes of a string.
func (ev *evaluator) scan(n int) error { return ev.steps1(n / scanBytes) }

func (ev *evaluator) steps1(n int) error {
	ev.steps += n
	if ev.steps > maxSteps {
		return &budgetError{msg: fmt.Sprintf("needs more than %d evaluation steps, the most this server allows for one deployment", maxSteps)}
	}
	return nil
}

// instancesPerStep is how many template resources one step pays for
// when a name in dependsOn or reference() is looked up among them: 800
// resources with long dependsOn lists would otherwise cost seconds
// without a step counted.
const instancesPerStep = 64

// scanInstances counts the work of one lookup among the resources.
func (ev *evaluator) scanInstances() error { return ev.steps1(len(ev.instances) / instancesPerStep) }

// enter goes one level deeper into evaluation; a nil error must be paired
// with leave.
func (ev *evaluator) enter() error {
	if ev.depth >= maxNesting {
		return nestingError()
	}
	ev.depth++
	return nil
}

func (ev *evaluator) leave() { ev.depth-- }

func nestingError() error {
	return &budgetError{msg: "nests deeper than " + strconv.Itoa(maxNesting) + " levels, the most this server evaluates"}
}

// weigh counts v as built anew: its text, every element and member at any
// depth (a value that holds another twice counts it twice, as copying or
// serializing it would), and stops at the first excess, so weighing is
// itself bounded by the budget.
func (ev *evaluator) weigh(v any) error { return ev.weighAt(v, 1) }

func (ev *evaluator) weighAt(v any, depth int) error {
	if depth > maxNesting {
		return nestingError()
	}
	switch v := v.(type) {
	case string:
		return ev.produce(valueOverhead + len(v))
	case []any:
		if err := ev.produce(valueOverhead); err != nil {
			return err
		}
		for _, e := range v {
			if err := ev.weighAt(e, depth+1); err != nil {
				return err
			}
		}
		return nil
	case map[string]any:
		if err := ev.produce(valueOverhead); err != nil {
			return err
		}
		for k, e := range v {
			if err := ev.produce(len(k)); err != nil {
				return err
			}
			if err := ev.weighAt(e, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return ev.produce(valueOverhead)
}

// text is toString under the budget: writing an array or object as JSON
// builds a new string. The value was counted in full when it was built, so
// its JSON is at most a few times the budget before it is counted.
func (ev *evaluator) text(v any) (string, error) {
	switch v.(type) {
	case []any, map[string]any:
		s := compactJSON(v)
		return s, ev.produce(valueOverhead + len(s))
	}
	return toString(v), nil
}

// equal is deep equality under the budget: one step per pair of values
// compared.
func (ev *evaluator) equal(a, b any) (bool, error) {
	n := 0
	eq := equal(a, b, &n)
	return eq, ev.steps1(n)
}

// built returns v, a value a function built from the deployment's
// context, once counted.
func (ev *evaluator) built(v map[string]any) (any, error) {
	return v, ev.weigh(v)
}
