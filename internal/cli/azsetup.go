package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

const (
	// azCloudName is the name az knows this server's cloud by.
	azCloudName = "deltadisk"
	// azGraphResourceID is a placeholder: az cloud register wants a graph
	// resource id, and makes a metadata call when any of the four
	// endpoints is missing. No command deltadisk serves uses it.
	azGraphResourceID = "https://graph.deltadisk.local/"
)

// systemCABundles are the places distributions keep the system's CAs in
// one PEM file, in the order they are tried (Debian first). A variable so
// that tests can point it elsewhere.
var systemCABundles = []string{
	"/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Arch, Gentoo
	"/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
	"/etc/ssl/ca-bundle.pem",             // openSUSE
	"/etc/ssl/cert.pem",                  // Alpine, macOS
}

type azSetupOptions struct {
	dataDir     string
	credentials string
	configDir   string
	apply       bool
}

func (o *azSetupOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.dataDir, "data-dir", "", "data dir of the server whose credentials.json to read (default $DELTADISK_DATA_DIR, else ~/.local/share/deltadisk)")
	fs.StringVar(&o.credentials, "credentials", "", "credentials.json to read instead of the data dir's")
	fs.StringVar(&o.configDir, "config-dir", "", "AZURE_CONFIG_DIR to give az (default: az/ beside credentials.json); the CA bundle is written beside it")
	fs.BoolVar(&o.apply, "apply", false, "run the az commands now and print only the environment to use afterwards")
}

func newAzSetupCommand(g *globals) *cobra.Command {
	var opts azSetupOptions
	cmd := &cobra.Command{
		Use:   "az-setup",
		Short: "Point the az CLI at this server, in a config dir of its own",
		Long: `Point the az CLI (2.45 or later) at a deltadisk server without touching your
own az set-up.

az-setup reads the server's credentials.json (from --credentials, else from the
data dir found as serve finds it) and prints shell code that
  - gives az a config dir of its own (AZURE_CONFIG_DIR, default az/ beside
    credentials.json), so your ~/.azure and its logins stay as they are;
  - makes az trust deltadisk's CA as well as the system's: REQUESTS_CA_BUNDLE
    names a bundle, written beside the config dir, holding both (the variable
    replaces az's bundle rather than adding to it);
  - turns az's telemetry off (AZURE_CORE_COLLECT_TELEMETRY=false);
  - registers the cloud "deltadisk" with all four endpoints (so that az makes
    no metadata call), or updates it when it is registered already, makes it
    the active cloud, and logs in as the service principal of credentials.json.

Evaluate the output in your shell, or run it with --apply: az-setup then runs
the az commands itself and prints only the export lines to use afterwards.
Running it again is safe, after a server restart on another port too: the
cloud's endpoints are updated and az logs in again.

The printed code holds the principal's secret, as credentials.json does.`,
		Example: `  # Point this shell's az at the server of the default data dir:
  eval "$(deltadisk az-setup)"
  az disk list -o table

  # Log in now, keep the environment for later shells:
  deltadisk az-setup --data-dir /srv/deltadisk --apply > ~/deltadisk-az.env
  . ~/deltadisk-az.env && az snapshot list -o table`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAzSetup(cmd.Context(), g, opts, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	opts.addFlags(cmd.Flags())
	cmd.MarkFlagsMutuallyExclusive("data-dir", "credentials")
	return cmd
}

// azSetup is what az-setup does: the environment az runs in and the az
// commands that register the cloud and log in.
type azSetup struct {
	credPath string
	creds    credentials
	// env is the environment, in the order it is printed.
	env []azEnvVar
	// register, update, set and login are az's arguments, without "az"
	// and without the output options.
	register, update, set, login []string
}

type azEnvVar struct{ name, value string }

func runAzSetup(ctx context.Context, g *globals, opts azSetupOptions, stdout, stderr io.Writer) error {
	credPath := opts.credentials
	if credPath == "" {
		dir, err := resolveDataDir(opts.dataDir, g.getenv, g.homeDir)
		if err != nil {
			return err
		}
		credPath = filepath.Join(dir, credentialsFileName)
	}
	credPath, err := filepath.Abs(credPath)
	if err != nil {
		return err
	}
	creds, err := loadCredentials(credPath)
	if err != nil {
		return err
	}
	configDir := opts.configDir
	if configDir == "" {
		configDir = filepath.Join(filepath.Dir(credPath), "az")
	}
	if configDir, err = filepath.Abs(configDir); err != nil {
		return err
	}
	s := newAzSetup(credPath, creds, configDir, configDir+"-ca-bundle.pem")

	// Both modes leave the files in place: the printed code only names them.
	if err := os.MkdirAll(configDir, 0o700); err != nil {
		return fmt.Errorf("az config dir: %w (choose another with --config-dir)", err)
	}
	sys, err := writeCABundle(s.bundle(), creds.CACertFile)
	if err != nil {
		return err
	}
	if sys == "" {
		fmt.Fprintf(stderr, "az-setup: no system CA bundle found (looked for %s); az will trust only deltadisk's CA\n",
			strings.Join(systemCABundles, ", "))
	}

	if !opts.apply {
		_, err := io.WriteString(stdout, s.script())
		return err
	}
	if err := s.apply(ctx); err != nil {
		return err
	}
	if _, err := io.WriteString(stdout, s.exports()); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "az-setup: az (AZURE_CONFIG_DIR=%s) is logged in to %s as %s, subscription %s\n",
		configDir, creds.ResourceManagerURL, creds.ClientID, creds.SubscriptionID)
	return nil
}

// loadCredentials reads and checks a credentials.json.
func loadCredentials(path string) (credentials, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return credentials{}, fmt.Errorf("%s does not exist: start `deltadisk serve` with this data dir first (it writes credentials.json), or name the file with --credentials", path)
	}
	if err != nil {
		return credentials{}, err
	}
	var c credentials
	if err := json.Unmarshal(b, &c); err != nil {
		return credentials{}, fmt.Errorf("%s: %w", path, err)
	}
	for _, f := range []struct{ name, value string }{
		{"tenantId", c.TenantID}, {"subscriptionId", c.SubscriptionID}, {"clientId", c.ClientID},
		{"clientSecret", c.ClientSecret}, {"resourceManagerUrl", c.ResourceManagerURL},
		{"authority", c.Authority}, {"audience", c.Audience}, {"caCertFile", c.CACertFile},
	} {
		switch {
		case f.value == "":
			return credentials{}, fmt.Errorf("%s: %s is missing", path, f.name)
		case strings.HasPrefix(f.value, "@"):
			// az reads an argument that starts with @ from the file it names.
			return credentials{}, fmt.Errorf("%s: %s starts with @, which az would read as a file name", path, f.name)
		}
	}
	if !strings.HasSuffix(strings.ToLower(strings.TrimRight(c.Authority, "/")), "/adfs") {
		// Only an authority ending in /adfs keeps MSAL from asking
		// login.microsoftonline.com for instance discovery.
		return credentials{}, fmt.Errorf("%s: authority %q does not end in /adfs, which az needs", path, c.Authority)
	}
	return c, nil
}

