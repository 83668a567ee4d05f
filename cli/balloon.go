package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/infinibay/infinivirt/pkg/agentclient"
	"github.com/infinibay/infinivirt/pkg/api"
)

// vmBalloon is `vm balloon`: set the memory a VM's balloon leaves its guest.
func vmBalloon(g *globals) *cobra.Command {
	var req api.BalloonRequest
	cmd := &cobra.Command{
		Use:   "balloon VM --target-mib N",
		Short: "Set the memory the VM's balloon leaves its guest (live on a running VM, kept for every start)",
		Long: "Set the memory the VM's balloon leaves its guest, in MiB (--target-mib) or GiB (--target-gb), up to the\n" +
			"VM's memory, which removes the target. `vm get` shows what the guest has now.",
		Args: cobra.ExactArgs(1), ValidArgsFunction: g.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.VMMemory, error) {
				return c.SetBalloon(ctx, args[0], req)
			}, memoryTable)
		},
	}
	cmd.Flags().IntVar(&req.TargetMiB, "target-mib", 0, "the memory the guest keeps, in MiB")
	cmd.Flags().Float64Var(&req.TargetGB, "target-gb", 0, "the memory the guest keeps, in GiB (a whole number of MiB)")
	return cmd
}

func memoryTable(m api.VMMemory) func(*tabwriter.Writer) {
	return func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "MEMORY\tTARGET\tACTUAL\tGUEST TOTAL\tGUEST AVAILABLE\tREPORTED")
		actual, total, avail, at := "-", "-", "-", "-"
		if m.ActualBytes != 0 {
			actual = bytesText(m.ActualBytes)
		}
		if s := m.Stats; s != nil {
			if s.TotalBytes != nil {
				total = bytesText(*s.TotalBytes)
			}
			if s.AvailableBytes != nil {
				avail = bytesText(*s.AvailableBytes)
			}
			at = s.LastUpdate.Local().Format(time.DateTime)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", bytesText(m.TotalBytes), bytesText(m.TargetBytes), actual, total, avail, at)
	}
}

// vmDetail is one VM's row, and its memory when it has a balloon.
func vmDetail(v api.VM) func(*tabwriter.Writer) {
	return func(w *tabwriter.Writer) {
		vmTable(v)(w)
		if v.Memory != nil {
			fmt.Fprintln(w)
			memoryTable(*v.Memory)(w)
		}
	}
}
