package blob

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"strconv"
	"strings"
)

// byteRange is an inclusive range of bytes, as the blob service's Range and
// x-ms-range headers name them: "bytes=start-end", or "bytes=start-" for
// everything from start on (end is then -1).
type byteRange struct {
	start, end int64
}

// open reports whether the range runs to the end of the blob.
func (r byteRange) open() bool { return r.end < 0 }

// String formats r as a header value that parseRange reads back.
func (r byteRange) String() string {
	s := "bytes=" + strconv.FormatInt(r.start, 10) + "-"
	if !r.open() {
		s += strconv.FormatInt(r.end, 10)
	}
	return s
}

var (
	// errRangeSyntax: the header is not "bytes=S-E" or "bytes=S-".
	errRangeSyntax = errors.New("blob: malformed range")
	// errRangeInverted: the range ends before it starts.
	errRangeInverted = errors.New("blob: range ends before it starts")
)

// parseRange reads a range header value. The blob service takes exactly
// two forms, "bytes=S-E" and "bytes=S-", with decimal offsets: no suffix
// ranges ("bytes=-N"), no lists, no signs or spaces inside the numbers. A
// range whose end is before its start is errRangeInverted, anything else
// unreadable errRangeSyntax.
func parseRange(s string) (byteRange, error) {
	const unit = "bytes="
	if len(s) < len(unit) || !strings.EqualFold(s[:len(unit)], unit) {
		return byteRange{}, errRangeSyntax
	}
	first, last, ok := strings.Cut(s[len(unit):], "-")
	if !ok {
		return byteRange{}, errRangeSyntax
	}
	start, ok := parseOffset(first)
	if !ok {
		return byteRange{}, errRangeSyntax
	}
	if last == "" {
		return byteRange{start: start, end: -1}, nil
	}
	end, ok := parseOffset(last)
	if !ok {
		return byteRange{}, errRangeSyntax
	}
	if end < start {
		return byteRange{}, errRangeInverted
	}
	return byteRange{start: start, end: end}, nil
}

// parseOffset reads a non-negative decimal int64 made of digits only
// (strconv alone would also take a sign).
func parseOffset(s string) (int64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// rangeHeader returns the name and value of the range header a request
// uses: x-ms-range wins over Range when both are sent. The name is "" when
// the request has neither.
func rangeHeader(h http.Header) (name, value string) {
	if v := h.Get(headerXMSRange); v != "" {
		return headerXMSRange, v
	}
	if v := h.Get("Range"); v != "" {
		return "Range", v
	}
	return "", ""
}

// A page-list marker is opaque to clients: the base64url (unpadded) form
// of a version byte and the big-endian byte offset where the next page of
// the listing starts. Only the canonical encoding of a 512-aligned offset
// decodes, so a marker is either one this server issued or refused.
const markerVersion = 1

var errMarker = errors.New("blob: marker is not one this server issued")

func encodeMarker(off int64) string {
	var b [9]byte
	b[0] = markerVersion
	binary.BigEndian.PutUint64(b[1:], uint64(off))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func decodeMarker(s string) (int64, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != 9 || b[0] != markerVersion {
		return 0, errMarker
	}
	off := int64(binary.BigEndian.Uint64(b[1:]))
	// The decoder skips newlines; a canonical marker has none.
	if off < 0 || off%pageSize != 0 || encodeMarker(off) != s {
		return 0, errMarker
	}
	return off, nil
}
