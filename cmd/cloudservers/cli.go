package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/api"
	"github.com/cloudservers/cloudservers/internal/apiclient"
	"github.com/cloudservers/cloudservers/internal/devstack"
)

// The customer CLI: `cloudservers servers <command>`. It finds the API and
// the API key in flags, then $CLOUDSERVERS_API / $CLOUDSERVERS_API_KEY, then
// the endpoints file `dev` writes (.data/endpoints.json, first demo
// customer).

// cliOptions are the flags every CLI command takes.
type cliOptions struct {
	api, key, endpoints, customer string
	json                          bool
	timeout                       time.Duration
	idempotencyKey                string
	out                           io.Writer
}

func (o *cliOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.api, "api", os.Getenv("CLOUDSERVERS_API"), "API base URL (env CLOUDSERVERS_API; default: from the endpoints file)")
	fs.StringVar(&o.key, "key", os.Getenv("CLOUDSERVERS_API_KEY"), "API key (env CLOUDSERVERS_API_KEY; default: a demo customer's from the endpoints file)")
	fs.StringVar(&o.endpoints, "endpoints", filepath.Join(devstack.DefaultDataDir(), "endpoints.json"), "the endpoints file of `cloudservers dev`")
	fs.StringVar(&o.customer, "customer", "0", "demo customer of the endpoints file: its ID or index")
	fs.BoolVar(&o.json, "json", false, "print JSON as the API returns it")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up after this long (also bounds -wait)")
	fs.StringVar(&o.idempotencyKey, "idempotency-key", "", "Idempotency-Key of a mutation (default: a random one, reused by the CLI's own retries)")
}

// parseFlags parses flags anywhere among the arguments and returns the
// others.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return rest, nil
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
}

type cliCommand struct {
	usage   string
	summary string
	run     func(ctx context.Context, c *cli, args []string) error
}

func cliCommands() map[string]cliCommand {
	cmds := map[string]cliCommand{
		"create":     {"create -name NAME [-size S] [-image I] [-region R] [-ssh-key KEY] [-wait]", "create a server", cliCreate},
		"list":       {"list [-status STATUS]", "list servers", cliList},
		"get":        {"get SERVER", "show a server (by ID or name)", cliGet},
		"delete":     {"delete SERVER [-wait]", "delete a server", cliDelete},
		"operations": {"operations SERVER", "list a server's operations", cliOperations},
		"wait":       {"wait OPERATION", "follow an operation until it finishes", cliWait},
		"events":     {"events [-last-event-id ID]", "print the live event stream", cliEvents},
		"sizes":      {"sizes", "list server sizes", cliCatalog("sizes")},
		"images":     {"images", "list images", cliCatalog("images")},
		"regions":    {"regions", "list regions", cliCatalog("regions")},
		"keys":       {"keys list | add -name NAME (-public-key KEY | -file FILE) | get KEY | delete KEY", "manage SSH keys", cliKeys},
	}
	// The actions' commands come from the operations table.
	for _, d := range cloudservers.Operations() {
		if (d.API == cloudservers.ExposeAction || d.API == cloudservers.ExposeRename) && d.CLI.Name != "" {
			cmds[d.CLI.Name] = cliCommand{actionUsage(d.CLI), d.CLI.Summary, cliAction(d)}
		}
	}
	return cmds
}

// actionUsage is the usage line of an action's command.
func actionUsage(cmd cloudservers.CLICommand) string {
	usage := cmd.Name + " SERVER"
	for _, f := range cmd.Flags {
		switch {
		case f.Value != "":
			usage += " [-" + f.Name + "]"
		case f.Required:
			usage += " -" + f.Name + " " + strings.ToUpper(f.Param)
		default:
			usage += " [-" + f.Name + " " + strings.ToUpper(f.Param) + "]"
		}
	}
	return usage + " [-wait]"
}

func cliUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: cloudservers servers [flags] <command> [flags] [args]\n\ncommands:")
	cmds := cliCommands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-11s %s\n      cloudservers servers %s\n", n, cmds[n].summary, cmds[n].usage)
	}
	fmt.Fprintln(w, "\nflags of every command: -api URL -key KEY -endpoints FILE -customer ID|INDEX -json -timeout D -idempotency-key K")
}

