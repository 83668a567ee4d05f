package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/infinibay/infinivirt/pkg/agentclient"
	"github.com/infinibay/infinivirt/pkg/api"
)

func vmPCICommand(g *globals) *cobra.Command {
	pci := &cobra.Command{Use: "pci", Short: "A VM's host PCI devices (GPUs), attached and detached while it is off"}
	var req api.AttachPCIRequest
	attach := &cobra.Command{
		Use:   "attach VM ADDRESS [--name NAME] [--managed] [--rom FILE]",
		Short: "Pass a host PCI device through to a VM that is off, with its slot's other functions in its IOMMU group (a GPU's audio)",
		Args:  cobra.ExactArgs(2), ValidArgsFunction: g.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Address = args[1]
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.Device, error) {
				return c.AttachPCI(ctx, args[0], req)
			}, pciTable)
		},
	}
	attach.Flags().StringVar(&req.Name, "name", "", "the device's name (default: the lowest free pciN)")
	attach.Flags().BoolVar(&req.Managed, "managed", false, "bind the devices to vfio-pci at each start and give them back at each stop")
	attach.Flags().StringVar(&req.ROMFile, "rom", "", "an option ROM from the agent's ROM directory, by name or path")
	detach := &cobra.Command{
		Use: "detach VM DEVICE", Short: "Take a PCI device, with its companion functions, off a VM that is off",
		Args: cobra.ExactArgs(2), ValidArgsFunction: g.completeDevices(api.DevicePCI, func(d api.Device) string {
			if d.PCI == nil {
				return ""
			}
			return d.PCI.Host
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := g.ctx()
			defer cancel()
			return g.client().DetachPCI(ctx, args[0], args[1])
		},
	}
	pci.AddCommand(attach, detach)
	return pci
}

func pciTable(d api.Device) func(*tabwriter.Writer) {
	return func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "NAME\tHOST\tFUNCTIONS\tMANAGED\tROM")
		if p := d.PCI; p != nil {
			fmt.Fprintf(w, "%s\t%s\t%s\t%t\t%s\n", d.Name, p.Host, orDash(strings.Join(p.Functions, ",")), p.Managed, orDash(p.ROMFile))
		}
	}
}

// completeDevices offers VM ids first, then that VM's devices of type t,
// each described by describe.
func (g *globals) completeDevices(t api.DeviceType, describe func(api.Device) string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
		if len(args) == 0 {
			return g.completeVMs(cmd, args, s)
		}
		if len(args) == 1 {
			return g.deviceCompletions(args[0], t, describe), cobra.ShellCompDirectiveNoFileComp
		}
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
}
