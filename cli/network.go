package cli

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/infinibay/infinivirt/pkg/agentclient"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

func firewallCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "firewall",
		Short: "Show the firewall mode and what the kernel can enforce",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.FirewallInfo, error) {
				return c.Firewall(ctx)
			}, func(info api.FirewallInfo) func(*tabwriter.Writer) {
				return func(w *tabwriter.Writer) {
					c := info.Capabilities
					fmt.Fprintf(w, "MODE\t%s\nCAPABILITIES\tconntrack=%t reject=%t bridgeMeta=%t\n", info.Mode, c.Conntrack, c.Reject, c.BridgeMeta)
				}
			})
		},
	}
}

func departmentCommand(g *globals) *cobra.Command {
	dept := &cobra.Command{Use: "department", Aliases: []string{"dept"}, Short: "Department firewalls: policy, rules, presets"}
	list := &cobra.Command{
		Use: "list", Short: "List departments", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) ([]api.Department, error) {
				return c.Departments(ctx)
			}, departmentsTable)
		},
	}
	get := &cobra.Command{
		Use: "get DEPARTMENT", Short: "Show a department's policy and rules", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.Department, error) {
				return c.Department(ctx, args[0])
			}, departmentTable)
		},
	}
	var file string
	set := &cobra.Command{
		Use: "set DEPARTMENT -f FILE", Short: "Create or replace a department's policy and rules (JSON: {policy, ruleSet})",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := readFileOrStdin(file)
			if err != nil {
				return err
			}
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.Department, error) {
				return c.PutDepartmentRaw(ctx, args[0], body)
			}, departmentTable)
		},
	}
	set.Flags().StringVarP(&file, "file", "f", "-", "department JSON ('-' for stdin)")
	del := &cobra.Command{
		Use: "delete DEPARTMENT", Short: "Delete a department no VM belongs to", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := g.ctx()
			defer cancel()
			return g.client().DeleteDepartment(ctx, args[0])
		},
	}
	preset := &cobra.Command{
		Use: "preset DEPARTMENT PRESET on|off", Short: "Toggle a service preset (ssh, http, https, rdp, vnc)",
		Args: cobra.ExactArgs(3), ValidArgsFunction: presetArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			on, err := onOff(args[2])
			if err != nil {
				return err
			}
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.Department, error) {
				return c.SetDepartmentPreset(ctx, args[0], api.FirewallPreset(args[1]), on)
			}, departmentTable)
		},
	}
	dept.AddCommand(list, get, set, del, preset)
	return dept
}

func departmentTable(d api.Department) func(*tabwriter.Writer) {
	return departmentsTable([]api.Department{d})
}

func departmentsTable(ds []api.Department) func(*tabwriter.Writer) {
	return func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "DEPARTMENT\tPOLICY\tDEFAULTS\tRULES\tPRESETS")
		for _, d := range ds {
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%v\n", d.ID, d.Policy.Policy, d.Policy.DefaultConfig, len(d.RuleSet.Rules), d.RuleSet.Presets)
		}
	}
}

// vmNetworkCommands are the VM verbs about its network: firewall and bridge.
func vmNetworkCommands(g *globals) []*cobra.Command {
	fw := &cobra.Command{Use: "firewall", Short: "A VM's own firewall rules, presets and effective rules"}
	get := &cobra.Command{
		Use: "get VM", Short: "Show a VM's department, rules and addresses", Args: cobra.ExactArgs(1),
		ValidArgsFunction: g.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.VMFirewall, error) {
				return c.VMFirewall(ctx, args[0])
			}, nil)
		},
	}
	var file string
	set := &cobra.Command{
		Use: "set VM -f FILE", Short: "Replace a VM's firewall (JSON: {department, ruleSet, ips})", Args: cobra.ExactArgs(1),
		ValidArgsFunction: g.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := readFileOrStdin(file)
			if err != nil {
				return err
			}
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.VMFirewall, error) {
				return c.PutVMFirewallRaw(ctx, args[0], body)
			}, nil)
		},
	}
	set.Flags().StringVarP(&file, "file", "f", "-", "VM firewall JSON ('-' for stdin)")
	eff := &cobra.Command{
		Use: "effective VM", Short: "Show the rules a VM's traffic meets, and the kernel's chains", Args: cobra.ExactArgs(1),
		ValidArgsFunction: g.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := g.ctx()
			defer cancel()
			eff, err := g.client().EffectiveFirewall(ctx, args[0])
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.print(eff, nil)
			}
			fmt.Fprintf(g.out, "mode %s, department %s\ncounters %v\n%s\n", eff.Mode, eff.Department, eff.Counters, strings.TrimSpace(eff.Kernel))
			return nil
		},
	}
	preset := &cobra.Command{
		Use: "preset VM PRESET on|off", Short: "Toggle a service preset for one VM", Args: cobra.ExactArgs(3),
		ValidArgsFunction: presetArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			on, err := onOff(args[2])
			if err != nil {
				return err
			}
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.VMFirewall, error) {
				return c.SetVMPreset(ctx, args[0], api.FirewallPreset(args[1]), on)
			}, nil)
		},
	}
	fw.AddCommand(get, set, eff, preset)
	var nic string
	move := &cobra.Command{
		Use: "set-bridge VM BRIDGE", Short: "Move a VM's NIC to another bridge (live: rules re-applied, rolled back on failure)",
		Args: cobra.ExactArgs(2), ValidArgsFunction: g.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.VM, error) {
				return c.MoveNIC(ctx, args[0], nic, args[1])
			}, vmRow)
		},
	}
	move.Flags().StringVar(&nic, "nic", "net0", "the NIC that moves, by name")
	if err := move.RegisterFlagCompletionFunc("nic", g.completeNICs); err != nil {
		panic(err) // a mistake in this package, as completeFlag says
	}
	return []*cobra.Command{fw, move}
}

