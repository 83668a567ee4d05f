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

// hostCommand is `host`: the host's devices that VMs can be given.
func hostCommand(g *globals) *cobra.Command {
	host := &cobra.Command{Use: "host", Short: "The host's PCI and USB devices that VMs can be given"}
	pci := &cobra.Command{
		Use: "pci", Short: "List the host's PCI devices: class, IOMMU group, driver, and the VM using each",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.HostPCI, error) {
				return c.HostPCI(ctx)
			}, hostPCITable)
		},
	}
	usb := &cobra.Command{
		Use: "usb", Short: "List the USB devices plugged into the host: ids, names, bus and port, serial",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.HostUSB, error) {
				return c.HostUSB(ctx)
			}, hostUSBTable)
		},
	}
	host.AddCommand(pci, usb)
	return host
}

// orDash shows an empty cell as "-".
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func hostPCITable(h api.HostPCI) func(*tabwriter.Writer) {
	return func(w *tabwriter.Writer) {
		if !h.IOMMU {
			fmt.Fprintln(w, "IOMMU off: no device can be passed through")
		}
		fmt.Fprintln(w, "ADDRESS\tCLASS\tID\tNAME\tDRIVER\tGROUP\tUSED BY")
		for _, d := range h.Devices {
			fmt.Fprintf(w, "%s\t%s\t%s:%s\t%s\t%s\t%s\t%s\n", d.Address, d.Class, d.VendorID, d.DeviceID,
				orDash(strings.TrimSpace(d.Vendor+" "+d.Device)), orDash(d.Driver), orDash(d.IOMMUGroup), usedBy(d.UsedBy))
		}
	}
}

func hostUSBTable(h api.HostUSB) func(*tabwriter.Writer) {
	return func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "BUS-PORT\tDEVICE\tID\tNAME\tSERIAL\tUSED BY")
		for _, d := range h.Devices {
			name := strings.TrimSpace(d.Vendor + " " + d.Product)
			if d.Hub {
				name += " (hub)"
			}
			fmt.Fprintf(w, "%s\t%03d:%03d\t%s:%s\t%s\t%s\t%s\n", d.BusPort, d.Bus, d.DeviceNumber, d.VendorID, d.ProductID,
				orDash(strings.TrimSpace(name)), orDash(d.Serial), usedBy(d.UsedBy))
		}
	}
}

// usedBy names the VM entry holding a host device: vm/device, or -.
func usedBy(u *api.DeviceUser) string {
	if u == nil {
		return "-"
	}
	return u.VMID + "/" + u.Device
}
