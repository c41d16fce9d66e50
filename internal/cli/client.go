package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armsubscriptions"
	"github.com/google/uuid"
	"github.com/jmespath-community/go-jmespath"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// extensionAPIVersion is the api-version of deltadisk's own ARM actions
// (snapshot usage, disk attach and detach).
const extensionAPIVersion = "2024-03-02"

// clientOptions are the flags every client command takes, as az's global
// arguments (--output, --query, --subscription, --only-show-errors), plus
// where to find credentials.json.
type clientOptions struct {
	dataDir        string
	credentials    string
	subscription   string
	output         string
	query          string
	onlyShowErrors bool

	// Set by prepare from the flags above.
	jp    jmespath.JMESPath
	order []string // the keys of the object --query builds, in order
}

func (o *clientOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.dataDir, "data-dir", "", "data directory of the deltadisk server whose credentials.json to use (default $DELTADISK_DATA_DIR, else ~/.local/share/deltadisk)")
	fs.StringVar(&o.credentials, "credentials", "", "credentials.json file to use instead of the data directory's")
	fs.StringVar(&o.subscription, "subscription", "", "subscription id or name (default: credentials.json's subscriptionId)")
	fs.StringVarP(&o.output, "output", "o", "json", "output format: "+strings.Join(outputFormats, ", "))
	fs.StringVar(&o.query, "query", "", "JMESPath query applied to the output (see https://jmespath.org)")
	fs.BoolVar(&o.onlyShowErrors, "only-show-errors", false, "write only errors to stderr, no warnings")
}

// prepare checks the shared flags and the command's required flags before
// anything runs. It is the PersistentPreRunE of every client command
// group, so that its errors are usage errors.
func (o *clientOptions) prepare(cmd *cobra.Command) error {
	var missing []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if _, req := f.Annotations[cobra.BashCompOneRequiredFlag]; req && !f.Changed {
			name := "--" + f.Name
			if f.Shorthand != "" {
				name += "/-" + f.Shorthand
			}
			missing = append(missing, name)
		}
	})
	if len(missing) > 0 {
		return usagef("the following arguments are required: %s", strings.Join(missing, ", "))
	}
	o.output = strings.ToLower(o.output)
	if !slices.Contains(outputFormats, o.output) {
		return usagef("argument --output/-o: invalid choice: '%s' (choose from %s)", o.output, strings.Join(outputFormats, ", "))
	}
	if o.query != "" {
		jp, order, err := compileQuery(o.query)
		if err != nil {
			return usagef("argument --query: invalid JMESPath query %q: %v", o.query, err)
		}
		o.jp, o.order = jp, order
	}
	if o.credentials != "" && o.dataDir != "" {
		return usagef("--credentials and --data-dir both say where the credentials are; give one")
	}
	return nil
}

// warn writes an az-style warning unless --only-show-errors is given.
func (g *globals) warn(format string, args ...any) {
	if !g.client.onlyShowErrors {
		fmt.Fprintf(g.stderr, "WARNING: "+format+"\n", args...)
	}
}

// client holds the SDK clients a command uses, all logged in as the
// principal of credentials.json and trusting its CA.
type client struct {
	sub       string
	groups    *armresources.ResourceGroupsClient
	disks     *armcompute.DisksClient
	snapshots *armcompute.SnapshotsClient
	// raw is a pipeline to the same endpoint with the same credential, for
	// deltadisk's own actions, which the SDK has no methods for.
	raw *arm.Client
	// http trusts the server's CA, for the data plane (SAS URLs).
	http      *http.Client
	transport *http.Transport
}

// clientCredentials finds and reads credentials.json: --credentials, or
// the file in the data dir serve uses (--data-dir, $DELTADISK_DATA_DIR,
// the user's data dir).
func clientCredentials(g *globals) (credentials, string, error) {
	path := g.client.credentials
	if path == "" {
		dir, err := resolveDataDir(g.client.dataDir, g.getenv, g.homeDir)
		if err != nil {
			return credentials{}, "", err
		}
		path = filepath.Join(dir, credentialsFileName)
	}
	c, err := loadCredentials(path)
	return c, path, err
}

