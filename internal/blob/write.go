package blob

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/crc64"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/deltadisk/deltadisk/internal/identity"
	"github.com/deltadisk/deltadisk/internal/service"
)

// crc64Table is the blob service's CRC-64 (x-ms-content-crc64), sent
// little-endian in base64.
var crc64Table = crc64.MakeTable(0x9A6C9329AC4BC9B5)

// pageBuffers recycles Put Page bodies: each request holds at most one
// 4 MiB buffer, so memory is bounded by the requests in flight.
var pageBuffers = sync.Pool{New: func() any { b := make([]byte, maxPutPage); return &b }}

// putPage answers Put Page: x-ms-page-write update writes the body at the
// range, clear zeroes the range. When it answers 201 the write is durable.
// Every refusal comes before anything is written.
func (h *handler) putPage(w http.ResponseWriter, r *http.Request, res *service.Resource, sas identity.SAS) error {
	switch {
	case !strings.Contains(sas.Permissions, "w") || res.Grant == nil || res.Grant.Access != service.AccessWrite:
		return permissionMismatch("Put Page needs the SAS of a Write grant; this one grants %s access.", grantAccess(res))
	case res.Kind != service.KindDisk:
		return permissionMismatch("A snapshot is read-only.")
	}
	if err := checkConditions(r.Header, res, false); err != nil {
		return err
	}
	if err := checkSequenceNumber(r.Header); err != nil {
		return err
	}
	if v := r.Header.Get("x-ms-structured-body"); v != "" {
		return invalidHeader("x-ms-structured-body", v, "Structured message bodies are not supported; send the pages as they are.")
	}
	mode := r.Header.Get("x-ms-page-write")
	clearing := strings.EqualFold(mode, "clear")
	switch {
	case mode == "":
		return missingHeader("x-ms-page-write")
	case !clearing && !strings.EqualFold(mode, "update"):
		return invalidHeader("x-ms-page-write", mode, "The value is update or clear.")
	}

	name, value := rangeHeader(r.Header)
	if name == "" {
		return missingHeader("x-ms-range")
	}
	rng, err := parseRange(value)
	switch {
	case errors.Is(err, errRangeInverted):
		return invalidPageRange("The range %s ends before it starts.", value)
	case err != nil:
		return invalidHeader(name, value, "A page range is bytes=start-end.")
	case rng.open():
		return invalidPageRange("Put Page needs a range with an end: bytes=start-end.")
	case rng.start%pageSize != 0 || (rng.end+1)%pageSize != 0:
		return invalidPageRange("A page range starts and ends on %d-byte boundaries; %s does not.", pageSize, value)
	}
	// An Upload disk awaiting its image takes the whole blob, footer
	// included; an unattached disk (deltadisk's extension) only its data:
	// its footer is the server's.
	limit := res.SizeBytes
	if res.AwaitingUpload {
		limit = blobSize(res)
	}
	switch {
	case rng.end >= blobSize(res):
		return invalidPageRange("The blob is %d bytes; the range %s reaches past its end.", blobSize(res), value)
	case rng.end >= limit:
		return invalidPageRange("The range %s reaches into the VHD footer at %d, which the server writes for a disk that is not awaiting an upload.", value, res.SizeBytes)
	}
	off, n := rng.start, rng.end-rng.start+1

	var data []byte // nil when clearing
	var sumMD5, sumCRC []byte
	if clearing {
		if r.ContentLength != 0 {
			return invalidHeader("Content-Length", strconv.FormatInt(r.ContentLength, 10), "A clear carries no body.")
		}
	} else {
		switch {
		case n > maxPutPage:
			return errorf(http.StatusRequestEntityTooLarge, "RequestBodyTooLarge",
				"The request body is too large and exceeds the maximum permissible limit: one Put Page writes at most %d bytes; the range %s has %d.", maxPutPage, value, n).
				with("MaxLimit", strconv.Itoa(maxPutPage))
		case r.ContentLength < 0:
			return errorf(http.StatusLengthRequired, "MissingContentLengthHeader", "The Content-Length header is required and must equal the range's length (%d).", n)
		case r.ContentLength != n:
			return invalidHeader("Content-Length", strconv.FormatInt(r.ContentLength, 10), "Content-Length must equal the length of the range %s (%d bytes).", value, n)
		}
		release, err := h.admitPage(r.Context())
		if err != nil {
			return err
		}
		defer release()
		bp := pageBuffers.Get().(*[]byte)
		defer pageBuffers.Put(bp)
		data = (*bp)[:n]
		if _, err := io.ReadFull(r.Body, data); err != nil {
			return invalidHeader("Content-Length", strconv.FormatInt(r.ContentLength, 10), "The body ended before Content-Length bytes: %v.", err)
		}
		if sumMD5, err = checkDigest(r.Header, "Content-MD5", 16, "Md5Mismatch", data, func(p []byte) []byte {
			s := md5.Sum(p)
			return s[:]
		}); err != nil {
			return err
		}
		if sumCRC, err = checkDigest(r.Header, "x-ms-content-crc64", 8, "Crc64Mismatch", data, func(p []byte) []byte {
			return binary.LittleEndian.AppendUint64(nil, crc64.Checksum(p, crc64Table))
		}); err != nil {
			return err
		}
	}

	// The checks above ran on the resource as the request found it; the
	// ones that a concurrent change could upset (the grant, the state,
	// If-Match) run again in the write's own commit.
	after, err := h.svc.WritePages(r.Context(), res, off, n, data, func(now *service.Resource) error {
		switch {
		case now.Grant.Access != service.AccessWrite:
			return permissionMismatch("Put Page needs the SAS of a Write grant; this one grants %s access.", grantAccess(now))
		case off+n > now.SizeBytes && !now.AwaitingUpload:
			return invalidPageRange("The range %s reaches into the VHD footer at %d, which the server writes for a disk that is not awaiting an upload.", value, now.SizeBytes)
		}
		return checkConditions(r.Header, now, false)
	})
	var se *service.Error
	if errors.As(err, &se) && se.Code == "GrantNotFound" {
		// Revoked (or expired) after the request was let in: the write
		// fails as the SAS would have failed at the door.
		return authFailed("The access grant of this SAS was revoked or has expired.")
	}
	if err != nil {
		return err
	}
	hdr := w.Header()
	hdr.Set("ETag", etag(after))
	hdr.Set("Last-Modified", httpTime(lastModified(after)))
	hdr.Set("x-ms-blob-sequence-number", "0")
	if sumMD5 != nil {
		hdr.Set("Content-MD5", base64.StdEncoding.EncodeToString(sumMD5))
	}
	if sumCRC != nil {
		hdr.Set("x-ms-content-crc64", base64.StdEncoding.EncodeToString(sumCRC))
	}
	hdr.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// checkDigest verifies a transactional digest header when the request
// sends one, and returns the digest it computed (nil when none was sent).
func checkDigest(hdr http.Header, name string, size int, code string, data []byte, sum func([]byte) []byte) ([]byte, error) {
	v := hdr.Get(name)
	if v == "" {
		return nil, nil
	}
	want, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(want) != size {
		return nil, invalidHeader(name, v, "The value is the base64 form of a %d-byte digest.", size)
	}
	got := sum(data)
	if !bytes.Equal(got, want) {
		return nil, errorf(http.StatusBadRequest, code,
			"The %s value specified in the request did not match the value calculated by the server (%s).", name, base64.StdEncoding.EncodeToString(got)).
			with("UserSpecified", v).with("ServerCalculated", base64.StdEncoding.EncodeToString(got))
	}
	return got, nil
}

// checkSequenceNumber applies the x-ms-if-sequence-number-* conditions to
// the blob's sequence number, which is always 0.
func checkSequenceNumber(hdr http.Header) error {
	for _, c := range []struct {
		name string
		ok   func(v int64) bool
	}{
		{"x-ms-if-sequence-number-le", func(v int64) bool { return 0 <= v }},
		{"x-ms-if-sequence-number-lt", func(v int64) bool { return 0 < v }},
		{"x-ms-if-sequence-number-eq", func(v int64) bool { return v == 0 }},
	} {
		s := hdr.Get(c.name)
		if s == "" {
			continue
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			return invalidHeader(c.name, s, "A sequence number is a non-negative integer.")
		}
		if !c.ok(v) {
			return errorf(http.StatusPreconditionFailed, "SequenceNumberConditionNotMet", "The sequence number condition specified was not met: the blob's sequence number is 0.")
		}
	}
	return nil
}

func grantAccess(res *service.Resource) string {
	if res.Grant == nil {
		return "no"
	}
	return res.Grant.Access
}

// admitPage waits for a Put Page's turn to read its body and write, up to
// the handler's bound; past it the request is refused before its body is
// read, so a backlog costs neither memory nor a half-done write.
func (h *handler) admitPage(ctx context.Context) (release func(), err error) {
	release = func() { <-h.pages }
	select {
	case h.pages <- struct{}{}:
		return release, nil
	default:
	}
	t := time.NewTimer(h.pageWait)
	defer t.Stop()
	select {
	case h.pages <- struct{}{}:
		return release, nil
	case <-t.C:
		// SDKs retry 503 ServerBusy after Retry-After.
		return nil, errorf(http.StatusServiceUnavailable, "ServerBusy", "The server is currently unable to receive requests: too many Put Pages are in progress. Please retry your request.").
			withHeader("Retry-After", "1")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
