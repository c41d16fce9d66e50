// Package arm serves the Azure Resource Manager surface deltadisk speaks:
// subscriptions, tenants, cloud metadata, resource groups, and the
// Microsoft.Compute disks and snapshots resources with their access
// actions. It owns the wire JSON types, checks tokens and scopes on every
// call, and maps service errors to ARM's error body in one place.
//
// Everything deltadisk does for a request finishes at once (snapshots and
// clones are O(1)), so every operation answers synchronously: 200 with
// provisioningState Succeeded and no polling headers, which both the Go SDK
// and az accept as a completed long-running operation.
package arm

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/identity"
	"github.com/deltadisk/deltadisk/internal/service"
)

// Config configures the ARM handler.
type Config struct {
	Service  *service.Service
	Identity *identity.Identity
	// PublicURL is the base of every absolute URL in answers: nextLinks,
	// SAS URLs, cloud metadata.
	PublicURL *url.URL
	// Authority and Audience are the token service's, for the cloud
	// metadata az reads (/metadata/endpoints).
	Authority string
	Audience  string
	// Attacher exports attached disks (deltadisk's NBD extension); nil
	// refuses attach.
	Attacher Attacher
	Logger   *slog.Logger
}

// Attacher exposes a disk's volume while it is attached.
type Attacher interface {
	// Attach exports the volume and returns how clients reach it. The
	// export's name must be unguessable (NBD has no authentication) and
	// appear only in the returned Export.
	Attach(ctx context.Context, disk string, volume engine.ID) (Export, error)
	// Detach ends the export, closing its connections.
	Detach(ctx context.Context, disk string) error
}

// Export is how an attached disk is reached.
type Export struct {
	NBDURI     string `json:"nbdUri"`
	UnixSocket string `json:"unixSocket,omitempty"`
	UnixURI    string `json:"nbdUnixUri,omitempty"`
}

// maxBody bounds ARM request bodies; a larger one is refused with 413.
const maxBody = 4 << 20

type handler struct {
	cfg Config
	svc *service.Service
	id  *identity.Identity
	log *slog.Logger
}

// New returns the handler for every ARM path. The caller mounts it at "/"
// beside the identity endpoints.
func New(cfg Config) http.Handler {
	h := &handler{cfg: cfg, svc: cfg.Service, id: cfg.Identity, log: cfg.Logger}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	return h
}