// connect logs in as credentials.json says and builds the SDK clients.
// The caller closes the client.
func connect(ctx context.Context, g *globals) (*client, error) {
	creds, path, err := clientCredentials(g)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if creds.CACertFile != "" {
		pem, err := os.ReadFile(creds.CACertFile)
		if err != nil {
			return nil, fmt.Errorf("credentials %s: caCertFile: %w", path, err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("credentials %s: caCertFile %s holds no PEM certificate", path, creds.CACertFile)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	// The authority host is the authority without its "adfs" path: MSAL
	// recognises ADFS by the tenant "adfs" and appends it.
	host := strings.TrimSuffix(strings.TrimSuffix(creds.Authority, "/"), "adfs")
	if !strings.HasSuffix(host, "/") {
		host += "/"
	}
	httpc := &http.Client{Transport: tr}
	opts := azcore.ClientOptions{
		Cloud: cloud.Configuration{
			ActiveDirectoryAuthorityHost: host,
			Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
				cloud.ResourceManager: {Endpoint: creds.ResourceManagerURL, Audience: creds.Audience},
			},
		},
		Transport: httpc,
		Telemetry: policy.TelemetryOptions{ApplicationID: "deltadisk-cli"},
		// The server is usually local: retry briefly, not for half a
		// minute as the defaults would when it is down.
		Retry: policy.RetryOptions{MaxRetries: 2, RetryDelay: 200 * time.Millisecond, MaxRetryDelay: time.Second},
	}
	cred, err := azidentity.NewClientSecretCredential("adfs", creds.ClientID, creds.ClientSecret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
	if err != nil {
		return nil, fmt.Errorf("credentials %s: %w", path, err)
	}
	// Log in first, for a clear message when the server is not there. The
	// credential caches the token for the clients below (same scope).
	if _, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{creds.Audience + "/.default"}}); err != nil {
		tr.CloseIdleConnections()
		var auth *azidentity.AuthenticationFailedError
		if errors.As(err, &auth) && auth.RawResponse != nil {
			return nil, err // the token endpoint refused: report says why
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("cannot log in at %s (from %s): is `deltadisk serve` running there? (%s)",
			creds.Authority, path, firstLine(err.Error()))
	}
	armOpts := &arm.ClientOptions{ClientOptions: opts}
	c := &client{http: httpc, transport: tr}
	if c.raw, err = arm.NewClient("deltadisk/cli", "v1.0.0", cred, armOpts); err != nil {
		return nil, err
	}
	c.sub = creds.SubscriptionID
	if s := g.client.subscription; s != "" {
		if c.sub, err = findSubscription(ctx, cred, armOpts, s); err != nil {
			c.close()
			return nil, err
		}
	}
	if c.sub == "" {
		c.close()
		return nil, fmt.Errorf("credentials %s: subscriptionId is empty; name a subscription with --subscription", path)
	}
	if c.groups, err = armresources.NewResourceGroupsClient(c.sub, cred, armOpts); err != nil {
		return nil, err
	}
	if c.disks, err = armcompute.NewDisksClient(c.sub, cred, armOpts); err != nil {
		return nil, err
	}
	if c.snapshots, err = armcompute.NewSnapshotsClient(c.sub, cred, armOpts); err != nil {
		return nil, err
	}
	return c, nil
}

// close releases the client's idle connections.
func (c *client) close() { c.transport.CloseIdleConnections() }

// findSubscription resolves --subscription: an id is taken as it is, a
// name is looked up among the subscriptions the principal sees.
func findSubscription(ctx context.Context, cred azcore.TokenCredential, opts *arm.ClientOptions, s string) (string, error) {
	if uuid.Validate(s) == nil {
		return s, nil
	}
	subs, err := armsubscriptions.NewClient(cred, opts)
	if err != nil {
		return "", err
	}
	var names []string
	for p := subs.NewListPager(nil); p.More(); {
		page, err := p.NextPage(ctx)
		if err != nil {
			return "", err
		}
		for _, sub := range page.Value {
			if sub.DisplayName != nil && strings.EqualFold(*sub.DisplayName, s) && sub.SubscriptionID != nil {
				return *sub.SubscriptionID, nil
			}
			if sub.DisplayName != nil {
				names = append(names, *sub.DisplayName)
			}
		}
	}
	return "", &notFoundError{msg: fmt.Sprintf("Subscription '%s' not found; the subscriptions you can see are: %s.", s, strings.Join(names, ", "))}
}

// do sends one of deltadisk's own ARM actions on a resource id (path is
// the id plus the action, such as "/usage") and decodes the 200 answer's
// JSON into out, unless out is nil.
func (c *client) do(ctx context.Context, method, path string, out any) error {
	return c.doQuery(ctx, method, path, nil, out)
}

// doQuery is do with query parameters beside the api-version.
func (c *client) doQuery(ctx context.Context, method, path string, query url.Values, out any) error {
	req, err := runtime.NewRequest(ctx, method, runtime.JoinPaths(c.raw.Endpoint(), path))
	if err != nil {
		return err
	}
	q := req.Raw().URL.Query()
	for k, vs := range query {
		q[k] = vs
	}
	q.Set("api-version", extensionAPIVersion)
	req.Raw().URL.RawQuery = q.Encode()
	req.Raw().Header.Set("Accept", "application/json")
	resp, err := c.raw.Pipeline().Do(req)
	if err != nil {
		return err
	}
	if !runtime.HasStatusCode(resp, http.StatusOK) {
		return runtime.NewResponseError(resp)
	}
	if out == nil {
		return nil
	}
	return runtime.UnmarshalAsJSON(resp, out)
}

// resourceID is the ARM id of a disk or snapshot ("disks", "snapshots")
// in the client's subscription.
func (c *client) resourceID(kind, group, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/%s/%s", c.sub, group, kind, name)
}

// groupLocation is a resource group's location: the default of -l, as
// in az.
func (c *client) groupLocation(ctx context.Context, group string) (string, error) {
	rg, err := c.groups.Get(ctx, group, nil)
	if err != nil {
		return "", err
	}
	if rg.Location == nil {
		return "", fmt.Errorf("resource group %s has no location; give one with --location", group)
	}
	return *rg.Location, nil
}

// resolveSource turns --source into a resource id: a full id is taken
// as it is, a name is looked up as a snapshot, then a disk, in the group
// (az's order).
func (c *client) resolveSource(ctx context.Context, group, source string) (string, error) {
	if strings.HasPrefix(source, "/") {
		if _, err := arm.ParseResourceID(source); err != nil {
			return "", usagef("--source %q: %v", source, err)
		}
		return source, nil
	}
	s, err := c.snapshots.Get(ctx, group, source, nil)
	if err == nil && s.ID != nil {
		return *s.ID, nil
	}
	if err != nil && !isNotFound(err) {
		return "", err
	}
	d, err := c.disks.Get(ctx, group, source, nil)
	if err == nil && d.ID != nil {
		return *d.ID, nil
	}
	if err != nil && !isNotFound(err) {
		return "", err
	}
	return "", &notFoundError{msg: fmt.Sprintf("--source '%s': there is no snapshot or disk of that name in resource group '%s'.", source, group)}
}

// resolveDisk finds a disk by name in the group, or by full id.
func (c *client) resolveDisk(ctx context.Context, group, disk string) (armcompute.Disk, error) {
	if strings.HasPrefix(disk, "/") {
		rid, err := arm.ParseResourceID(disk)
		if err != nil {
			return armcompute.Disk{}, usagef("%q is not a disk id: %v", disk, err)
		}
		if !strings.EqualFold(rid.ResourceType.String(), "Microsoft.Compute/disks") {
			return armcompute.Disk{}, usagef("%q is not a disk id: its type is %s", disk, rid.ResourceType)
		}
		group, disk = rid.ResourceGroupName, rid.Name
	} else if group == "" {
		return armcompute.Disk{}, usagef("a disk named by its name needs --resource-group/-g; or give its full id")
	}
	res, err := c.disks.Get(ctx, group, disk, nil)
	return res.Disk, err
}

// drain reads every page of an SDK pager and returns the items.
func drain[P, T any](ctx context.Context, pager *runtime.Pager[P], items func(P) []*T) ([]T, error) {
	var out []T
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, it := range items(page) {
			out = append(out, *it)
		}
	}
	return out, nil
}
