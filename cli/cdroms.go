package cli

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/infinibay/infinivirt/pkg/agentclient"
	"github.com/infinibay/infinivirt/pkg/api"
)

func vmCDROMCommand(g *globals) *cobra.Command {
	cd := &cobra.Command{Use: "cdrom", Short: "A VM's CD-ROM drives: media inserted and ejected live, drives added and removed while off"}
	list := &cobra.Command{
		Use: "list VM", Short: "List a VM's CD-ROM drives and their media (live state while it runs)",
		Args: cobra.ExactArgs(1), ValidArgsFunction: g.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.CDROMs, error) {
				return c.CDROMs(ctx, args[0])
			}, func(cds api.CDROMs) func(*tabwriter.Writer) { return cdromTable(cds.CDROMs...) })
		},
	}
	insert := &cobra.Command{
		Use: "insert VM CDROM ISO", Short: "Insert an ISO into a drive, or change the one it holds (live while the VM runs)",
		Args: cobra.ExactArgs(3), ValidArgsFunction: g.completeCDROMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.CDROM, error) {
				return c.InsertMedium(ctx, args[0], args[1], args[2])
			}, func(cd api.CDROM) func(*tabwriter.Writer) { return cdromTable(cd) })
		},
	}
	eject := &cobra.Command{
		Use: "eject VM CDROM", Short: "Eject a drive's medium, leaving it empty (live while the VM runs)",
		Args: cobra.ExactArgs(2), ValidArgsFunction: g.completeCDROMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.CDROM, error) {
				return c.EjectMedium(ctx, args[0], args[1])
			}, func(cd api.CDROM) func(*tabwriter.Writer) { return cdromTable(cd) })
		},
	}
	var req api.AddCDROMRequest
	add := &cobra.Command{
		Use: "add VM [--name NAME] [--iso ISO] [--boot-index N]", Short: "Add a CD-ROM drive to a VM that is off",
		Args: cobra.ExactArgs(1), ValidArgsFunction: g.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.CDROM, error) {
				return c.AddCDROM(ctx, args[0], req)
			}, func(cd api.CDROM) func(*tabwriter.Writer) { return cdromTable(cd) })
		},
	}
	add.Flags().StringVar(&req.Name, "name", "", "the drive's name (default: the lowest free cdN)")
	add.Flags().StringVar(&req.ISOPath, "iso", "", "the ISO the drive starts with (default: empty)")
	add.Flags().IntVar(&req.BootIndex, "boot-index", 0, "boot order, 1 to 99 (default: not bootable)")
	remove := &cobra.Command{
		Use: "remove VM CDROM", Short: "Remove a CD-ROM drive from a VM that is off (the ISO file stays)",
		Args: cobra.ExactArgs(2), ValidArgsFunction: g.completeCDROMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := g.ctx()
			defer cancel()
			return g.client().RemoveCDROM(ctx, args[0], args[1])
		},
	}
	cd.AddCommand(list, insert, eject, add, remove)
	return cd
}

func cdromTable(cds ...api.CDROM) func(*tabwriter.Writer) {
	return func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "NAME\tBOOT\tISO\tLIVE")
		for _, cd := range cds {
			boot, iso, live := "-", "-", "-"
			if cd.BootIndex != 0 {
				boot = strconv.Itoa(cd.BootIndex)
			}
			if cd.ISOPath != "" {
				iso = cd.ISOPath
			}
			if l := cd.Live; l != nil {
				switch {
				case l.TrayOpen:
					live = "tray open"
				case l.MediumInserted:
					live = "inserted " + l.File
				default:
					live = "empty"
				}
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", cd.Name, boot, iso, live)
		}
	}
}

// completeCDROMs offers VM ids first, then the CD-ROM drives of that VM.
func (g *globals) completeCDROMs(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
	switch len(args) {
	case 0:
		return g.completeVMs(cmd, args, s)
	case 1:
		return g.deviceCompletions(args[0], api.DeviceCDROM, func(d api.Device) string {
				if d.CDROM == nil {
					return ""
				}
				return d.CDROM.Path
			}),
			cobra.ShellCompDirectiveNoFileComp
	}
	if cmd.Name() == "insert" && len(args) == 2 {
		return []string{"iso"}, cobra.ShellCompDirectiveFilterFileExt
	}
	return nil, cobra.ShellCompDirectiveNoFileComp
}
