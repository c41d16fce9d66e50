// Package tooltest finds the external programs that tests drive (qemu-img,
// qemu-io, nbdinfo, az, jq, curl). A missing program skips the test on a
// developer's machine and fails it in CI (DELTADISK_CI set), where
// scripts/test.sh installs every one of them and a skip would hide a gap.
package tooltest

import (
	"os"
	"os/exec"
	"testing"
)

// Find returns the path of program name (from Debian package pkg) and true.
// Without it, it fails the test in CI and returns false elsewhere, for tests
// that can go on without it.
func Find(t testing.TB, name, pkg string) (string, bool) {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p, true
	}
	if os.Getenv("DELTADISK_CI") != "" {
		t.Fatalf("%s is required in CI (apt-get install %s): %v", name, pkg, err)
	}
	return "", false
}

// Path returns the path of program name (from Debian package pkg). Without
// it, it fails the test in CI and skips it elsewhere.
func Path(t testing.TB, name, pkg string) string {
	t.Helper()
	p, ok := Find(t, name, pkg)
	if !ok {
		t.Skipf("%s not found (apt-get install %s, or set DELTADISK_CI to make this a failure)", name, pkg)
	}
	return p
}
