//go:build !unix

package local

// unlinked cannot tell here; a deleted file stays readable while cached.
func unlinked(File) bool { return false }
