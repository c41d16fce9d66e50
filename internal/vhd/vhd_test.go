package vhd_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/deltadisk/deltadisk/internal/vhd"
)

const (
	mib = 1 << 20
	gib = 1 << 30
)

var (
	testID   = [16]byte{0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f}
	testTime = time.Date(2024, time.January, 2, 3, 4, 5, 0, time.UTC)
)

// Spec offsets, written out here rather than shared with the package so
// that a layout mistake cannot hide on both sides.
const (
	offChecksum   = 64
	offDataOffset = 16
	offCurrent    = 48
	offDiskType   = 60
	offVersion    = 12
	offSavedState = 84
)

func newFooter(t testing.TB, size int64) vhd.Footer {
	t.Helper()
	f, err := vhd.New(size, testID, testTime)
	if err != nil {
		t.Fatalf("New(%d) error = %v", size, err)
	}
	return f
}

func marshal(t testing.TB, f vhd.Footer) []byte {
	t.Helper()
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary(%+v) error = %v", f, err)
	}
	return b
}

// fixChecksum rewrites the checksum of footer bytes b after a test edits them.
func fixChecksum(b []byte) {
	binary.BigEndian.PutUint32(b[offChecksum:], 0)
	var sum uint32
	for _, c := range b {
		sum += uint32(c)
	}
	binary.BigEndian.PutUint32(b[offChecksum:], ^sum)
}

func TestGeometry(t *testing.T) {
	// Values from an independent implementation of the specification's
	// algorithm; qemu-img agrees on CHS-exact sizes (TestQemu).
	tests := []struct {
		name string
		size int64
		want vhd.CHS
	}{
		{"zero", 0, vhd.CHS{0, 4, 17}},
		{"negative", -512, vhd.CHS{0, 4, 17}},
		{"one sector", 512, vhd.CHS{0, 4, 17}},
		{"1MiB", 1 * mib, vhd.CHS{30, 4, 17}},
		{"20MiB", 20 * mib, vhd.CHS{602, 4, 17}},
		{"20MiB+511", 20*mib + 511, vhd.CHS{602, 4, 17}},
		{"21MiB", 21 * mib, vhd.CHS{632, 4, 17}},
		{"127MiB", 127 * mib, vhd.CHS{1019, 15, 17}},
		{"last of 17 sectors per track", (4096*17 - 1) * 512, vhd.CHS{1023, 4, 17}},
		{"first of 31 sectors per track", 4096 * 17 * 512, vhd.CHS{140, 16, 31}},
		{"last of 31 sectors per track", (16384*31 - 1) * 512, vhd.CHS{1023, 16, 31}},
		{"first of 63 sectors per track", 16384 * 31 * 512, vhd.CHS{503, 16, 63}},
		{"1GiB", 1 * gib, vhd.CHS{2080, 16, 63}},
		{"30GiB", 30 * gib, vhd.CHS{62415, 16, 63}},
		{"31GiB", 31 * gib, vhd.CHS{64495, 16, 63}},
		{"last of 63 sectors per track", (65535*16*63 - 1) * 512, vhd.CHS{65534, 16, 63}},
		{"first of 255 sectors per track", 65535 * 16 * 63 * 512, vhd.CHS{16191, 16, 255}},
		{"32GiB", 32 * gib, vhd.CHS{16448, 16, 255}},
		{"127GiB", 127 * gib, vhd.CHS{65278, 16, 255}},
		{"cap", 65535 * 16 * 255 * 512, vhd.CHS{65535, 16, 255}},
		{"128GiB", 128 * gib, vhd.CHS{65535, 16, 255}},
		{"4TiB", 4096 * gib, vhd.CHS{65535, 16, 255}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := vhd.Geometry(tc.size)
			if got != tc.want {
				t.Errorf("Geometry(%d) = %v, want %v", tc.size, got, tc.want)
			}
			if n := got.Sectors() * 512; n > max(tc.size, 0) {
				t.Errorf("Geometry(%d) addresses %d bytes, more than the disk", tc.size, n)
			}
		})
	}
}

