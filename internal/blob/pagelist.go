package blob

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/service"
	"github.com/deltadisk/deltadisk/internal/vhd"
)

// pageList answers Get Page Ranges: the runs of the blob that hold data
// or, with x-ms-previous-snapshot-url, the runs that changed since that
// snapshot (PageRange) and the runs that became zero (ClearRange), sorted
// by offset, optionally limited to a range and paged with marker and
// maxresults.
func (h *handler) pageList(w http.ResponseWriter, r *http.Request, res *service.Resource) error {
	if err := checkConditions(r.Header, res, true); err != nil {
		return err
	}
	q := r.URL.Query()
	if v := q.Get("prevsnapshot"); v != "" {
		// The classic diff names a blob snapshot by time; a managed disk's
		// blob has none, its snapshots are blobs of their own.
		return errorf(http.StatusConflict, "PreviousSnapshotNotFound",
			"The previous snapshot %q is not found: a managed disk's blob has no blob snapshots. Name an earlier snapshot of the same disk by its SAS URL in the x-ms-previous-snapshot-url header.", v)
	}
	total := blobSize(res)
	lo, hi := int64(0), total // the listed window, [lo, hi)
	if name, value := rangeHeader(r.Header); name != "" {
		rng, err := parseRange(value)
		switch {
		case errors.Is(err, errRangeInverted):
			return invalidPageRange("The range %s ends before it starts.", value)
		case err != nil:
			return invalidHeader(name, value, "A range is bytes=start-end or bytes=start-.")
		case rng.start%pageSize != 0 || (!rng.open() && (rng.end+1)%pageSize != 0):
			return invalidPageRange("A page range starts and ends on %d-byte boundaries; %s does not.", pageSize, value)
		case rng.start >= total:
			return invalidRange(total)
		}
		lo = rng.start
		if !rng.open() {
			hi = min(rng.end, total-1) + 1 // rng.end+1 may overflow
		}
	}
	if m := q.Get("marker"); m != "" {
		off, err := decodeMarker(m)
		if err != nil {
			return invalidQuery("marker", m, "Pass the NextMarker of the previous page unchanged.")
		}
		lo = max(lo, off)
	}
	limit := -1 // no limit
	if v := q.Get("maxresults"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return invalidQuery("maxresults", v, "maxresults is a positive number of ranges.")
		}
		limit = n
	}

	var runs []engine.Extent
	if prevURL := r.Header.Get(headerPrevSnapshotURL); prevURL != "" {
		prev, err := h.previous(r.Context(), prevURL, res)
		if err != nil {
			return err
		}
		runs, err = h.eng.Diff(r.Context(), prev.Image, res.Image)
		switch {
		case errors.Is(err, engine.ErrOrder):
			return errorf(http.StatusBadRequest, "PreviousSnapshotCannotBeNewer",
				"The previous snapshot '%s' is newer than this %s.", prev.Name, kindName(res))
		case errors.Is(err, engine.ErrNotSameLineage):
			return notSameFamily(prev, res)
		case err != nil:
			return err
		}
	} else {
		var err error
		if runs, err = h.eng.Allocated(r.Context(), res.Image); err != nil {
			return err
		}
		// The footer is a written page of every blob.
		runs = append(runs, engine.Extent{Offset: res.SizeBytes, Length: vhd.FooterSize})
	}

	runs = clip(runs, lo, hi)
	next := ""
	if limit >= 0 && len(runs) > limit {
		last := runs[limit-1]
		next = encodeMarker(last.Offset + last.Length)
		runs = runs[:limit]
	}

	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?><PageList>`)
	for _, e := range runs {
		tag := "PageRange"
		if e.Cleared {
			tag = "ClearRange"
		}
		b.WriteString("<" + tag + "><Start>" + strconv.FormatInt(e.Offset, 10) + "</Start><End>" +
			strconv.FormatInt(e.Offset+e.Length-1, 10) + "</End></" + tag + ">")
	}
	if next == "" {
		b.WriteString("<NextMarker />")
	} else {
		b.WriteString("<NextMarker>")
		xmlText(&b, next)
		b.WriteString("</NextMarker>")
	}
	b.WriteString("</PageList>")

	hdr := w.Header()
	hdr.Set("ETag", etag(res))
	hdr.Set("Last-Modified", httpTime(lastModified(res)))
	hdr.Set("x-ms-blob-content-length", strconv.FormatInt(total, 10))
	hdr.Set("Content-Type", "application/xml")
	hdr.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(b.String()))
	return nil
}

// clip cuts sorted runs to [lo, hi) and merges neighbours of one kind.
func clip(runs []engine.Extent, lo, hi int64) []engine.Extent {
	out := runs[:0]
	for _, e := range runs {
		s, t := max(e.Offset, lo), min(e.Offset+e.Length, hi)
		if s >= t {
			continue
		}
		if n := len(out); n > 0 && out[n-1].Cleared == e.Cleared && out[n-1].Offset+out[n-1].Length == s {
			out[n-1].Length = t - out[n-1].Offset
			continue
		}
		out = append(out, engine.Extent{Offset: s, Length: t - s, Cleared: e.Cleared})
	}
	return out
}

// previous resolves the x-ms-previous-snapshot-url of a differential Get
// Page Ranges: the full SAS URL of an earlier snapshot of the same family
// as res. Its SAS must verify and its grant be in force, as if it were
// read directly.
func (h *handler) previous(ctx context.Context, raw string, res *service.Resource) (*service.Resource, error) {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() {
		return nil, invalidHeader(headerPrevSnapshotURL, raw, "The previous snapshot is named by its full SAS URL.")
	}
	notFound := errorf(http.StatusConflict, "PreviousSnapshotNotFound", "The previous snapshot is not found. ")
	grantID, err := parsePath(u.Path)
	if err != nil {
		notFound.message += "Its URL is not a SAS URL of a snapshot this server issued."
		return nil, notFound
	}
	sas, err := h.id.VerifySAS(u.Path, u.Query())
	if err != nil || sas.GrantID != grantID {
		return nil, authFailed("The SAS of the previous snapshot URL is missing, malformed, tampered with or expired.")
	}
	prev, err := h.svc.ResolveGrant(ctx, grantID)
	switch {
	case errors.Is(err, service.ErrNotFound):
		notFound.message += "Its access grant was revoked or has expired, or the snapshot was deleted."
		return nil, notFound
	case err != nil:
		return nil, err
	case prev.Kind != service.KindSnapshot:
		notFound.message += "The URL names disk '" + prev.Name + "', not a snapshot."
		return nil, notFound
	}
	sameFamily := prev.Incremental && prev.FamilyID != "" && prev.FamilyID == res.FamilyID &&
		(res.Kind == service.KindDisk || res.Incremental)
	if !sameFamily {
		return nil, notSameFamily(prev, res)
	}
	if prev.SizeBytes != res.SizeBytes {
		return nil, errorf(http.StatusConflict, "PreviousSnapshotOperationNotSupported",
			"The previous snapshot '%s' holds %d bytes and this %s %d: the disk was resized between them.", prev.Name, prev.SizeBytes, kindName(res), res.SizeBytes)
	}
	return prev, nil
}

func notSameFamily(prev, res *service.Resource) *apiError {
	return errorf(http.StatusConflict, "PreviousSnapshotOperationNotSupported",
		"The previous snapshot '%s' is not an incremental snapshot of the same disk as %s '%s': a differential page list is taken between incremental snapshots of one family, or from one of them to its disk.",
		prev.Name, kindName(res), res.Name)
}

func kindName(res *service.Resource) string {
	if res.Kind == service.KindDisk {
		return "disk"
	}
	return "snapshot"
}
