package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Main(t.Context(), []string{"version"}, &out, &errOut); code != 0 {
		t.Fatalf("Main(version) = %d, want 0; stderr %q", code, errOut.String())
	}
	if !strings.HasPrefix(out.String(), "deltadisk ") {
		t.Errorf("version output = %q, want prefix %q", out.String(), "deltadisk ")
	}
}

func TestUnknownCommandFails(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Main(t.Context(), []string{"no-such-command"}, &out, &errOut); code == 0 {
		t.Fatalf("Main(no-such-command) = 0, want non-zero")
	}
	if !strings.Contains(errOut.String(), "unknown command") {
		t.Errorf("stderr = %q, want it to name the unknown command", errOut.String())
	}
}
