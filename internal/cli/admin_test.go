package cli

import (
	"strings"
	"testing"
)

func TestAdminCommands(t *testing.T) {
	s := newStack(t)
	s.ok("group", "create", "-n", "rg", "-l", "eastus")
	s.ok("disk", "create", "-g", "rg", "-n", "d", "--size-gb", "1")
	s.ok("snapshot", "create", "-g", "rg", "-n", "s", "--source", "d", "--incremental")
	rep := s.object("admin", "check", "--read-data")
	if problems, _ := rep["problems"].([]any); len(problems) != 0 || rep["images"] != float64(2) || rep["readData"] != true {
		t.Errorf("admin check = %v", rep)
	}
	st := s.object("admin", "gc")
	for _, k := range []string{"chunksFreed", "packsDeleted", "packsCompacted", "bytesFreed"} {
		if _, ok := st[k]; !ok {
			t.Errorf("admin gc lacks %s: %v", k, st)
		}
	}
}

// TestAdminScrub: scrub reports the copies a lost zone held as missing and
// fails; --repair rewrites them from the other zones; a later scrub is clean.
func TestAdminScrub(t *testing.T) {
	s := newStack(t)
	s.ok("group", "create", "-n", "rg", "-l", "eastus")
	s.ok("disk", "create", "-g", "rg", "-n", "d", "--size-gb", "1", "--sku", "Premium_ZRS")
	s.write("rg", "d", 0, 1<<20, 7)
	rep := s.object("admin", "scrub")
	if rep["copies"] != float64(3) || rep["missing"] != float64(0) {
		t.Fatalf("scrub of a healthy store = %v, want 3 copies (one chunk in three zones), none missing", rep)
	}
	lost := s.zones["eastus-2"]
	lost.List(t.Context(), "", func(name string, _ int64) error { return lost.Delete(t.Context(), name) })
	r := s.run("admin", "scrub")
	if r.code != 1 || !strings.Contains(r.stdout, `"missing": 1`) || !strings.Contains(r.stdout, "zone eastus-2: chunk") ||
		!strings.Contains(r.stderr, "1 bad chunk copies") {
		t.Fatalf("scrub after losing eastus-2: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	rep = s.object("admin", "scrub", "--repair")
	if rep["repaired"] != float64(1) || rep["unrecoverable"] != float64(0) {
		t.Fatalf("scrub --repair = %v", rep)
	}
	if rep = s.object("admin", "scrub"); rep["missing"] != float64(0) {
		t.Fatalf("scrub after the repair = %v", rep)
	}
}
