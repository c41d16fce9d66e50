package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// oddSecret has what breaks careless shell quoting: quotes, expansions,
// a leading dash (an option to az unless written --password=...),
// globs, separators and a newline.
const oddSecret = "-it's \"$(touch pwned)\" `touch pwned` ${HOME} \\ ;|&*?[a] ~\n!x"

// writeTestCredentials writes a credentials.json and the CA it names into
// dir, with the given secret, and returns its path.
func writeTestCredentials(t *testing.T, dir, secret string) string {
	t.Helper()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte(testCertPEM("deltadisk-ca")), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, credentialsFileName)
	if err := writeCredentials(path, credentials{
		TenantID:           "70fe0a02-0603-4546-b8c4-5aa5b51e1ad0",
		SubscriptionID:     "9267abcf-9eb4-4d75-ae55-e1424d7e389b",
		ClientID:           "8e76b898-47c7-4eb7-bef3-6b4bba65640c",
		ClientSecret:       secret,
		ResourceManagerURL: "https://127.0.0.1:8443/",
		Authority:          "https://127.0.0.1:8443/adfs",
		Audience:           "https://management.deltadisk.local/",
		CACertFile:         ca,
		Location:           "eastus",
	}); err != nil {
		t.Fatal(err)
	}
	return path
}

// testCertPEM is a PEM block of type CERTIFICATE; the bundle code checks
// the type, not the content.
func testCertPEM(name string) string {
	return "-----BEGIN CERTIFICATE-----\n" +
		strings.Repeat("QUJD", 16) + "\n" +
		"-----END CERTIFICATE-----\n" + "# " + name + "\n"
}

// useSystemBundle points systemCABundles at a test file for one test.
func useSystemBundle(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "system.pem")
	if content != "" {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	saved := systemCABundles
	systemCABundles = []string{filepath.Join(t.TempDir(), "absent.pem"), path}
	t.Cleanup(func() { systemCABundles = saved })
	return path
}

