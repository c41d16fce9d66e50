package engine

import (
	"bytes"
	"slices"
	"testing"

	"github.com/deltadisk/deltadisk/internal/chunks"
)

// TestMapKeyOrder: a forward seek from (l, b, g) must meet block b's
// entries newest first, and never another block's.
func TestMapKeyOrder(t *testing.T) {
	keys := [][]byte{
		mapKey(1, 0, 9), mapKey(1, 0, 3), mapKey(1, 0, 0),
		mapKey(1, 1, 5), mapKey(1, 1<<40, 1), mapKey(2, 0, 1<<63),
	}
	if !slices.IsSortedFunc(keys, bytes.Compare) {
		t.Fatalf("map keys do not sort as (lineage, block, newest generation first)")
	}
	if end := mapBlockPrefix(1, 1); bytes.Compare(mapKey(1, 0, 0), end) >= 0 {
		t.Errorf("mapKey(1,0,0) sorts after the next block's prefix")
	}
}

func TestPrefixEnd(t *testing.T) {
	tests := []struct{ in, want []byte }{
		{[]byte{1, 2}, []byte{1, 3}},
		{[]byte{1, 0xff}, []byte{2}},
		{[]byte{0xff, 0xff}, nil},
	}
	for _, tc := range tests {
		if got := prefixEnd(tc.in); !bytes.Equal(got, tc.want) {
			t.Errorf("prefixEnd(%x) = %x, want %x", tc.in, got, tc.want)
		}
	}
}

// FuzzKeys round-trips every key codec and checks that decoding arbitrary
// bytes never panics and accepts only what the encoders produce.
func FuzzKeys(f *testing.F) {
	f.Add(uint64(1), uint64(2), uint64(3), []byte(nil))
	f.Add(uint64(0), uint64(1<<63), ^uint64(0), mapKey(7, 8, 9))
	f.Add(^uint64(0), uint64(0), uint64(0), changedKey(1, 2, 3))
	f.Add(uint64(5), uint64(6), uint64(7), genKey(5, 6))
	f.Add(uint64(5), uint64(6), uint64(7), snapKey(5, 6))
	f.Fuzz(func(t *testing.T, l, b, g uint64, raw []byte) {
		ml, mb, mg, err := decodeMapKey(mapKey(LineageID(l), b, Generation(g)))
		if err != nil || uint64(ml) != l || mb != b || uint64(mg) != g {
			t.Fatalf("map key round trip (%d,%d,%d) = (%d,%d,%d), %v", l, b, g, ml, mb, mg, err)
		}
		cl, cg, cb, err := decodeChangedKey(changedKey(LineageID(l), Generation(g), b))
		if err != nil || uint64(cl) != l || cb != b || uint64(cg) != g {
			t.Fatalf("changed key round trip (%d,%d,%d) = (%d,%d,%d), %v", l, g, b, cl, cg, cb, err)
		}
		gl, gg, err := decodeGenKey(genKey(LineageID(l), Generation(g)))
		if err != nil || uint64(gl) != l || uint64(gg) != g {
			t.Fatalf("gen key round trip (%d,%d) = (%d,%d), %v", l, g, gl, gg, err)
		}
		sl, sg, err := decodeSnapKey(snapKey(LineageID(l), Generation(g)))
		if err != nil || uint64(sl) != l || uint64(sg) != g {
			t.Fatalf("snapshot index key round trip (%d,%d) = (%d,%d), %v", l, g, sl, sg, err)
		}
		if id, err := decodeIDKey(pendingKey(ID(l)), prefixPending); err != nil || id != l {
			t.Fatalf("pending key round trip %d = %d, %v", l, id, err)
		}
		if id, err := decodeIDKey(imageKey(ID(l)), prefixImage); err != nil || id != l {
			t.Fatalf("image key round trip %d = %d, %v", l, id, err)
		}
		// Arbitrary bytes: decode without panicking; whatever decodes
		// must re-encode to the same bytes.
		if l, b, g, err := decodeMapKey(raw); err == nil && !bytes.Equal(mapKey(l, b, g), raw) {
			t.Fatalf("decodeMapKey(%x) accepted a key it does not produce", raw)
		}
		if l, g, b, err := decodeChangedKey(raw); err == nil && !bytes.Equal(changedKey(l, g, b), raw) {
			t.Fatalf("decodeChangedKey(%x) accepted a key it does not produce", raw)
		}
		if l, g, err := decodeGenKey(raw); err == nil && !bytes.Equal(genKey(l, g), raw) {
			t.Fatalf("decodeGenKey(%x) accepted a key it does not produce", raw)
		}
		if l, g, err := decodeSnapKey(raw); err == nil && !bytes.Equal(snapKey(l, g), raw) {
			t.Fatalf("decodeSnapKey(%x) accepted a key it does not produce", raw)
		}
		if r, err := decodeChunkKey(raw); err == nil && !bytes.Equal(chunkKey(r), raw) {
			t.Fatalf("decodeChunkKey(%x) accepted a key it does not produce", raw)
		}
		if v, err := decodeValue(raw); err == nil && !bytes.Equal(v.encode(), raw) {
			t.Fatalf("decodeValue(%x) accepted a value it does not produce", raw)
		}
	})
}

// FuzzChunkEntry round-trips the chunk index value and never panics on
// arbitrary bytes.
func FuzzChunkEntry(f *testing.F) {
	e := chunkEntry{Refs: 3, Locations: []zoneLocation{{Zone: 0, Location: chunks.Location{Pack: "packs/p1", Offset: 4096, Length: 65536, Codec: chunks.CodecS2}}}}
	f.Add(e.marshal())
	f.Add((&chunkEntry{}).marshal())
	f.Add([]byte{1, 0xff})
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, err := unmarshalChunkEntry(raw)
		if err != nil {
			return
		}
		again, err := unmarshalChunkEntry(e.marshal())
		if err != nil {
			t.Fatalf("re-decoding %x: %v", e.marshal(), err)
		}
		if !slices.Equal(again.Locations, e.Locations) || again.Refs != e.Refs {
			t.Fatalf("chunk entry round trip %+v = %+v", e, again)
		}
	})
}
