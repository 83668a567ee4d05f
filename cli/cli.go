// Package cli is infinivirtctl's command tree: a verb for every API call,
// table output for people and -o json for scripts.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/infinibay/infinivirt/pkg/agentclient"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

type globals struct {
	socket  string
	output  string
	timeout time.Duration
	out     io.Writer
}

func (g *globals) client() *agentclient.Client { return agentclient.New(g.socket) }

func (g *globals) ctx() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	if g.timeout <= 0 {
		return ctx, stop
	}
	tctx, cancel := context.WithTimeout(ctx, g.timeout)
	return tctx, func() { cancel(); stop() }
}

// NewRoot builds the infinivirtctl command.
func NewRoot(out io.Writer) *cobra.Command {
	g := &globals{out: out}
	root := &cobra.Command{
		Use:           "infinivirtctl",
		Short:         "Manage Infinivirt VMs through the host agent",
		SilenceUsage:  true,
		SilenceErrors: true,
		// A bad -o is refused before any call: after one, a power-off
		// would have run and still be reported as failed.
		PersistentPreRunE: func(*cobra.Command, []string) error { return g.checkOutput() },
	}
	root.SetOut(out)
	socket := os.Getenv("INFINIVIRT_SOCKET")
	if socket == "" {
		socket = agentclient.DefaultSocket
	}
	root.PersistentFlags().StringVar(&g.socket, "socket", socket, "agent API socket (env INFINIVIRT_SOCKET)")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	root.PersistentFlags().DurationVar(&g.timeout, "timeout", 5*time.Minute, "give up after this long (0: never)")
	completeFlag(root, "output", "table", "json")
	root.AddCommand(vmCommand(g), eventsCommand(g), healthCommand(g),
		firewallCommand(g), departmentCommand(g), bridgeCommand(g))
	root.AddCommand(imageCommand(g))
	root.AddCommand(hostCommand(g))
	return root
}

// Execute runs the command line and returns the process exit code.
func Execute() int {
	root := NewRoot(os.Stdout)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "infinivirtctl: "+describe(err))
		var e *errdefs.Error
		if errors.As(err, &e) && e.Code == errdefs.CodeInvalidArgument {
			return 2
		}
		return 1
	}
	return 0
}

// describe prints a typed error plainly: "macAddress: ..." rather than JSON.
func describe(err error) string {
	var e *errdefs.Error
	if !errors.As(err, &e) {
		return err.Error()
	}
	if e.Field != "" {
		return fmt.Sprintf("%s: %s (%s)", e.Field, e.Message, e.Code)
	}
	return fmt.Sprintf("%s (%s)", e.Message, e.Code)
}

func (g *globals) checkOutput() error {
	if g.output != "table" && g.output != "json" {
		return errdefs.Invalid("output", "must be table or json, got %q", g.output)
	}
	return nil
}

// print writes v as JSON with -o json or without a table form, and as the
// table otherwise.
func (g *globals) print(v any, table func(w *tabwriter.Writer)) error {
	if err := g.checkOutput(); err != nil {
		return err
	}
	if g.output == "json" || table == nil {
		enc := json.NewEncoder(g.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	w := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
	table(w)
	return w.Flush()
}

func vmTable(vms ...api.VM) func(*tabwriter.Writer) {
	return func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "ID\tNAME\tSTATUS\tREASON\tCPUS\tRAM\tDISPLAY\tQEMU PID")
		for _, v := range vms {
			pid := "-"
			if v.QEMUPID != 0 {
				pid = fmt.Sprint(v.QEMUPID)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%gG\t%s %s:%d\t%s\n", v.ID, v.Name, v.Status, v.Reason,
				v.CPUCores, v.RAMGB, v.GraphicProtocol, v.GraphicListen, v.GraphicPort, pid)
		}
	}
}

func healthCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "health",
		Short: "Show the agent's health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.Health, error) {
				return c.Health(ctx)
			}, func(h api.Health) func(*tabwriter.Writer) {
				return func(w *tabwriter.Writer) {
					fmt.Fprintf(w, "VMS\t%d\nDATABASE\t%s\nACCEL\t%s\n", h.VMs, h.Database, h.Accel)
				}
			})
		},
	}
}

func eventsCommand(g *globals) *cobra.Command {
	var after uint64
	cmd := &cobra.Command{
		Use:               "events [VM]",
		Short:             "Follow VM events (all VMs, or one with its history after --after)",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: g.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			err := g.client().Events(ctx, id, after, func(e api.Event) error {
				if g.output == "json" {
					return json.NewEncoder(g.out).Encode(e)
				}
				_, err := fmt.Fprintf(g.out, "%s %s #%d %s %s %s %s\n", e.Time.Format(time.RFC3339Nano), e.VMID, e.Seq,
					e.Type, e.Status, e.Reason, e.Message)
				return err
			})
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
	cmd.Flags().Uint64Var(&after, "after", 0, "replay one VM's events after this sequence number")
	return cmd
}

// completeVMs offers VM ids, with names as descriptions.
func (g *globals) completeVMs(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	vms, err := g.client().List(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	out := make([]string, len(vms))
	for i, v := range vms {
		out[i] = v.ID + "\t" + v.Name
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeNICs lists the NICs of the VM named by the first argument.
func (g *globals) completeNICs(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) == 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return g.deviceCompletions(args[0], api.DeviceNIC, func(d api.Device) string {
			if d.NIC == nil {
				return ""
			}
			return d.NIC.Bridge
		}),
		cobra.ShellCompDirectiveNoFileComp
}

// deviceCompletions lists a VM's devices of one type, each with what
// describe says of it; nothing when the agent cannot be asked.
func (g *globals) deviceCompletions(vmID string, t api.DeviceType, describe func(api.Device) string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	vm, err := g.client().Get(ctx, vmID)
	if err != nil {
		return nil
	}
	var out []string
	for _, d := range vm.Devices {
		if d.Type == t {
			out = append(out, d.Name+"\t"+describe(d))
		}
	}
	return out
}
