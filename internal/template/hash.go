package template

import (
	"crypto/sha1"
	"encoding/hex"
	"math/bits"
	"strings"
)

// uniqueString is ARM's uniqueString: the arguments joined with "-",
// hashed with a 64-bit MurmurHash3 variant (two 32-bit lanes over 8-byte
// blocks, seed 0) and written as 13 lowercase base32 characters taken from
// the hash's most significant bits first.
func uniqueString(parts []string) string {
	h := murmur64([]byte(strings.Join(parts, "-")))
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	var out [13]byte
	for i := range out {
		out[i] = alphabet[h>>59]
		h <<= 5
	}
	return string(out[:])
}

// murmur64 is the two-lane 32-bit MurmurHash3 mix that ARM's uniqueString
// uses: lane one takes the low word of each 8-byte block and lane two the
// high word, each lane feeding the other, and the 64-bit result is
// lane2<<32 | lane1.
func murmur64(data []byte) uint64 {
	const (
		c1 = 0x239b961b
		c2 = 0xab0e9789
	)
	var h1, h2 uint32
	n := len(data)
	i := 0
	for ; i+8 <= n; i += 8 {
		k1 := le32(data[i:])
		k2 := le32(data[i+4:])

		k1 *= c1
		k1 = bits.RotateLeft32(k1, 15)
		k1 *= c2
		h1 ^= k1
		h1 = bits.RotateLeft32(h1, 19)
		h1 += h2
		h1 = h1*5 + 0x561ccd1b

		k2 *= c2
		k2 = bits.RotateLeft32(k2, 17)
		k2 *= c1
		h2 ^= k2
		h2 = bits.RotateLeft32(h2, 13)
		h2 += h1
		h2 = h2*5 + 0x0bcaa747
	}
	if rest := data[i:]; len(rest) > 0 {
		var k1 uint32
		for j := min(len(rest), 4) - 1; j >= 0; j-- {
			k1 = k1<<8 | uint32(rest[j])
		}
		k1 *= c1
		k1 = bits.RotateLeft32(k1, 15)
		k1 *= c2
		h1 ^= k1
		if len(rest) > 4 {
			var k2 uint32
			for j := len(rest) - 1; j >= 4; j-- {
				k2 = k2<<8 | uint32(rest[j])
			}
			k2 *= c2
			k2 = bits.RotateLeft32(k2, 17)
			k2 *= c1
			h2 ^= k2
		}
	}
	h1 ^= uint32(n)
	h2 ^= uint32(n)
	h1 += h2
	h2 += h1
	h1 = fmix32(h1)
	h2 = fmix32(h2)
	h1 += h2
	h2 += h1
	return uint64(h2)<<32 | uint64(h1)
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func fmix32(h uint32) uint32 {
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

// guidNamespace is the RFC 4122 namespace ARM's guid() hashes names in.
var guidNamespace = [16]byte{0x11, 0xfb, 0x06, 0xfb, 0x71, 0x2d, 0x4d, 0xdd, 0x98, 0xc7, 0xe7, 0x1b, 0xbd, 0x58, 0x88, 0x30}

// guid is ARM's guid(): an RFC 4122 §4.3 name-based (version 5, SHA-1)
// UUID of the arguments joined with "-", UTF-8 encoded, in guidNamespace.
func guid(parts []string) string {
	return uuid5(guidNamespace, strings.Join(parts, "-"))
}

// uuid5 is the RFC 4122 §4.3 name-based UUID, version 5, of name in ns.
func uuid5(ns [16]byte, name string) string {
	h := sha1.New()
	h.Write(ns[:])
	h.Write([]byte(name))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], u[10:16])
	return string(b[:])
}
