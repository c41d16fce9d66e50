package arm

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/deltadisk/deltadisk/internal/blob"
	"github.com/deltadisk/deltadisk/internal/identity"
	"github.com/deltadisk/deltadisk/internal/service"
)

// resourceJSON is a disk or snapshot on the wire: one shape for every
// api-version (newer optional fields always present).
type resourceJSON struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Type     string            `json:"type"`
	Location string            `json:"location"`
	Tags     map[string]string `json:"tags"`
	Sku      skuJSON           `json:"sku"`
	// ManagedBy names who holds an attached disk (deltadisk's NBD
	// extension); Azure puts a VM's id there.
	ManagedBy  string         `json:"managedBy,omitempty"`
	Properties propertiesJSON `json:"properties"`
}

type skuJSON struct {
	Name string `json:"name"`
	Tier string `json:"tier"`
}

type creationDataJSON struct {
	CreateOption     string `json:"createOption"`
	SourceResourceID string `json:"sourceResourceId,omitempty"`
	SourceUniqueID   string `json:"sourceUniqueId,omitempty"`
	UploadSizeBytes  int64  `json:"uploadSizeBytes,omitempty"`
}

type propertiesJSON struct {
	OSType                      string           `json:"osType,omitempty"`
	HyperVGeneration            string           `json:"hyperVGeneration,omitempty"`
	CreationData                creationDataJSON `json:"creationData"`
	DiskSizeGB                  int64            `json:"diskSizeGB"`
	DiskSizeBytes               int64            `json:"diskSizeBytes"`
	UniqueID                    string           `json:"uniqueId"`
	ProvisioningState           string           `json:"provisioningState"`
	TimeCreated                 string           `json:"timeCreated"`
	DiskState                   string           `json:"diskState"`
	NetworkAccessPolicy         string           `json:"networkAccessPolicy"`
	PublicNetworkAccess         string           `json:"publicNetworkAccess"`
	Incremental                 *bool            `json:"incremental,omitempty"`
	IncrementalSnapshotFamilyID string           `json:"incrementalSnapshotFamilyId,omitempty"`
	// CompletionPercent and CopyCompletionError show a CopyStart copy;
	// CompletionPercent also shows a snapshot whose zones are being filled.
	CompletionPercent   *float64           `json:"completionPercent,omitempty"`
	CopyCompletionError *service.CopyError `json:"copyCompletionError,omitempty"`
}

func tierOf(sku string) string {
	tier, _, _ := strings.Cut(sku, "_")
	return tier
}

func resourceOf(r *service.Resource, now time.Time) resourceJSON {
	tags := r.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	out := resourceJSON{
		ID: r.ID().String(), Name: r.Name, Type: r.Kind.Type(), Location: r.Location, Tags: tags,
		Sku: skuJSON{Name: r.Sku, Tier: tierOf(r.Sku)},
		Properties: propertiesJSON{
			OSType: r.OSType, HyperVGeneration: r.HyperVGeneration,
			CreationData: creationDataJSON{
				CreateOption: r.CreationData.CreateOption, SourceResourceID: r.CreationData.SourceResourceID,
				SourceUniqueID: r.CreationData.SourceUniqueID, UploadSizeBytes: r.CreationData.UploadSizeBytes,
			},
			DiskSizeGB: r.DiskSizeGB(), DiskSizeBytes: r.SizeBytes, UniqueID: r.UniqueID, ProvisioningState: "Succeeded",
			TimeCreated: r.TimeCreated.UTC().Format(time.RFC3339Nano), DiskState: r.State(now),
			NetworkAccessPolicy: "AllowAll", PublicNetworkAccess: "Enabled",
		},
	}
	if r.Attached != nil {
		out.ManagedBy = r.Attached.Holder
	}
	switch {
	case r.Copy != nil:
		pct := r.Copy.Percent
		if r.Copy.Done && r.Replication != nil {
			pct = min(pct, r.Replication.Percent)
		}
		out.Properties.CompletionPercent = &pct
		out.Properties.CopyCompletionError = r.Copy.Error
	case r.Replication != nil:
		pct := r.Replication.Percent
		out.Properties.CompletionPercent = &pct
	}
	if r.Kind == service.KindSnapshot {
		inc := r.Incremental
		out.Properties.Incremental = &inc
		if inc {
			out.Properties.IncrementalSnapshotFamilyID = r.FamilyID
		}
	}
	return out
}

