package arm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/deltadisk/deltadisk/internal/service"
	"github.com/deltadisk/deltadisk/internal/template"
)

// Deployments run templates at resource-group scope. A PUT evaluates the
// whole template and checks every resource before it answers, so a
// template that fails validation creates nothing; the resources are then
// created in dependency order in the background, and the answer carries an
// Azure-AsyncOperation URL that reports the outcome.

const deploymentType = "Microsoft.Resources/deployments"

// maxStoredJSON bounds a deployment's parameters and outputs as stored
// and shown in every GET and list of deployments: ARM's own limit on a
// template or a parameters file, 4 MiB. The template package's budget
// already keeps evaluation near this; the check here bounds the record.
const maxStoredJSON = 4 << 20

func (c *call) deploymentPath() string {
	return "/subscriptions/" + c.sub + "/resourceGroups/" + c.group + "/providers/" + deploymentType + "/" + c.name
}

func (c *call) absolute(path string, query string) string {
	u := *c.h.cfg.PublicURL
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = query
	return u.String()
}

type deploymentJSON struct {
	ID         string                   `json:"id"`
	Name       string                   `json:"name"`
	Type       string                   `json:"type"`
	Properties deploymentPropertiesJSON `json:"properties"`
}

type deploymentPropertiesJSON struct {
	ProvisioningState  string                   `json:"provisioningState"`
	Mode               string                   `json:"mode"`
	Timestamp          string                   `json:"timestamp"`
	Duration           string                   `json:"duration"`
	CorrelationID      string                   `json:"correlationId"`
	Parameters         json.RawMessage          `json:"parameters,omitempty"`
	Outputs            json.RawMessage          `json:"outputs,omitempty"`
	OutputResources    []map[string]string      `json:"outputResources"`
	ValidatedResources []map[string]string      `json:"validatedResources,omitempty"`
	Dependencies       []any                    `json:"dependencies"`
	Providers          []any                    `json:"providers"`
	Error              *service.DeploymentError `json:"error,omitempty"`
}

func (c *call) deploymentOf(d *service.Deployment) deploymentJSON {
	end := d.Finished
	if end.IsZero() {
		end = c.h.svc.Now()
	}
	out := deploymentJSON{
		ID: service.GroupID(d.Subscription, d.Group) + "/providers/" + deploymentType + "/" + d.Name, Name: d.Name, Type: deploymentType,
		Properties: deploymentPropertiesJSON{
			ProvisioningState: d.State, Mode: d.Mode, Timestamp: end.UTC().Format(time.RFC3339Nano),
			Duration: isoDuration(end.Sub(d.Started)), CorrelationID: d.CorrelationID,
			Parameters: d.Parameters, Outputs: d.Outputs, OutputResources: []map[string]string{},
			Dependencies: []any{}, Providers: []any{}, Error: d.Error,
		},
	}
	for _, id := range d.Resources {
		out.Properties.OutputResources = append(out.Properties.OutputResources, map[string]string{"id": id})
	}
	return out
}

// isoDuration formats d as ARM does, e.g. "PT1.5S".
func isoDuration(d time.Duration) string {
	return fmt.Sprintf("PT%gS", d.Round(time.Millisecond).Seconds())
}

func (c *call) listDeployments() error {
	if _, err := c.apiVersion(minResourcesVersion); err != nil {
		return err
	}
	ds, err := c.h.svc.ListDeployments(c.r.Context(), c.sub, c.group)
	if err != nil {
		return err
	}
	out := []deploymentJSON{}
	for _, d := range ds {
		out = append(out, c.deploymentOf(d))
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"value": out})
	return nil
}

func (c *call) deploymentMethods() error {
	if _, err := c.apiVersion(minResourcesVersion); err != nil {
		return err
	}
	ctx := c.r.Context()
	switch c.r.Method {
	case http.MethodGet:
		d, err := c.h.svc.GetDeployment(ctx, c.sub, c.group, c.name)
		if err != nil {
			return err
		}
		writeJSON(c.w, http.StatusOK, c.deploymentOf(d))
	case http.MethodHead:
		if _, err := c.h.svc.GetDeployment(ctx, c.sub, c.group, c.name); err != nil {
			if errors.Is(err, service.ErrNotFound) {
				c.w.WriteHeader(http.StatusNotFound)
				return nil
			}
			return err
		}
		c.w.WriteHeader(http.StatusNoContent)
	case http.MethodPut:
		return c.deploy(false)
	case http.MethodDelete:
		found, err := c.h.svc.DeleteDeployment(ctx, c.sub, c.group, c.name)
		if err != nil {
			return err
		}
		if !found {
			return &service.Error{Kind: service.ErrNotFound, Code: "DeploymentNotFound", Message: "Deployment '" + c.name + "' could not be found."}
		}
		c.w.WriteHeader(http.StatusNoContent)
	default:
		return errorf(http.StatusMethodNotAllowed, "MethodNotAllowed", "%s is not supported on a deployment.", c.r.Method)
	}
	return nil
}