// runAzSetupCmd runs `deltadisk az-setup args...` in-process with env as
// its environment.
func runAzSetupCmd(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	g := &globals{
		getenv:  func(k string) string { return env[k] },
		homeDir: func() (string, error) { return env["HOME"], nil },
	}
	var out, errOut bytes.Buffer
	root := newRootCommand(g)
	root.SetArgs(append([]string{"az-setup"}, args...))
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

// fakeAz is an az on PATH that records each call: its arguments and the
// three variables az-setup sets. `cloud register` fails the way az 2.45
// does once the cloud exists, and `login --output json` prints
// $FAKEAZ_LOGIN.
const fakeAz = `#!/bin/sh
n=$(ls "$FAKEAZ_LOG" | wc -l)
{
	printf '%s\0' "AZURE_CONFIG_DIR=$AZURE_CONFIG_DIR" "REQUESTS_CA_BUNDLE=$REQUESTS_CA_BUNDLE" \
		"AZURE_CORE_COLLECT_TELEMETRY=$AZURE_CORE_COLLECT_TELEMETRY" "ARM_CLOUD_METADATA_URL=$ARM_CLOUD_METADATA_URL"
	printf '%s\0' "$@"
} >"$FAKEAZ_LOG/$(printf %03d "$n")"
case "$1 $2" in
"cloud register")
	if [ -e "$AZURE_CONFIG_DIR/registered" ]; then
		echo "ERROR: The cloud 'deltadisk' is already registered." >&2
		exit 1
	fi
	touch "$AZURE_CONFIG_DIR/registered" ;;
"login --service-principal")
	case "$*" in *"--output json"*) printf '%s\n' "$FAKEAZ_LOGIN" ;; esac ;;
esac
`

type azCall struct {
	env  []string
	args []string
}

// installFakeAz puts fakeAz first on PATH and returns the directory its
// calls are logged in.
func installFakeAz(t *testing.T, loginOutput string) (binDir, logDir string) {
	t.Helper()
	binDir, logDir = t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(binDir, "az"), []byte(fakeAz), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("FAKEAZ_LOG", logDir)
	t.Setenv("FAKEAZ_LOGIN", loginOutput)
	t.Setenv("ARM_CLOUD_METADATA_URL", "https://example.invalid/metadata")
	t.Setenv("AZURE_CONFIG_DIR", "/the/users/own/azure")
	return binDir, logDir
}

// takeCalls returns the calls logged so far and clears the log.
func takeCalls(t *testing.T, logDir string) []azCall {
	t.Helper()
	entries, err := os.ReadDir(logDir)
	if err != nil {
		t.Fatal(err)
	}
	var calls []azCall
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(logDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fields := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		calls = append(calls, azCall{env: fields[:4], args: fields[4:]})
		if err := os.Remove(filepath.Join(logDir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	return calls
}

// wantAzArgs are the az calls of a set-up from writeTestCredentials.
func wantAzArgs(verb, secret string) []string {
	switch verb {
	case "register", "update":
		return []string{"cloud", verb, "-n", "deltadisk",
			"--endpoint-resource-manager", "https://127.0.0.1:8443/",
			"--endpoint-active-directory", "https://127.0.0.1:8443/adfs",
			"--endpoint-active-directory-resource-id", "https://management.deltadisk.local/",
			"--endpoint-active-directory-graph-resource-id", "https://graph.deltadisk.local/",
			"--only-show-errors", "--output", "none"}
	case "set":
		return []string{"cloud", "set", "-n", "deltadisk", "--only-show-errors", "--output", "none"}
	case "login":
		return []string{"login", "--service-principal",
			"--username=8e76b898-47c7-4eb7-bef3-6b4bba65640c", "--password=" + secret,
			"--tenant=70fe0a02-0603-4546-b8c4-5aa5b51e1ad0", "--only-show-errors", "--output", "none"}
	}
	panic(verb)
}

func TestAzSetupScript(t *testing.T) {
	dir := t.TempDir()
	useSystemBundle(t, testCertPEM("system-ca"))
	credPath := writeTestCredentials(t, dir, oddSecret)
	configDir := filepath.Join(dir, "my az")
	out, _, err := runAzSetupCmd(t, nil, "--credentials", credPath, "--config-dir", configDir)
	if err != nil {
		t.Fatalf("az-setup: %v", err)
	}
	bundle := configDir + "-ca-bundle.pem"

	// Golden-ish: every variable and command is there.
	for _, want := range []string{
		"export AZURE_CONFIG_DIR='" + configDir + "'\n",
		"export REQUESTS_CA_BUNDLE='" + bundle + "'\n",
		"export AZURE_CORE_COLLECT_TELEMETRY=false\n",
		"az cloud register -n deltadisk --endpoint-resource-manager https://127.0.0.1:8443/ --endpoint-active-directory https://127.0.0.1:8443/adfs --endpoint-active-directory-resource-id https://management.deltadisk.local/ --endpoint-active-directory-graph-resource-id https://graph.deltadisk.local/ ",
		"az cloud update -n deltadisk ",
		"az cloud set -n deltadisk ",
		"az login --service-principal --username=8e76b898-47c7-4eb7-bef3-6b4bba65640c ",
		" --tenant=70fe0a02-0603-4546-b8c4-5aa5b51e1ad0 ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("az-setup output lacks %q; output:\n%s", want, out)
		}
	}
	if fi, err := os.Stat(configDir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("config dir %s: %v, %v; want a 0700 directory", configDir, fi, err)
	}
	if _, err := os.Stat(bundle); err != nil {
		t.Errorf("CA bundle: %v", err)
	}

	// The script through real shells, with a fake az: every argument
	// arrives as written, and a second run updates the cloud.
	for _, sh := range []string{"sh", "bash"} {
		t.Run(sh, func(t *testing.T) {
			// sh and bash are in every Debian base system: a missing one
			// is a broken machine, not a reason to skip.
			shPath, err := exec.LookPath(sh)
			if err != nil {
				t.Fatalf("no %s: %v", sh, err)
			}
			_ = os.Remove(filepath.Join(configDir, "registered"))
			_, logDir := installFakeAz(t, "[]")
			work := t.TempDir()
			// eval, as the help says, then print the environment it left.
			script := `eval "$1" && printf '%s\0' "$AZURE_CONFIG_DIR" "$REQUESTS_CA_BUNDLE" "$AZURE_CORE_COLLECT_TELEMETRY"`
			for run, verbs := range [][]string{{"register", "set", "login"}, {"register", "update", "set", "login"}} {
				cmd := exec.CommandContext(t.Context(), shPath, "-c", script, "sh", out)
				cmd.Dir = work
				got, err := cmd.Output()
				if err != nil {
					t.Fatalf("run %d: %s -c 'eval ...': %v", run, sh, err)
				}
				if diff := cmp.Diff([]string{configDir, bundle, "false"}, strings.Split(strings.TrimSuffix(string(got), "\x00"), "\x00")); diff != "" {
					t.Errorf("run %d: environment after eval (-want +got):\n%s", run, diff)
				}
				calls := takeCalls(t, logDir)
				if len(calls) != len(verbs) {
					t.Fatalf("run %d: %d az calls, want %d: %q", run, len(calls), len(verbs), calls)
				}
				for i, verb := range verbs {
					if diff := cmp.Diff(wantAzArgs(verb, oddSecret), calls[i].args); diff != "" {
						t.Errorf("run %d: az %s arguments (-want +got):\n%s", run, verb, diff)
					}
				}
			}
			if _, err := os.Stat(filepath.Join(work, "pwned")); err == nil {
				t.Errorf("the secret was executed")
			}
		})
	}
}

func TestAzSetupApply(t *testing.T) {
	dir := t.TempDir()
	useSystemBundle(t, testCertPEM("system-ca"))
	credPath := writeTestCredentials(t, dir, oddSecret)
	const sub = "9267abcf-9eb4-4d75-ae55-e1424d7e389b"
	login, _ := json.Marshal([]map[string]any{{"id": sub, "isDefault": true}})
	_, logDir := installFakeAz(t, string(login))
	configDir := filepath.Join(dir, "az")
	wantExports := "export AZURE_CONFIG_DIR=" + configDir + "\n" +
		"export REQUESTS_CA_BUNDLE=" + configDir + "-ca-bundle.pem\n" +
		"export AZURE_CORE_COLLECT_TELEMETRY=false\n"
	wantEnv := []string{"AZURE_CONFIG_DIR=" + configDir, "REQUESTS_CA_BUNDLE=" + configDir + "-ca-bundle.pem",
		"AZURE_CORE_COLLECT_TELEMETRY=false", "ARM_CLOUD_METADATA_URL="}

	// The second run finds the cloud registered and updates it.
	for run, verbs := range [][]string{{"register", "set", "login"}, {"register", "update", "set", "login"}} {
		// The data dir's credentials.json, found through $DELTADISK_DATA_DIR.
		out, stderr, err := runAzSetupCmd(t, map[string]string{"DELTADISK_DATA_DIR": dir}, "--apply")
		if err != nil {
			t.Fatalf("run %d: az-setup --apply: %v", run, err)
		}
		if out != wantExports {
			t.Errorf("run %d: az-setup --apply printed\n%s\nwant\n%s", run, out, wantExports)
		}
		if !strings.Contains(stderr, "logged in") {
			t.Errorf("run %d: stderr %q, want a note that az is logged in", run, stderr)
		}
		calls := takeCalls(t, logDir)
		if len(calls) != len(verbs) {
			t.Fatalf("run %d: %d az calls, want %d: %q", run, len(calls), len(verbs), calls)
		}
		for i, verb := range verbs {
			want := wantAzArgs(verb, oddSecret)
			if verb == "login" {
				want[len(want)-1] = "json"
			}
			if diff := cmp.Diff(want, calls[i].args); diff != "" {
				t.Errorf("run %d: az %s arguments (-want +got):\n%s", run, verb, diff)
			}
			if diff := cmp.Diff(wantEnv, calls[i].env); diff != "" {
				t.Errorf("run %d: az %s environment (-want +got):\n%s", run, verb, diff)
			}
		}
	}

	// A login whose default subscription is another one gets an account set.
	other, _ := json.Marshal([]map[string]any{{"id": "0b9e4c2a-6f1d-4c1e-9a55-3f0e2d7c8b11", "isDefault": true}, {"id": sub, "isDefault": false}})
	t.Setenv("FAKEAZ_LOGIN", string(other))
	if _, _, err := runAzSetupCmd(t, nil, "--apply", "--credentials", credPath); err != nil {
		t.Fatalf("az-setup --apply: %v", err)
	}
	calls := takeCalls(t, logDir)
	last := calls[len(calls)-1].args
	if diff := cmp.Diff([]string{"account", "set", "--subscription", sub, "--only-show-errors", "--output", "none"}, last); diff != "" {
		t.Errorf("last az call (-want +got):\n%s", diff)
	}

	// A login that does not see the subscription is an error.
	t.Setenv("FAKEAZ_LOGIN", "[]")
	if _, _, err := runAzSetupCmd(t, nil, "--apply", "--credentials", credPath); err == nil || !strings.Contains(err.Error(), sub) {
		t.Errorf("az-setup --apply with a login seeing no subscription: %v, want an error naming %s", err, sub)
	}
}

func TestAzSetupApplyErrors(t *testing.T) {
	dir := t.TempDir()
	useSystemBundle(t, "")
	credPath := writeTestCredentials(t, dir, "s3cret-value")

	// No az on PATH.
	t.Setenv("PATH", t.TempDir())
	_, _, err := runAzSetupCmd(t, nil, "--apply", "--credentials", credPath)
	if err == nil || !strings.Contains(err.Error(), "azure-cli") {
		t.Errorf("az-setup --apply without az: %v, want an error telling to install azure-cli", err)
	}

	// An az that fails: its message, and no secret.
	bin := t.TempDir()
	failing := "#!/bin/sh\necho \"ERROR: something broke: $*\" >&2\nexit 2\n"
	if err := os.WriteFile(filepath.Join(bin, "az"), []byte(failing), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	_, _, err = runAzSetupCmd(t, nil, "--apply", "--credentials", credPath)
	if err == nil || !strings.Contains(err.Error(), "something broke") || !strings.Contains(err.Error(), "az cloud register") {
		t.Errorf("az-setup --apply with a failing az: %v, want az's message", err)
	}
	if err != nil && strings.Contains(err.Error(), "s3cret-value") {
		t.Errorf("error %q shows the secret", err)
	}
}

func TestAzSetupCABundle(t *testing.T) {
	dir := t.TempDir()
	credPath := writeTestCredentials(t, dir, "secret")
	ca, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "az-ca-bundle.pem")

	sys := testCertPEM("system-ca")
	sysPath := useSystemBundle(t, sys)
	for range 2 { // a re-run rewrites the bundle, it does not grow it
		if _, _, err := runAzSetupCmd(t, nil, "--credentials", credPath); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(bundle)
		if err != nil {
			t.Fatal(err)
		}
		want := "# The system's CAs, from " + sysPath + "\n" + sys +
			"# deltadisk's CA, from " + filepath.Join(dir, "ca.pem") + "\n" + string(ca)
		if diff := cmp.Diff(want, string(got)); diff != "" {
			t.Errorf("CA bundle (-want +got):\n%s", diff)
		}
	}

	// No system bundle: deltadisk's CA alone, and a note on stderr.
	useSystemBundle(t, "")
	_, stderr, err := runAzSetupCmd(t, nil, "--credentials", credPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "no system CA bundle") {
		t.Errorf("stderr %q, want a note that no system bundle was found", stderr)
	}
	got, _ := os.ReadFile(bundle)
	if strings.Contains(string(got), "system-ca") || !strings.Contains(string(got), string(ca)) {
		t.Errorf("CA bundle without a system bundle:\n%s", got)
	}
}

func TestAzSetupCredentials(t *testing.T) {
	useSystemBundle(t, "")
	home := t.TempDir()
	dataDir := filepath.Join(home, ".local", "share", "deltadisk")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeTestCredentials(t, dataDir, "secret")
	explicit := t.TempDir()
	writeTestCredentials(t, explicit, "secret")

	tests := []struct {
		name          string
		env           map[string]string
		args          []string
		wantConfigDir string // "" for an error
		wantErr       string
	}{
		{"home default", map[string]string{"HOME": home}, nil, filepath.Join(dataDir, "az"), ""},
		{"env", map[string]string{"HOME": "/nonexistent", "DELTADISK_DATA_DIR": explicit}, nil, filepath.Join(explicit, "az"), ""},
		{"flag over env", map[string]string{"DELTADISK_DATA_DIR": "/nonexistent"}, []string{"--data-dir", explicit}, filepath.Join(explicit, "az"), ""},
		{"credentials file", nil, []string{"--credentials", filepath.Join(explicit, credentialsFileName)}, filepath.Join(explicit, "az"), ""},
		{"config dir", nil, []string{"--data-dir", explicit, "--config-dir", filepath.Join(home, "cfg")}, filepath.Join(home, "cfg"), ""},
		{"no server yet", nil, []string{"--data-dir", filepath.Join(home, "empty")}, "", "deltadisk serve"},
		{"both", nil, []string{"--data-dir", explicit, "--credentials", "x.json"}, "", "none of the others"},
		{"arguments", nil, []string{"extra"}, "", "unknown command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := runAzSetupCmd(t, tc.env, tc.args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("az-setup %q = %v, want an error containing %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("az-setup %q: %v", tc.args, err)
			}
			if want := "export AZURE_CONFIG_DIR=" + shellQuote(tc.wantConfigDir) + "\n"; !strings.Contains(out, want) {
				t.Errorf("az-setup %q printed\n%s\nwant a line %q", tc.args, out, want)
			}
		})
	}
}

func TestAzSetupRefusesBadCredentials(t *testing.T) {
	useSystemBundle(t, "")
	dir := t.TempDir()
	path := writeTestCredentials(t, dir, "secret")
	good, _ := os.ReadFile(path)
	tests := []struct {
		name, field, value, wantErr string
	}{
		{"missing secret", "clientSecret", "", "clientSecret is missing"},
		{"not adfs", "authority", "https://127.0.0.1:8443/tenant", "/adfs"},
		{"at sign", "clientSecret", "@file", "starts with @"},
		{"no CA", "caCertFile", filepath.Join(dir, "absent.pem"), "caCertFile"},
		{"CA not PEM", "caCertFile", path, "no PEM certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m map[string]string
			if err := json.Unmarshal(good, &m); err != nil {
				t.Fatal(err)
			}
			m[tc.field] = tc.value
			b, _ := json.Marshal(m)
			bad := filepath.Join(t.TempDir(), "credentials.json")
			if err := os.WriteFile(bad, b, 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := runAzSetupCmd(t, nil, "--credentials", bad)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("az-setup with %s = %q: %v, want an error containing %q", tc.field, tc.value, err, tc.wantErr)
			}
		})
	}
}

func TestShellQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://127.0.0.1:8443/adfs", "https://127.0.0.1:8443/adfs"},
		{"--password=abc", "--password=abc"},
		{"", "''"},
		{"a b", "'a b'"},
		{"it's", `'it'\''s'`},
		{"$x`y`", "'$x`y`'"},
	}
	for _, tc := range tests {
		if got := shellQuote(tc.in); got != tc.want {
			t.Errorf("shellQuote(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
