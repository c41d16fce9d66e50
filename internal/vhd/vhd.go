// Package vhd builds, parses and validates the 512-byte footer that ends a
// fixed VHD (Microsoft Virtual Hard Disk) image: the disk's bytes, then the
// footer.
//
// Invariant: every [Footer] that [Parse] returns or [Footer.MarshalBinary]
// accepts describes a fixed disk whose current size is a positive multiple of
// 512 bytes, and a parsed footer marshals back to exactly the bytes it was
// parsed from.
package vhd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Format constants from the VHD specification.
const (
	// FooterSize is the length of a footer; it is the last FooterSize bytes
	// of a fixed VHD file.
	FooterSize = 512
	// SectorSize is the unit of every VHD size.
	SectorSize = 512
	// Cookie opens every footer.
	Cookie = "conectix"
	// Version is the only file format version there is (1.0). Parse accepts
	// any minor version of major version 1.
	Version uint32 = 0x00010000
	// FixedDataOffset is the data offset of a fixed disk, which has no
	// dynamic disk header.
	FixedDataOffset uint64 = math.MaxUint64
	// FeatureTemporary marks a disk as a candidate for deletion on shutdown.
	FeatureTemporary uint32 = 0x1
	// FeatureReserved must always be set.
	FeatureReserved uint32 = 0x2
)

// DiskType is the footer's disk type field.
type DiskType uint32

// Disk types defined by the specification. Only Fixed is valid in a [Footer].
const (
	Fixed        DiskType = 2
	Dynamic      DiskType = 3
	Differencing DiskType = 4
)

func (t DiskType) String() string {
	switch t {
	case Fixed:
		return "fixed"
	case Dynamic:
		return "dynamic"
	case Differencing:
		return "differencing"
	}
	return fmt.Sprintf("DiskType(%d)", uint32(t))
}

var (
	// ErrBadLength means the input is not exactly FooterSize bytes long.
	ErrBadLength = errors.New("vhd: footer is not 512 bytes")
	// ErrBadCookie means the input does not start with Cookie: it is not a
	// VHD footer.
	ErrBadCookie = errors.New("vhd: bad cookie, not a VHD footer")
	// ErrBadChecksum means the stored checksum does not match the footer's bytes.
	ErrBadChecksum = errors.New("vhd: footer checksum mismatch")
	// ErrBadVersion means the file format version is not 1.x.
	ErrBadVersion = errors.New("vhd: unsupported file format version")
	// ErrNotFixed means the footer describes a dynamic, differencing or
	// unknown kind of disk.
	ErrNotFixed = errors.New("vhd: not a fixed disk")
	// ErrBadDataOffset means the data offset is not FixedDataOffset.
	ErrBadDataOffset = errors.New("vhd: bad data offset for a fixed disk")
	// ErrBadSize means a disk size is not positive, not sector-aligned, or
	// breaks an upload rule.
	ErrBadSize = errors.New("vhd: bad disk size")
	// ErrBadTimestamp means a time cannot be stored in the footer, which holds
	// whole seconds from 2000-01-01 UTC in 32 bits.
	ErrBadTimestamp = errors.New("vhd: timestamp out of range")
	// ErrMalformed means the saved-state flag is neither 0 nor 1, or the
	// reserved bytes are not zero.
	ErrMalformed = errors.New("vhd: malformed footer")
)

// CHS is a disk geometry in cylinders, heads and sectors per track.
type CHS struct {
	Cylinders       uint16
	Heads           uint8
	SectorsPerTrack uint8
}

// Sectors returns the number of sectors the geometry addresses.
func (g CHS) Sectors() int64 {
	return int64(g.Cylinders) * int64(g.Heads) * int64(g.SectorsPerTrack)
}

func (g CHS) String() string {
	return fmt.Sprintf("%d/%d/%d", g.Cylinders, g.Heads, g.SectorsPerTrack)
}

// maxGeometrySectors is the largest disk a CHS geometry can describe.
const maxGeometrySectors = 65535 * 16 * 255

