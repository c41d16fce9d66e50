package deltadisk_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// module is this module's path; rule patterns starting with "internal/" or
// "cmd/" are inside it.
const module = "github.com/deltadisk/deltadisk"

// Groups of packages the rules below forbid. A pattern ending in "/..."
// matches that path and every path under it.
var (
	httpPkgs = []string{"net/http/..."}
	// above the engine in DESIGN.md's layer diagram.
	upperLayers = []string{
		"internal/service/...", "internal/arm/...", "internal/blob/...", "internal/server/...",
		"internal/cli/...", "internal/identity/...", "internal/template/...", "internal/nbd/...",
		"cmd/...",
	}
	// backends and their SDKs, which only cmd/server choose and wire in.
	backends = []string{
		"internal/meta/bolt/...", "internal/meta/postgres/...", "go.etcd.io/bbolt/...", "github.com/jackc/pgx/...",
		"internal/chunks/local/...", "internal/chunks/s3/...", "github.com/aws/...",
	}
)

// importRules are DESIGN.md's layers as assertions: no package matching
// from, except those in except, may depend on a package matching forbid,
// directly or through others. Test files are not checked: a test may wire
// a real backend. A new layer or package is one more line.
var importRules = []struct {
	from   string
	except []string
	forbid []string
}{
	// Storage never speaks HTTP. (chunks/s3 will need an except:
	// aws-sdk-go-v2 imports net/http.)
	{from: "internal/engine/...", forbid: httpPkgs},
	{from: "internal/meta/...", forbid: httpPkgs},
	{from: "internal/chunks/...", forbid: httpPkgs},
	{from: "internal/vhd/...", forbid: httpPkgs},
	// Imports point down only.
	{from: "internal/engine/...", forbid: upperLayers},
	{from: "internal/meta/...", forbid: upperLayers},
	{from: "internal/chunks/...", forbid: upperLayers},
	{from: "internal/vhd/...", forbid: upperLayers},
	// The seams know no backend, and the engine is written once on the seams.
	{from: "internal/meta", forbid: backends},
	{from: "internal/chunks", forbid: backends},
	{from: "internal/engine/...", except: []string{"internal/engine/enginetest"}, forbid: backends},
}

// TestImportRules checks importRules against `go list -deps`. Rules about
// packages that do not exist yet check nothing, and say so with -v.
func TestImportRules(t *testing.T) {
	pkgs := goList(t, "-deps", "./...")
	byPath := make(map[string]*listedPackage, len(pkgs))
	for _, p := range pkgs {
		byPath[p.ImportPath] = p
	}
	if byPath[expand("internal/meta")] == nil {
		t.Fatalf("go list found no %s: the test is not looking at this module", expand("internal/meta"))
	}
	for _, rule := range importRules {
		checked := 0
		for _, p := range pkgs {
			if !p.inModule() || !matches(rule.from, p.ImportPath) ||
				slices.ContainsFunc(rule.except, func(e string) bool { return matches(e, p.ImportPath) }) {
				continue
			}
			checked++
			for _, f := range rule.forbid {
				// Deps is sorted, so net/http comes before net/http/httptrace:
				// one line per forbidden pattern, naming the outermost package.
				if i := slices.IndexFunc(p.Deps, func(dep string) bool { return matches(f, dep) }); i >= 0 {
					dep := p.Deps[i]
					t.Errorf("%s depends on %s (rule: %s must not import %s): %s",
						p.ImportPath, dep, rule.from, f, strings.Join(importChain(byPath, p.ImportPath, dep), " → "))
				}
			}
		}
		if checked == 0 {
			t.Logf("rule for %s checked nothing: no such package yet", rule.from)
		}
	}
}

// importChain returns a shortest chain of imports from one package to
// another, to show how a forbidden dependency came in.
func importChain(byPath map[string]*listedPackage, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			var chain []string
			for p := to; p != ""; p = prev[p] {
				chain = append(chain, p)
			}
			slices.Reverse(chain)
			return chain
		}
		if p := byPath[cur]; p != nil {
			for _, next := range p.Imports {
				if _, seen := prev[next]; !seen {
					prev[next] = cur
					queue = append(queue, next)
				}
			}
		}
	}
	return []string{from, "…", to}
}

// expand turns a rule pattern into an import path pattern.
func expand(pattern string) string {
	if strings.HasPrefix(pattern, "internal/") || strings.HasPrefix(pattern, "cmd/") {
		return module + "/" + pattern
	}
	return pattern
}

// matches reports whether path matches pattern, as go list patterns do:
// "a/..." matches a and everything under it.
func matches(pattern, path string) bool {
	pattern = expand(pattern)
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == base || strings.HasPrefix(path, base+"/")
	}
	return path == pattern
}

// listedPackage is the part of `go list -json` output the root tests read.
type listedPackage struct {
	ImportPath string
	Name       string
	Doc        string
	GoFiles    []string
	CgoFiles   []string
	Imports    []string
	Deps       []string
	Error      *struct{ Err string }
}

func (p *listedPackage) inModule() bool {
	return p.ImportPath == module || strings.HasPrefix(p.ImportPath, module+"/")
}

// goList runs go list -json with args in the module root (the test's
// directory) and decodes its output. Packages go list could not load fail t.
func goList(t *testing.T, args ...string) []*listedPackage {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "go", append([]string{"list", "-e", "-json"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	var pkgs []*listedPackage
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		p := new(listedPackage)
		if err := dec.Decode(p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		if p.Error != nil {
			t.Errorf("go list: %s: %s", p.ImportPath, p.Error.Err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestMatches(t *testing.T) {
	tests := []struct {
		pattern, path string
		want          bool
	}{
		{"net/http/...", "net/http", true},
		{"net/http/...", "net/http/httptrace", true},
		{"net/http/...", "net/httpx", false},
		{"internal/meta", module + "/internal/meta", true},
		{"internal/meta", module + "/internal/meta/bolt", false},
		{"internal/meta/...", module + "/internal/meta/bolt", true},
		{"internal/meta/...", "internal/meta", false}, // the standard library's internal/ is not ours
		{"go.etcd.io/bbolt/...", "go.etcd.io/bbolt/errors", true},
	}
	for _, tc := range tests {
		if got := matches(tc.pattern, tc.path); got != tc.want {
			t.Errorf("matches(%q, %q) = %t, want %t", tc.pattern, tc.path, got, tc.want)
		}
	}
}