func TestNew(t *testing.T) {
	in := time.Date(2024, time.January, 2, 4, 4, 5, 999_999_999, time.FixedZone("CET", 3600))
	f, err := vhd.New(21*mib, testID, in)
	if err != nil {
		t.Fatalf("New(21MiB) error = %v", err)
	}
	want := vhd.Footer{
		Features:           vhd.FeatureReserved,
		FileFormatVersion:  vhd.Version,
		DataOffset:         vhd.FixedDataOffset,
		Timestamp:          testTime,
		CreatorApplication: [4]byte{'w', 'i', 'n', ' '},
		CreatorVersion:     0x00010000,
		CreatorHostOS:      [4]byte{'W', 'i', '2', 'k'},
		OriginalSize:       21 * mib,
		CurrentSize:        21 * mib,
		Geometry:           vhd.CHS{632, 4, 17},
		DiskType:           vhd.Fixed,
		UniqueID:           testID,
	}
	if diff := cmp.Diff(want, f); diff != "" {
		t.Errorf("New(21MiB) mismatch (-want +got):\n%s", diff)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		size int64
		t    time.Time
		want error
	}{
		{"zero size", 0, testTime, vhd.ErrBadSize},
		{"negative size", -512, testTime, vhd.ErrBadSize},
		{"unaligned size", 20*mib + 1, testTime, vhd.ErrBadSize},
		{"zero time", 20 * mib, time.Time{}, vhd.ErrBadTimestamp},
		{"before 2000", 20 * mib, time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC), vhd.ErrBadTimestamp},
		{"after 2136", 20 * mib, time.Date(2137, 1, 1, 0, 0, 0, 0, time.UTC), vhd.ErrBadTimestamp},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := vhd.New(tc.size, testID, tc.t)
			if !errors.Is(err, tc.want) {
				t.Errorf("New(%d, %v) error = %v, want %v", tc.size, tc.t, err, tc.want)
			}
		})
	}
}

