package deltadisk_test

import (
	"strings"
	"testing"
)

// TestPackageDocs checks that every package of the module has a package doc
// comment, and that a library's starts "Package <name> ", as go doc expects.
func TestPackageDocs(t *testing.T) {
	pkgs := goList(t, "./...")
	checked := 0
	for _, p := range pkgs {
		if len(p.GoFiles)+len(p.CgoFiles) == 0 {
			continue // only tests, like the module root
		}
		checked++
		switch {
		case p.Doc == "":
			t.Errorf("%s has no package doc comment", p.ImportPath)
		case p.Name != "main" && !strings.HasPrefix(p.Doc, "Package "+p.Name+" "):
			t.Errorf("%s: package doc starts %q, want \"Package %s ...\"", p.ImportPath, p.Doc, p.Name)
		}
	}
	if checked == 0 {
		t.Fatal("go list found no packages")
	}
}
