package cli

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/deltadisk/deltadisk/internal/service"
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
	svc, _ := rep["service"].(map[string]any)
	if problems, _ := svc["problems"].([]any); problems == nil || len(problems) != 0 || svc["resources"] != float64(2) || svc["familyKeys"] != float64(1) {
		t.Errorf("admin check's service part = %v, want 2 resources, 1 family key and an empty problem list", svc)
	}
	st := s.object("admin", "gc")
	for _, k := range []string{"chunksFreed", "packsDeleted", "packsCompacted", "bytesFreed"} {
		if _, ok := st[k]; !ok {
			t.Errorf("admin gc lacks %s: %v", k, st)
		}
	}
}

// TestAdminCheckService: a disk whose image is gone from under its record
// (the engine's own check stays clean) is a service problem naming the
// disk, and admin check fails.
func TestAdminCheckService(t *testing.T) {
	s := newStack(t)
	s.ok("group", "create", "-n", "rg", "-l", "eastus")
	s.ok("disk", "create", "-g", "rg", "-n", "d", "--size-gb", "1")
	id := service.ResourceID{Subscription: testSub, Group: "rg", Kind: service.KindDisk, Name: "d"}
	d, err := s.svc.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.svc.Engine().Delete(t.Context(), d.Image); err != nil {
		t.Fatal(err)
	}
	r := s.run("admin", "check")
	var rep struct {
		Problems []string
		Service  service.CheckReport
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("admin check printed no report (%v): exit %d\n%s\n%s", err, r.code, r.stdout, r.stderr)
	}
	want := []service.CheckProblem{{ID: id.String(), Problem: fmt.Sprintf("its image %d does not exist", d.Image)}}
	if r.code != 1 || len(rep.Problems) != 0 || !slices.Equal(rep.Service.Problems, want) || !strings.Contains(r.stderr, "1 consistency problems") {
		t.Fatalf("admin check of a disk without its image: exit %d, engine problems %q, service problems %+v, want %+v\n%s",
			r.code, rep.Problems, rep.Service.Problems, want, r.stderr)
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