// runServersCLI is the customer CLI.
func runServersCLI(ctx context.Context, args []string) error {
	return runCLI(ctx, args, os.Stdout)
}

func runCLI(ctx context.Context, args []string, out io.Writer) error {
	var opts cliOptions
	fs := flag.NewFlagSet("servers", flag.ContinueOnError)
	fs.Usage = func() { cliUsage(fs.Output()) }
	opts.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		cliUsage(os.Stderr)
		return flag.ErrHelp
	}
	name := fs.Arg(0)
	cmd, ok := cliCommands()[name]
	if !ok {
		cliUsage(os.Stderr)
		return fmt.Errorf("unknown command %q", name)
	}
	opts.out = out
	c := &cli{opts: opts, name: name, usage: cmd.usage, cancel: func() {}}
	defer func() { c.cancel() }()
	return cmd.run(ctx, c, fs.Args()[1:])
}

// cli is one command's invocation.
type cli struct {
	opts   cliOptions
	name   string
	usage  string
	client *apiclient.Client
	cancel context.CancelFunc // of the context parse returns
}

// flags returns a flag set with the common flags, keeping the values
// given before the command's name.
func (c *cli) flags() *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintf(fs.Output(), "usage: cloudservers servers %s\n", c.usage) }
	given := c.opts
	c.opts.register(fs)
	c.opts = given
	return fs
}

// parse parses the command's flags, checks the number of arguments,
// connects, and returns the context bounded by -timeout.
func (c *cli) parse(ctx context.Context, fs *flag.FlagSet, args []string, want int) (context.Context, []string, error) {
	rest, err := parseFlags(fs, args)
	if err != nil {
		return ctx, nil, err
	}
	if len(rest) != want {
		return ctx, nil, fmt.Errorf("usage: cloudservers servers %s", c.usage)
	}
	ctx, c.cancel = context.WithTimeout(ctx, c.opts.timeout)
	return ctx, rest, c.connect()
}

// connect finds the API and the key.
func (c *cli) connect() error {
	base, key := c.opts.api, c.opts.key
	if base == "" || key == "" {
		b, err := os.ReadFile(c.opts.endpoints)
		if err != nil {
			return fmt.Errorf("no API given: set -api and -key (or CLOUDSERVERS_API and CLOUDSERVERS_API_KEY), or run `make run` so that %s exists", c.opts.endpoints)
		}
		var e DevEndpoints
		if err := json.Unmarshal(b, &e); err != nil {
			return fmt.Errorf("%s: %w", c.opts.endpoints, err)
		}
		if base == "" {
			base = e.API
		}
		if key == "" {
			k, err := demoKey(e.Customers, c.opts.customer)
			if err != nil {
				return fmt.Errorf("%s: %w", c.opts.endpoints, err)
			}
			key = k
		}
	}
	if base == "" || key == "" {
		return errors.New("no API URL or key: set -api and -key")
	}
	c.client = apiclient.New(base, key)
	return nil
}

func demoKey(customers []DemoCustomer, which string) (string, error) {
	for _, cu := range customers {
		if cu.CustomerID == which {
			return cu.APIKey, nil
		}
	}
	if i, err := strconv.Atoi(which); err == nil && i >= 0 && i < len(customers) {
		return customers[i].APIKey, nil
	}
	return "", fmt.Errorf("no demo customer %q", which)
}

func (c *cli) idempotencyKey() string {
	if c.opts.idempotencyKey != "" {
		return c.opts.idempotencyKey
	}
	return apiclient.NewIdempotencyKey()
}

func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.opts.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (c *cli) table(header string, rows [][]string) {
	w := tabwriter.NewWriter(c.opts.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, header)
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	w.Flush()
}

