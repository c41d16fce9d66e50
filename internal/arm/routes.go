package arm

import (
	"mime"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/deltadisk/deltadisk/internal/identity"
	"github.com/deltadisk/deltadisk/internal/service"
)

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h.serve(w, r); err != nil {
		h.writeError(w, r, err)
	}
}

// route is a request's path cut into segments, with lower-cased copies for
// matching: ARM paths are case-insensitive, names keep their case.
type route struct {
	segs, lower []string
}

func newRoute(path string) route {
	var rt route
	for _, s := range strings.Split(path, "/") {
		if s != "" {
			rt.segs = append(rt.segs, s)
			rt.lower = append(rt.lower, strings.ToLower(s))
		}
	}
	return rt
}

// is reports whether the path matches pattern, where "*" matches any one
// segment.
func (rt route) is(pattern ...string) bool {
	if len(rt.lower) != len(pattern) {
		return false
	}
	for i, p := range pattern {
		if p != "*" && p != rt.lower[i] {
			return false
		}
	}
	return true
}

func (h *handler) serve(w http.ResponseWriter, r *http.Request) error {
	rt := newRoute(r.URL.Path)
	// az reads the cloud's endpoints before it has a token.
	if rt.is("metadata", "endpoints") {
		return h.metadata(w, r)
	}
	caller, err := h.id.Authenticate(r)
	if err != nil {
		return err
	}
	if r.ContentLength > maxBody {
		return errorf(http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "The request body is %d bytes; at most %d are accepted.", r.ContentLength, maxBody)
	}
	if err := checkRequest(r); err != nil {
		return err
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	c := &call{h: h, w: w, r: r, caller: caller, rt: rt}
	switch {
	case rt.is("deltadisk", "admin", "*"):
		return c.only(http.MethodPost, func() error { return c.admin(rt.lower[2]) })
	case rt.is("subscriptions"):
		return c.only(http.MethodGet, c.listSubscriptions)
	case rt.is("tenants"):
		return c.only(http.MethodGet, c.listTenants)
	case len(rt.lower) < 2 || rt.lower[0] != "subscriptions":
		return c.noRoute()
	}
	c.sub = rt.segs[1]
	if err := c.authorize(); err != nil {
		return err
	}
	rest := route{segs: rt.segs[2:], lower: rt.lower[2:]}
	// Deployment operations are also addressed without the provider
	// segment (.../resourcegroups/{rg}/deployments/{name}/operations), as
	// the SDK's DeploymentOperationsClient does.
	if len(rest.lower) >= 5 && rest.lower[0] == "resourcegroups" && rest.lower[2] == "deployments" {
		rest.segs = append(rest.segs[:2:2], append([]string{"providers", "Microsoft.Resources"}, rest.segs[2:]...)...)
		rest.lower = append(rest.lower[:2:2], append([]string{"providers", "microsoft.resources"}, rest.lower[2:]...)...)
	}
	switch {
	case rest.is():
		return c.only(http.MethodGet, c.getSubscription)
	case rest.is("resourcegroups"):
		return c.only(http.MethodGet, c.listGroups)
	case rest.is("resourcegroups", "*"):
		c.group = rest.segs[1]
		return c.groupMethods()
	case rest.is("resourcegroups", "*", "moveresources"):
		c.group = rest.segs[1]
		return c.only(http.MethodPost, c.moveResources)
	case rest.is("resourcegroups", "*", "providers", "microsoft.resources", "deployments"):
		c.group = rest.segs[1]
		return c.only(http.MethodGet, c.listDeployments)
	case rest.is("resourcegroups", "*", "providers", "microsoft.resources", "deployments", "*"):
		c.group, c.name = rest.segs[1], rest.segs[5]
		return c.deploymentMethods()
	case rest.is("resourcegroups", "*", "providers", "microsoft.resources", "deployments", "*", "validate"):
		c.group, c.name = rest.segs[1], rest.segs[5]
		return c.only(http.MethodPost, c.validateDeployment)
	case rest.is("resourcegroups", "*", "providers", "microsoft.resources", "deployments", "*", "operations"):
		c.group, c.name = rest.segs[1], rest.segs[5]
		return c.only(http.MethodGet, c.listOperations)
	case rest.is("resourcegroups", "*", "providers", "microsoft.resources", "deployments", "*", "operations", "*"):
		c.group, c.name = rest.segs[1], rest.segs[5]
		return c.only(http.MethodGet, func() error { return c.getOperation(rest.segs[7]) })
	case rest.is("resourcegroups", "*", "providers", "microsoft.resources", "deployments", "*", "operationstatuses", "*"):
		c.group, c.name = rest.segs[1], rest.segs[5]
		return c.only(http.MethodGet, func() error { return c.operationStatus(rest.segs[7]) })
	case rest.is("resourcegroups", "*", "providers", "microsoft.compute", "*"):
		c.group = rest.segs[1]
		if err := c.kind(rest.lower[4]); err != nil {
			return err
		}
		return c.only(http.MethodGet, c.listResources)
	case rest.is("providers", "microsoft.compute", "*"):
		if err := c.kind(rest.lower[2]); err != nil {
			return err
		}
		return c.only(http.MethodGet, c.listResources)
	case rest.is("resourcegroups", "*", "providers", "microsoft.compute", "*", "*"):
		c.group, c.name = rest.segs[1], rest.segs[5]
		if err := c.kind(rest.lower[4]); err != nil {
			return err
		}
		return c.resourceMethods()
	case rest.is("resourcegroups", "*", "providers", "microsoft.compute", "*", "*", "begingetaccess"):
		c.group, c.name = rest.segs[1], rest.segs[5]
		if err := c.kind(rest.lower[4]); err != nil {
			return err
		}
		return c.only(http.MethodPost, c.grantAccess)
	case rest.is("resourcegroups", "*", "providers", "microsoft.compute", "*", "*", "usage"):
		c.group, c.name = rest.segs[1], rest.segs[5]
		if err := c.kind(rest.lower[4]); err != nil {
			return err
		}
		return c.only(http.MethodGet, c.usage)
	case rest.is("resourcegroups", "*", "providers", "microsoft.compute", "disks", "*", "attach"):
		c.group, c.name, c.res = rest.segs[1], rest.segs[5], service.KindDisk
		return c.only(http.MethodPost, c.attach)
	case rest.is("resourcegroups", "*", "providers", "microsoft.compute", "disks", "*", "detach"):
		c.group, c.name, c.res = rest.segs[1], rest.segs[5], service.KindDisk
		return c.only(http.MethodPost, c.detach)
	case rest.is("resourcegroups", "*", "providers", "microsoft.compute", "*", "*", "endgetaccess"):
		c.group, c.name = rest.segs[1], rest.segs[5]
		if err := c.kind(rest.lower[4]); err != nil {
			return err
		}
		return c.only(http.MethodPost, c.revokeAccess)
	}
	return c.noRoute()
}

// call is one authenticated ARM request.
type call struct {
	h      *handler
	w      http.ResponseWriter
	r      *http.Request
	caller *identity.Caller
	rt     route

	sub, group, name string
	res              service.Kind
}

func (c *call) only(method string, fn func() error) error {
	if c.r.Method != method {
		return errorf(http.StatusMethodNotAllowed, "MethodNotAllowed", "%s is not supported on %s.", c.r.Method, c.r.URL.Path)
	}
	return fn()
}

func (c *call) noRoute() error {
	return errorf(http.StatusNotFound, "NotFound", "No resource or action at '%s'. deltadisk serves subscriptions, resource groups and Microsoft.Compute disks and snapshots.", c.r.URL.Path)
}

func (c *call) kind(segment string) error {
	switch segment {
	case "disks":
		c.res = service.KindDisk
	case "snapshots":
		c.res = service.KindSnapshot
	default:
		return errorf(http.StatusNotFound, "InvalidResourceType", "The resource type '%s' could not be found in the namespace 'Microsoft.Compute'; deltadisk serves disks and snapshots.", segment)
	}
	return nil
}

func (c *call) id() service.ResourceID {
	return service.ResourceID{Subscription: c.sub, Group: c.group, Kind: c.res, Name: c.name}
}

// checkRequest refuses what ARM refuses before any handler reads the
// request: a body that is not JSON, and an api-version given more than once
// (which of them a handler read would otherwise be a guess). A request
// without a body may carry any Content-Type: there is nothing to misread.
func checkRequest(r *http.Request) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && r.ContentLength != 0 {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return errorf(http.StatusUnsupportedMediaType, "UnsupportedMediaType", "The content media type '%s' is not supported; send application/json.", ct[:min(len(ct), 100)])
		}
	}
	if n := len(r.URL.Query()["api-version"]); n > 1 {
		return errorf(http.StatusBadRequest, "InvalidApiVersionParameter", "The api-version query parameter is given %d times; give it once.", n)
	}
	return nil
}

