package chunks

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/s2"
)

// The pack format; doc.go describes it.
const (
	packMagic        = "DDPK"
	packVersion      = 1
	packHeaderSize   = 24
	recordHeaderSize = 48

	// maxPackLen bounds the length a pack header may claim, so a damaged
	// header cannot make a reader allocate without limit. A pack is at most
	// maxPackSizeLimit, or holds one record of at most MaxChunkSize.
	maxPackLen = 1 << 31
)

// MaxChunkSize is the largest chunk plaintext a pack holds.
const MaxChunkSize = 16 << 20

// PackPrefix is the name prefix of every pack object. A pack's name is
// PackPrefix, its creation time as 16 hex digits of Unix nanoseconds, "-",
// and 16 random hex digits: "packs/18a3b2c4d5e6f708-0123456789abcdef".
const PackPrefix = "packs/"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// newPackName names a pack created at now. The random half keeps names
// unique across processes sharing a backend.
func newPackName(now time.Time) string {
	return fmt.Sprintf("%s%016x-%016x", PackPrefix, uint64(now.UnixNano()), rand.Uint64())
}

// PackTime returns the creation time encoded in a pack's name, and false if
// name is not a pack name. GC uses it for its grace period: a pack younger
// than the grace may belong to a write whose metadata is not committed yet,
// in this process or another.
func PackTime(name string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(name, PackPrefix)
	if !ok || len(rest) != 33 || rest[16] != '-' || !isHex(rest[:16]) || !isHex(rest[17:]) {
		return time.Time{}, false
	}
	ns, err := strconv.ParseUint(rest[:16], 16, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, int64(ns)), true
}