// server resolves a server given by ID or name.
func (c *cli) server(ctx context.Context, ref string) (string, error) {
	if _, err := uuid.Parse(ref); err == nil {
		return ref, nil
	}
	var ids []string
	// Live servers first; a deleted one only when no live one has the name.
	for _, status := range []string{"", "deleted"} {
		all, err := c.client.ListServers(ctx, status)
		if err != nil {
			return "", err
		}
		for _, s := range all {
			if s.Name == ref {
				ids = append(ids, s.ID)
			}
		}
		if len(ids) > 0 {
			break
		}
	}
	switch len(ids) {
	case 0:
		return "", fmt.Errorf("no server named %q", ref)
	case 1:
		return ids[0], nil
	}
	return "", fmt.Errorf("%d servers are named %q: use an ID (%s)", len(ids), ref, strings.Join(ids, ", "))
}

func cliCreate(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var r api.CreateServerRequest
	fs.StringVar(&r.Name, "name", "", "server name")
	fs.StringVar(&r.Size, "size", "", "size (default: the first of `servers sizes`)")
	fs.StringVar(&r.Image, "image", "", "image (default: the first of `servers images`)")
	fs.StringVar(&r.Region, "region", "", "region (default: the first of `servers regions`)")
	fs.StringVar(&r.SSHKey, "ssh-key", "", "SSH key ID or name (see `servers keys list`)")
	wait := fs.Bool("wait", false, "follow the operation until it finishes")
	ctx, _, err := c.parse(ctx, fs, args, 0)
	if err != nil {
		return err
	}
	if r.Name == "" {
		return errors.New("-name is required")
	}
	if err := c.catalogDefaults(ctx, &r); err != nil {
		return err
	}
	op, err := c.client.CreateServer(ctx, r, c.idempotencyKey())
	if err != nil {
		return err
	}
	return c.accepted(ctx, op, *wait)
}

// catalogDefaults fills what the create request leaves out with the first
// entry of the catalogue.
func (c *cli) catalogDefaults(ctx context.Context, r *api.CreateServerRequest) error {
	err := firstName(ctx, &r.Size, c.client.Sizes, func(s api.SizeView) string { return s.Name })
	if err == nil {
		err = firstName(ctx, &r.Image, c.client.Images, func(i api.ImageView) string { return i.Name })
	}
	if err == nil {
		err = firstName(ctx, &r.Region, c.client.Regions, func(g api.RegionView) string { return g.Name })
	}
	return err
}

// firstName sets an empty *name to the name of the first entry list
// returns (none: it stays empty).
func firstName[T any](ctx context.Context, name *string, list func(context.Context) ([]T, error), nameOf func(T) string) error {
	if *name != "" {
		return nil
	}
	l, err := list(ctx)
	if err != nil {
		return err
	}
	if len(l) > 0 {
		*name = nameOf(l[0])
	}
	return nil
}

// accepted reports an accepted operation and, with wait, follows it.
func (c *cli) accepted(ctx context.Context, op api.OperationView, wait bool) error {
	if !wait {
		if c.opts.json {
			return c.printJSON(op)
		}
		fmt.Fprintf(c.opts.out, "accepted: %s operation %s (%s) on server %s\n", op.Type, op.ID, op.Status, op.ServerID)
		fmt.Fprintf(c.opts.out, "follow it with: cloudservers servers wait %s\n", op.ID)
		return nil
	}
	if !c.opts.json {
		fmt.Fprintf(c.opts.out, "accepted: %s operation %s on server %s\n", op.Type, op.ID, op.ServerID)
	}
	return c.follow(ctx, op.ID)
}

