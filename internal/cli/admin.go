package cli

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newAdminCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Run maintenance inside a running server",
		Long: `Run maintenance inside a running deltadisk server, which holds the embedded
store's lock. These commands need the Owner role on the server's default
subscription (the service principal of credentials.json has it).`,
		Example: `  deltadisk admin check
  deltadisk admin check --read-data -o table
  deltadisk admin gc
  deltadisk admin scrub --repair`,
		Args:              cobra.NoArgs,
		RunE:              showHelp,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return g.client.prepare(cmd) },
	}
	g.client.addFlags(cmd.PersistentFlags())
	cmd.AddCommand(newAdminCheckCommand(g), newAdminGCCommand(g), newAdminScrubCommand(g))
	return cmd
}

type adminCheckOptions struct{ readData bool }

func (o *adminCheckOptions) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.readData, "read-data", false, "also read every chunk and verify its hash (reads all stored data)")
}

func newAdminCheckCommand(g *globals) *cobra.Command {
	var opts adminCheckOptions
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check the store's consistency",
		Long: `Check every invariant between images, lineages, generations, the block map,
the changed sets, the chunk index and the pack files, and list the problems
found (problems). Then check the service's records against each other and
against the images (service.problems, each naming the record at fault): every
disk and snapshot holds an image of its own that exists and every image is
held, family keys match incremental snapshots, grants match their index keys,
copy lines match running copies, and every resource is in a resource group.
The command fails (exit 1) when either check finds a problem.`,
		Example: `  deltadisk admin check
  deltadisk admin check --read-data --query problems
  deltadisk admin check --query service.problems -o table`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAdminCheck(cmd.Context(), g, cmd, opts) },
	}
	opts.addFlags(cmd.Flags())
	return cmd
}

func runAdminCheck(ctx context.Context, g *globals, cmd *cobra.Command, opts adminCheckOptions) error {
	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	var rep map[string]any
	q := url.Values{"readData": {strconv.FormatBool(opts.readData)}}
	if err := c.doQuery(ctx, http.MethodPost, "/deltadisk/admin/check", q, &rep); err != nil {
		return err
	}
	if err := g.output(cmd, rep, nil); err != nil {
		return err
	}
	problems, _ := rep["problems"].([]any)
	svc, _ := rep["service"].(map[string]any)
	svcProblems, _ := svc["problems"].([]any)
	if n := len(problems) + len(svcProblems); n > 0 {
		return &inconsistentError{n: n, what: "consistency problems"}
	}
	return nil
}

type inconsistentError struct {
	n    int
	what string
}

func (e *inconsistentError) Error() string {
	return "the store has " + strconv.Itoa(e.n) + " " + e.what + " (listed above)"
}

func newAdminGCCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "gc",
		Short: "Collect unreferenced chunks and compact packs now",
		Long: `Remove chunks no block references, delete packs that hold no live chunk, and
rewrite packs that are mostly garbage or small. The server also does this
every ten minutes; packs younger than the grace period are left alone.`,
		Example: `  deltadisk admin gc`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := connect(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer c.close()
			var st map[string]any
			if err := c.do(cmd.Context(), http.MethodPost, "/deltadisk/admin/gc", &st); err != nil {
				return err
			}
			return g.output(cmd, st, nil)
		},
	}
}

func newAdminScrubCommand(g *globals) *cobra.Command {
	var repair bool
	cmd := &cobra.Command{
		Use:   "scrub",
		Short: "Verify every stored chunk copy in every zone, and repair bad ones",
		Long: `Read every chunk copy the index lists, zone by zone, and verify it against its
hash. Copies lost with a zone's storage show as missing, damaged ones as
corrupt; copies a disk's or snapshot's placement needs but that were never
made (its zone-redundancy incomplete though not pending) as unplaced. With
--repair each bad copy is rewritten from a good copy in another zone and each
absent one made, restoring full redundancy; a chunk with no good copy left is
reported as unrecoverable. Scrub reads all stored data. The command fails
(exit 1) when bad copies remain: found without --repair, or unrecoverable.`,
		Example: `  deltadisk admin scrub
  deltadisk admin scrub --repair
  deltadisk admin scrub --query 'zones[?missing > ` + "`0`" + `].zone'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := connect(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer c.close()
			var rep map[string]any
			q := url.Values{"repair": {strconv.FormatBool(repair)}}
			if err := c.doQuery(cmd.Context(), http.MethodPost, "/deltadisk/admin/scrub", q, &rep); err != nil {
				return err
			}
			if err := g.output(cmd, rep, nil); err != nil {
				return err
			}
			num := func(k string) int { f, _ := rep[k].(float64); return int(f) }
			if bad := num("missing") + num("corrupt") + num("unplaced") - num("repaired"); bad > 0 {
				return &inconsistentError{n: bad, what: "bad chunk copies"}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&repair, "repair", false, "rewrite missing and corrupt copies from good copies in other zones")
	return cmd
}
