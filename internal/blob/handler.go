package blob

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/identity"
	"github.com/deltadisk/deltadisk/internal/service"
	"github.com/deltadisk/deltadisk/internal/vhd"
)

// PathPrefix starts the path of every SAS URL deltadisk issues: the
// container is "md-" and the grant id, as Azure's managed-disk blob hosts
// start with "md-". The server routes every path with this prefix here.
const PathPrefix = "/md-"

// blobName is the one blob in a grant's container, as in Azure's
// managed-disk SAS URLs.
const blobName = "abcd"

// Path returns the URL path of the blob a grant gives access to.
func Path(grantID string) string { return PathPrefix + grantID + "/" + blobName }

// Wire constants.
const (
	pageSize    = 512     // Azure's page: the alignment of every Put Page and page range
	maxPutPage  = 4 << 20 // the most one Put Page may write
	maxRangeMD5 = 4 << 20 // the largest range x-ms-range-get-content-md5 covers
	// defaultVersion is the storage version of a request that names none
	// (curl, a browser): the SAS's own sv, as the blob service does.
	defaultVersion = "2018-03-28"

	headerRequestID       = "x-ms-request-id"
	headerClientRequestID = "x-ms-client-request-id"
	headerVersion         = "x-ms-version"
	headerXMSRange        = "x-ms-range"
	headerPrevSnapshotURL = "x-ms-previous-snapshot-url"
)

// Config configures the data-plane handler.
type Config struct {
	// Service resolves grants to disks and snapshots and records writes;
	// its engine holds the data. Required.
	Service *service.Service
	// Identity verifies SAS signatures. Required.
	Identity *identity.Identity
	// Logger receives internal errors and answers cut short, with the
	// request id; nil discards. The server logs one line per request.
	Logger *slog.Logger
	// MaxPutPages bounds the Put Pages whose bodies are read and written
	// at once (each holds up to 4 MiB); 0 means DefaultMaxPutPages.
	MaxPutPages int
	// PutPageWait is how long a Put Page past that bound waits for its
	// turn before it is refused with 503 ServerBusy, which clients retry
	// after Retry-After; 0 means DefaultPutPageWait.
	PutPageWait time.Duration
}

// Defaults of [Config]: 64 Put Pages in flight hold at most 256 MiB of
// bodies, and keep the write path's group commits full.
const (
	DefaultMaxPutPages = 64
	DefaultPutPageWait = 2 * time.Second
)

type handler struct {
	svc *service.Service
	id  *identity.Identity
	eng *engine.Engine
	log *slog.Logger
	// pages holds a token per Put Page in flight; pageWait is how long one
	// waits for a token.
	pages    chan struct{}
	pageWait time.Duration
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	if c.Service == nil || c.Identity == nil {
		return errors.New("blob: Config.Service and Config.Identity are required")
	}
	if c.MaxPutPages < 0 || c.PutPageWait < 0 {
		return errors.New("blob: Config.MaxPutPages and Config.PutPageWait must not be negative")
	}
	return nil
}

// New returns the handler for every path starting with [PathPrefix]. A
// Config that does not Validate is a wiring bug, and New panics on it.
func New(cfg Config) http.Handler {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if cfg.MaxPutPages == 0 {
		cfg.MaxPutPages = DefaultMaxPutPages
	}
	if cfg.PutPageWait == 0 {
		cfg.PutPageWait = DefaultPutPageWait
	}
	h := &handler{svc: cfg.Service, id: cfg.Identity, eng: cfg.Service.Engine(), log: cfg.Logger,
		pages: make(chan struct{}, cfg.MaxPutPages), pageWait: cfg.PutPageWait}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.setCommonHeaders(w, r)
	if err := h.serve(w, r); err != nil {
		h.writeError(w, r, err)
	}
}

// setCommonHeaders sets what every answer carries. The server's
// middleware has usually set the request id already.
func (h *handler) setCommonHeaders(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	if hdr.Get(headerRequestID) == "" {
		hdr.Set(headerRequestID, uuid.NewString())
	}
	if id := r.Header.Get(headerClientRequestID); id != "" && hdr.Get(headerClientRequestID) == "" && len(id) <= 1024 {
		hdr.Set(headerClientRequestID, id)
	}
	v := r.Header.Get(headerVersion)
	if !validVersion(v) {
		v = defaultVersion
	}
	hdr.Set(headerVersion, v)
	hdr.Set("Date", httpTime(h.svc.Now()))
}