func bridgeCommand(g *globals) *cobra.Command {
	br := &cobra.Command{Use: "bridge", Short: "Department bridges"}
	list := &cobra.Command{
		Use: "list", Short: "List bridges", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) ([]api.BridgeInfo, error) {
				return c.Bridges(ctx)
			}, func(bs []api.BridgeInfo) func(*tabwriter.Writer) {
				return func(w *tabwriter.Writer) {
					fmt.Fprintln(w, "NAME\tMAC\tMTU\tUP\tPORTS\tADDRESSES")
					for _, b := range bs {
						fmt.Fprintf(w, "%s\t%s\t%d\t%t\t%v\t%v\n", b.Name, b.MAC, b.MTU, b.Up, b.Ports, b.Addresses)
					}
				}
			})
		},
	}
	var (
		mac   string
		mtu   int
		addrs []string
	)
	create := &cobra.Command{
		Use: "create NAME", Short: "Create (or adopt) a bridge with a fixed MAC", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := api.BridgeRequest{MAC: mac, MTU: mtu}
			for i, a := range addrs {
				p, err := netip.ParsePrefix(a)
				if err != nil {
					return errdefs.Invalid(fmt.Sprintf("addresses[%d]", i), "must be an address in CIDR form like 10.0.0.1/24, got %q", a)
				}
				req.Addresses = append(req.Addresses, p)
			}
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.BridgeInfo, error) {
				return c.PutBridge(ctx, args[0], req)
			}, nil)
		},
	}
	create.Flags().StringVar(&mac, "mac", "", "fixed MAC (default: derived from the name)")
	create.Flags().IntVar(&mtu, "mtu", 0, "MTU")
	create.Flags().StringSliceVar(&addrs, "address", nil, "address in CIDR form, repeatable")
	var force bool
	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete a bridge no VM is defined on", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := g.ctx()
			defer cancel()
			return g.client().DeleteBridge(ctx, args[0], force)
		},
	}
	del.Flags().BoolVar(&force, "force", false, "delete even with ports attached")
	br.AddCommand(list, create, del)
	return br
}

// do runs one API call under the command's deadline and prints its result,
// as a table when table is set and -o asks for one, and as JSON otherwise
// (some documents have no useful table form).
func do[T any](g *globals, call func(context.Context, *agentclient.Client) (T, error), table func(T) func(*tabwriter.Writer)) error {
	ctx, cancel := g.ctx()
	defer cancel()
	v, err := call(ctx, g.client())
	if err != nil {
		return err
	}
	if table == nil {
		return g.print(v, nil)
	}
	return g.print(v, table(v))
}

func vmRow(v api.VM) func(*tabwriter.Writer) { return vmTable(v) }

func onOff(s string) (bool, error) {
	switch s {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, errdefs.Invalid("state", "must be on or off, got %q", s)
}

func presetArgs(at int) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		switch len(args) {
		case at:
			var out []string
			for _, p := range api.FirewallPresets {
				out = append(out, string(p))
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		case at + 1:
			return []string{"on", "off"}, cobra.ShellCompDirectiveNoFileComp
		}
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
}
