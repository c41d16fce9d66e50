package blob

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestParseRange(t *testing.T) {
	tests := []struct {
		in   string
		want byteRange
		err  error
	}{
		{"bytes=0-511", byteRange{0, 511}, nil},
		{"bytes=512-", byteRange{512, -1}, nil},
		{"BYTES=5-5", byteRange{5, 5}, nil},
		{"bytes=9223372036854775806-9223372036854775807", byteRange{math.MaxInt64 - 1, math.MaxInt64}, nil},
		{"bytes=10-9", byteRange{}, errRangeInverted},
		{"bytes=-512", byteRange{}, errRangeSyntax},
		{"bytes=0-1,4-5", byteRange{}, errRangeSyntax},
		{"bytes= 0-1", byteRange{}, errRangeSyntax},
		{"bytes=+0-1", byteRange{}, errRangeSyntax},
		{"bytes=0--1", byteRange{}, errRangeSyntax},
		{"bytes=0", byteRange{}, errRangeSyntax},
		{"bytes=9223372036854775808-", byteRange{}, errRangeSyntax},
		{"pages=0-1", byteRange{}, errRangeSyntax},
		{"bytes=", byteRange{}, errRangeSyntax},
		{"", byteRange{}, errRangeSyntax},
	}
	for _, tc := range tests {
		got, err := parseRange(tc.in)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("parseRange(%q) = %+v, %v; want %+v, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// FuzzParseRange: whatever parseRange accepts is a well-formed range that
// formats back to a value it reads the same.
func FuzzParseRange(f *testing.F) {
	for _, r := range []byteRange{{0, 511}, {512, -1}, {4096, 4194303}, {math.MaxInt64, -1}, {7, 7}} {
		f.Add(r.String())
	}
	for _, s := range []string{"bytes=-5", "bytes=1-0", "bytes=0-1,2-3", "Bytes=1-", "bytes=00-01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseRange(s)
		if err != nil {
			if !errors.Is(err, errRangeSyntax) && !errors.Is(err, errRangeInverted) {
				t.Fatalf("parseRange(%q): unexpected error %v", s, err)
			}
			return
		}
		if r.start < 0 || (r.end >= 0 && r.end < r.start) || r.end < -1 {
			t.Fatalf("parseRange(%q) = %+v: not a range", s, r)
		}
		r2, err := parseRange(r.String())
		if err != nil || r2 != r {
			t.Fatalf("parseRange(%q) = %+v, which formats as %q and reads back as %+v, %v", s, r, r.String(), r2, err)
		}
		// An accepted value is the unit and two decimal numbers, nothing else.
		if rest := strings.ToLower(s)[len("bytes="):]; strings.Count(rest, "-") != 1 || strings.Trim(rest, "0123456789-") != "" {
			t.Fatalf("parseRange(%q) accepted more than bytes=S-E", s)
		}
	})
}

func TestMarker(t *testing.T) {
	for _, off := range []int64{0, 512, 1 << 30, 32<<40 + 512, math.MaxInt64 - 511} {
		m := encodeMarker(off)
		got, err := decodeMarker(m)
		if err != nil || got != off {
			t.Errorf("decodeMarker(encodeMarker(%d) = %q) = %d, %v", off, m, got, err)
		}
	}
	for _, s := range []string{"", "garbage", encodeMarker(511), encodeMarker(-512), encodeMarker(512) + "=", encodeMarker(512)[:5] + "\n" + encodeMarker(512)[5:], "AgAAAAAAAAIA"} {
		if off, err := decodeMarker(s); err == nil {
			t.Errorf("decodeMarker(%q) = %d, want an error", s, off)
		}
	}
}

// FuzzDecodeMarker: a marker decodes only to an aligned, non-negative
// offset whose encoding is the marker itself.
func FuzzDecodeMarker(f *testing.F) {
	for _, off := range []int64{0, 512, 1 << 30, math.MaxInt64 - 511} {
		f.Add(encodeMarker(off))
	}
	f.Add("AQAAAAAAAAIA")
	f.Add("not a marker")
	f.Fuzz(func(t *testing.T, s string) {
		off, err := decodeMarker(s)
		if err != nil {
			return
		}
		if off < 0 || off%pageSize != 0 || encodeMarker(off) != s {
			t.Fatalf("decodeMarker(%q) = %d, which encodes as %q", s, off, encodeMarker(off))
		}
	})
}