func (c *call) resourceMethods() error {
	if _, err := c.apiVersion(minComputeVersion); err != nil {
		return err
	}
	switch c.r.Method {
	case http.MethodGet:
		r, err := c.h.svc.Get(c.r.Context(), c.id())
		if err != nil {
			return err
		}
		return c.writeResource(r)
	case http.MethodPut:
		return c.put()
	case http.MethodPatch:
		return c.patch()
	case http.MethodDelete:
		found, err := c.h.svc.Delete(c.r.Context(), c.id())
		if err != nil {
			return err
		}
		if !found {
			c.w.WriteHeader(http.StatusNoContent)
			return nil
		}
		c.w.WriteHeader(http.StatusOK)
	default:
		return errorf(http.StatusMethodNotAllowed, "MethodNotAllowed", "%s is not supported on a %s.", c.r.Method, c.res.Type())
	}
	return nil
}

func (c *call) writeResource(r *service.Resource) error {
	if err := c.h.svc.NoteReplication(c.r.Context(), r); err != nil {
		return err
	}
	writeJSON(c.w, http.StatusOK, resourceOf(r, c.h.svc.Now()))
	return nil
}

// putBody is what clients send in a PUT; unknown fields are ignored, as
// ARM ignores properties a resource provider does not use.
type putBody struct {
	Location *string           `json:"location"`
	Tags     map[string]string `json:"tags"`
	Sku      *struct {
		Name string `json:"name"`
	} `json:"sku"`
	Properties *struct {
		CreationData *struct {
			CreateOption     string `json:"createOption"`
			SourceResourceID string `json:"sourceResourceId"`
			UploadSizeBytes  int64  `json:"uploadSizeBytes"`
		} `json:"creationData"`
		DiskSizeGB       int64  `json:"diskSizeGB"`
		Incremental      bool   `json:"incremental"`
		OSType           string `json:"osType"`
		HyperVGeneration string `json:"hyperVGeneration"`
	} `json:"properties"`
}

func invalidField(target, format string, args ...any) error {
	e := errorf(http.StatusBadRequest, "InvalidParameter", format, args...)
	e.target = target
	return e
}

func (c *call) put() error {
	var b putBody
	if err := decode(c.r.Body, &b); err != nil {
		return err
	}
	spec, err := specOf(&b, c.res)
	if err != nil {
		return err
	}
	spec.APIVersion = c.r.URL.Query().Get("api-version")
	r, err := c.h.svc.Put(c.r.Context(), c.id(), spec)
	if err != nil {
		return err
	}
	return c.writeResource(r)
}

// specOf checks a PUT body's shape and turns it into the service's spec.
func specOf(b *putBody, kind service.Kind) (service.Spec, error) {
	if b.Location == nil || *b.Location == "" {
		return service.Spec{}, invalidField("location", "The location property is required for a %s.", kind.Type())
	}
	if b.Properties == nil || b.Properties.CreationData == nil {
		return service.Spec{}, invalidField("properties.creationData", "properties.creationData is required: it says how the %s is created.", strings.TrimSuffix(string(kind), "s"))
	}
	cd := b.Properties.CreationData
	spec := service.Spec{
		Location: *b.Location, Tags: b.Tags,
		CreationData: service.CreationData{CreateOption: cd.CreateOption, SourceResourceID: cd.SourceResourceID, UploadSizeBytes: cd.UploadSizeBytes},
		DiskSizeGB:   b.Properties.DiskSizeGB, Incremental: b.Properties.Incremental,
		OSType: b.Properties.OSType, HyperVGeneration: b.Properties.HyperVGeneration,
	}
	if b.Sku != nil {
		spec.Sku = b.Sku.Name
	}
	spec, err := service.CheckSpec(spec)
	var se *service.Error
	if errors.As(err, &se) {
		return spec, invalidField(se.Target, "%s", se.Message)
	}
	return spec, err
}