// Geometry returns the geometry the VHD specification (appendix "CHS
// Calculation") assigns to a disk of size bytes; a partial last sector is
// ignored. The geometry addresses at most size bytes, often a little less,
// and never more than 65535×16×255 sectors (about 127.5 GiB): readers that
// size a disk by its geometry rather than by Footer.CurrentSize see a
// smaller disk.
func Geometry(size int64) CHS {
	total := max(size, 0) / SectorSize
	total = min(total, maxGeometrySectors)
	var spt, heads, cylTimesHeads int64
	if total >= 65535*16*63 {
		spt = 255
		heads = 16
		cylTimesHeads = total / spt
	} else {
		spt = 17
		cylTimesHeads = total / spt
		heads = max((cylTimesHeads+1023)/1024, 4)
		if cylTimesHeads >= heads*1024 || heads > 16 {
			spt = 31
			heads = 16
			cylTimesHeads = total / spt
		}
		if cylTimesHeads >= heads*1024 {
			spt = 63
			heads = 16
			cylTimesHeads = total / spt
		}
	}
	return CHS{
		Cylinders:       uint16(cylTimesHeads / heads),
		Heads:           uint8(heads),
		SectorsPerTrack: uint8(spt),
	}
}

// Footer is a VHD footer, field for field as the specification lays it out,
// except for two fields that hold no information of their own: the cookie is
// always [Cookie], and the checksum is computed from the other fields (see
// [Footer.Checksum]).
type Footer struct {
	// Features is a bit set of FeatureTemporary and FeatureReserved.
	Features uint32
	// FileFormatVersion is Version.
	FileFormatVersion uint32
	// DataOffset is FixedDataOffset.
	DataOffset uint64
	// Timestamp is when the image was created; the footer stores whole
	// seconds from 2000-01-01 UTC to 2136-02-07.
	Timestamp time.Time
	// CreatorApplication names the program that created the image; some
	// readers size the disk by it (see New).
	CreatorApplication [4]byte
	// CreatorVersion is the creator's version, major in the high 16 bits.
	CreatorVersion uint32
	// CreatorHostOS is "Wi2k" (Windows) or "Mac " by convention.
	CreatorHostOS [4]byte
	// OriginalSize is the disk size in bytes when the image was created.
	OriginalSize int64
	// CurrentSize is the disk size in bytes: the length of the image
	// before the footer.
	CurrentSize int64
	// Geometry is the disk's CHS geometry, normally Geometry(CurrentSize).
	Geometry CHS
	// DiskType is Fixed.
	DiskType DiskType
	// UniqueID identifies the disk.
	UniqueID [16]byte
	// SavedState reports whether the disk is in a saved state.
	SavedState bool
}

// Field offsets in the footer.
const (
	offCookie         = 0
	offFeatures       = 8
	offVersion        = 12
	offDataOffset     = 16
	offTimestamp      = 24
	offCreatorApp     = 28
	offCreatorVersion = 32
	offCreatorHostOS  = 36
	offOriginalSize   = 40
	offCurrentSize    = 48
	offCylinders      = 56
	offHeads          = 58
	offSectors        = 59
	offDiskType       = 60
	offChecksum       = 64
	offUniqueID       = 68
	offSavedState     = 84
	offReserved       = 85
)

// epoch is the origin of the footer's timestamps.
var epoch = time.Date(2000, time.January, 1, 0, 0, 0, 0, time.UTC)

// The creator fields New writes.
var (
	// creatorApp is Hyper-V's. qemu (7.2) sizes an image by its CHS
	// geometry, which usually falls short of the disk size (see Geometry),
	// unless the creator is one it knows to mean CurrentSize: "win "
	// (Hyper-V), "qem2", "d2v ", "CTXS" or "tap\x00". With a creator of our
	// own, such as "dlta", qemu-img would silently drop the disk's tail;
	// TestQemu pins both behaviours.
	creatorApp = [4]byte{'w', 'i', 'n', ' '}
	// creatorVersion is 1.0; no reader we know interprets it.
	creatorVersion = uint32(0x00010000)
	creatorHostOS  = [4]byte{'W', 'i', '2', 'k'}
)

