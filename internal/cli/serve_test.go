package cli

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/identity"
	"github.com/deltadisk/deltadisk/internal/service"
	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func TestResolveDataDir(t *testing.T) {
	home := func() (string, error) { return "/home/u", nil }
	noHome := func() (string, error) { return "", errors.New("no home") }
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		flag string
		env  map[string]string
		home func() (string, error)
		want string // "" means an error
	}{
		{"flag wins", "/data/dd", map[string]string{"DELTADISK_DATA_DIR": "/env/dd", "XDG_DATA_HOME": "/xdg"}, home, "/data/dd"},
		{"relative flag made absolute", "rel/dd", nil, home, filepath.Join(wd, "rel/dd")},
		{"env", "", map[string]string{"DELTADISK_DATA_DIR": "/env/dd", "XDG_DATA_HOME": "/xdg"}, home, "/env/dd"},
		{"xdg", "", map[string]string{"XDG_DATA_HOME": "/xdg"}, home, "/xdg/deltadisk"},
		{"relative xdg ignored", "", map[string]string{"XDG_DATA_HOME": "xdg"}, home, "/home/u/.local/share/deltadisk"},
		{"home", "", nil, home, "/home/u/.local/share/deltadisk"},
		{"nothing", "", nil, noHome, ""},
		{"flag needs no home", "/data/dd", nil, noHome, "/data/dd"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveDataDir(tc.flag, func(k string) string { return tc.env[k] }, tc.home)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("resolveDataDir = %q, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("resolveDataDir(%q) = %q, %v; want %q", tc.flag, got, err, tc.want)
			}
		})
	}
}