func TestMarshalBinaryLayout(t *testing.T) {
	// Built by hand from the specification's field table.
	const want = "636f6e6563746978" + // cookie
		"00000002" + // features: reserved bit
		"00010000" + // version 1.0
		"ffffffffffffffff" + // data offset: none
		"2d2639a5" + // 2024-01-02T03:04:05Z
		"77696e20" + // creator application "win "
		"00010000" + // creator version
		"5769326b" + // creator host OS "Wi2k"
		"0000000001500000" + // original size
		"0000000001500000" + // current size
		"0278" + "04" + "11" + // 632 cylinders, 4 heads, 17 sectors per track
		"00000002" + // fixed
		"ffffedff" + // checksum
		"101112131415161718191a1b1c1d1e1f" + // unique id
		"00" // saved state
	f := newFooter(t, 21*mib)
	b := marshal(t, f)
	if len(b) != vhd.FooterSize {
		t.Fatalf("len(MarshalBinary()) = %d, want %d", len(b), vhd.FooterSize)
	}
	if got := hex.EncodeToString(b[:85]); got != want {
		t.Errorf("MarshalBinary()[:85] = %s, want %s", got, want)
	}
	if !bytes.Equal(b[85:], make([]byte, 512-85)) {
		t.Errorf("MarshalBinary()[85:] = %x, want zeros", b[85:])
	}
	if got, want := f.Checksum(), uint32(0xffffedff); got != want {
		t.Errorf("Checksum() = 0x%08x, want 0x%08x", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	base := newFooter(t, 20*mib)
	tests := []struct {
		name   string
		footer func() vhd.Footer
	}{
		{"New 20MiB", func() vhd.Footer { return base }},
		{"New one sector", func() vhd.Footer { return newFooter(t, 512) }},
		{"New 127GiB", func() vhd.Footer { return newFooter(t, 127*gib) }},
		{"New 4TiB", func() vhd.Footer { return newFooter(t, 4096*gib) }},
		{"saved state and temporary", func() vhd.Footer {
			f := base
			f.SavedState = true
			f.Features |= vhd.FeatureTemporary
			return f
		}},
		{"foreign creator and grown disk", func() vhd.Footer {
			f := base
			f.CreatorApplication = [4]byte{'q', 'e', 'm', '2'}
			f.CreatorVersion = 0x00050003
			f.CreatorHostOS = [4]byte{'M', 'a', 'c', ' '}
			f.OriginalSize = 10 * mib
			f.Geometry = vhd.CHS{65535, 16, 255}
			return f
		}},
		{"minor version", func() vhd.Footer {
			f := base
			f.FileFormatVersion = 0x00010007
			return f
		}},
		{"first timestamp", func() vhd.Footer {
			f := base
			f.Timestamp = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
			return f
		}},
		{"last timestamp", func() vhd.Footer {
			f := base
			f.Timestamp = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Add(1<<32*time.Second - time.Second)
			return f
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.footer()
			b := marshal(t, f)
			got, err := vhd.Parse(b)
			if err != nil {
				t.Fatalf("Parse(MarshalBinary(%+v)) error = %v", f, err)
			}
			if diff := cmp.Diff(f, got); diff != "" {
				t.Errorf("Parse(MarshalBinary()) mismatch (-want +got):\n%s", diff)
			}
			if got, want := binary.BigEndian.Uint32(b[offChecksum:]), f.Checksum(); got != want {
				t.Errorf("checksum field = 0x%08x, want Checksum() = 0x%08x", got, want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	good := marshal(t, newFooter(t, 20*mib))
	tests := []struct {
		name     string
		input    func() []byte
		want     error
		wantText string // part of the message that names the problem
	}{
		{"empty", func() []byte { return nil }, vhd.ErrBadLength, "got 0 bytes"},
		{"truncated", func() []byte { return good[:511] }, vhd.ErrBadLength, "got 511 bytes"},
		{"too long", func() []byte { return append(good, 0) }, vhd.ErrBadLength, "got 513 bytes"},
		{"bad cookie", func() []byte {
			b := bytes.Clone(good)
			copy(b, "conectiX")
			fixChecksum(b)
			return b
		}, vhd.ErrBadCookie, `"conectiX"`},
		{"zeros", func() []byte { return make([]byte, 512) }, vhd.ErrBadCookie, ""},
		{"flipped byte", func() []byte {
			b := bytes.Clone(good)
			b[offCurrent+5] ^= 0x01
			return b
		}, vhd.ErrBadChecksum, "footer has 0xffffee3d, computed 0xffffee3c"},
		{"flipped checksum", func() []byte {
			b := bytes.Clone(good)
			b[offChecksum+3] ^= 0x80
			return b
		}, vhd.ErrBadChecksum, ""},
		{"flipped reserved byte", func() []byte {
			b := bytes.Clone(good)
			b[511] ^= 0x01
			return b
		}, vhd.ErrBadChecksum, ""},
		{"dynamic disk", func() []byte {
			b := bytes.Clone(good)
			binary.BigEndian.PutUint32(b[offDiskType:], 3)
			binary.BigEndian.PutUint64(b[offDataOffset:], 512)
			fixChecksum(b)
			return b
		}, vhd.ErrNotFixed, "disk type is dynamic"},
		{"differencing disk", func() []byte {
			b := bytes.Clone(good)
			binary.BigEndian.PutUint32(b[offDiskType:], 4)
			fixChecksum(b)
			return b
		}, vhd.ErrNotFixed, "disk type is differencing"},
		{"unknown disk type", func() []byte {
			b := bytes.Clone(good)
			binary.BigEndian.PutUint32(b[offDiskType:], 0)
			fixChecksum(b)
			return b
		}, vhd.ErrNotFixed, "DiskType(0)"},
		{"bad data offset", func() []byte {
			b := bytes.Clone(good)
			binary.BigEndian.PutUint64(b[offDataOffset:], 512)
			fixChecksum(b)
			return b
		}, vhd.ErrBadDataOffset, "0x200"},
		{"version 2", func() []byte {
			b := bytes.Clone(good)
			binary.BigEndian.PutUint32(b[offVersion:], 0x00020000)
			fixChecksum(b)
			return b
		}, vhd.ErrBadVersion, "0x00020000"},
		{"size not a multiple of 512", func() []byte {
			b := bytes.Clone(good)
			binary.BigEndian.PutUint64(b[offCurrent:], 20*mib+100)
			fixChecksum(b)
			return b
		}, vhd.ErrBadSize, "20971620"},
		{"zero size", func() []byte {
			b := bytes.Clone(good)
			binary.BigEndian.PutUint64(b[offCurrent:], 0)
			fixChecksum(b)
			return b
		}, vhd.ErrBadSize, ""},
		{"size beyond int64", func() []byte {
			b := bytes.Clone(good)
			binary.BigEndian.PutUint64(b[offCurrent:], 1<<63)
			fixChecksum(b)
			return b
		}, vhd.ErrBadSize, ""},
		{"saved state 2", func() []byte {
			b := bytes.Clone(good)
			b[offSavedState] = 2
			fixChecksum(b)
			return b
		}, vhd.ErrMalformed, "saved state is 2"},
		{"reserved byte set", func() []byte {
			b := bytes.Clone(good)
			b[300] = 0xaa
			fixChecksum(b)
			return b
		}, vhd.ErrMalformed, "offset 300"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.input()
			_, err := vhd.Parse(in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Parse(%.16x…) error = %v, want %v", in, err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "vhd: ") || !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("Parse() error = %q, want a message starting %q and containing %q", err, "vhd: ", tc.wantText)
			}
		})
	}
}

func TestMarshalBinaryErrors(t *testing.T) {
	base := newFooter(t, 20*mib)
	tests := []struct {
		name   string
		mutate func(*vhd.Footer)
		want   error
	}{
		{"zero value", func(f *vhd.Footer) { *f = vhd.Footer{} }, vhd.ErrBadVersion},
		{"dynamic", func(f *vhd.Footer) { f.DiskType = vhd.Dynamic }, vhd.ErrNotFixed},
		{"data offset", func(f *vhd.Footer) { f.DataOffset = 512 }, vhd.ErrBadDataOffset},
		{"unaligned size", func(f *vhd.Footer) { f.CurrentSize += 1 }, vhd.ErrBadSize},
		{"negative size", func(f *vhd.Footer) { f.CurrentSize = -512 }, vhd.ErrBadSize},
		{"timestamp before 2000", func(f *vhd.Footer) { f.Timestamp = time.Unix(0, 0) }, vhd.ErrBadTimestamp},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := base
			tc.mutate(&f)
			b, err := f.MarshalBinary()
			if !errors.Is(err, tc.want) {
				t.Errorf("MarshalBinary(%+v) = %x, %v, want error %v", f, b, err, tc.want)
			}
			if err := f.Validate(); !errors.Is(err, tc.want) {
				t.Errorf("Validate(%+v) = %v, want %v", f, err, tc.want)
			}
		})
	}
}

func TestValidateUpload(t *testing.T) {
	tests := []struct {
		name     string
		size     int64
		fileSize int64
		want     error
	}{
		{"20MiB", 20 * mib, 20*mib + 512, nil},
		{"1GiB", 1 * gib, 1*gib + 512, nil},
		{"not whole MiB", 20*mib + 512, 20*mib + 1024, vhd.ErrBadSize},
		{"file holds more", 20 * mib, 21*mib + 512, vhd.ErrBadSize},
		{"file without footer", 20 * mib, 20 * mib, vhd.ErrBadSize},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFooter(t, tc.size)
			if err := f.ValidateUpload(tc.fileSize); !errors.Is(err, tc.want) {
				t.Errorf("ValidateUpload(%d) of a %d-byte disk = %v, want %v", tc.fileSize, tc.size, err, tc.want)
			}
		})
	}
	f := newFooter(t, 20*mib)
	f.DiskType = vhd.Dynamic
	if err := f.ValidateUpload(20*mib + 512); !errors.Is(err, vhd.ErrNotFixed) {
		t.Errorf("ValidateUpload() of a dynamic disk = %v, want %v", err, vhd.ErrNotFixed)
	}
}

// FuzzParse checks that Parse never panics and that whatever it accepts
// marshals back to the same bytes. Seeds come from our own encoder, with
// edits that reach each check; testdata/fuzz/FuzzParse adds footers that
// qemu-img wrote.
func FuzzParse(f *testing.F) {
	for _, size := range []int64{512, 20 * mib, 21 * mib, 127 * gib, 4096 * gib} {
		ft := newFooter(f, size)
		f.Add(marshal(f, ft))
		ft.SavedState = true
		ft.Features |= vhd.FeatureTemporary
		f.Add(marshal(f, ft))
	}
	b := marshal(f, newFooter(f, 20*mib))
	binary.BigEndian.PutUint32(b[offDiskType:], 3)
	fixChecksum(b)
	f.Add(b)
	f.Add(b[:511])
	f.Fuzz(func(t *testing.T, b []byte) {
		ft, err := vhd.Parse(b)
		if err != nil {
			return
		}
		if err := ft.Validate(); err != nil {
			t.Fatalf("Validate(Parse(%x)) = %v, want nil", b, err)
		}
		out, err := ft.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary(Parse(%x)) error = %v", b, err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("MarshalBinary(Parse(%x)) = %x, want the input", b, out)
		}
		if got, want := ft.Checksum(), binary.BigEndian.Uint32(b[offChecksum:]); got != want {
			t.Fatalf("Parse(%x).Checksum() = 0x%08x, want 0x%08x", b, got, want)
		}
	})
}