// New returns the footer of a fixed disk of size bytes, identified by
// uniqueID and created at t, which is kept to the second. size must be a
// positive multiple of SectorSize and t within the footer's range (2000 to
// 2136).
//
// New names Hyper-V as the creator, so that readers that honour the creator
// field (qemu among them) take the disk's size from CurrentSize rather than
// from its geometry.
func New(size int64, uniqueID [16]byte, t time.Time) (Footer, error) {
	f := Footer{
		Features:           FeatureReserved,
		FileFormatVersion:  Version,
		DataOffset:         FixedDataOffset,
		Timestamp:          t.UTC().Truncate(time.Second),
		CreatorApplication: creatorApp,
		CreatorVersion:     creatorVersion,
		CreatorHostOS:      creatorHostOS,
		OriginalSize:       size,
		CurrentSize:        size,
		Geometry:           Geometry(size),
		DiskType:           Fixed,
		UniqueID:           uniqueID,
	}
	if err := f.Validate(); err != nil {
		return Footer{}, err
	}
	return f, nil
}

// Validate reports whether f describes a fixed disk that deltadisk can
// store: a version 1.x footer of disk type Fixed with the fixed data offset,
// a positive CurrentSize that is a multiple of SectorSize, and a Timestamp
// the footer can hold. Features, creator fields, OriginalSize and Geometry
// are informational and not checked.
func (f Footer) Validate() error {
	if f.FileFormatVersion>>16 != Version>>16 {
		return fmt.Errorf("%w: 0x%08x, want major version 1", ErrBadVersion, f.FileFormatVersion)
	}
	if f.DiskType != Fixed {
		return fmt.Errorf("%w: disk type is %v", ErrNotFixed, f.DiskType)
	}
	if f.DataOffset != FixedDataOffset {
		return fmt.Errorf("%w: %#x, want %#x", ErrBadDataOffset, f.DataOffset, uint64(FixedDataOffset))
	}
	if f.CurrentSize <= 0 || f.CurrentSize%SectorSize != 0 {
		return fmt.Errorf("%w: current size %d is not a positive multiple of %d", ErrBadSize, f.CurrentSize, SectorSize)
	}
	if _, ok := timestampSeconds(f.Timestamp); !ok {
		return fmt.Errorf("%w: %v is not between %v and %v", ErrBadTimestamp,
			f.Timestamp, epoch, epoch.Add(math.MaxUint32*time.Second))
	}
	return nil
}

// mib is Azure's alignment for uploaded disks.
const mib = 1 << 20

// ValidateUpload reports whether f can end a VHD file of fileSize bytes,
// footer included, that Azure accepts as a disk upload: f is valid, and its
// CurrentSize is a whole number of MiB and equals fileSize minus the
// footer. Limits on the size of a disk are the caller's rules, not the
// format's.
func (f Footer) ValidateUpload(fileSize int64) error {
	if err := f.Validate(); err != nil {
		return err
	}
	if f.CurrentSize%mib != 0 {
		return fmt.Errorf("%w: current size %d is not a multiple of 1 MiB", ErrBadSize, f.CurrentSize)
	}
	if f.CurrentSize != fileSize-FooterSize {
		return fmt.Errorf("%w: current size %d, but the file holds %d bytes before the footer",
			ErrBadSize, f.CurrentSize, fileSize-FooterSize)
	}
	return nil
}

// timestampSeconds returns t in footer units, and false if it does not fit.
func timestampSeconds(t time.Time) (uint32, bool) {
	s := t.Unix() - epoch.Unix()
	if s < 0 || s > math.MaxUint32 {
		return 0, false
	}
	return uint32(s), true
}

// MarshalBinary returns f's FooterSize bytes, checksum included. It fails if
// f is not valid (see [Footer.Validate]).
func (f Footer) MarshalBinary() ([]byte, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	b := f.encode()
	return b[:], nil
}

// Checksum returns the footer's checksum: the ones' complement of the sum
// of all its bytes except the checksum field.
func (f Footer) Checksum() uint32 {
	b := f.encode()
	return binary.BigEndian.Uint32(b[offChecksum:])
}