func TestDerivePublicURL(t *testing.T) {
	tcp := func(s string) net.Addr {
		a, err := net.ResolveTCPAddr("tcp", s)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	tests := []struct {
		flag, listen string
		bound        net.Addr
		want         string // "" means an error
	}{
		{"", "127.0.0.1:8443", tcp("127.0.0.1:8443"), "https://127.0.0.1:8443"},
		{"", "127.0.0.1:0", tcp("127.0.0.1:40123"), "https://127.0.0.1:40123"},
		{"", ":8443", tcp("[::]:8443"), "https://127.0.0.1:8443"},
		{"", "0.0.0.0:0", tcp("0.0.0.0:5555"), "https://127.0.0.1:5555"},
		{"", "[::]:9000", tcp("[::]:9000"), "https://127.0.0.1:9000"},
		{"", "[::1]:9000", tcp("[::1]:9000"), "https://[::1]:9000"},
		{"", "localhost:0", tcp("127.0.0.1:7777"), "https://localhost:7777"},
		{"", "10.0.0.5:8443", tcp("10.0.0.5:8443"), "https://10.0.0.5:8443"},
		{"https://disks.example", "127.0.0.1:0", tcp("127.0.0.1:40123"), "https://disks.example"},
		{"https://disks.example:9443/", ":8443", tcp("[::]:8443"), "https://disks.example:9443"},
		{"http://disks.example", ":8443", tcp("[::]:8443"), ""},
		{"https://disks.example/prefix", ":8443", tcp("[::]:8443"), ""},
		{"https://disks.example?x=1", ":8443", tcp("[::]:8443"), ""},
		{"https://user@disks.example", ":8443", tcp("[::]:8443"), ""},
		{"disks.example", ":8443", tcp("[::]:8443"), ""},
		{"https://:8443", ":8443", tcp("[::]:8443"), ""},
		{"", "nonsense", tcp("127.0.0.1:1"), ""},
	}
	for _, tc := range tests {
		u, err := derivePublicURL(tc.flag, tc.listen, tc.bound)
		var got string
		if err == nil {
			got = u.String()
		}
		if got != tc.want {
			t.Errorf("derivePublicURL(%q, %q, %v) = %q (%v), want %q", tc.flag, tc.listen, tc.bound, got, err, tc.want)
		}
	}
}

func TestCertHosts(t *testing.T) {
	tests := []struct {
		pub, listen string
		want        []string
	}{
		{"https://127.0.0.1:8443", "127.0.0.1:8443", []string{"127.0.0.1", "127.0.0.1"}},
		{"https://127.0.0.1:8443", "0.0.0.0:8443", []string{"127.0.0.1"}},
		{"https://disks.example", "10.0.0.5:8443", []string{"disks.example", "10.0.0.5"}},
		{"https://[::1]:8443", ":8443", []string{"::1"}},
	}
	for _, tc := range tests {
		u, _ := derivePublicURL(tc.pub, tc.listen, nil)
		if diff := cmp.Diff(tc.want, certHosts(u, tc.listen)); diff != "" {
			t.Errorf("certHosts(%s, %s) (-want +got):\n%s", tc.pub, tc.listen, diff)
		}
	}
}

// testState is a data dir state with fixed ids.
var testState = state{
	TenantID:       "11111111-1111-1111-1111-111111111111",
	SubscriptionID: "22222222-2222-2222-2222-222222222222",
	ClientID:       "33333333-3333-3333-3333-333333333333",
	ClientSecret:   "default-secret-0123456789",
	SigningKey:     bytes.Repeat([]byte{7}, 32),
}

const fullConfig = `{
  "subscriptions": [
    {"subscriptionId": "44444444-4444-4444-4444-444444444444", "displayName": "team-b"}
  ],
  "principals": [
    {"clientId": "ci-reader", "clientSecret": "s3cret-0123456789",
     "roles": [{"role": "Reader", "scope": "/subscriptions/22222222-2222-2222-2222-222222222222"},
               {"role": "owner", "scope": "/subscriptions/44444444-4444-4444-4444-444444444444"}]}
  ],
  "regions": [
    {"name": "West Europe", "zones": 3},
    {"name": "deltalab", "zones": 0}
  ],
  "policy": {"snapshotRateWindow": "2s", "maxIncrementalPerDisk": 3,
             "incrementalRegions": ["eastus", "deltalab"]}
}`

// TestNBDAddr: an attach answer names an address a client can dial: the
// NBD listener's own, or the public URL's host where the listener's is
// unspecified.
func TestNBDAddr(t *testing.T) {
	tests := []struct {
		pub, listen, want string
	}{
		{"https://127.0.0.1:8443", "127.0.0.1:10809", "127.0.0.1:10809"},
		{"https://disks.example:8443", "0.0.0.0:10809", "disks.example:10809"},
		{"https://disks.example", "[::]:10809", "disks.example:10809"},
		{"https://[2001:db8::1]:8443", "[::]:10809", "[2001:db8::1]:10809"},
		{"https://disks.example", "192.0.2.7:10809", "192.0.2.7:10809"},
	}
	for _, tc := range tests {
		u, err := derivePublicURL(tc.pub, "127.0.0.1:8443", nil)
		if err != nil {
			t.Fatal(err)
		}
		addr, err := net.ResolveTCPAddr("tcp", tc.listen)
		if err != nil {
			t.Fatal(err)
		}
		if got := nbdAddr(addr, u); got != tc.want {
			t.Errorf("nbdAddr(%s, %s) = %s, want %s", tc.listen, tc.pub, got, tc.want)
		}
	}
}

func TestServeConfig(t *testing.T) {
	c, err := parseServeConfig([]byte(fullConfig))
	if err != nil {
		t.Fatalf("parseServeConfig: %v", err)
	}
	s, err := c.resolve(testState)
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	wantSubs := []service.Subscription{
		{ID: testState.SubscriptionID, DisplayName: "deltadisk", TenantID: testState.TenantID},
		{ID: "44444444-4444-4444-4444-444444444444", DisplayName: "team-b", TenantID: testState.TenantID},
	}
	if diff := cmp.Diff(wantSubs, s.subscriptions); diff != "" {
		t.Errorf("subscriptions (-want +got):\n%s", diff)
	}
	wantPrincipals := []identity.Principal{
		{ClientID: testState.ClientID, ClientSecret: testState.ClientSecret, Roles: []identity.Assignment{
			{Role: identity.RoleOwner, Scope: "/subscriptions/" + testState.SubscriptionID}}},
		{ClientID: "ci-reader", ClientSecret: "s3cret-0123456789", Roles: []identity.Assignment{
			{Role: identity.RoleReader, Scope: "/subscriptions/" + testState.SubscriptionID},
			{Role: identity.RoleOwner, Scope: "/subscriptions/44444444-4444-4444-4444-444444444444"}}},
	}
	if diff := cmp.Diff(wantPrincipals, s.principals); diff != "" {
		t.Errorf("principals (-want +got):\n%s", diff)
	}
	zones := make(map[string]int)
	for _, r := range s.regions {
		zones[r.Name] = r.Zones
	}
	if len(s.regions) != len(service.DefaultRegions())+1 || zones["westeurope"] != 3 || zones["deltalab"] != 0 || zones["eastus"] != 3 {
		t.Errorf("regions = %v, want the defaults with westeurope at 3 zones, plus deltalab", s.regions)
	}
	want := service.DefaultPolicy()
	want.SnapshotRateWindow = service.Duration(2 * time.Second)
	want.MaxIncrementalPerDisk = 3
	want.IncrementalRegions = []string{"eastus", "deltalab"}
	if diff := cmp.Diff(want, s.policy); diff != "" {
		t.Errorf("policy (-want +got):\n%s", diff)
	}
}

func TestServeConfigDefaults(t *testing.T) {
	for _, in := range []string{`{}`, "{\n}\n", `{"policy": null}`} {
		c, err := parseServeConfig([]byte(in))
		if err != nil {
			t.Fatalf("parseServeConfig(%q): %v", in, err)
		}
		s, err := c.resolve(testState)
		if err != nil {
			t.Fatalf("resolve(%q): %v", in, err)
		}
		if diff := cmp.Diff(service.DefaultPolicy(), s.policy); diff != "" {
			t.Errorf("%q: policy (-want +got):\n%s", in, diff)
		}
		if len(s.subscriptions) != 1 || len(s.principals) != 1 || len(s.regions) != len(service.DefaultRegions()) {
			t.Errorf("%q: %d subscriptions, %d principals, %d regions; want the defaults", in, len(s.subscriptions), len(s.principals), len(s.regions))
		}
	}
}

func TestServeConfigErrors(t *testing.T) {
	tests := []struct {
		name, in string
		want     string // in the error
	}{
		{"unknown top-level field", `{"subscription": []}`, `unknown field "subscription"`},
		{"unknown policy field", `{"policy": {"maxSnapshots": 3}}`, `unknown field "maxSnapshots"`},
		{"unknown principal field", `{"principals": [{"clientId": "a", "secret": "b"}]}`, `unknown field "secret"`},
		{"tenant in subscription", `{"subscriptions": [{"subscriptionId": "44444444-4444-4444-4444-444444444444", "displayName": "x", "tenantId": "t"}]}`, `unknown field "tenantId"`},
		{"syntax", "{\n  \"policy\": {,}\n}", "line 2"},
		{"type", `{"policy": {"maxIncrementalPerDisk": "3"}}`, "maxIncrementalPerDisk"},
		{"empty", ``, "empty"},
		{"trailing", `{} {}`, "after the JSON object"},
		{"bad duration", `{"policy": {"snapshotRateWindow": "2 parsecs"}}`, "2 parsecs"},
		{"policy below minimum", `{"policy": {"maxIncrementalPerDisk": 0}}`, "maxIncrementalPerDisk"},
		{"policy zero window", `{"policy": {"snapshotRateWindow": "0s"}}`, "snapshotRateWindow"},
		{"policy region not normalised", `{"policy": {"incrementalRegions": ["East US"]}}`, "normalised"},
		{"policy unknown region", `{"policy": {"incrementalRegions": ["atlantis"]}}`, `"atlantis" is not a region`},
		{"region name escaping the data dir", `{"regions": [{"name": "../up", "zones": 0}]}`, "letters and digits only"},
		{"region name that would clash with a zone", `{"regions": [{"name": "lab-1", "zones": 0}]}`, "letters and digits only"},
		{"subscription not a GUID", `{"subscriptions": [{"subscriptionId": "sub-1", "displayName": "x"}]}`, "not a GUID"},
		{"subscription twice", `{"subscriptions": [{"subscriptionId": "22222222-2222-2222-2222-222222222222", "displayName": "x"}]}`, "twice"},
		{"subscription unnamed", `{"subscriptions": [{"subscriptionId": "44444444-4444-4444-4444-444444444444"}]}`, "displayName"},
		{"principal without id", `{"principals": [{"clientSecret": "s"}]}`, "no clientId"},
		{"principal without secret", `{"principals": [{"clientId": "a"}]}`, "no clientSecret"},
		{"short secret", `{"principals": [{"clientId": "a", "clientSecret": "0123456789abcde"}]}`, `principal "a": clientSecret has 15 characters, want at least 16`},
		{"default principal again", `{"principals": [{"clientId": "33333333-3333-3333-3333-333333333333", "clientSecret": "s"}]}`, "twice"},
		{"unknown role", `{"principals": [{"clientId": "a", "clientSecret": "0123456789abcdef", "roles": [{"role": "Admin", "scope": "/subscriptions/22222222-2222-2222-2222-222222222222"}]}]}`, `unknown role "Admin"`},
		{"unknown scope", `{"principals": [{"clientId": "a", "clientSecret": "0123456789abcdef", "roles": [{"role": "Reader", "scope": "/subscriptions/55555555-5555-5555-5555-555555555555"}]}]}`, "not /subscriptions/<id> of a subscription served here"},
		{"region twice", `{"regions": [{"name": "eastus", "zones": 1}, {"name": "East US", "zones": 2}]}`, "twice"},
		{"region zones", `{"regions": [{"name": "eastus", "zones": 4}]}`, "4 zones"},
		{"region unnamed", `{"regions": [{"zones": 1}]}`, "no name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseServeConfig([]byte(tc.in))
			if err == nil {
				_, err = c.resolve(testState)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("config %s: error %v, want one containing %q", tc.in, err, tc.want)
			}
		})
	}
}

func TestLoadServeConfigNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deltadisk-config.json")
	if err := os.WriteFile(path, []byte(`{"bogus": 1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := loadServeConfig(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `"bogus"`) {
		t.Errorf("loadServeConfig = %v, want an error naming the file and the field", err)
	}
}

func TestPrepareDataDir(t *testing.T) {
	t.Run("new", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "a", "dd")
		if err := prepareDataDir(dir); err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(dir)
		if err != nil || info.Mode().Perm() != 0o700 {
			t.Errorf("data dir mode = %v (%v), want 0700", info.Mode().Perm(), err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, formatFileName))
		if strings.TrimSpace(string(b)) != `{"format":2}` {
			t.Errorf("%s = %q, want {\"format\":2}", formatFileName, b)
		}
		if err := prepareDataDir(dir); err != nil {
			t.Errorf("second prepareDataDir: %v", err)
		}
	})
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"unknown format", map[string]string{formatFileName: `{"format": 3}`}, "has format 3, and this deltadisk reads only format 2"},
		{"format before zones", map[string]string{formatFileName: `{"format": 1}`}, "has format 1, written before zones"},
		{"not a format file", map[string]string{formatFileName: `hello`}, "not a deltadisk format file"},
		{"format zero", map[string]string{formatFileName: `{}`}, "not a deltadisk format file"},
		{"stores without format file", map[string]string{metaFileName: "x"}, "no deltadisk.json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := prepareDataDir(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), dir) {
				t.Errorf("prepareDataDir = %v, want an error naming %s and containing %q", err, dir, tc.want)
			}
		})
	}
	t.Run("unrelated files are fine", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}"), 0o600)
		if err := prepareDataDir(dir); err != nil {
			t.Error(err)
		}
	})
}

func TestState(t *testing.T) {
	dir := t.TempDir()
	st, err := loadOrCreateState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.SigningKey) != 32 || len(st.ClientSecret) != 64 || st.TenantID == st.SubscriptionID {
		t.Errorf("new state = %+v, want a 32-byte key, a 64-hex secret and distinct ids", st)
	}
	path := filepath.Join(dir, stateFileName)
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Errorf("mode of %s = %v, want 0600", stateFileName, info.Mode().Perm())
	}
	again, err := loadOrCreateState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(st, again); diff != "" {
		t.Errorf("state changed on reload (-first +second):\n%s", diff)
	}
	other, _ := loadOrCreateState(t.TempDir())
	if other.ClientSecret == st.ClientSecret || bytes.Equal(other.SigningKey, st.SigningKey) {
		t.Error("two data dirs share a secret")
	}

	os.WriteFile(path, []byte(`{"tenantId": "x"}`), 0o600)
	if _, err := loadOrCreateState(dir); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("loadOrCreateState of a damaged file = %v, want an error naming it", err)
	}
}

func TestWriteCredentials(t *testing.T) {
	path := filepath.Join(t.TempDir(), credentialsFileName)
	// A credentials file someone made readable is replaced by a 0600 one.
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeCredentials(path, credentials{TenantID: "t"}); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v (%v), want 0600", info.Mode().Perm(), err)
	}
}

// TestCommandTree checks every command's help and flag names.
func TestCommandTree(t *testing.T) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Short == "" {
			t.Errorf("%q has no Short help", c.CommandPath())
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Name != strings.ToLower(f.Name) || strings.ContainsAny(f.Name, "_ ") {
				t.Errorf("%s: flag --%s is not lower-case kebab", c.CommandPath(), f.Name)
			}
			if f.Usage == "" {
				t.Errorf("%s: flag --%s has no usage", c.CommandPath(), f.Name)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCommand(&globals{}))
}

func TestServeRefusesBeforeTouchingDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dd")
	cfg := filepath.Join(t.TempDir(), "c.json")
	os.WriteFile(cfg, []byte(`{"policy": {"maxIncrementalPerDisk": -1}}`), 0o600)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--data-dir", dir, "--config", cfg}, "maxIncrementalPerDisk"},
		{[]string{"serve", "--data-dir", dir, "--tls-cert", "c.pem"}, "--tls-key"},
		{[]string{"serve", "--data-dir", dir, "--log-level", "loud"}, "--log-level"},
		{[]string{"serve", "--data-dir", dir, "extra"}, "unknown command"},
	}
	for _, tc := range tests {
		var out, errOut bytes.Buffer
		if code := Main(t.Context(), tc.args, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("Main(%q) = %d, stderr %q; want non-zero and %q", tc.args, code, errOut.String(), tc.want)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data dir exists after refused starts (%v), want nothing created", err)
	}
}

// TestReadmeConfigExample keeps the README's config example valid, and
// its claim that the policy shown is the default.
func TestReadmeConfigExample(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "**The config file**")
	if !ok {
		t.Fatal("README has no **The config file** paragraph")
	}
	_, rest, ok = strings.Cut(rest, "```json\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no json block after **The config file**")
	}
	c, err := parseServeConfig([]byte(example))
	if err != nil {
		t.Fatalf("README config example: %v", err)
	}
	s, err := c.resolve(testState)
	if err != nil {
		t.Fatalf("README config example: %v", err)
	}
	want := service.DefaultPolicy()
	want.IncrementalRegions = append(want.IncrementalRegions, "westeurope", "lab")
	if diff := cmp.Diff(want, s.policy); diff != "" {
		t.Errorf("README example policy is not the default plus two regions (-want +got):\n%s", diff)
	}
}