func (c *call) patch() error {
	var b struct {
		Tags map[string]string `json:"tags"`
		Sku  *struct {
			Name string `json:"name"`
		} `json:"sku"`
		Properties *struct {
			DiskSizeGB *int64 `json:"diskSizeGB"`
		} `json:"properties"`
	}
	if err := decode(c.r.Body, &b); err != nil {
		return err
	}
	p := service.Patch{Tags: b.Tags}
	if b.Sku != nil {
		p.Sku = b.Sku.Name
	}
	if b.Properties != nil && b.Properties.DiskSizeGB != nil {
		// The service reads 0 as "unchanged"; a client that sends 0 asked
		// for something, and is told it is out of range.
		if *b.Properties.DiskSizeGB <= 0 {
			return invalidField("properties.diskSizeGB", "diskSizeGB must be a positive number of GiB; got %d.", *b.Properties.DiskSizeGB)
		}
		p.DiskSizeGB = *b.Properties.DiskSizeGB
	}
	r, err := c.h.svc.Patch(c.r.Context(), c.id(), p)
	if err != nil {
		return err
	}
	return c.writeResource(r)
}

// listResources lists a group's or a subscription's disks or snapshots,
// with a nextLink while more remain.
func (c *call) listResources() error {
	if _, err := c.apiVersion(minComputeVersion); err != nil {
		return err
	}
	q := c.r.URL.Query()
	page, next, err := c.h.svc.List(c.r.Context(), c.sub, c.group, c.res, q.Get("$skiptoken"), 0)
	if err != nil {
		return err
	}
	now := c.h.svc.Now()
	out := struct {
		Value    []resourceJSON `json:"value"`
		NextLink string         `json:"nextLink,omitempty"`
	}{Value: []resourceJSON{}}
	for _, r := range page {
		out.Value = append(out.Value, resourceOf(r, now))
	}
	if next != "" {
		u := *c.h.cfg.PublicURL
		u.Path = strings.TrimSuffix(u.Path, "/") + c.r.URL.Path
		q.Set("$skiptoken", next)
		u.RawQuery = q.Encode()
		out.NextLink = u.String()
	}
	writeJSON(c.w, http.StatusOK, out)
	return nil
}

func (c *call) grantAccess() error {
	if _, err := c.apiVersion(minComputeVersion); err != nil {
		return err
	}
	var b struct {
		Access            string `json:"access"`
		DurationInSeconds int64  `json:"durationInSeconds"`
		FileFormat        string `json:"fileFormat"`
	}
	if err := decode(c.r.Body, &b); err != nil {
		return err
	}
	if b.FileFormat != "" && !strings.EqualFold(b.FileFormat, "VHD") {
		return invalidField("fileFormat", "fileFormat '%s' is not supported; deltadisk serves fixed VHD.", b.FileFormat)
	}
	r, err := c.h.svc.GrantAccess(c.r.Context(), c.id(), b.Access, b.DurationInSeconds)
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusOK, map[string]string{"accessSAS": c.sasURL(r.Grant)})
	return nil
}

// sasURL is the data-plane URL of a grant: "/md-<grant>/abcd", as Azure's
// managed-disk blob URLs are shaped, signed for the grant's access.
func (c *call) sasURL(g *service.Grant) string {
	path := blob.Path(g.ID)
	perm := "r"
	if g.Access == service.AccessWrite {
		perm = "rw"
	}
	q := c.h.id.SignSAS(identity.SAS{Path: path, GrantID: g.ID, Permissions: perm, Start: g.Start, Expiry: g.Expiry})
	u := *c.h.cfg.PublicURL
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = url.Values(q).Encode()
	return u.String()
}

func (c *call) revokeAccess() error {
	if _, err := c.apiVersion(minComputeVersion); err != nil {
		return err
	}
	if _, err := c.h.svc.RevokeAccess(c.r.Context(), c.id()); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}
