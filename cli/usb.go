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

func vmUSBCommand(g *globals) *cobra.Command {
	usb := &cobra.Command{Use: "usb", Short: "A VM's host USB devices, attached and detached running (live) or off"}
	var req api.AttachUSBRequest
	attach := &cobra.Command{
		Use:   "attach VM {VENDOR:PRODUCT [--serial S] | --bus-port B} [--name NAME]",
		Short: "Pass a host USB device through to a VM, by vendor:product id (046d:c52b) or where it is plugged (--bus-port 1-1.2)",
		Args:  cobra.RangeArgs(1, 2), ValidArgsFunction: g.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 2 {
				v, p, ok := strings.Cut(args[1], ":")
				if !ok {
					return fmt.Errorf("%q: the device is VENDOR:PRODUCT, four hex digits each (046d:c52b)", args[1])
				}
				req.VendorID, req.ProductID = v, p
			} else if req.BusPort == "" {
				return fmt.Errorf("give the device's VENDOR:PRODUCT or --bus-port (infinivirtctl host usb lists them)")
			}
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.Device, error) {
				return c.AttachUSB(ctx, args[0], req)
			}, usbTable)
		},
	}
	attach.Flags().StringVar(&req.Serial, "serial", "", "the one device of that model with this serial number")
	attach.Flags().StringVar(&req.BusPort, "bus-port", "", "where the device is plugged, as host usb lists it (1-1.2)")
	attach.Flags().StringVar(&req.Name, "name", "", "the device's name (default: the lowest free usbN)")
	detach := &cobra.Command{
		Use: "detach VM DEVICE", Short: "Take a USB device off a VM, unplugging it at once while it runs",
		Args: cobra.ExactArgs(2), ValidArgsFunction: g.completeDevices(api.DeviceUSB, func(d api.Device) string {
			if d.USB == nil {
				return ""
			}
			return d.USB.VendorID + ":" + d.USB.ProductID
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := g.ctx()
			defer cancel()
			return g.client().DetachUSB(ctx, args[0], args[1])
		},
	}
	usb.AddCommand(attach, detach)
	return usb
}

func usbTable(d api.Device) func(*tabwriter.Writer) {
	return func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "NAME\tID\tSERIAL\tBUS-PORT")
		if u := d.USB; u != nil {
			id := "-"
			if u.VendorID != "" {
				id = u.VendorID + ":" + u.ProductID
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", d.Name, id, orDash(u.Serial), orDash(u.BusPort))
		}
	}
}