func (c *call) validateDeployment() error {
	if _, err := c.apiVersion(minResourcesVersion); err != nil {
		return err
	}
	return c.deploy(true)
}

// step is one resource of a deployment, checked and ready to create.
type step struct {
	res  template.Resource
	id   service.ResourceID
	spec service.Spec
}

// deploy evaluates and checks a deployment request; with validateOnly it
// answers what would be deployed, otherwise it starts the deployment.
func (c *call) deploy(validateOnly bool) error {
	ctx := c.r.Context()
	body, err := io.ReadAll(c.r.Body)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return errorf(http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "The request body is larger than %d bytes.", tooBig.Limit)
	case err != nil:
		return errorf(http.StatusBadRequest, "InvalidRequestContent", "The request body could not be read: %v.", err)
	}
	g, err := c.h.svc.GetGroup(ctx, c.sub, c.group)
	if err != nil {
		return err
	}
	req, err := template.ParseRequest(body)
	if err != nil {
		return templateError(err)
	}
	if !strings.EqualFold(req.Mode, "Incremental") {
		return templateError(&template.Error{Code: template.CodeInvalidRequestContent,
			Message: fmt.Sprintf("Deployment mode '%s' is not supported; deltadisk deploys in Incremental mode.", req.Mode)})
	}
	sub, err := c.h.svc.Subscription(c.sub)
	if err != nil {
		return err
	}
	tctx := template.Context{
		SubscriptionID: sub.ID, SubscriptionName: sub.DisplayName, TenantID: sub.TenantID,
		ResourceGroup: g.Name, ResourceGroupLocation: g.Location, ResourceGroupID: g.ID(), DeploymentName: c.name,
		Reference: c.reference,
	}
	plan, err := req.Template.Evaluate(ctx, req.Parameters, tctx)
	if err != nil {
		return templateError(err)
	}
	steps, err := c.checkPlan(plan)
	if err != nil {
		return err
	}
	params, err := json.Marshal(plan.Parameters)
	if err != nil {
		return err
	}
	if len(params) > maxStoredJSON {
		return templateError(&template.Error{Code: template.CodeInvalidTemplate,
			Message: fmt.Sprintf("The deployment parameters are %d bytes as JSON; a deployment keeps at most %d.", len(params), maxStoredJSON)})
	}
	d := &service.Deployment{
		Subscription: c.sub, Group: g.Name, Name: c.name, State: "Succeeded", Mode: "Incremental",
		Started: c.h.svc.Now().UTC(), CorrelationID: uuid.NewString(), Parameters: params,
	}
	if validateOnly {
		out := c.deploymentOf(d)
		out.Properties.ValidatedResources = []map[string]string{}
		for _, s := range steps {
			out.Properties.ValidatedResources = append(out.Properties.ValidatedResources, map[string]string{"id": s.id.String()})
		}
		writeJSON(c.w, http.StatusOK, out)
		return nil
	}
	if old, err := c.h.svc.GetDeployment(ctx, c.sub, c.group, c.name); err == nil && old.State == "Running" {
		return &service.Error{Kind: service.ErrConflict, Code: "DeploymentActive", Message: "Deployment '" + c.name + "' is still running; wait for it to finish."}
	}
	d.State = "Running"
	if err := c.h.svc.PutDeployment(ctx, d); err != nil {
		return err
	}
	go c.h.run(context.WithoutCancel(ctx), d, plan, steps, tctx)

	status := c.absolute(c.deploymentPath()+"/operationStatuses/"+d.CorrelationID, "api-version="+c.r.URL.Query().Get("api-version"))
	c.w.Header().Set("Azure-AsyncOperation", status)
	c.w.Header().Set("Retry-After", "1")
	c.w.Header().Set("Retry-After-Ms", "50")
	out := c.deploymentOf(d)
	writeJSON(c.w, http.StatusCreated, out)
	return nil
}