// op is a blob operation deltadisk serves.
type op int

const (
	opProperties op = iota // HEAD: Get Blob Properties
	opDownload             // GET: Get Blob
	opPageList             // GET comp=pagelist: Get Page Ranges (and its diff form)
	opPutPage              // PUT comp=page: Put Page
)

func (h *handler) serve(w http.ResponseWriter, r *http.Request) error {
	grantID, err := parsePath(r.URL.Path)
	if err != nil {
		return err
	}
	if err := checkProtocolHeaders(r.Header); err != nil {
		return err
	}
	kind, err := operation(r)
	if err != nil {
		return err
	}
	res, sas, err := h.authenticate(r.Context(), r.URL.Path, r.URL.Query(), grantID)
	if err != nil {
		return err
	}
	switch kind {
	case opProperties:
		return h.download(w, r, res, true)
	case opDownload:
		return h.download(w, r, res, false)
	case opPageList:
		return h.pageList(w, r, res)
	case opPutPage:
		return h.putPage(w, r, res, sas)
	}
	panic(fmt.Sprintf("blob: operation %d has no handler", kind))
}

// parsePath returns the grant a blob path names: "/md-<grant>/abcd". A
// path with no usable container is ContainerNotFound; a container with
// any other blob (or none) is BlobNotFound.
func parsePath(p string) (string, error) {
	rest, ok := strings.CutPrefix(p, PathPrefix)
	if !ok {
		return "", errorf(http.StatusNotFound, "ContainerNotFound", "The specified container does not exist.")
	}
	grant, name, _ := strings.Cut(rest, "/")
	if !validGrantID(grant) {
		return "", errorf(http.StatusNotFound, "ContainerNotFound", "The specified container does not exist.")
	}
	if name != blobName {
		return "", blobNotFound("A managed disk's container holds one blob, %q.", blobName)
	}
	return grant, nil
}

// validGrantID accepts the shape of the ids the service makes (hex)
// loosely: letters, digits and '-', 1 to 64 of them.
func validGrantID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-') {
			return false
		}
	}
	return true
}

// checkProtocolHeaders refuses a malformed x-ms-version or x-ms-date. A
// request may send neither (curl, a browser following a SAS link).
func checkProtocolHeaders(h http.Header) error {
	if v := h.Get(headerVersion); v != "" && !validVersion(v) {
		return invalidHeader(headerVersion, v, "A storage service version is a date, such as %s.", defaultVersion)
	}
	if d := h.Get("x-ms-date"); d != "" {
		if _, err := http.ParseTime(d); err != nil {
			return invalidHeader("x-ms-date", d, "A date is in the form Mon, 02 Jan 2006 15:04:05 GMT.")
		}
	}
	return nil
}

func validVersion(v string) bool {
	_, err := time.Parse(time.DateOnly, v)
	return err == nil
}

// operation names the operation a request asks for, or refuses it.
func operation(r *http.Request) (op, error) {
	q := r.URL.Query()
	comp := q.Get("comp")
	if s, ok := q["snapshot"]; ok {
		return 0, blobNotFound("Blob snapshot %q does not exist: a managed disk's blob has no blob snapshots.", strings.Join(s, ","))
	}
	switch r.Method {
	case http.MethodHead, http.MethodGet:
		switch {
		case comp == "":
			if r.Method == http.MethodHead {
				return opProperties, nil
			}
			return opDownload, nil
		case comp == "pagelist" && r.Method == http.MethodGet:
			return opPageList, nil
		}
	case http.MethodPut:
		switch comp {
		case "page":
			return opPutPage, nil
		case "":
			return 0, unsupportedVerb(r.Method, "A managed disk's blob is written with Put Page (comp=page); it cannot be replaced.")
		}
	default:
		return 0, unsupportedVerb(r.Method, "A managed disk's blob serves GET, HEAD and PUT with comp=page.")
	}
	return 0, invalidQuery("comp", comp, "This blob serves comp=pagelist (GET) and comp=page (PUT).")
}

