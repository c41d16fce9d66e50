package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWriteCredentialsUnchanged: a start that has nothing new to say leaves
// credentials.json alone (same inode, same mtime), so it needs no free
// space; a loosened mode is still made 0600 again. A change is written by
// replacing the file.
func TestWriteCredentialsUnchanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), credentialsFileName)
	c := credentials{TenantID: "t", ClientSecret: "s", ResourceManagerURL: "https://127.0.0.1:8443/"}
	if err := writeCredentials(path, c); err != nil {
		t.Fatal(err)
	}
	// An mtime far in the past, so a rewrite shows whatever the clock's
	// resolution.
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	before := stat(t, path)

	if err := writeCredentials(path, c); err != nil {
		t.Fatal(err)
	}
	after := stat(t, path)
	if !os.SameFile(before, after) || !after.ModTime().Equal(old) {
		t.Errorf("writeCredentials with the same content replaced or rewrote the file (mtime %v, was %v)", after.ModTime(), old)
	}
	if after.Mode().Perm() != 0o600 {
		t.Errorf("mode after writeCredentials = %v, want 0600", after.Mode().Perm())
	}

	c.ResourceManagerURL = "https://127.0.0.1:9443/"
	if err := writeCredentials(path, c); err != nil {
		t.Fatal(err)
	}
	changed := stat(t, path)
	if os.SameFile(before, changed) || changed.Mode().Perm() != 0o600 {
		t.Errorf("writeCredentials with new content: same file %t, mode %v; want a new 0600 file (written beside, renamed over)",
			os.SameFile(before, changed), changed.Mode().Perm())
	}
	var got credentials
	if b, err := os.ReadFile(path); err != nil || json.Unmarshal(b, &got) != nil || got != c {
		t.Errorf("credentials.json after the change = %+v (%v), want %+v", got, err, c)
	}
}

func stat(t *testing.T, path string) os.FileInfo {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info
}