func isHex(s string) bool {
	for i := range len(s) {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// encodeSlack is the room appendRecord needs past a chunk of n bytes's raw
// record: s2 encodes into the space after the header, and its output may
// run past n before it is found no smaller and the plaintext is copied in
// instead. So a buffer with every record's header and plaintext and the
// largest slack of any of them holds all the records with no growing.
func encodeSlack(n int, compress bool) int {
	if !compress || n == 0 {
		return 0
	}
	return s2.MaxEncodedLen(n) - n
}

// appendRecord appends c's record to buf. With compress, the chunk is stored
// as s2 only when that is smaller than the plaintext. It returns the stored
// length and codec. If cap(buf) has the header, the chunk and its
// encodeSlack to spare, it does not allocate.
func appendRecord(buf []byte, c Chunk, compress bool) ([]byte, uint32, Codec) {
	start := len(buf)
	buf = slices.Grow(buf, recordHeaderSize+len(c.Data)+encodeSlack(len(c.Data), compress))
	buf = buf[:start+recordHeaderSize]
	codec := CodecRaw
	if compress && len(c.Data) > 0 && worthCompressing(c.Data) {
		dst := buf[len(buf) : len(buf)+s2.MaxEncodedLen(len(c.Data))]
		if enc := s2.Encode(dst, c.Data); len(enc) < len(c.Data) {
			codec = CodecS2
			buf = buf[:len(buf)+len(enc)]
		}
	}
	if codec == CodecRaw {
		buf = append(buf, c.Data...)
	}
	stored := uint32(len(buf) - start - recordHeaderSize)
	h := buf[start : start+recordHeaderSize]
	copy(h[0:32], c.Ref[:])
	h[32] = byte(codec)
	h[33], h[34], h[35] = 0, 0, 0
	binary.LittleEndian.PutUint32(h[36:], stored)
	binary.LittleEndian.PutUint32(h[40:], uint32(len(c.Data)))
	binary.LittleEndian.PutUint32(h[44:], crc32.Checksum(h[:44], castagnoli))
	return buf, stored, codec
}

// sampleSize is the length of each probe worthCompressing compresses.
const sampleSize = 2 << 10

// worthCompressing probes a large chunk at its start, middle and end and
// reports whether any probe shrinks by an eighth: compressing random data
// whole costs a third of an upload's CPU for nothing (measured on 1 GiB of
// Put Pages), while a probe costs a tenth of that. Small chunks are always
// tried.
func worthCompressing(p []byte) bool {
	if len(p) < 8*sampleSize {
		return true
	}
	var dst [sampleSize + sampleSize/2 + 32]byte // s2.MaxEncodedLen(sampleSize) fits
	for _, off := range []int{0, len(p)/2 - sampleSize/2, len(p) - sampleSize} {
		if enc := s2.Encode(dst[:], p[off:off+sampleSize]); len(enc) < sampleSize-sampleSize/8 {
			return true
		}
	}
	return false
}

// putPackHeader fills the first packHeaderSize bytes of a pack of total
// length n holding count records.
func putPackHeader(h []byte, n int, count int) {
	copy(h[0:4], packMagic)
	binary.LittleEndian.PutUint32(h[4:], packVersion)
	binary.LittleEndian.PutUint64(h[8:], uint64(n))
	binary.LittleEndian.PutUint32(h[16:], uint32(count))
	binary.LittleEndian.PutUint32(h[20:], crc32.Checksum(h[:20], castagnoli))
}

// parsePackHeader checks a pack header and returns the pack's length and
// record count.
func parsePackHeader(h []byte) (int64, int, error) {
	if len(h) < packHeaderSize {
		return 0, 0, fmt.Errorf("header: %d bytes, want %d", len(h), packHeaderSize)
	}
	if string(h[0:4]) != packMagic {
		return 0, 0, fmt.Errorf("header: bad magic %q", h[0:4])
	}
	if got, want := binary.LittleEndian.Uint32(h[20:]), crc32.Checksum(h[:20], castagnoli); got != want {
		return 0, 0, fmt.Errorf("header: checksum %08x, want %08x", got, want)
	}
	if v := binary.LittleEndian.Uint32(h[4:]); v != packVersion {
		return 0, 0, fmt.Errorf("header: unknown format version %d", v)
	}
	n := binary.LittleEndian.Uint64(h[8:])
	if n < packHeaderSize || n > maxPackLen {
		return 0, 0, fmt.Errorf("header: bad pack length %d", n)
	}
	return int64(n), int(binary.LittleEndian.Uint32(h[16:])), nil
}

// record is one chunk record as parsePack finds it.
type record struct {
	ref    Ref
	codec  Codec
	off    int // offset of the stored bytes in the pack
	stored int
	raw    int
}

// parsePack checks the framing of the whole pack p and returns its records
// in order, or a *CorruptError. It does not look at the stored bytes.
func parsePack(name string, p []byte) ([]record, error) {
	corrupt := func(ref Ref, format string, args ...any) error {
		return &CorruptError{Ref: ref, Pack: name, Err: fmt.Errorf(format, args...)}
	}
	n, count, err := parsePackHeader(p)
	if err != nil {
		return nil, &CorruptError{Pack: name, Err: err}
	}
	if n != int64(len(p)) {
		return nil, corrupt(Ref{}, "header: pack length %d, object has %d bytes", n, len(p))
	}
	// Every record takes at least its header, which bounds a sane count.
	if count > (len(p)-packHeaderSize)/recordHeaderSize {
		return nil, corrupt(Ref{}, "header: %d records cannot fit", count)
	}
	recs := make([]record, 0, count)
	for off := packHeaderSize; off < len(p); {
		i := len(recs)
		if len(p)-off < recordHeaderSize {
			return nil, corrupt(Ref{}, "record %d at %d: truncated header", i, off)
		}
		h := p[off : off+recordHeaderSize]
		if got, want := binary.LittleEndian.Uint32(h[44:]), crc32.Checksum(h[:44], castagnoli); got != want {
			return nil, corrupt(Ref{}, "record %d at %d: checksum %08x, want %08x", i, off, got, want)
		}
		r := record{
			ref:    Ref(h[0:32]),
			codec:  Codec(h[32]),
			off:    off + recordHeaderSize,
			stored: int(binary.LittleEndian.Uint32(h[36:])),
			raw:    int(binary.LittleEndian.Uint32(h[40:])),
		}
		switch {
		case h[33]|h[34]|h[35] != 0:
			return nil, corrupt(r.ref, "record %d at %d: reserved bytes set", i, off)
		case r.raw > MaxChunkSize:
			return nil, corrupt(r.ref, "record %d at %d: length %d over the limit", i, off, r.raw)
		case r.codec == CodecRaw && r.stored != r.raw:
			return nil, corrupt(r.ref, "record %d at %d: raw record stores %d of %d bytes", i, off, r.stored, r.raw)
		case r.codec == CodecS2 && (r.stored == 0 || r.stored >= r.raw):
			return nil, corrupt(r.ref, "record %d at %d: s2 record stores %d bytes for %d", i, off, r.stored, r.raw)
		case r.codec != CodecRaw && r.codec != CodecS2:
			return nil, corrupt(r.ref, "record %d at %d: unknown codec %d", i, off, r.codec)
		case r.stored > len(p)-r.off:
			return nil, corrupt(r.ref, "record %d at %d: %d stored bytes run past the end", i, off, r.stored)
		}
		recs = append(recs, r)
		off = r.off + r.stored
	}
	if len(recs) != count {
		return nil, corrupt(Ref{}, "%d records, header says %d", len(recs), count)
	}
	return recs, nil
}

// decodeS2 decodes an s2 block into dst if it is large enough. want is the
// plaintext length if known, else -1. The length checks come before the
// decoder allocates, so a damaged block cannot make it allocate much.
func decodeS2(dst, stored []byte, want int) ([]byte, error) {
	n, err := s2.DecodedLen(stored)
	switch {
	case err != nil:
		return nil, fmt.Errorf("s2: %w", err)
	case n > MaxChunkSize:
		return nil, fmt.Errorf("s2: length %d over the limit", n)
	case want >= 0 && n != want:
		return nil, fmt.Errorf("s2: length %d, record says %d", n, want)
	}
	out, err := s2.Decode(dst[:cap(dst)], stored)
	if err != nil {
		return nil, fmt.Errorf("s2: %w", err)
	}
	return out, nil
}

// verify checks data against ref.
func verify(ref Ref, data []byte) error {
	if got := Sum(data); got != ref {
		return fmt.Errorf("plaintext hashes to %s", got)
	}
	return nil
}