// authenticate checks a request's SAS and that its grant is in force, and
// returns the disk or snapshot it gives access to.
func (h *handler) authenticate(ctx context.Context, path string, q url.Values, grantID string) (*service.Resource, identity.SAS, error) {
	sas, err := h.id.VerifySAS(path, q)
	switch {
	case errors.Is(err, identity.ErrSASMissing):
		return nil, sas, authFailed("The request carries no SAS signature (sig).")
	case errors.Is(err, identity.ErrSASExpired):
		return nil, sas, authFailed("The SAS is outside its validity window (st to se).")
	case err != nil:
		return nil, sas, authFailed("The SAS is malformed or its signature does not match.")
	case sas.GrantID != grantID:
		return nil, sas, authFailed("The SAS was not issued for this blob.")
	}
	res, err := h.svc.ResolveGrant(ctx, grantID)
	if errors.Is(err, service.ErrNotFound) {
		return nil, sas, authFailed("The access grant of this SAS was revoked or has expired.")
	}
	if err != nil {
		return nil, sas, err
	}
	return res, sas, nil
}

// blobSize is the blob's length: the disk's bytes and the VHD footer.
func blobSize(res *service.Resource) int64 { return res.SizeBytes + vhd.FooterSize }

// etag is the blob's entity tag: stable while the resource's data does
// not change, new after every data-plane write.
func etag(res *service.Resource) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%d/%d", res.UniqueID, res.Version, res.SizeBytes))
	return fmt.Sprintf(`"0x%016X"`, binary.BigEndian.Uint64(sum[:8]))
}

func lastModified(res *service.Resource) time.Time {
	if !res.Modified.IsZero() {
		return res.Modified
	}
	return res.TimeCreated
}

// httpTime formats t as RFC 1123 in GMT, the only form azblob parses.
func httpTime(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

// setBlobHeaders sets the properties every read answer carries.
func setBlobHeaders(hdr http.Header, res *service.Resource) {
	hdr.Set("ETag", etag(res))
	hdr.Set("Last-Modified", httpTime(lastModified(res)))
	hdr.Set("x-ms-creation-time", httpTime(res.TimeCreated))
	hdr.Set("x-ms-blob-type", "PageBlob")
	hdr.Set("x-ms-blob-sequence-number", "0")
	hdr.Set("x-ms-lease-state", "available")
	hdr.Set("x-ms-lease-status", "unlocked")
	hdr.Set("Accept-Ranges", "bytes")
}

// checkConditions applies the HTTP conditional headers to the blob's
// ETag and Last-Modified. A failed If-None-Match or If-Modified-Since on a
// read is 304; every other failure is 412 ConditionNotMet.
func checkConditions(hdr http.Header, res *service.Resource, read bool) error {
	tag := etag(res)
	mod := lastModified(res).Truncate(time.Second)
	if v := hdr.Get("If-Match"); v != "" && !etagListHas(v, tag) {
		return conditionNotMet(http.StatusPreconditionFailed)
	}
	if v := hdr.Get("If-Unmodified-Since"); v != "" {
		if t, err := http.ParseTime(v); err == nil && mod.After(t) {
			return conditionNotMet(http.StatusPreconditionFailed)
		}
	}
	notModified := conditionNotMet(http.StatusPreconditionFailed)
	if read {
		notModified = conditionNotMet(http.StatusNotModified).withHeader("ETag", tag)
	}
	if v := hdr.Get("If-None-Match"); v != "" && etagListHas(v, tag) {
		return notModified
	}
	if v := hdr.Get("If-Modified-Since"); v != "" {
		if t, err := http.ParseTime(v); err == nil && !mod.After(t) {
			return notModified
		}
	}
	return nil
}

// etagListHas reports whether a conditional header's list of entity tags
// ("*" or quoted tags separated by commas) matches tag.
func etagListHas(list, tag string) bool {
	for e := range strings.SplitSeq(list, ",") {
		e = strings.TrimPrefix(strings.TrimSpace(e), "W/")
		if e == "*" || e == tag {
			return true
		}
	}
	return false
}

// xmlText writes s escaped as XML character data.
func xmlText(b *strings.Builder, s string) {
	_ = xml.EscapeText(b, []byte(s))
}