// follow prints each status change of an operation and its server as it
// happens, then the outcome.
func (c *cli) follow(ctx context.Context, opID string) error {
	start := time.Now()
	done, err := c.client.Follow(ctx, opID, func(p apiclient.Progress) {
		if c.opts.json {
			return
		}
		at := p.At.Sub(start).Seconds()
		switch {
		case p.Operation != nil:
			fmt.Fprintf(c.opts.out, "  %5.1fs  operation %s\n", at, p.Operation.Status)
		case p.Server != nil:
			line := fmt.Sprintf("  %5.1fs  server    %s", at, p.Server.Status)
			if p.Server.PublicIPv4 != "" {
				line += "  public " + p.Server.PublicIPv4
			}
			fmt.Fprintln(c.opts.out, line)
		}
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("operation %s not finished after %s (it goes on; follow it with `cloudservers servers wait %s`)", opID, c.opts.timeout, opID)
		}
		return err
	}
	srv, serr := c.client.GetServer(ctx, done.ServerID)
	if c.opts.json {
		if serr == nil {
			return c.printJSON(map[string]any{"operation": done, "server": srv})
		}
		return c.printJSON(map[string]any{"operation": done})
	}
	if done.Status == "failed" {
		msg := done.Error
		if done.FailedStep != "" {
			msg += " (step " + done.FailedStep + ")"
		}
		return fmt.Errorf("%s operation %s failed after %.1fs: %s", done.Type, done.ID, time.Since(start).Seconds(), msg)
	}
	fmt.Fprintf(c.opts.out, "%s succeeded in %.1fs", done.Type, time.Since(start).Seconds())
	if serr == nil {
		fmt.Fprintf(c.opts.out, ": server %s (%s) is %s", srv.Name, srv.ID, srv.Status)
		if srv.PublicIPv4 != "" {
			fmt.Fprintf(c.opts.out, ", public IPv4 %s, private %s", srv.PublicIPv4, srv.PrivateIPv4)
		}
	}
	fmt.Fprintln(c.opts.out)
	return nil
}

func cliList(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	status := fs.String("status", "", "only servers in this status (deleted servers are listed only with -status deleted)")
	ctx, _, err := c.parse(ctx, fs, args, 0)
	if err != nil {
		return err
	}
	all, err := c.client.ListServers(ctx, *status)
	if err != nil {
		return err
	}
	if c.opts.json {
		return c.printJSON(all)
	}
	var rows [][]string
	for _, s := range all {
		rows = append(rows, []string{s.ID, s.Name, s.Status, s.Size, s.Image, s.Region, dash(s.PublicIPv4), dash(s.PrivateIPv4), s.CreatedAt.Format(time.RFC3339)})
	}
	c.table("ID\tNAME\tSTATUS\tSIZE\tIMAGE\tREGION\tPUBLIC IPV4\tPRIVATE IPV4\tCREATED", rows)
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cliGet(ctx context.Context, c *cli, args []string) error {
	ctx, rest, err := c.parse(ctx, c.flags(), args, 1)
	if err != nil {
		return err
	}
	id, err := c.server(ctx, rest[0])
	if err != nil {
		return err
	}
	s, err := c.client.GetServer(ctx, id)
	if err != nil {
		return err
	}
	if c.opts.json {
		return c.printJSON(s)
	}
	rows := [][]string{
		{"id", s.ID}, {"name", s.Name}, {"status", s.Status}, {"size", s.Size}, {"image", s.Image}, {"region", s.Region},
		{"public ipv4", dash(s.PublicIPv4)}, {"private ipv4", dash(s.PrivateIPv4)},
		{"created", s.CreatedAt.Format(time.RFC3339)}, {"updated", s.UpdatedAt.Format(time.RFC3339)},
	}
	if s.Operation != nil {
		rows = append(rows, []string{"operation", fmt.Sprintf("%s %s (%s)", s.Operation.Type, s.Operation.ID, s.Operation.Status)})
	}
	if s.Error != "" {
		rows = append(rows, []string{"error", s.Error})
	}
	w := tabwriter.NewWriter(c.opts.out, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintf(w, "%s:\t%s\n", r[0], r[1])
	}
	return w.Flush()
}

func cliDelete(ctx context.Context, c *cli, args []string) error {
	return c.serverOperation(ctx, c.flags(), args, nil, func(ctx context.Context, id string) (api.OperationView, error) {
		return c.client.DeleteServer(ctx, id, c.idempotencyKey())
	})
}

// cliAction is the command of an operation of the table that the API
// exposes on a server: an action (POST /v1/servers/{id}/actions with its
// type) or a rename (PATCH /v1/servers/{id}), with the parameters its flags
// set.
func cliAction(d cloudservers.OperationDef) func(ctx context.Context, c *cli, args []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		fs := c.flags()
		values := make([]string, len(d.CLI.Flags))
		set := make([]bool, len(d.CLI.Flags))
		for i, f := range d.CLI.Flags {
			if f.Value != "" {
				fs.BoolVar(&set[i], f.Name, false, f.Usage)
			} else {
				fs.StringVar(&values[i], f.Name, "", f.Usage)
			}
		}
		body := map[string]string{}
		if d.API == cloudservers.ExposeAction {
			body["type"] = string(d.Type)
		}
		check := func() error {
			for i, f := range d.CLI.Flags {
				switch {
				case f.Value != "" && set[i]:
					body[f.Param] = f.Value
				case f.Value == "" && values[i] != "":
					body[f.Param] = values[i]
				case f.Required:
					return fmt.Errorf("-%s is required", f.Name)
				}
			}
			return nil
		}
		return c.serverOperation(ctx, fs, args, check, func(ctx context.Context, id string) (api.OperationView, error) {
			if d.API == cloudservers.ExposeRename {
				return c.client.Rename(ctx, id, body, c.idempotencyKey())
			}
			return c.client.Act(ctx, id, body, c.idempotencyKey())
		})
	}
}

