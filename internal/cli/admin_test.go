package cli

import (
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
