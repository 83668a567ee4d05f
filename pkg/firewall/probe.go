package firewall

import (
	"context"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// probeTable is the throwaway table a probe batch creates and deletes.
const probeTable = "infinivirt-probe"

// Probe finds what the kernel offers the bridge family, in the caller's
// network namespace.
func Probe(ctx context.Context) (Capabilities, error) { return ProbeNetNS(ctx, 0) }

// ProbeNetNS is Probe in the network namespace behind netnsFd (0: the
// caller's).
//
// Each feature is tried in one batch that creates a throwaway table with a
// forward base chain jumping to a chain that uses the feature, then deletes
// the table. A batch is all or nothing, so nothing is left behind either
// way, and the feature is checked exactly where the rules would use it.
func ProbeNetNS(ctx context.Context, netnsFd int) (Capabilities, error) {
	c, err := dial(ctx, netnsFd, 0)
	if err != nil {
		return Capabilities{}, err
	}
	defer c.close()
	try := func(exprs ...expr.Any) error {
		t := &nftables.Table{Family: nftables.TableFamilyBridge, Name: probeTable}
		c.AddTable(t)
		c.DelTable(t)
		c.AddTable(t)
		hook, prio, accept := *nftables.ChainHookForward, nftables.ChainPriority(0), nftables.ChainPolicyAccept
		base := c.AddChain(&nftables.Chain{Name: "base", Table: t, Hooknum: &hook, Priority: &prio,
			Type: nftables.ChainTypeFilter, Policy: &accept})
		sub := c.AddChain(&nftables.Chain{Name: "feature", Table: t})
		c.AddRule(&nftables.Rule{Table: t, Chain: base, Exprs: []expr.Any{jump(sub.Name)}})
		c.AddRule(&nftables.Rule{Table: t, Chain: sub, Exprs: exprs})
		c.DelTable(t)
		return c.flush(ctx)
	}
	// A plain rule must work, or the probe says nothing about features.
	if err := try(&expr.Counter{}, verdict(expr.VerdictAccept)); err != nil {
		return Capabilities{}, fmt.Errorf("nftables bridge family unusable: %w", err)
	}
	var caps Capabilities
	caps.Conntrack = try(matchCtState(&ConnectionState{Established: true, Related: true})...) == nil
	caps.Reject = try(cat(matchL4(protoTCP), []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}})...) == nil &&
		try(&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED}) == nil
	caps.BridgeMeta = try(meta(expr.MetaKeyBRIIIFNAME), cmp(expr.CmpOpEq, ifnameKey("br0")), verdict(expr.VerdictAccept)) == nil
	return caps, ctx.Err()
}