// serverOperation runs a command that starts an operation on one server:
// it parses the flags of fs and -wait, lets check (when given) refuse them,
// resolves the server, starts the operation and reports it.
func (c *cli) serverOperation(ctx context.Context, fs *flag.FlagSet, args []string, check func() error,
	start func(ctx context.Context, id string) (api.OperationView, error)) error {
	wait := fs.Bool("wait", false, "follow the operation until it finishes")
	ctx, rest, err := c.parse(ctx, fs, args, 1)
	if err != nil {
		return err
	}
	if check != nil {
		if err := check(); err != nil {
			return err
		}
	}
	id, err := c.server(ctx, rest[0])
	if err != nil {
		return err
	}
	op, err := start(ctx, id)
	if err != nil {
		return err
	}
	return c.accepted(ctx, op, *wait)
}

func cliOperations(ctx context.Context, c *cli, args []string) error {
	ctx, rest, err := c.parse(ctx, c.flags(), args, 1)
	if err != nil {
		return err
	}
	id, err := c.server(ctx, rest[0])
	if err != nil {
		return err
	}
	ops, err := c.client.ListOperations(ctx, id)
	if err != nil {
		return err
	}
	if c.opts.json {
		return c.printJSON(ops)
	}
	var rows [][]string
	for _, o := range ops {
		rows = append(rows, []string{o.ID, o.Type, o.Status, o.CreatedAt.Format(time.RFC3339), dash(o.Error)})
	}
	c.table("ID\tTYPE\tSTATUS\tCREATED\tERROR", rows)
	return nil
}

func cliWait(ctx context.Context, c *cli, args []string) error {
	ctx, rest, err := c.parse(ctx, c.flags(), args, 1)
	if err != nil {
		return err
	}
	return c.follow(ctx, rest[0])
}

func cliEvents(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	last := fs.String("last-event-id", "", "resume after this event")
	ctx, _, err := c.parse(ctx, fs, args, 0)
	if err != nil {
		return err
	}
	s, err := c.client.Subscribe(ctx, *last)
	if err != nil {
		return err
	}
	defer func() { s.Close() }()
	for {
		ev, err := s.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			fmt.Fprintf(os.Stderr, "stream ended (%v); resuming after %s\n", err, s.LastID())
			last := s.LastID()
			s.Close()
			if s, err = c.client.Subscribe(ctx, last); err != nil {
				return err
			}
			continue
		}
		if c.opts.json {
			fmt.Fprintf(c.opts.out, "{\"id\":%q,\"event\":%q,\"data\":%s}\n", ev.ID, ev.Type, ev.Data)
			continue
		}
		now := time.Now().Format("15:04:05")
		switch ev.Type {
		case "server":
			sv, _ := ev.Server()
			fmt.Fprintf(c.opts.out, "%s  server     %s %-10s %s\n", now, sv.ID, sv.Status, sv.Name)
		case "operation":
			op, _ := ev.Operation()
			fmt.Fprintf(c.opts.out, "%s  operation  %s %-10s %s of server %s\n", now, op.ID, op.Status, op.Type, op.ServerID)
		default:
			fmt.Fprintf(c.opts.out, "%s  %s  %s\n", now, ev.Type, ev.Data)
		}
	}
}

