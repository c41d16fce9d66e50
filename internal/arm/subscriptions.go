package arm

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/deltadisk/deltadisk/internal/service"
)

type subscriptionJSON struct {
	ID                   string         `json:"id"`
	SubscriptionID       string         `json:"subscriptionId"`
	TenantID             string         `json:"tenantId"`
	DisplayName          string         `json:"displayName"`
	State                string         `json:"state"`
	AuthorizationSource  string         `json:"authorizationSource"`
	ManagedByTenants     []any          `json:"managedByTenants"`
	SubscriptionPolicies map[string]any `json:"subscriptionPolicies"`
}

func subscriptionOf(s service.Subscription) subscriptionJSON {
	return subscriptionJSON{
		ID: "/subscriptions/" + s.ID, SubscriptionID: s.ID, TenantID: s.TenantID, DisplayName: s.DisplayName,
		State: "Enabled", AuthorizationSource: "RoleBased", ManagedByTenants: []any{},
		SubscriptionPolicies: map[string]any{"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"},
	}
}

// listSubscriptions shows only the subscriptions the caller has a role on.
func (c *call) listSubscriptions() error {
	if _, err := c.apiVersion(minResourcesVersion); err != nil {
		return err
	}
	out := []subscriptionJSON{}
	for _, s := range c.h.svc.Subscriptions() {
		if c.caller.CanRead(s.ID) {
			out = append(out, subscriptionOf(s))
		}
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"value": out})
	return nil
}

func (c *call) getSubscription() error {
	if _, err := c.apiVersion(minResourcesVersion); err != nil {
		return err
	}
	s, err := c.h.svc.Subscription(c.sub)
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusOK, subscriptionOf(s))
	return nil
}

func (c *call) listTenants() error {
	if _, err := c.apiVersion(minResourcesVersion); err != nil {
		return err
	}
	seen := map[string]bool{}
	out := []map[string]any{}
	for _, s := range c.h.svc.Subscriptions() {
		if c.caller.CanRead(s.ID) && !seen[s.TenantID] {
			seen[s.TenantID] = true
			out = append(out, map[string]any{"id": "/tenants/" + s.TenantID, "tenantId": s.TenantID, "tenantCategory": "Home", "displayName": "deltadisk"})
		}
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"value": out})
	return nil
}

// metadata answers az's cloud discovery: an object for the old form
// (api-version 2015-01-01, `az cloud register`) and a list of clouds for
// the new one (ARM_CLOUD_METADATA_URL).
func (h *handler) metadata(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return errorf(http.StatusMethodNotAllowed, "MethodNotAllowed", "%s is not supported on %s.", r.Method, r.URL.Path)
	}
	base := strings.TrimSuffix(h.cfg.PublicURL.String(), "/") + "/"
	auth := map[string]any{"loginEndpoint": h.cfg.Authority, "audiences": []string{h.cfg.Audience}, "tenant": "adfs", "identityProvider": "ADFS"}
	v := r.URL.Query().Get("api-version")
	if v == "" || v < "2019-05-01" {
		writeJSON(w, http.StatusOK, map[string]any{
			"galleryEndpoint": base, "graphEndpoint": base, "portalEndpoint": base, "authentication": auth,
		})
		return nil
	}
	writeJSON(w, http.StatusOK, []map[string]any{{
		"name": "deltadisk", "resourceManager": base, "authentication": auth,
		"graphAudience": base, "graph": base, "gallery": base, "portal": base,
		"suffixes": map[string]any{"storage": h.cfg.PublicURL.Hostname()},
	}})
	return nil
}

type groupJSON struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags"`
	Properties map[string]string `json:"properties"`
}

func groupOf(g *service.Group) groupJSON {
	tags := g.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	return groupJSON{ID: g.ID(), Name: g.Name, Type: "Microsoft.Resources/resourceGroups", Location: g.Location, Tags: tags,
		Properties: map[string]string{"provisioningState": "Succeeded"}}
}

func (c *call) listGroups() error {
	if _, err := c.apiVersion(minResourcesVersion); err != nil {
		return err
	}
	groups, err := c.h.svc.ListGroups(c.r.Context(), c.sub)
	if err != nil {
		return err
	}
	out := []groupJSON{}
	for _, g := range groups {
		out = append(out, groupOf(g))
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"value": out})
	return nil
}

