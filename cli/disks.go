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

// vmDiskCommand is `vm disk`: list, add, remove and resize a VM's disks.
func vmDiskCommand(g *globals) *cobra.Command {
	disk := &cobra.Command{Use: "disk", Short: "A VM's disks: list, add, remove, resize (live on a running VM)"}
	list := &cobra.Command{
		Use: "list VM", Short: "List a VM's disks with size, allocation and backing chain",
		Args: cobra.ExactArgs(1), ValidArgsFunction: g.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.Disks, error) {
				return c.Disks(ctx, args[0])
			}, func(d api.Disks) func(*tabwriter.Writer) { return disksTable(d.Disks...) })
		},
	}
	var req api.AddDiskRequest
	add := &cobra.Command{
		Use: "add VM --size-gb N", Short: "Add a new, empty, thin qcow2 disk (hot-plugged into a running VM, but for sata)",
		Args: cobra.ExactArgs(1), ValidArgsFunction: g.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.Disk, error) {
				return c.AddDisk(ctx, args[0], req)
			}, func(d api.Disk) func(*tabwriter.Writer) { return disksTable(d) })
		},
	}
	add.Flags().StringVar(&req.Name, "name", "", "the disk's name (default: the next free diskN)")
	add.Flags().Float64Var(&req.SizeGB, "size-gb", 0, "the disk's size in GiB (a whole number of MiB)")
	add.Flags().StringVar((*string)(&req.Bus), "bus", "", "virtio-blk (the default), virtio-scsi, or sata (only while the VM is off)")
	add.Flags().StringVar((*string)(&req.Cache), "cache", "", "cache mode: writeback (the default), none, writethrough, directsync or unsafe")
	add.Flags().StringVar((*string)(&req.Discard), "discard", "", "discard mode: unmap (the default; TRIM reaches the image) or ignore")
	add.Flags().IntVar(&req.BootOrder, "boot-order", 0, "boot index, 1 first; 0 is not bootable")
	add.Flags().StringVar(&req.Image, "image", "", "make the disk from this store image (image list) instead of empty")
	add.Flags().StringVar((*string)(&req.Clone), "clone", "", "how, with --image: linked (default; a thin overlay) or full (a copy)")
	completeFlag(add, "bus", names(api.DiskBuses)...)
	completeFlag(add, "cache", names(api.DiskCaches)...)
	completeFlag(add, "discard", names(api.DiskDiscards)...)
	var deleteImage bool
	remove := &cobra.Command{
		Use: "remove VM DISK", Short: "Remove a disk (unplugged from a running VM); its image stays unless --delete-image",
		Args: cobra.ExactArgs(2), ValidArgsFunction: g.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := g.ctx()
			defer cancel()
			return g.client().RemoveDisk(ctx, args[0], args[1], deleteImage)
		},
	}
	remove.Flags().BoolVar(&deleteImage, "delete-image", false, "delete the disk's image too")
	var resize api.ResizeDiskRequest
	resizeCmd := &cobra.Command{
		Use: "resize VM DISK --size-gb N", Short: "Grow a disk (live on a running VM); --allow-shrink shrinks one of a VM that is off",
		Args: cobra.ExactArgs(2), ValidArgsFunction: g.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.Disk, error) {
				return c.ResizeDisk(ctx, args[0], args[1], resize)
			}, func(d api.Disk) func(*tabwriter.Writer) { return disksTable(d) })
		},
	}
	resizeCmd.Flags().Float64Var(&resize.SizeGB, "size-gb", 0, "the new size in GiB")
	resizeCmd.Flags().BoolVar(&resize.AllowShrink, "allow-shrink", false, "allow a smaller size (VM off; the data past the new end is lost)")
	disk.AddCommand(list, add, remove, resizeCmd)
	return disk
}

func disksTable(disks ...api.Disk) func(*tabwriter.Writer) {
	return func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "NAME\tBUS\tCACHE\tDISCARD\tFORMAT\tSIZE\tALLOCATED\tBOOT\tBACKING\tPATH")
		for _, d := range disks {
			boot, backing := "-", "-"
			if d.BootIndex > 0 {
				boot = fmt.Sprint(d.BootIndex)
			}
			if len(d.BackingChain) > 0 {
				var paths []string
				for _, b := range d.BackingChain {
					paths = append(paths, b.Path)
				}
				backing = strings.Join(paths, " < ")
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Name, d.Bus, d.Cache, d.Discard, d.Format, bytesText(d.VirtualSizeBytes),
				bytesText(d.AllocatedBytes), boot, backing, d.Path)
		}
	}
}

// names are a string enum's values, for a flag's completions.
func names[T ~string](values []T) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = string(v)
	}
	return out
}

// bytesText is a size in the largest binary unit that keeps it above 1.
func bytesText(n int64) string {
	f, units := float64(n), []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}
