package firewall

import (
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// Names of what Infinivirt owns in the kernel.
const (
	TableName = "infinivirt"

	// Dispatch maps, keyed by TAP name: frames a VM sends (iifname) and
	// frames to a VM (oifname).
	mapFromVM = "vm-out"
	mapToVM   = "vm-in"

	// Base chains. A VM's OUT check and the receiving VM's IN check sit in
	// two base chains at the forward hook, so that an accept in the first
	// (which ends only that base chain) still meets the second.
	chainFromVMForward = "from-vm-forward"
	chainToVMForward   = "to-vm-forward"
	chainFromVMInput   = "from-vm-input"
	chainToVMOutput    = "to-vm-output"

	setICMPRequest = "icmp-request"
	setICMPReply   = "icmp-reply"
	setICMPError   = "icmp-error"

	// Bridge filter priorities: the from-VM check runs first.
	priorityFromVM = -200
	priorityToVM   = -190
)

var table = &nftables.Table{Family: nftables.TableFamilyBridge, Name: TableName}

// NIC object names: "vm-<id>-..." for the primary NIC, as before VMs had
// several, and "vm-<id>.<nic>-..." for the others. Neither VM IDs nor NIC
// names hold a '.', so no two NICs share a name.
func nicObjectPrefix(vmID, nic string) string {
	if nic == PrimaryNIC {
		return "vm-" + vmID
	}
	return "vm-" + vmID + "." + nic
}

func vmChain(vmID, nic string, d Direction) string {
	return nicObjectPrefix(vmID, nic) + "-" + dirName(d)
}
func vmIPSet(vmID, nic string) string { return nicObjectPrefix(vmID, nic) + "-ips" }

// nicOfChain is the NIC whose chain of the VM name is, if it is one.
func nicOfChain(vmID, name string) (string, bool) {
	var rest string
	for _, d := range []Direction{Out, In} {
		if r, ok := strings.CutSuffix(name, "-"+dirName(d)); ok {
			rest = r
			break
		}
	}
	if rest == "vm-"+vmID {
		return PrimaryNIC, true
	}
	nic, ok := strings.CutPrefix(rest, "vm-"+vmID+".")
	return nic, ok && nicRE.MatchString(nic)
}

// Counter kinds for what the anti-spoofing rules drop.
const (
	CounterSpoofMAC  = "spoof-mac"  // a source MAC other than the VM's
	CounterSpoofARP  = "spoof-arp"  // ARP claiming another MAC or IP
	CounterSpoofIP   = "spoof-ip"   // an IPv4 source other than the VM's
	CounterRogueDHCP = "rogue-dhcp" // DHCP server replies sent by the VM
)

var counterKinds = []string{CounterSpoofMAC, CounterSpoofARP, CounterSpoofIP, CounterRogueDHCP}

func vmCounter(vmID, nic, kind string) string { return nicObjectPrefix(vmID, nic) + "-" + kind }

func deptPrefix(id string) string { return "dept-" + id + "-" }

func dirName(d Direction) string {
	if d == In {
		return "in"
	}
	return "out"
}

// deptChain names a department's shared chain for one direction and
// priority. The names are stable: a department edit rewrites the chains in
// place, and VM chains that jump to them need no change.
func deptChain(id string, d Direction, prio int) string {
	return fmt.Sprintf("%s%s-p%d", deptPrefix(id), dirName(d), prio)
}

// deptEndChain holds the policy's terminal action for one direction.
func deptEndChain(id string, d Direction) string { return deptPrefix(id) + dirName(d) + "-end" }

// Plan is a rendered piece of the ruleset: the objects a batch writes, in
// the order the kernel needs them. Text gives its stable textual form.
type Plan struct {
	sets     []*planSet
	counters []planCounter
	chains   []*planChain
	dispatch []dispatchEntry
	// deptID and layout: the department and the names of its chains.
	deptID string
	layout []string
}

// owner says what an object belongs to: the table skeleton, the
// department or one VM.
type owner struct {
	dept bool
	vmID string
}

type planSet struct {
	owner
	set   *nftables.Set
	elems []nftables.SetElement
	// replace flushes the set before adding; shared sets are only added to.
	replace bool
}

type planCounter struct {
	owner
	name string
}

type planChain struct {
	owner
	chain *nftables.Chain
	rules []*nftables.Rule
}

type dispatchEntry struct {
	vmID, nic, tap string
}

// dispatch is the VM's dispatch entries, one per NIC.
func (v VM) dispatch() []dispatchEntry {
	var out []dispatchEntry
	for _, n := range v.NICs {
		out = append(out, dispatchEntry{vmID: v.ID, nic: n.Name, tap: n.TAP})
	}
	return out
}

func (p *Plan) addChain(o owner, c *nftables.Chain) *planChain {
	c.Table = table
	pc := &planChain{owner: o, chain: c}
	p.chains = append(p.chains, pc)
	return pc
}

// subset keeps the skeleton, the department chains for which dept is true
// and everything of the VMs for which vm is true.
func (p *Plan) subset(dept func(name string) bool, vm func(id string) bool) *Plan {
	keep := func(o owner, name string) bool {
		switch {
		case o.dept:
			return dept(name)
		case o.vmID != "":
			return vm(o.vmID)
		}
		return true
	}
	q := &Plan{deptID: p.deptID, layout: p.layout}
	for _, s := range p.sets {
		if keep(s.owner, s.set.Name) {
			q.sets = append(q.sets, s)
		}
	}
	for _, c := range p.counters {
		if keep(c.owner, c.name) {
			q.counters = append(q.counters, c)
		}
	}
	for _, c := range p.chains {
		if keep(c.owner, c.chain.Name) {
			q.chains = append(q.chains, c)
		}
	}
	for _, d := range p.dispatch {
		if vm(d.vmID) {
			q.dispatch = append(q.dispatch, d)
		}
	}
	return q
}

// add appends a rule with a comment saying where it came from.
func (pc *planChain) add(comment string, exprs ...expr.Any) {
	r := &nftables.Rule{Table: table, Chain: pc.chain, Exprs: exprs}
	if comment != "" {
		r.UserData = userdata.AppendString(nil, userdata.TypeComment, comment)
	}
	pc.rules = append(pc.rules, r)
}

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// renderBase renders the table's fixed skeleton: dispatch maps, ICMP class
// sets and the four base chains.
func (p *Plan) renderBase() {
	from, to := dispatchSets()
	p.sets = append(p.sets, &planSet{set: from}, &planSet{set: to})
	for _, s := range []struct {
		name  string
		types []byte
	}{{setICMPRequest, icmpRequestTypes}, {setICMPReply, icmpReplyTypes}, {setICMPError, icmpErrorTypes}} {
		ps := &planSet{set: &nftables.Set{Table: table, Name: s.name, KeyType: nftables.TypeICMPType}}
		for _, t := range s.types {
			ps.elems = append(ps.elems, nftables.SetElement{Key: []byte{t}})
		}
		p.sets = append(p.sets, ps)
	}
	accept := nftables.ChainPolicyAccept
	base := func(name string, hook nftables.ChainHook, prio int, key expr.MetaKey, m string) {
		pr := nftables.ChainPriority(prio)
		pc := p.addChain(owner{}, &nftables.Chain{Name: name, Hooknum: &hook, Priority: &pr, Type: nftables.ChainTypeFilter, Policy: &accept})
		pc.add("", meta(key), &expr.Lookup{SourceRegister: reg, SetName: m, DestRegister: 0, IsDestRegSet: true})
	}
	base(chainFromVMForward, *nftables.ChainHookForward, priorityFromVM, expr.MetaKeyIIFNAME, mapFromVM)
	base(chainToVMForward, *nftables.ChainHookForward, priorityToVM, expr.MetaKeyOIFNAME, mapToVM)
	base(chainFromVMInput, *nftables.ChainHookInput, priorityFromVM, expr.MetaKeyIIFNAME, mapFromVM)
	base(chainToVMOutput, *nftables.ChainHookOutput, priorityFromVM, expr.MetaKeyOIFNAME, mapToVM)
}

// band is the department entries of one direction and priority: one shared
// chain.
type band struct {
	dir     Direction
	prio    int
	entries []Entry
}

// fixedBands are the priorities every department has a chain for, empty
// or not: the policy's (replies, default config) and those of rules and
// presets written without a priority. Editing rules at these priorities,
// toggling presets or changing the policy then never changes which chains
// a VM jumps to, so no VM chain needs rewriting.
var fixedBands = []int{EstablishedPriority, DefaultConfigPriority, DefaultPriority, PresetPriority}

func departmentBands(d Department, m Mode) []band {
	entries := departmentEntries(d, m.Stateless)
	sortEntries(entries)
	var out []band
	for _, dir := range []Direction{Out, In} {
		prios := slices.Clone(fixedBands)
		for _, e := range entries {
			if e.Dir == dir && !slices.Contains(prios, e.priority()) {
				prios = append(prios, e.priority())
			}
		}
		slices.Sort(prios)
		for _, prio := range prios {
			b := band{dir: dir, prio: prio}
			for _, e := range entries {
				if e.Dir == dir && e.priority() == prio {
					b.entries = append(b.entries, e)
				}
			}
			out = append(out, b)
		}
	}
	return out
}

// entryComment tags a kernel rule with the rule it comes from.
func entryComment(e Entry) string {
	id := e.Rule.ID
	if id == "" {
		id = "#" + fmt.Sprint(e.key.index)
	}
	c := string(e.Origin) + ":" + id
	if e.Reply {
		c += ":reply"
	}
	return c
}

func (pc *planChain) addEntry(e Entry, m Mode) {
	for _, match := range entryMatches(e, m) {
		pc.add(entryComment(e), cat(match, actionExprs(e.Rule.Action, e.Rule.Protocol))...)
	}
}

// renderDepartment renders the department's shared chains, one per
// direction and priority and one per direction for the terminal action,
// and returns its bands.
func (p *Plan) renderDepartment(d Department, m Mode) []band {
	bands := departmentBands(d, m)
	o := owner{dept: true}
	for _, b := range bands {
		pc := p.addChain(o, &nftables.Chain{Name: deptChain(d.ID, b.dir, b.prio)})
		for _, e := range b.entries {
			pc.addEntry(e, m)
		}
	}
	for _, dir := range []Direction{Out, In} {
		pc := p.addChain(o, &nftables.Chain{Name: deptEndChain(d.ID, dir)})
		pc.add("policy:"+string(d.Policy.Policy), actionExprs(d.Policy.Terminal(), All)...)
	}
	p.deptID = d.ID
	for _, c := range p.chains {
		if c.dept {
			p.layout = append(p.layout, c.chain.Name)
		}
	}
	return bands
}

// renderVM renders one VM: for each NIC its address set, counters, chains
// and dispatch entries. Every NIC's chains hold the VM's rules.
func (p *Plan) renderVM(d Department, bands []band, v VM, m Mode) {
	eff := ComputeEffective(d, v, m.Stateless)
	for _, n := range v.NICs {
		p.renderNIC(d, bands, v.ID, n, eff, m)
	}
}

func (p *Plan) renderNIC(d Department, bands []band, vmID string, n NIC, eff Effective, m Mode) {
	mac, _ := parseUnicastMAC(n.MAC)
	o := owner{vmID: vmID}
	ips := &planSet{owner: o, set: &nftables.Set{Table: table, Name: vmIPSet(vmID, n.Name), KeyType: nftables.TypeIPAddr}, replace: true}
	for _, a := range n.IPs {
		b := a.As4()
		ips.elems = append(ips.elems, nftables.SetElement{Key: b[:]})
	}
	p.sets = append(p.sets, ips)
	for _, k := range counterKinds {
		p.counters = append(p.counters, planCounter{o, vmCounter(vmID, n.Name, k)})
	}

	out := p.addChain(o, &nftables.Chain{Name: vmChain(vmID, n.Name, Out)})
	in := p.addChain(o, &nftables.Chain{Name: vmChain(vmID, n.Name, In)})
	p.renderGuards(out, in, vmID, n, mac)
	for _, c := range []struct {
		pc      *planChain
		dir     Direction
		entries []Entry
	}{{out, Out, eff.Out}, {in, In, eff.In}} {
		renderMerged(c.pc, d, bands, c.dir, c.entries, m)
		c.pc.add("", jump(deptEndChain(d.ID, c.dir)))
	}
	p.dispatch = append(p.dispatch, dispatchEntry{vmID: vmID, nic: n.Name, tap: n.TAP})
}

// renderGuards writes the always-on rules: anti-spoofing and DHCP for the
// NIC's own TAP, and ARP, which every policy lets through once it passed.
func (p *Plan) renderGuards(out, in *planChain, vmID string, n NIC, mac net.HardwareAddr) {
	spoof := func(kind string) []expr.Any {
		return []expr.Any{namedCounter(vmCounter(vmID, n.Name, kind)), verdict(expr.VerdictDrop)}
	}
	ipSet := vmIPSet(vmID, n.Name)
	out.add("guard:mac", cat([]expr.Any{load(expr.PayloadBaseLLHeader, 6, 6), cmp(expr.CmpOpNeq, mac)}, spoof(CounterSpoofMAC))...)
	arp := matchEtherType(etherARP)
	out.add("guard:arp-mac", cat(arp, []expr.Any{load(expr.PayloadBaseNetworkHeader, 8, 6), cmp(expr.CmpOpNeq, mac)},
		spoof(CounterSpoofARP))...)
	known := len(n.IPs) > 0
	if known {
		// An ARP probe (sender 0.0.0.0) claims nothing, so it may pass.
		out.add("guard:arp-ip", cat(arp, []expr.Any{
			load(expr.PayloadBaseNetworkHeader, 14, 4), cmp(expr.CmpOpNeq, make([]byte, 4)),
			load(expr.PayloadBaseNetworkHeader, 14, 4), &expr.Lookup{SourceRegister: reg, SetName: ipSet, Invert: true},
		}, spoof(CounterSpoofARP))...)
	}
	out.add("guard:arp", cat(arp, []expr.Any{verdict(expr.VerdictAccept)})...)
	dhcp := func(sport, dport int) []expr.Any {
		return cat(matchL4(protoUDP), matchPorts(0, PortRange{sport, sport}), matchPorts(2, PortRange{dport, dport}))
	}
	out.add("guard:dhcp-server", cat(dhcp(67, 68), spoof(CounterRogueDHCP))...)
	out.add("guard:dhcp-client", cat(dhcp(68, 67), []expr.Any{verdict(expr.VerdictAccept)})...)
	if known {
		out.add("guard:ip", cat(matchEtherType(etherIPv4), []expr.Any{
			load(expr.PayloadBaseNetworkHeader, 12, 4), &expr.Lookup{SourceRegister: reg, SetName: ipSet, Invert: true},
		}, spoof(CounterSpoofIP))...)
	}
	in.add("guard:arp", cat(arp, []expr.Any{verdict(expr.VerdictAccept)})...)
	in.add("guard:dhcp-server", cat(dhcp(67, 68), []expr.Any{verdict(expr.VerdictAccept)})...)
}

// renderMerged writes a VM's merged list for one direction: its own entries
// inline, and for each department band, in priority order, either one jump
// to the shared chain or, when the VM overrides part of the band, the rest
// of the band inline. An empty band is jumped to all the same, so that
// rules added to it later reach the VM without rewriting its chain.
func renderMerged(pc *planChain, d Department, bands []band, dir Direction, entries []Entry, m Mode) {
	have := map[entryKey]bool{}
	for _, e := range entries {
		have[e.key] = true
	}
	var mine []Entry // the VM's own entries, in order
	for _, e := range entries {
		if !e.Origin.IsDepartment() {
			mine = append(mine, e)
		}
	}
	for _, b := range bands {
		if b.dir != dir {
			continue
		}
		// VM entries come first among equals.
		for len(mine) > 0 && mine[0].priority() <= b.prio {
			pc.addEntry(mine[0], m)
			mine = mine[1:]
		}
		whole := true
		for _, be := range b.entries {
			whole = whole && have[be.key]
		}
		if whole {
			pc.add("", jump(deptChain(d.ID, dir, b.prio)))
			continue
		}
		for _, be := range b.entries {
			if have[be.key] {
				pc.addEntry(be, m)
			}
		}
	}
	for _, e := range mine {
		pc.addEntry(e, m)
	}
}

// Render checks the department and VMs against the mode and renders them:
// the table skeleton, the department's shared chains and each VM's chains
// and dispatch entries.
func Render(m Mode, d Department, vms ...VM) (*Plan, error) {
	return render(m, d, vms, func(VM) bool { return true })
}

// render checks everything and renders the VMs for which want is true.
func render(m Mode, d Department, vms []VM, want func(VM) bool) (*Plan, error) {
	if err := m.CheckDepartment(d); err != nil {
		return nil, prefixField(err, "department")
	}
	seen := map[string]int{}
	taps := map[string]int{}
	for i, v := range vms {
		if err := m.CheckVM(v); err != nil {
			return nil, prefixField(err, fmt.Sprintf("vms[%d]", i))
		}
		if j, dup := seen[v.ID]; dup {
			return nil, prefixField(errdefs.Invalid("id", "%q is also vms[%d]", v.ID, j), fmt.Sprintf("vms[%d]", i))
		}
		for k, n := range v.NICs {
			if j, dup := taps[n.TAP]; dup && j != i {
				return nil, prefixField(errdefs.Invalid("tap", "%q is also a TAP of vms[%d]", n.TAP, j), fmt.Sprintf("vms[%d].nics[%d]", i, k))
			}
			taps[n.TAP] = i
		}
		seen[v.ID] = i
	}
	p := &Plan{}
	p.renderBase()
	bands := p.renderDepartment(d, m)
	for _, v := range vms {
		if want(v) {
			p.renderVM(d, bands, v, m)
		}
	}
	return p, nil
}

// Text is the plan's stable textual form: what the goldens hold and what
// the read-back is compared with.
func (p *Plan) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table bridge %s\n", TableName)
	for _, s := range p.sets {
		writeSet(&b, s.set, s.elems)
	}
	for _, c := range p.counters {
		fmt.Fprintf(&b, "counter %s\n", c.name)
	}
	for _, c := range p.chains {
		writeChain(&b, c.chain, c.rules)
	}
	if len(p.dispatch) > 0 {
		b.WriteString("dispatch\n")
		for _, d := range p.dispatch {
			fmt.Fprintf(&b, "\t%s @%s: jump %s, @%s: jump %s\n", quote(d.tap), mapFromVM, vmChain(d.vmID, d.nic, Out), mapToVM, vmChain(d.vmID, d.nic, In))
		}
	}
	return b.String()
}

