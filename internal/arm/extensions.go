package arm

import (
	"context"
	"net/http"
)

// deltadisk's extensions of the disk and snapshot resources, beside the
// Azure surface: space usage, and attach/detach over NBD.

// usage answers GET {resource}/usage: what the image holds and what
// deleting it would free.
func (c *call) usage() error {
	if _, err := c.apiVersion(minComputeVersion); err != nil {
		return err
	}
	u, err := c.h.svc.Usage(c.r.Context(), c.id())
	if err != nil {
		return err
	}
	out := map[string]any{
		"sizeBytes": u.Size, "allocatedBytes": u.Allocated, "changedBytes": u.Changed,
		"exclusiveBytes": u.Exclusive, "exclusiveStoredBytes": u.ExclusiveStored,
	}
	// The transfer accounting of a CopyStart copy: what the diff listed,
	// what crossed the transport, what was written in the target region.
	if r, err := c.h.svc.Get(c.r.Context(), c.id()); err == nil && r.Copy != nil {
		out["copy"] = map[string]any{
			"diffBytes": r.Copy.DiffBytes, "bytesRead": r.Copy.BytesRead, "bytesWritten": r.Copy.BytesWritten,
			"full": r.Copy.Full, "percent": r.Copy.Percent, "done": r.Copy.Done,
		}
	}
	writeJSON(c.w, http.StatusOK, out)
	return nil
}

// attach answers POST {disk}/attach: the disk goes to Attached, held by
// the caller, and is exported over NBD until detach.
func (c *call) attach() error {
	if _, err := c.apiVersion(minComputeVersion); err != nil {
		return err
	}
	if c.h.cfg.Attacher == nil {
		return errorf(http.StatusConflict, "OperationNotAllowed", "This server does not export disks over NBD.")
	}
	ctx := c.r.Context()
	r, err := c.h.svc.Attach(ctx, c.id(), c.caller.ClientID)
	if err != nil {
		return err
	}
	exp, err := c.h.cfg.Attacher.Attach(ctx, r.ID().String(), r.Image)
	if err != nil {
		if _, derr := c.h.svc.Detach(context.WithoutCancel(ctx), c.id()); derr != nil {
			c.h.log.Error("undoing an attach that could not be exported", "disk", r.ID().String(), "err", derr)
		}
		return err
	}
	writeJSON(c.w, http.StatusOK, struct {
		Export
		ManagedBy string `json:"managedBy"`
		DiskState string `json:"diskState"`
	}{exp, r.Attached.Holder, r.State(c.h.svc.Now())})
	return nil
}

// detach answers POST {disk}/detach: the export ends, the disk is
// Unattached again.
func (c *call) detach() error {
	if _, err := c.apiVersion(minComputeVersion); err != nil {
		return err
	}
	ctx := c.r.Context()
	r, err := c.h.svc.Get(ctx, c.id())
	if err != nil {
		return err
	}
	if c.h.cfg.Attacher != nil {
		if err := c.h.cfg.Attacher.Detach(ctx, r.ID().String()); err != nil {
			return err
		}
	}
	if _, err := c.h.svc.Detach(ctx, c.id()); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}
