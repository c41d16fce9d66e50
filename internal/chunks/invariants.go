//go:build invariants

package chunks

// invariants turns on costly checks of the callers' promises, such as each
// Chunk's Ref matching its data.
const invariants = true
