package chunks_test

import (
	"context"
	"testing"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
)

// FuzzScanPack feeds arbitrary bytes to the pack reader as a pack. It must
// never panic, and whatever it accepts must be consistent: locations inside
// the pack, and chunks that Get and ReadPack return hash to their refs.
// The seeds are packs our own writer made.
func FuzzScanPack(f *testing.F) {
	seeds := [][]chunks.Chunk{
		{chunkOf([]byte("x"))},
		{chunkOf(semiBytes(1, 3000)), chunkOf(randomBytes(2, 200)), chunkOf(nil)},
		{chunkOf(semiBytes(3, 20000))},
	}
	for _, cs := range seeds {
		for _, compress := range []bool{false, true} {
			m := chunkstest.NewMem()
			s := newStore(f, m, compress, 0)
			loc := put(f, s, cs...)[0]
			f.Add(object(f, m, loc.Pack))
		}
	}
	f.Add([]byte{})
	f.Add([]byte("DDPK"))

	const name = "packs/0000000000000001-0000000000000001"
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		m := chunkstest.NewMem()
		if err := m.Put(ctx, name, data); err != nil {
			t.Fatal(err)
		}
		s := newStore(t, m, true, 0)
		var locs []chunks.Location
		var refs []chunks.Ref
		err := s.ScanPack(ctx, name, func(ref chunks.Ref, loc chunks.Location) error {
			if loc.Pack != name || loc.Offset < 72 || loc.Offset+int64(loc.Length) > int64(len(data)) {
				t.Fatalf("ScanPack gave location %+v outside the %d-byte pack", loc, len(data))
			}
			refs, locs = append(refs, ref), append(locs, loc)
			return nil
		})
		if err != nil {
			return
		}
		for i, loc := range locs {
			if got, err := s.Get(ctx, refs[i], loc, nil); err == nil && chunks.Sum(got) != refs[i] {
				t.Fatalf("Get(%s) returned bytes that hash otherwise", refs[i])
			}
		}
		n := 0
		err = s.ReadPack(ctx, name, func(ref chunks.Ref, loc chunks.Location, data []byte, err error) error {
			if loc != locs[n] || ref != refs[n] {
				t.Fatalf("ReadPack record %d is %s %+v, ScanPack's %s %+v", n, ref, loc, refs[n], locs[n])
			}
			if err == nil && chunks.Sum(data) != ref {
				t.Fatalf("ReadPack gave bytes for %s that hash otherwise", ref)
			}
			n++
			return nil
		})
		if err != nil || n != len(locs) {
			t.Fatalf("ReadPack = %v after %d records; ScanPack accepted %d", err, n, len(locs))
		}
	})
}