// checkPlan refuses, before anything is created, resources deltadisk does
// not deploy: only Microsoft.Compute disks and snapshots, at an apiVersion
// the compute API accepts, with a body the compute API would accept.
func (c *call) checkPlan(plan *template.Plan) ([]step, error) {
	var steps []step
	for _, r := range plan.Resources {
		kind := service.Kind("")
		switch {
		case strings.EqualFold(r.Type, service.KindDisk.Type()):
			kind = service.KindDisk
		case strings.EqualFold(r.Type, service.KindSnapshot.Type()):
			kind = service.KindSnapshot
		default:
			return nil, templateError(r.Errorf(template.CodeInvalidTemplateDeployment,
				"The resource type '%s' is not supported; deltadisk deploys Microsoft.Compute/disks and Microsoft.Compute/snapshots.", r.Type))
		}
		m := apiVersionRe.FindStringSubmatch(r.APIVersion)
		if m == nil || m[1] < minComputeVersion {
			return nil, templateError(r.Errorf(template.CodeInvalidTemplateDeployment,
				"The apiVersion '%s' of resource type '%s' is not supported; use a date from '%s' on.", r.APIVersion, r.Type, minComputeVersion))
		}
		if !service.ValidName(r.Name) {
			return nil, templateError(r.Errorf(template.CodeInvalidTemplateDeployment,
				"The resource name '%s' is invalid: use 1-80 letters, digits, '_', '.' or '-', starting with a letter or digit and ending with a letter, digit or '_'.", r.Name))
		}
		raw, err := json.Marshal(r.Body)
		if err != nil {
			return nil, err
		}
		var b putBody
		if err := decode(bytes.NewReader(raw), &b); err != nil {
			var ae *apiError
			if errors.As(err, &ae) {
				return nil, templateError(r.Errorf(template.CodeInvalidTemplateDeployment, "%s", ae.message))
			}
			return nil, err
		}
		spec, err := specOf(&b, kind)
		if err != nil {
			var ae *apiError
			if errors.As(err, &ae) {
				return nil, templateError(r.Errorf(template.CodeInvalidTemplateDeployment, "%s", ae.message))
			}
			return nil, err
		}
		spec.APIVersion = r.APIVersion
		steps = append(steps, step{res: r, id: service.ResourceID{Subscription: c.sub, Group: c.group, Kind: kind, Name: r.Name}, spec: spec})
	}
	return steps, nil
}

// run creates a deployment's resources in order and records the outcome.
func (h *handler) run(ctx context.Context, d *service.Deployment, plan *template.Plan, steps []step, tctx template.Context) {
	fail := func(code, msg string, details ...service.DeploymentError) {
		d.State = "Failed"
		d.Error = &service.DeploymentError{Code: code, Message: msg, Details: details}
	}
	for i, s := range steps {
		start := h.svc.Now()
		op := service.DeploymentOperation{ID: fmt.Sprintf("%016X", i+1), ResourceID: s.id.String(), Type: s.res.Type, Name: s.res.Name, Timestamp: start.UTC()}
		_, err := h.svc.Put(ctx, s.id, s.spec)
		op.Duration = h.svc.Now().Sub(start)
		if err != nil {
			op.State, op.StatusCode = "Failed", "Conflict"
			var se *service.Error
			detail := service.DeploymentError{Code: "InternalServerError", Message: "creating the resource failed"}
			if errors.As(err, &se) {
				detail = service.DeploymentError{Code: se.Code, Message: se.Message}
				op.StatusCode = http.StatusText(statusOf(se.Kind))
			} else {
				h.log.Error("deployment step failed", "deployment", d.Name, "resource", s.id.String(), "err", err)
			}
			op.Error = &detail
			d.Operations = append(d.Operations, op)
			fail("DeploymentFailed", "At least one resource deployment operation failed. Please list deployment operations for details.", detail)
			break
		}
		op.State, op.StatusCode = "Succeeded", "OK"
		d.Operations = append(d.Operations, op)
		d.Resources = append(d.Resources, s.id.String())
	}
	if d.State == "Running" {
		outputs, err := plan.Outputs(ctx, tctx)
		var raw []byte
		if err == nil {
			raw, err = json.Marshal(outputs)
		}
		var te *template.Error
		var sf *storeFault
		switch {
		case err == nil && len(raw) > maxStoredJSON:
			fail(template.CodeInvalidTemplate, fmt.Sprintf("The template outputs are %d bytes as JSON; a deployment keeps at most %d.", len(raw), maxStoredJSON))
		case err == nil:
			d.State = "Succeeded"
			d.Outputs = raw
		case !errors.As(err, &sf) && errors.As(err, &te):
			fail(te.Code, te.Message)
		default:
			fail("DeploymentOutputEvaluationFailed", "The template outputs could not be evaluated.")
			h.log.Error("deployment outputs failed", "deployment", d.Name, "err", err)
		}
	}
	d.Finished = h.svc.Now().UTC()
	if err := h.svc.PutDeployment(ctx, d); err != nil {
		h.log.Error("recording a deployment's outcome failed", "deployment", d.Name, "err", err)
	}
}