func newAzSetup(credPath string, c credentials, configDir, bundle string) *azSetup {
	endpoints := []string{
		"-n", azCloudName,
		"--endpoint-resource-manager", c.ResourceManagerURL,
		"--endpoint-active-directory", c.Authority,
		"--endpoint-active-directory-resource-id", c.Audience,
		"--endpoint-active-directory-graph-resource-id", azGraphResourceID,
	}
	return &azSetup{
		credPath: credPath,
		creds:    c,
		env: []azEnvVar{
			{"AZURE_CONFIG_DIR", configDir},
			{"REQUESTS_CA_BUNDLE", bundle},
			{"AZURE_CORE_COLLECT_TELEMETRY", "false"},
		},
		register: append([]string{"cloud", "register"}, endpoints...),
		update:   append([]string{"cloud", "update"}, endpoints...),
		set:      []string{"cloud", "set", "-n", azCloudName},
		// The --name=value forms keep a value that starts with "-" a value.
		login: []string{"login", "--service-principal",
			"--username=" + c.ClientID, "--password=" + c.ClientSecret, "--tenant=" + c.TenantID},
	}
}

func (s *azSetup) bundle() string { return s.env[1].value }

// azQuiet are the options every az command of the set-up gets: errors only,
// no output.
var azQuiet = []string{"--only-show-errors", "--output", "none"}

// exports is the environment as shell export lines.
func (s *azSetup) exports() string {
	var b strings.Builder
	for _, e := range s.env {
		fmt.Fprintf(&b, "export %s=%s\n", e.name, shellQuote(e.value))
	}
	return b.String()
}

// script is shell code that sets the environment and runs the az
// commands, stopping at the first that fails. A cloud registered already
// is updated instead.
func (s *azSetup) script() string {
	var b strings.Builder
	// %q keeps a newline in a path from ending the comment.
	fmt.Fprintf(&b, "# az for deltadisk at %q, from %q\n", s.creds.ResourceManagerURL, s.credPath)
	fmt.Fprintf(&b, "# (deltadisk az-setup; use it with: eval \"$(deltadisk az-setup ...)\")\n")
	b.WriteString(s.exports())
	fmt.Fprintf(&b, "{ %s 2>/dev/null ||\n  %s; } &&\n%s &&\n%s\n",
		shellCommand(s.register), shellCommand(s.update), shellCommand(s.set), shellCommand(s.login))
	return b.String()
}