func (c *call) groupMethods() error {
	if _, err := c.apiVersion(minResourcesVersion); err != nil {
		return err
	}
	ctx := c.r.Context()
	switch c.r.Method {
	case http.MethodGet:
		g, err := c.h.svc.GetGroup(ctx, c.sub, c.group)
		if err != nil {
			return err
		}
		writeJSON(c.w, http.StatusOK, groupOf(g))
	case http.MethodHead:
		if _, err := c.h.svc.GetGroup(ctx, c.sub, c.group); err != nil {
			if errors.Is(err, service.ErrNotFound) {
				c.w.WriteHeader(http.StatusNotFound)
				return nil
			}
			return err
		}
		c.w.WriteHeader(http.StatusNoContent)
	case http.MethodPut, http.MethodPatch:
		var body struct {
			Location string            `json:"location"`
			Tags     map[string]string `json:"tags"`
		}
		if err := decode(c.r.Body, &body); err != nil {
			return err
		}
		if c.r.Method == http.MethodPatch {
			g, err := c.h.svc.GetGroup(ctx, c.sub, c.group)
			if err != nil {
				return err
			}
			body.Location = g.Location
			if body.Tags == nil {
				body.Tags = g.Tags // a PATCH without tags keeps them
			}
		}
		g, created, err := c.h.svc.PutGroup(ctx, c.sub, c.group, body.Location, body.Tags)
		if err != nil {
			return err
		}
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		writeJSON(c.w, status, groupOf(g))
	case http.MethodDelete:
		found, err := c.h.svc.DeleteGroup(ctx, c.sub, c.group)
		if err != nil {
			return err
		}
		if !found {
			return &service.Error{Kind: service.ErrNotFound, Code: "ResourceGroupNotFound", Message: "Resource group '" + c.group + "' could not be found."}
		}
		c.w.WriteHeader(http.StatusOK)
	default:
		return errorf(http.StatusMethodNotAllowed, "MethodNotAllowed", "%s is not supported on a resource group.", c.r.Method)
	}
	return nil
}

func (c *call) moveResources() error {
	if _, err := c.apiVersion(minResourcesVersion); err != nil {
		return err
	}
	var body struct {
		Resources           []string `json:"resources"`
		TargetResourceGroup string   `json:"targetResourceGroup"`
	}
	if err := decode(c.r.Body, &body); err != nil {
		return err
	}
	if tsub, _, err := service.ParseGroupID(body.TargetResourceGroup); err == nil && !c.caller.CanWrite(tsub) {
		return errorf(http.StatusForbidden, "AuthorizationFailed", "The client '%s' does not have authorization to write to '%s'.", c.caller.ClientID, body.TargetResourceGroup)
	}
	if err := c.h.svc.Move(c.r.Context(), c.sub, c.group, body.TargetResourceGroup, body.Resources); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// decode reads a JSON body strictly enough to refuse malformed input with
// ARM's codes, naming the field of a type mismatch.
func decode(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	err := dec.Decode(v)
	if err == nil {
		// ARM reads one JSON value: '{...}{...}' is not a body it accepts,
		// and which of the two a lenient reader took would be a guess.
		if _, err = dec.Token(); errors.Is(err, io.EOF) {
			return nil
		}
		var tooBig *http.MaxBytesError
		if !errors.As(err, &tooBig) {
			return errorf(http.StatusBadRequest, "InvalidRequestContent", "The request content is invalid: data follows the JSON value at offset %d.", dec.InputOffset())
		}
	}
	var (
		tooBig  *http.MaxBytesError
		typeErr *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &tooBig):
		return errorf(http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "The request body is larger than %d bytes.", tooBig.Limit)
	case errors.Is(err, io.EOF):
		return errorf(http.StatusBadRequest, "InvalidRequestContent", "The request content is empty; a JSON body is required.")
	case errors.As(err, &typeErr):
		e := errorf(http.StatusBadRequest, "InvalidRequestContent", "The request content is invalid: field '%s' must be of type %s, not a JSON %s.", typeErr.Field, typeErr.Type, typeErr.Value)
		e.target = typeErr.Field
		return e
	}
	return errorf(http.StatusBadRequest, "InvalidRequestContent", "The request content is not valid JSON: %v.", err)
}