// reference answers reference(): the resource as a GET shows it, to a
// caller who may GET it. A resource the caller may not read is answered
// exactly as one that does not exist, as ARM words it, so that a template
// can tell neither what another subscription holds nor whether it holds
// it. The check comes before the lookup, so only readable resources reach
// the store.
func (c *call) reference(ctx context.Context, resourceID, _ string) (map[string]any, error) {
	id, err := service.ParseResourceID(resourceID)
	if err != nil {
		return nil, fmt.Errorf("the resource '%s' is not a disk or snapshot deltadisk serves", resourceID)
	}
	//lint:ignore ST1005 ARM's own wording, which the deployment's error shows as it is
	notFound := fmt.Errorf("The Resource '%s/%s' under resource group '%s' was not found", id.Kind.Type(), id.Name, id.Group)
	if !c.caller.CanRead(id.Subscription) {
		return nil, notFound
	}
	r, err := c.h.svc.Get(ctx, id)
	if errors.Is(err, service.ErrNotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, &storeFault{err}
	}
	if err := c.h.svc.NoteReplication(ctx, r); err != nil {
		return nil, &storeFault{err}
	}
	raw, _ := json.Marshal(resourceOf(r, c.h.svc.Now()))
	var m map[string]any
	err = json.Unmarshal(raw, &m)
	return m, err
}

// storeFault is a failure of the stores behind reference(), not of the
// template: the request fails as any internal error does, logged and not
// shown (the template package would put a Reference error's text in the
// client's message).
type storeFault struct{ err error }

func (f *storeFault) Error() string { return "reading the resource failed" }
func (f *storeFault) Unwrap() error { return f.err }

func templateError(err error) error {
	var sf *storeFault
	if errors.As(err, &sf) {
		return sf.err
	}
	var te *template.Error
	if !errors.As(err, &te) {
		return err
	}
	status := http.StatusBadRequest
	e := errorf(status, te.Code, "%s", te.Message)
	e.target = te.Path
	return e
}

// operationStatus answers the Azure-AsyncOperation URL of a deployment.
func (c *call) operationStatus(opID string) error {
	d, err := c.h.svc.GetDeployment(c.r.Context(), c.sub, c.group, c.name)
	if err != nil {
		return err
	}
	if !strings.EqualFold(d.CorrelationID, opID) {
		return errorf(http.StatusNotFound, "NotFound", "The operation '%s' was not found.", opID)
	}
	out := map[string]any{"id": c.r.URL.Path, "name": opID, "status": d.State, "startTime": d.Started.Format(time.RFC3339Nano)}
	if d.State == "Running" {
		c.w.Header().Set("Retry-After", "1")
		c.w.Header().Set("Retry-After-Ms", "50")
	} else {
		out["endTime"] = d.Finished.Format(time.RFC3339Nano)
	}
	if d.Error != nil {
		out["error"] = d.Error
	}
	writeJSON(c.w, http.StatusOK, out)
	return nil
}

type operationJSON struct {
	ID          string         `json:"id"`
	OperationID string         `json:"operationId"`
	Properties  map[string]any `json:"properties"`
}

func (c *call) operationOf(op service.DeploymentOperation) operationJSON {
	props := map[string]any{
		"provisioningOperation": "Create", "provisioningState": op.State, "timestamp": op.Timestamp.Format(time.RFC3339Nano),
		"duration": isoDuration(op.Duration), "statusCode": op.StatusCode,
		"targetResource": map[string]string{"id": op.ResourceID, "resourceType": op.Type, "resourceName": op.Name},
	}
	if op.Error != nil {
		props["statusMessage"] = map[string]any{"error": op.Error}
	}
	return operationJSON{ID: c.deploymentPath() + "/operations/" + op.ID, OperationID: op.ID, Properties: props}
}

func (c *call) listOperations() error {
	if _, err := c.apiVersion(minResourcesVersion); err != nil {
		return err
	}
	d, err := c.h.svc.GetDeployment(c.r.Context(), c.sub, c.group, c.name)
	if err != nil {
		return err
	}
	out := []operationJSON{}
	for _, op := range d.Operations {
		out = append(out, c.operationOf(op))
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"value": out})
	return nil
}

func (c *call) getOperation(opID string) error {
	if _, err := c.apiVersion(minResourcesVersion); err != nil {
		return err
	}
	d, err := c.h.svc.GetDeployment(c.r.Context(), c.sub, c.group, c.name)
	if err != nil {
		return err
	}
	for _, op := range d.Operations {
		if strings.EqualFold(op.ID, opID) {
			writeJSON(c.w, http.StatusOK, c.operationOf(op))
			return nil
		}
	}
	return errorf(http.StatusNotFound, "NotFound", "Deployment operation '%s' was not found.", opID)
}
