// Package template evaluates ARM templates for resource-group deployments:
// it reads a deployment request, checks the parameters against the
// template, evaluates the template language and orders the resources by
// their dependencies. It is pure: no I/O, and reference() reaches the
// deployed resources only through [Context.Reference].
//
// # Use
//
//	req, err := template.ParseRequest(body)                     // PUT or validate body, az or SDK form
//	plan, err := req.Template.Evaluate(ctx, req.Parameters, dc) // nothing created yet: this is validation
//	for _, r := range plan.Resources { ... }                    // check Type/APIVersion, then create in this order
//	outs, err := plan.Outputs(ctx, dc)                          // after deployment; reference() may name what was created
//
// Every error meant for the client is an [*Error] with ARM's code
// (InvalidTemplate, InvalidRequestContent), its wording, and the JSON path,
// line and column of the offending value in the template as the user wrote
// it.
//
// # What is covered
//
// Template: $schema (a resource-group deploymentTemplate.json schema),
// contentVersion (n.n.n.n), parameters (string, securestring, int, bool,
// object, secureobject, array; defaultValue, itself an expression that may
// use other parameters; allowedValues; minValue, maxValue, minLength,
// maxLength), variables (expressions, references between them with cycle
// detection, "copy" loops), resources of any type and apiVersion
// (condition, dependsOn by id, name, type/name or copy loop name, copy
// loops with Serial/Parallel mode and batchSize, property copy loops inside
// properties), and outputs (condition, copy).
//
// Expression language: "[...]" strings, the "[[" escape, a doubled single quote inside string
// literals, integers, nested calls, .property and [index] access. Functions:
// parameters, variables, reference, copyIndex, resourceGroup, subscription,
// deployment, resourceId, concat, format, string, int, bool, length,
// toLower, toUpper, trim, if (only the chosen branch is evaluated), equals,
// not, and, or, true, false, null, json, uniqueString, guid, createArray,
// createObject, empty, contains, replace, substring, split, startsWith,
// endsWith, padLeft, first, last, coalesce, add, sub, mul, div, mod, less,
// lessOrEquals, greater, greaterOrEquals.
//
// Not supported, refused with a clear InvalidTemplate: user-defined
// functions and types, languageVersion 2.0 (symbolic names), nested child
// resources (declare them at the top level), and resources with their own
// scope, subscriptionId or resourceGroup. reference() to a resource the
// template itself deploys is evaluated only in outputs.
//
// # Access
//
// reference() is the only function that reads a resource (this package has
// no list* functions), and it reads only through [Context.Reference]: the
// caller checks there that the deployer may read the resource, and
// answers a resource it may not read exactly as a missing one.
//
// # Limits
//
// A hostile template must not make the server build gigabytes from a few
// kilobytes, so one deployment's evaluation (Evaluate, then Outputs, which
// goes on from what Evaluate spent) runs under one budget, counted as
// values are built: 8 MiB of values built or placed, 2^20 steps of work,
// and 128 levels of nesting. Going over it is an InvalidTemplate error
// that names the template section and the expression; budget.go says how
// each function is counted and why the numbers. A request body may hold
// at most 2^17 JSON values. ARM's own limits hold: 256 parameters, 256
// variables, 64 outputs, 800 resources after copy loops, and a copy count
// of at most 800. Error messages are clipped at 4 KiB.
//
// # Fidelity
//
// uniqueString is a 64-bit MurmurHash3 variant of the arguments joined
// with "-", written as 13 base32 characters. Azure does not publish it.
// This implementation reproduces seven published input/output pairs (see
// hash_test.go for each and its source): four outputs of real deployments,
// one computed with Microsoft's Azure.Deployments.Expression engine, one
// from the test of Microsoft's azapi Terraform provider, and one from an
// independent reimplementation. One pair does not match: a test in
// microsoft/commercial-marketplace-offer-deploy expects "yeygmhukyx3qg"
// for a virtual machine's resource id, where this gives "yvjxno3je5on2";
// the template that produced that value is not published, so it may have
// hashed other input.
//
// guid is an RFC 4122 §4.3 name-based UUID, version 5 (SHA-1), of the
// arguments joined with "-" in UTF-8, in the namespace
// 11fb06fb-712d-4ddd-98c7-e71bbd588830. Microsoft's documentation says only
// that guid() implements RFC 4122 §4.3 "with some modifications"; the
// namespace and the joining come from public reimplementations that people
// use to predict role assignment names. No input/output pair produced by
// Azure was found to check it against, so guid() is deterministic and
// well-formed but not proven to equal Azure's.
//
// string(), concat() and format() write booleans as True and False, as
// .NET does. Objects keep no member order: string() of an object writes its
// members sorted by name, where ARM keeps template order. format() supports
// the standard numeric specifiers D, N, F, X and G and all-zero custom
// patterns such as 000.
package template