// authorize checks the caller's role on the subscription: any role reads,
// Owner and Contributor write (and act: access grants, moves).
func (c *call) authorize() error {
	write := c.r.Method != http.MethodGet && c.r.Method != http.MethodHead
	if (write && c.caller.CanWrite(c.sub)) || (!write && c.caller.CanRead(c.sub)) {
		return nil
	}
	action := "read"
	if write {
		action = "write"
	}
	return errorf(http.StatusForbidden, "AuthorizationFailed",
		"The client '%s' with object id '%s' does not have authorization to perform action '%s' over scope '/subscriptions/%s' or the scope is invalid.",
		c.caller.ClientID, c.caller.ClientID, action, c.sub)
}

var apiVersionRe = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2})(-preview|-beta|-privatepreview)?$`)

// Minimum api-versions per resource provider.
const (
	minComputeVersion   = "2019-03-01"
	minResourcesVersion = "2014-04-01"
)

// apiVersion checks the api-version query parameter against a minimum and
// returns it.
func (c *call) apiVersion(minimum string) (string, error) {
	v := c.r.URL.Query().Get("api-version")
	if v == "" {
		return "", errorf(http.StatusBadRequest, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
	}
	m := apiVersionRe.FindStringSubmatch(v)
	if m != nil {
		if _, err := time.Parse(time.DateOnly, m[1]); err != nil {
			m = nil
		}
	}
	if m == nil || m[1] < minimum {
		return "", errorf(http.StatusBadRequest, "InvalidApiVersionParameter",
			"The api-version '%s' is invalid. The supported versions are dates from '%s' on, in the form YYYY-MM-DD.", v, minimum)
	}
	return v, nil
}