// encode lays f out without validating it.
func (f Footer) encode() [FooterSize]byte {
	var b [FooterSize]byte
	be := binary.BigEndian
	copy(b[offCookie:], Cookie)
	be.PutUint32(b[offFeatures:], f.Features)
	be.PutUint32(b[offVersion:], f.FileFormatVersion)
	be.PutUint64(b[offDataOffset:], f.DataOffset)
	ts, _ := timestampSeconds(f.Timestamp)
	be.PutUint32(b[offTimestamp:], ts)
	copy(b[offCreatorApp:], f.CreatorApplication[:])
	be.PutUint32(b[offCreatorVersion:], f.CreatorVersion)
	copy(b[offCreatorHostOS:], f.CreatorHostOS[:])
	be.PutUint64(b[offOriginalSize:], uint64(f.OriginalSize))
	be.PutUint64(b[offCurrentSize:], uint64(f.CurrentSize))
	be.PutUint16(b[offCylinders:], f.Geometry.Cylinders)
	b[offHeads] = f.Geometry.Heads
	b[offSectors] = f.Geometry.SectorsPerTrack
	be.PutUint32(b[offDiskType:], uint32(f.DiskType))
	copy(b[offUniqueID:], f.UniqueID[:])
	if f.SavedState {
		b[offSavedState] = 1
	}
	be.PutUint32(b[offChecksum:], checksum(b[:]))
	return b
}

// checksum computes the checksum of footer bytes b, skipping the checksum field.
func checksum(b []byte) uint32 {
	var sum uint32
	for i, c := range b {
		if i >= offChecksum && i < offChecksum+4 {
			continue
		}
		sum += uint32(c)
	}
	return ^sum
}

// Parse decodes a footer from b, which must be exactly FooterSize bytes:
// the last bytes of a fixed VHD file. It checks the cookie, the checksum,
// that the saved-state flag is 0 or 1 and the reserved bytes are zero, and
// that the footer is valid (see [Footer.Validate]).
func Parse(b []byte) (Footer, error) {
	if len(b) != FooterSize {
		return Footer{}, fmt.Errorf("%w: got %d bytes", ErrBadLength, len(b))
	}
	if string(b[offCookie:offCookie+len(Cookie)]) != Cookie {
		return Footer{}, fmt.Errorf("%w: cookie is %q", ErrBadCookie, b[offCookie:offCookie+len(Cookie)])
	}
	be := binary.BigEndian
	if got, want := be.Uint32(b[offChecksum:]), checksum(b); got != want {
		return Footer{}, fmt.Errorf("%w: footer has 0x%08x, computed 0x%08x", ErrBadChecksum, got, want)
	}
	if b[offSavedState] > 1 {
		return Footer{}, fmt.Errorf("%w: saved state is %d, want 0 or 1", ErrMalformed, b[offSavedState])
	}
	for i, c := range b[offReserved:] {
		if c != 0 {
			return Footer{}, fmt.Errorf("%w: reserved byte at offset %d is %#02x", ErrMalformed, offReserved+i, c)
		}
	}
	f := Footer{
		Features:          be.Uint32(b[offFeatures:]),
		FileFormatVersion: be.Uint32(b[offVersion:]),
		DataOffset:        be.Uint64(b[offDataOffset:]),
		Timestamp:         epoch.Add(time.Duration(be.Uint32(b[offTimestamp:])) * time.Second),
		CreatorVersion:    be.Uint32(b[offCreatorVersion:]),
		OriginalSize:      int64(be.Uint64(b[offOriginalSize:])),
		CurrentSize:       int64(be.Uint64(b[offCurrentSize:])),
		Geometry: CHS{
			Cylinders:       be.Uint16(b[offCylinders:]),
			Heads:           b[offHeads],
			SectorsPerTrack: b[offSectors],
		},
		DiskType:   DiskType(be.Uint32(b[offDiskType:])),
		SavedState: b[offSavedState] == 1,
	}
	copy(f.CreatorApplication[:], b[offCreatorApp:])
	copy(f.CreatorHostOS[:], b[offCreatorHostOS:])
	copy(f.UniqueID[:], b[offUniqueID:])
	if err := f.Validate(); err != nil {
		return Footer{}, err
	}
	return f, nil
}
