//go:build !invariants

package chunks

const invariants = false