// shellCommand is az with args and azQuiet, quoted for sh.
func shellCommand(args []string) string {
	words := []string{"az"}
	for _, a := range slices.Concat(args, azQuiet) {
		words = append(words, shellQuote(a))
	}
	return strings.Join(words, " ")
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// shellQuote quotes s as one word for sh, bash and zsh.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// apply runs the set-up's az commands with its environment.
func (s *azSetup) apply(ctx context.Context) error {
	az, err := exec.LookPath("az")
	if err != nil {
		return errors.New("--apply runs the az CLI, and there is none on $PATH: install it (Debian: apt-get install azure-cli), or run az-setup without --apply on a machine that has it")
	}
	env := s.childEnv(os.Environ())
	// run runs az; its error holds what az printed on stderr.
	run := func(args ...string) (stdout, stderr string, err error) {
		cmd := exec.CommandContext(ctx, az, args...)
		cmd.Env = env
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			msg := strings.TrimSpace(errOut.String())
			if msg == "" {
				msg = err.Error()
			}
			return out.String(), errOut.String(), fmt.Errorf("az %s: %s", strings.Join(redactSecret(args, s.creds.ClientSecret), " "), msg)
		}
		return out.String(), errOut.String(), nil
	}

	if _, stderr, err := run(slices.Concat(s.register, azQuiet)...); err != nil {
		// "ERROR: The cloud 'deltadisk' is already registered."
		if !strings.Contains(stderr, "already registered") {
			return err
		}
		if _, _, err := run(slices.Concat(s.update, azQuiet)...); err != nil {
			return err
		}
	}
	if _, _, err := run(slices.Concat(s.set, azQuiet)...); err != nil {
		return err
	}
	out, _, err := run(slices.Concat(s.login, []string{"--only-show-errors", "--output", "json"})...)
	if err != nil {
		return err
	}
	// az login picks a default subscription; make it credentials.json's.
	var subs []struct {
		ID        string `json:"id"`
		IsDefault bool   `json:"isDefault"`
	}
	if err := json.Unmarshal([]byte(out), &subs); err != nil {
		return fmt.Errorf("az login printed %q: %w", out, err)
	}
	found := false
	for _, sub := range subs {
		if strings.EqualFold(sub.ID, s.creds.SubscriptionID) {
			found = true
			if sub.IsDefault {
				return nil
			}
		}
	}
	if !found {
		return fmt.Errorf("az logged in, but subscription %s of %s is not among the %d it sees", s.creds.SubscriptionID, s.credPath, len(subs))
	}
	_, _, err = run(slices.Concat([]string{"account", "set", "--subscription", s.creds.SubscriptionID}, azQuiet)...)
	return err
}

// childEnv is environ with the set-up's variables in place of the
// caller's, and without ARM_CLOUD_METADATA_URL, which would replace az's
// cloud list.
func (s *azSetup) childEnv(environ []string) []string {
	drop := map[string]bool{"ARM_CLOUD_METADATA_URL": true}
	for _, e := range s.env {
		drop[e.name] = true
	}
	var env []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !drop[name] {
			env = append(env, kv)
		}
	}
	for _, e := range s.env {
		env = append(env, e.name+"="+e.value)
	}
	return env
}

// redactSecret hides secret in args, for error messages.
func redactSecret(args []string, secret string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.ReplaceAll(a, secret, "***")
	}
	return out
}

// writeCABundle writes the bundle az trusts: the system's CAs, when a
// bundle of them is found, then deltadisk's CA from caFile. It returns the
// system bundle used, "" for none.
func writeCABundle(path, caFile string) (system string, err error) {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return "", fmt.Errorf("deltadisk's CA (caCertFile): %w", err)
	}
	if !hasCertificate(ca) {
		return "", fmt.Errorf("deltadisk's CA (caCertFile) %s holds no PEM certificate", caFile)
	}
	var b bytes.Buffer
	for _, p := range systemCABundles {
		sys, err := os.ReadFile(p)
		if err != nil || !hasCertificate(sys) {
			continue
		}
		system = p
		fmt.Fprintf(&b, "# The system's CAs, from %s\n", p)
		b.Write(sys)
		if !bytes.HasSuffix(sys, []byte("\n")) {
			b.WriteByte('\n')
		}
		break
	}
	fmt.Fprintf(&b, "# deltadisk's CA, from %s\n", caFile)
	b.Write(ca)
	if !bytes.HasSuffix(ca, []byte("\n")) {
		b.WriteByte('\n')
	}
	if err := writeFileAtomic(path, b.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("writing the CA bundle: %w (choose another place with --config-dir)", err)
	}
	return system, nil
}

// hasCertificate reports whether b holds a PEM certificate.
func hasCertificate(b []byte) bool {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return false
		}
		if blk.Type == "CERTIFICATE" {
			return true
		}
	}
}
