package chunks_test

import (
	"fmt"
	"math/rand/v2"
)

// randomBytes returns n incompressible bytes from a PRNG seeded with seed.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 0))
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

// semiBytes returns n bytes that compress to roughly a third: log-like text
// lines with a random binary run now and then, like a disk's mixed content.
func semiBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	words := []string{"lineage", "generation", "block", "snapshot", "disk", "chunk", "pack", "ok", "write", "read"}
	p := make([]byte, 0, n+128)
	for len(p) < n {
		if r.IntN(8) == 0 {
			for range 16 + r.IntN(48) {
				p = append(p, byte(r.Uint32()))
			}
			continue
		}
		p = fmt.Appendf(p, "%s %d %s=%x\n", words[r.IntN(len(words))], r.IntN(10000), words[r.IntN(len(words))], r.Uint32()&0xfff)
	}
	return p[:n]
}
