package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/infinibay/infinivirt/pkg/agentclient"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// imagePollInterval is how often an import's progress is read.
const imagePollInterval = 500 * time.Millisecond

// imageCommand is `image`: the store's golden images.
func imageCommand(g *globals) *cobra.Command {
	image := &cobra.Command{Use: "image", Short: "Golden images that disks are cloned from: import, list, delete, capture"}
	var format string
	var noWait bool
	importCmd := &cobra.Command{
		Use: "import NAME SOURCE", Short: "Import an image file (raw, qcow2, vmdk or vhdx) into the store as qcow2, showing its progress",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.followImage(cmd, noWait, func(ctx context.Context, c *agentclient.Client) (api.Image, error) {
				return c.ImportImage(ctx, api.ImportImageRequest{Name: args[0], SourcePath: args[1], Format: format}, false)
			})
		},
	}
	importCmd.Flags().StringVar(&format, "format", "", "the source's format: raw, qcow2, vmdk or vhdx (default: from its header)")
	importCmd.Flags().BoolVar(&noWait, "no-wait", false, "answer once the import began")
	completeFlag(importCmd, "format", "raw", "qcow2", "vmdk", "vhdx")
	list := &cobra.Command{
		Use: "list", Short: "List the store's images, the disks backed by each, and the imports under way",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.Images, error) {
				return c.Images(ctx)
			}, func(l api.Images) func(*tabwriter.Writer) { return imagesTable(l.Images...) })
		},
	}
	get := &cobra.Command{
		Use: "get NAME", Short: "Show one image, or its import's progress",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.Image, error) {
				return c.Image(ctx, args[0])
			}, func(i api.Image) func(*tabwriter.Writer) { return imagesTable(i) })
		},
	}
	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete an image; refused while any disk is backed by it",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := g.ctx()
			defer cancel()
			return g.client().DeleteImage(ctx, args[0])
		},
	}
	var captureNoWait bool
	capture := &cobra.Command{
		Use: "capture VM DISK NAME", Short: "Turn a disk of a VM that is off into a new image, flattened",
		Args: cobra.ExactArgs(3), ValidArgsFunction: g.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.followImage(cmd, captureNoWait, func(ctx context.Context, c *agentclient.Client) (api.Image, error) {
				return c.CaptureDiskImage(ctx, args[0], args[1], args[2], false)
			})
		},
	}
	capture.Flags().BoolVar(&captureNoWait, "no-wait", false, "answer once the copy began")
	image.AddCommand(importCmd, list, get, del, capture)
	return image
}

// followImage starts an import, then reads its progress until it ended,
// printing it on stderr (for people: the answer on stdout stays one
// image, also with -o json).
func (g *globals) followImage(cmd *cobra.Command, noWait bool, start func(context.Context, *agentclient.Client) (api.Image, error)) error {
	ctx, cancel := g.ctx()
	defer cancel()
	c := g.client()
	img, err := start(ctx, c)
	if err != nil {
		return err
	}
	progress := cmd.ErrOrStderr()
	last := -1.0
	for !noWait && img.State == api.ImageImporting {
		if img.Progress != last {
			fmt.Fprintf(progress, "importing %s: %.0f%%\n", img.Name, img.Progress)
			last = img.Progress
		}
		select {
		case <-ctx.Done():
			return errdefs.DeadlineExceeded("image %s is still being imported: %v", img.Name, ctx.Err())
		case <-time.After(imagePollInterval):
		}
		if img, err = c.Image(ctx, img.Name); err != nil {
			return err
		}
	}
	if img.State == api.ImageFailed {
		return fmt.Errorf("import of image %s failed: %s", img.Name, img.Error)
	}
	return g.print(img, imagesTable(img))
}

func imagesTable(imgs ...api.Image) func(*tabwriter.Writer) {
	return func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "NAME\tSTATE\tSIZE\tALLOCATED\tCREATED\tUSED BY")
		for _, i := range imgs {
			state := string(i.State)
			if i.State == api.ImageImporting {
				state = fmt.Sprintf("importing %.0f%%", i.Progress)
			}
			users := "-"
			if len(i.UsedBy) > 0 {
				var l []string
				for _, u := range i.UsedBy {
					l = append(l, u.VMID+"/"+u.Disk)
				}
				users = strings.Join(l, ", ")
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", i.Name, state, bytesText(i.VirtualSizeBytes),
				bytesText(i.AllocatedBytes), i.CreatedAt.Format(time.RFC3339), users)
		}
	}
}