func cliCatalog(what string) func(ctx context.Context, c *cli, args []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		ctx, _, err := c.parse(ctx, c.flags(), args, 0)
		if err != nil {
			return err
		}
		var v any
		var header string
		var rows [][]string
		switch what {
		case "sizes":
			l, err := c.client.Sizes(ctx)
			if err != nil {
				return err
			}
			v, header = l, "NAME\tVCPUS\tMEMORY MB\tDISK GB"
			for _, s := range l {
				rows = append(rows, []string{s.Name, strconv.Itoa(s.VCPUs), strconv.Itoa(s.MemoryMB), strconv.Itoa(s.DiskGB)})
			}
		case "images":
			l, err := c.client.Images(ctx)
			if err != nil {
				return err
			}
			v, header = l, "NAME\tDESCRIPTION"
			for _, i := range l {
				rows = append(rows, []string{i.Name, i.Description})
			}
		default:
			l, err := c.client.Regions(ctx)
			if err != nil {
				return err
			}
			v, header = l, "NAME\tDESCRIPTION"
			for _, r := range l {
				rows = append(rows, []string{r.Name, r.Description})
			}
		}
		if c.opts.json {
			return c.printJSON(v)
		}
		c.table(header, rows)
		return nil
	}
}

func cliKeys(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: cloudservers servers %s", c.usage)
	}
	sub, args := args[0], args[1:]
	c.name = "keys " + sub
	switch sub {
	case "list":
		ctx, _, err := c.parse(ctx, c.flags(), args, 0)
		if err != nil {
			return err
		}
		keys, err := c.client.ListSSHKeys(ctx)
		if err != nil {
			return err
		}
		if c.opts.json {
			return c.printJSON(keys)
		}
		var rows [][]string
		for _, k := range keys {
			rows = append(rows, []string{k.ID, k.Name, k.Type, k.Fingerprint, k.CreatedAt.Format(time.RFC3339)})
		}
		c.table("ID\tNAME\tTYPE\tFINGERPRINT\tCREATED", rows)
		return nil
	case "add":
		fs := c.flags()
		name := fs.String("name", "", "a name for the key")
		pub := fs.String("public-key", "", "the public key (one authorized_keys line)")
		file := fs.String("file", "", "read the public key from this file (e.g. ~/.ssh/id_ed25519.pub)")
		ctx, _, err := c.parse(ctx, fs, args, 0)
		if err != nil {
			return err
		}
		if *file != "" {
			b, err := os.ReadFile(*file)
			if err != nil {
				return err
			}
			*pub = string(b)
		}
		if *name == "" || *pub == "" {
			return errors.New("-name and -public-key (or -file) are required")
		}
		k, err := c.client.CreateSSHKey(ctx, *name, strings.TrimSpace(*pub), c.idempotencyKey())
		if err != nil {
			return err
		}
		if c.opts.json {
			return c.printJSON(k)
		}
		fmt.Fprintf(c.opts.out, "added SSH key %s (%s) %s\n", k.Name, k.ID, k.Fingerprint)
		return nil
	case "get":
		ctx, rest, err := c.parse(ctx, c.flags(), args, 1)
		if err != nil {
			return err
		}
		k, err := c.client.GetSSHKey(ctx, rest[0])
		if err != nil {
			return err
		}
		if c.opts.json {
			return c.printJSON(k)
		}
		fmt.Fprintf(c.opts.out, "id:           %s\nname:         %s\ntype:         %s\nfingerprint:  %s\nmd5:          %s\ncreated:      %s\npublic key:   %s\n",
			k.ID, k.Name, k.Type, k.Fingerprint, k.FingerprintMD5, k.CreatedAt.Format(time.RFC3339), k.PublicKey)
		return nil
	case "delete":
		ctx, rest, err := c.parse(ctx, c.flags(), args, 1)
		if err != nil {
			return err
		}
		if err := c.client.DeleteSSHKey(ctx, rest[0], c.idempotencyKey()); err != nil {
			return err
		}
		fmt.Fprintf(c.opts.out, "deleted SSH key %s\n", rest[0])
		return nil
	}
	return fmt.Errorf("unknown keys command %q: list, add, get, delete", sub)
}
