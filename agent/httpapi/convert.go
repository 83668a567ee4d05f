package httpapi

import (
	"github.com/infinibay/infinivirt/agent"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/firewall"
	"github.com/infinibay/infinivirt/pkg/netdev"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// The agent works on the libraries' own types; the API speaks pkg/api's.
// They share one JSON form (convert_test.go holds them to it), and these
// functions carry each field across.

func fromRule(r firewall.Rule) api.FirewallRule {
	out := api.FirewallRule{
		ID: r.ID, Name: r.Name, Description: r.Description,
		Action: api.FirewallAction(r.Action), Direction: api.FirewallDirection(r.Direction),
		Priority: r.Priority, Protocol: api.FirewallProtocol(r.Protocol),
		SrcPortStart: r.SrcPortStart, SrcPortEnd: r.SrcPortEnd, DstPortStart: r.DstPortStart, DstPortEnd: r.DstPortEnd,
		SrcIPAddr: r.SrcIPAddr, SrcIPMask: r.SrcIPMask, DstIPAddr: r.DstIPAddr, DstIPMask: r.DstIPMask,
		OverridesDept: r.OverridesDept,
	}
	if c := r.ConnectionState; c != nil {
		out.ConnectionState = &api.ConnectionState{Established: c.Established, New: c.New, Related: c.Related, Invalid: c.Invalid}
	}
	return out
}

func toRule(r api.FirewallRule) firewall.Rule {
	out := firewall.Rule{
		ID: r.ID, Name: r.Name, Description: r.Description,
		Action: firewall.Action(r.Action), Direction: firewall.Direction(r.Direction),
		Priority: r.Priority, Protocol: firewall.Protocol(r.Protocol),
		SrcPortStart: r.SrcPortStart, SrcPortEnd: r.SrcPortEnd, DstPortStart: r.DstPortStart, DstPortEnd: r.DstPortEnd,
		SrcIPAddr: r.SrcIPAddr, SrcIPMask: r.SrcIPMask, DstIPAddr: r.DstIPAddr, DstIPMask: r.DstIPMask,
		OverridesDept: r.OverridesDept,
	}
	if c := r.ConnectionState; c != nil {
		out.ConnectionState = &firewall.ConnectionState{Established: c.Established, New: c.New, Related: c.Related, Invalid: c.Invalid}
	}
	return out
}

// mapSlice keeps nil as nil, so that an absent list stays absent.
func mapSlice[From, To any](in []From, f func(From) To) []To {
	if in == nil {
		return nil
	}
	out := make([]To, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

func fromRuleSet(rs firewall.RuleSet) api.FirewallRuleSet {
	return api.FirewallRuleSet{
		Rules:   mapSlice(rs.Rules, fromRule),
		Presets: mapSlice(rs.Presets, func(p firewall.Preset) api.FirewallPreset { return api.FirewallPreset(p) }),
	}
}

func toRuleSet(rs api.FirewallRuleSet) firewall.RuleSet {
	return firewall.RuleSet{
		Rules:   mapSlice(rs.Rules, toRule),
		Presets: mapSlice(rs.Presets, func(p api.FirewallPreset) firewall.Preset { return firewall.Preset(p) }),
	}
}

func fromDepartment(d firewall.Department) api.Department {
	return api.Department{
		ID: d.ID,
		Policy: api.DepartmentPolicy{Policy: api.FirewallPolicy(d.Policy.Policy),
			DefaultConfig: api.FirewallDefaultConfig(d.Policy.DefaultConfig)},
		RuleSet: fromRuleSet(d.RuleSet),
	}
}

func toDepartment(d api.Department) firewall.Department {
	return firewall.Department{
		ID: d.ID,
		Policy: firewall.DepartmentPolicy{Policy: firewall.Policy(d.Policy.Policy),
			DefaultConfig: firewall.DefaultConfig(d.Policy.DefaultConfig)},
		RuleSet: toRuleSet(d.RuleSet),
	}
}

func fromVMFirewall(f vmspec.VMFirewall) api.VMFirewall {
	return api.VMFirewall{Department: f.Department, RuleSet: fromRuleSet(f.RuleSet), IPs: f.IPs, NICIPs: f.NICIPs}
}

func toVMFirewall(f api.VMFirewall) vmspec.VMFirewall {
	return vmspec.VMFirewall{Department: f.Department, RuleSet: toRuleSet(f.RuleSet), IPs: f.IPs, NICIPs: f.NICIPs}
}

func fromCapabilities(c firewall.Capabilities) api.FirewallCapabilities {
	return api.FirewallCapabilities{Conntrack: c.Conntrack, Reject: c.Reject, BridgeMeta: c.BridgeMeta}
}

func fromFirewallInfo(i agent.FirewallInfo) api.FirewallInfo {
	return api.FirewallInfo{Mode: api.FirewallMode(i.Mode), Capabilities: fromCapabilities(i.Capabilities)}
}

func fromEntry(e firewall.Entry) api.FirewallEntry {
	return api.FirewallEntry{Rule: fromRule(e.Rule), Origin: api.FirewallOrigin(e.Origin),
		Dir: api.FirewallDirection(e.Dir), Reply: e.Reply}
}

func fromOverride(o firewall.Override) api.FirewallOverride {
	return api.FirewallOverride{Department: fromRule(o.Department), Dir: api.FirewallDirection(o.Dir), By: fromRule(o.By)}
}

func fromEffective(e agent.EffectiveFirewall) api.EffectiveFirewall {
	return api.EffectiveFirewall{
		Mode:       api.FirewallMode(e.Mode),
		Department: e.Department,
		Effective: api.FirewallEffective{
			In:         mapSlice(e.Effective.In, fromEntry),
			Out:        mapSlice(e.Effective.Out, fromEntry),
			Overridden: mapSlice(e.Effective.Overridden, fromOverride),
			Terminal:   api.FirewallAction(e.Effective.Terminal),
		},
		Kernel:      e.Kernel,
		Counters:    e.Counters,
		NICCounters: e.NICCounters,
	}
}

func fromBridge(b netdev.BridgeInfo) api.BridgeInfo {
	out := api.BridgeInfo{Name: b.Name, Index: b.Index, MTU: b.MTU, Up: b.Up, Ports: b.Ports, Addresses: b.Addresses}
	if len(b.MAC) > 0 {
		out.MAC = b.MAC.String()
	}
	return out
}

func toBridgeRequest(r api.BridgeRequest) agent.BridgeRequest {
	return agent.BridgeRequest{MAC: r.MAC, MTU: r.MTU, Addresses: r.Addresses}
}