func writeSet(b *strings.Builder, s *nftables.Set, elems []nftables.SetElement) {
	kind := "set"
	typ := s.KeyType.Name
	if s.IsMap {
		kind = "map"
		typ += " : " + s.DataType.Name
	}
	fmt.Fprintf(b, "%s %s { type %s }\n", kind, s.Name, typ)
	if len(elems) == 0 {
		return
	}
	vk := kindOfSetKey(s.KeyType)
	var vals []string
	for _, e := range elems {
		vals = append(vals, formatValue(vk, e.Key))
	}
	sort.Strings(vals)
	fmt.Fprintf(b, "\telements %s\n", strings.Join(vals, ", "))
}

func writeChain(b *strings.Builder, c *nftables.Chain, rules []*nftables.Rule) {
	fmt.Fprintf(b, "chain %s", c.Name)
	if c.Hooknum != nil {
		fmt.Fprintf(b, " { hook %s priority %d policy %s }", hookName(*c.Hooknum), int32(*c.Priority), policyName(c.Policy))
	}
	b.WriteString("\n")
	for _, r := range rules {
		fmt.Fprintf(b, "\t%s\n", RuleText(r))
	}
}

func hookName(h nftables.ChainHook) string {
	switch h {
	case *nftables.ChainHookPrerouting:
		return "prerouting"
	case *nftables.ChainHookInput:
		return "input"
	case *nftables.ChainHookForward:
		return "forward"
	case *nftables.ChainHookOutput:
		return "output"
	case *nftables.ChainHookPostrouting:
		return "postrouting"
	}
	return fmt.Sprintf("hook%d", h)
}

func policyName(p *nftables.ChainPolicy) string {
	if p != nil && *p == nftables.ChainPolicyDrop {
		return "drop"
	}
	return "accept"
}