var metricsLine = regexp.MustCompile(`msg="serving /metrics without a token" url=(\S+)`)

// TestServeMetricsListen runs serve with --metrics-listen: /metrics is
// served there over plain HTTP, and nothing else is.
func TestServeMetricsListen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	p := startDeltadisk(t, "serve", "--data-dir", dir, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
	base, credPath := p.waitReady(t)
	m := metricsLine.FindStringSubmatch(p.stderr.String())
	if m == nil {
		t.Fatalf("no log line with the metrics URL:\n%s", p.stderr)
	}
	plain := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(plain.CloseIdleConnections)
	if code, body := get(t, plain, m[1]); code != 200 || !strings.Contains(body, "deltadisk_http_requests_in_flight") {
		t.Errorf("GET %s = %d, want 200 with metrics:\n%.500s", m[1], code, body)
	}
	api := strings.TrimSuffix(m[1], "/metrics") + "/subscriptions"
	if code, _ := get(t, plain, api); code != 404 {
		t.Errorf("GET %s = %d, want 404: the metrics listener serves /metrics only", api, code)
	}
	// --listen is loopback: /metrics is open there too.
	c := clientTrusting(t, readCredentials(t, credPath)["caCertFile"])
	if code, _ := get(t, c, base+"/metrics"); code != 200 {
		t.Errorf("GET %s/metrics on loopback = %d, want 200", base, code)
	}
	p.stop(t)
}

func TestServeMetricsListenBusy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var out, errOut bytes.Buffer
	args := []string{"serve", "--data-dir", filepath.Join(t.TempDir(), "dd"), "--listen", "127.0.0.1:0", "--metrics-listen", ln.Addr().String()}
	if code := Main(t.Context(), args, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "--metrics-listen") {
		t.Errorf("Main(%q) = %d, stderr %q; want non-zero and --metrics-listen", args, code, errOut.String())
	}
}
