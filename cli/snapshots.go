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
)

func vmSnapshotCommand(g *globals) *cobra.Command {
	snap := &cobra.Command{Use: "snapshot", Short: "A VM's snapshots: taken, listed, reverted to and deleted"}
	list := &cobra.Command{
		Use: "list VM", Short: "List a VM's snapshots, oldest first",
		Args: cobra.ExactArgs(1), ValidArgsFunction: g.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.Snapshots, error) {
				return c.Snapshots(ctx, args[0])
			}, func(l api.Snapshots) func(*tabwriter.Writer) { return snapshotTable(l.Snapshots...) })
		},
	}
	var req api.CreateSnapshotRequest
	create := &cobra.Command{
		Use: "create VM NAME [--description TEXT] [--memory]", Short: "Take a snapshot of all of a VM's disks",
		Args: cobra.ExactArgs(2), ValidArgsFunction: g.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Name = args[1]
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.Snapshot, error) {
				return c.CreateSnapshot(ctx, args[0], req)
			}, func(s api.Snapshot) func(*tabwriter.Writer) { return snapshotTable(s) })
		},
	}
	create.Flags().StringVar(&req.Description, "description", "", "what the snapshot is for")
	create.Flags().BoolVar(&req.Memory, "memory", false, "include the running guest's RAM")
	var force bool
	revert := &cobra.Command{
		Use: "revert VM NAME [--force]", Short: "Take a VM's disks back to a snapshot; the VM must be off unless --force",
		Args: cobra.ExactArgs(2), ValidArgsFunction: g.completeSnapshots,
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.Snapshot, error) {
				return c.RevertSnapshot(ctx, args[0], args[1], force)
			}, func(s api.Snapshot) func(*tabwriter.Writer) { return snapshotTable(s) })
		},
	}
	revert.Flags().BoolVar(&force, "force", false, "power a running VM off first")
	del := &cobra.Command{
		Use: "delete VM NAME", Short: "Delete a snapshot; the VM's disks as they are stay",
		Args: cobra.ExactArgs(2), ValidArgsFunction: g.completeSnapshots,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := g.ctx()
			defer cancel()
			return g.client().DeleteSnapshot(ctx, args[0], args[1])
		},
	}
	snap.AddCommand(list, create, revert, del)
	return snap
}

func snapshotTable(snaps ...api.Snapshot) func(*tabwriter.Writer) {
	return func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "NAME\tCURRENT\tMEMORY\tSTATE\tCREATED\tDISKS\tDESCRIPTION")
		for _, s := range snaps {
			cur, mem := "", "no"
			if s.IsCurrent {
				cur = "*"
			}
			if s.Memory {
				mem = "yes"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, cur, mem, s.PowerState,
				s.CreatedAt.Local().Format(time.DateTime), strings.Join(s.Disks, ","), s.Description)
		}
	}
}

// completeSnapshots offers VM ids first, then the snapshots of that VM.
func (g *globals) completeSnapshots(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
	if len(args) == 0 {
		return g.completeVMs(cmd, args, s)
	}
	if len(args) > 1 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l, err := g.client().Snapshots(ctx, args[0])
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, sn := range l.Snapshots {
		out = append(out, sn.Name+"\t"+sn.Description)
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
