package blob

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/service"
	"github.com/deltadisk/deltadisk/internal/vhd"
)

// download answers Get Blob, or Get Blob Properties when head is set: the
// disk's bytes followed by its VHD footer, whole or one range, streamed
// from the engine with bounded memory.
func (h *handler) download(w http.ResponseWriter, r *http.Request, res *service.Resource, head bool) error {
	if err := checkConditions(r.Header, res, true); err != nil {
		return err
	}
	total := blobSize(res)
	start, n := int64(0), total
	name, value := rangeHeader(r.Header)
	ranged := name != "" && !head // Get Blob Properties ignores a range
	if ranged {
		rng, err := parseRange(value)
		switch {
		case errors.Is(err, errRangeInverted):
			return invalidRange(total)
		case err != nil:
			return invalidHeader(name, value, "A range is bytes=start-end or bytes=start-.")
		case rng.start >= total:
			return invalidRange(total)
		}
		end := total - 1
		if !rng.open() {
			end = min(rng.end, end)
		}
		start, n = rng.start, end-rng.start+1
	}
	wantMD5 := false
	if v := r.Header.Get("x-ms-range-get-content-md5"); v != "" && !head {
		switch {
		case strings.EqualFold(v, "false"):
		case !strings.EqualFold(v, "true"):
			return invalidHeader("x-ms-range-get-content-md5", v, "The value is true or false.")
		case !ranged || n > maxRangeMD5:
			return invalidHeader("x-ms-range-get-content-md5", v, "An MD5 is returned for a range of at most %d bytes, and a range is needed.", maxRangeMD5)
		default:
			wantMD5 = true
		}
	}

	hdr := w.Header()
	setBlobHeaders(hdr, res)
	hdr.Set("Content-Type", "application/octet-stream")
	hdr.Set("Content-Length", strconv.FormatInt(n, 10))
	status := http.StatusOK
	if ranged {
		status = http.StatusPartialContent
		// azblob reads the total with Sscanf("bytes %d-%d/%d"): keep this form.
		hdr.Set("Content-Range", "bytes "+strconv.FormatInt(start, 10)+"-"+strconv.FormatInt(start+n-1, 10)+"/"+strconv.FormatInt(total, 10))
	}
	if head {
		w.WriteHeader(status)
		return nil
	}
	opts := exportOptions(res)
	opts.Offset, opts.Length = start, n
	if wantMD5 {
		// At most 4 MiB: buffered, so the digest can lead the body.
		var buf bytes.Buffer
		buf.Grow(int(n))
		if _, err := h.eng.Export(r.Context(), res.Image, &buf, opts); err != nil {
			return err
		}
		sum := md5.Sum(buf.Bytes())
		hdr.Set("Content-MD5", base64.StdEncoding.EncodeToString(sum[:]))
		w.WriteHeader(status)
		_, _ = w.Write(buf.Bytes())
		return nil
	}
	w.WriteHeader(status)
	if _, err := h.eng.Export(r.Context(), res.Image, w, opts); err != nil {
		return &streamError{err}
	}
	return nil
}

// exportOptions shape the engine's export into the blob: the image, then
// the VHD footer the server makes (its unique id is the resource's, its
// time the resource's creation), or, for an Upload disk still awaiting its
// upload, the 512 bytes the client uploaded there (zeros before any).
func exportOptions(res *service.Resource) engine.ExportOptions {
	if res.AwaitingUpload {
		footer := res.Footer
		if len(footer) != vhd.FooterSize {
			footer = make([]byte, vhd.FooterSize)
		}
		return engine.ExportOptions{Trailer: footer}
	}
	var id [16]byte
	if u, err := uuid.Parse(res.UniqueID); err == nil {
		id = u
	}
	return engine.ExportOptions{VHD: true, UniqueID: id, Time: res.TimeCreated}
}
