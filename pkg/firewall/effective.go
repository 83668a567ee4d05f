package firewall

import "sort"

// Origin says where an effective rule came from.
type Origin string

// The origins of effective rules.
const (
	FromVM               Origin = "vm"                // the VM's own rules
	FromVMPreset         Origin = "vm-preset"         // the VM's presets
	FromDepartment       Origin = "department"        // the department's rules
	FromDepartmentPreset Origin = "department-preset" // the department's presets
	// FromPolicy marks the department policy's own rules: its default config
	// and the rule that lets replies through.
	FromPolicy Origin = "policy"
)

// IsDepartment reports whether the rule is inherited from the department.
func (o Origin) IsDepartment() bool { return o != FromVM && o != FromVMPreset }

// EstablishedRuleID is the ID of the policy rule that accepts replies.
const EstablishedRuleID = "system:established"

// establishedRule lets replies through, as Infinibay's system rule does.
// Stateful mode renders it as "ct state established,related"; stateless mode
// replaces it with the reply rules of every accepted flow.
func establishedRule() Rule {
	return Rule{ID: EstablishedRuleID, Name: "Allow established connections", Action: Accept, Direction: InOut,
		Priority: EstablishedPriority, Protocol: All, ConnectionState: &ConnectionState{Established: true, Related: true}}
}

// Entry is one rule as it applies to one direction of one VM.
type Entry struct {
	Rule   Rule      `json:"rule"`
	Origin Origin    `json:"origin"`
	Dir    Direction `json:"dir"` // In or Out: the chain the entry lands in
	// Reply marks the stateless reply of Rule: the same flow seen the other
	// way (addresses and ports swapped), for established packets only.
	Reply bool `json:"reply,omitempty"`
	// seq orders entries of the same priority and level; key identifies the
	// entry across the department's shared chains and a VM's own list.
	seq int
	key entryKey
}

type entryKey struct {
	origin Origin
	index  int
	dir    Direction
	reply  bool
}

// Override records one direction of a department rule that a VM rule
// replaced.
type Override struct {
	Department Rule      `json:"department"`
	Dir        Direction `json:"dir"`
	By         Rule      `json:"by"`
}

// Effective is what a VM's traffic meets, in evaluation order.
type Effective struct {
	In         []Entry    `json:"in"`
	Out        []Entry    `json:"out"`
	Overridden []Override `json:"overridden,omitempty"`
	Terminal   Action     `json:"terminal"`
}

// halves splits a rule into the directions it applies to.
func halves(r Rule) []Direction {
	switch r.Direction {
	case In:
		return []Direction{In}
	case Out:
		return []Direction{Out}
	default:
		return []Direction{In, Out}
	}
}

func opposite(d Direction) Direction {
	if d == In {
		return Out
	}
	return In
}

// SameTraffic reports whether a and b, seen in the same direction, match
// the same traffic: the same protocol, ports and addresses (networks
// compared with host bits cleared). Connection state, action and priority
// do not count.
func SameTraffic(a, b Rule) bool {
	return a.Protocol == b.Protocol &&
		a.SrcPorts() == b.SrcPorts() && a.DstPorts() == b.DstPorts() &&
		a.SrcPrefix() == b.SrcPrefix() && a.DstPrefix() == b.DstPrefix()
}

// sourced is a rule with the list it came from.
type sourced struct {
	rule   Rule
	origin Origin
}

func departmentRules(d Department) []sourced {
	out := []sourced{{establishedRule(), FromPolicy}}
	for _, r := range d.Policy.DefaultRules() {
		out = append(out, sourced{r, FromPolicy})
	}
	for _, r := range d.RuleSet.Rules {
		out = append(out, sourced{r, FromDepartment})
	}
	for _, r := range d.RuleSet.presetRules() {
		out = append(out, sourced{r, FromDepartmentPreset})
	}
	return out
}

func vmRules(v VM) []sourced {
	var out []sourced
	for _, r := range v.RuleSet.Rules {
		out = append(out, sourced{r, FromVM})
	}
	for _, r := range v.RuleSet.presetRules() {
		out = append(out, sourced{r, FromVMPreset})
	}
	return out
}

// directEntries turns rules into per-direction entries, in list order.
func directEntries(rules []sourced) []Entry {
	var out []Entry
	for i, s := range rules {
		for _, d := range halves(s.rule) {
			out = append(out, Entry{Rule: s.rule, Origin: s.origin, Dir: d, seq: len(out),
				key: entryKey{origin: s.origin, index: i, dir: d}})
		}
	}
	return out
}

// ApplyOverrides removes from dept every direction of a department rule
// that a VM rule with overridesDept matches: the same direction, protocol,
// ports and addresses. The policy's established rule cannot be overridden.
// It is a pure function of its inputs.
func ApplyOverrides(dept, vm []Entry) (kept []Entry, overridden []Override) {
	for _, d := range dept {
		var by *Rule
		if d.Rule.ID != EstablishedRuleID {
			for i := range vm {
				v := vm[i]
				if v.Rule.OverridesDept && v.Dir == d.Dir && SameTraffic(v.Rule, d.Rule) {
					by = &vm[i].Rule
					break
				}
			}
		}
		if by != nil {
			overridden = append(overridden, Override{Department: d.Rule, Dir: d.Dir, By: *by})
			continue
		}
		kept = append(kept, d)
	}
	return kept, overridden
}

// replies returns the stateless reply entries of the accepted entries,
// placed where the established rule stands.
func replies(entries []Entry) []Entry {
	var out []Entry
	for _, e := range entries {
		if e.Rule.Action != Accept || e.Rule.ID == EstablishedRuleID {
			continue
		}
		r := e
		r.Dir, r.Reply = opposite(e.Dir), true
		r.key.reply, r.key.dir = true, r.Dir
		out = append(out, r)
	}
	return out
}

// departmentEntries is the department's list for one mode, overrides not
// applied: what its shared chains hold.
func departmentEntries(d Department, stateless bool) []Entry {
	entries := directEntries(departmentRules(d))
	if !stateless {
		return entries
	}
	return withReplies(entries, d.Policy)
}

// withReplies swaps the established rule for the replies of the entries.
// Under ALLOW_ALL the terminal accept lets everything through, so its TCP
// and ICMP replies join them; its UDP replies would be every datagram and
// would undo any DROP rule on UDP, so they do not (see STATELESS.md).
func withReplies(entries []Entry, p DepartmentPolicy) []Entry {
	var out []Entry
	hadEstablished := false
	for _, e := range entries {
		if e.Rule.ID == EstablishedRuleID {
			hadEstablished = true
			continue
		}
		out = append(out, e)
	}
	rs := replies(out)
	if hadEstablished && p.Terminal() == Accept {
		for i, proto := range []Protocol{TCP, ICMP} {
			r := Rule{ID: "terminal:" + string(proto), Name: "Replies under ALLOW_ALL", Action: Accept, Direction: InOut,
				Priority: EstablishedPriority, Protocol: proto}
			for _, d := range halves(r) {
				rs = append(rs, Entry{Rule: r, Origin: FromPolicy, Dir: opposite(d), Reply: true, seq: -2 + i,
					key: entryKey{origin: FromPolicy, index: -1 - i, dir: opposite(d), reply: true}})
			}
		}
	}
	return append(out, rs...)
}

// ComputeEffective merges a department's rules (policy, rules, presets)
// with a VM's (rules, presets): department rules overridden by the VM go,
// and what remains is sorted by priority, VM rules first among equals. In
// stateless mode the established rule becomes the reply entries of every
// accepted flow. It assumes validated inputs.
func ComputeEffective(d Department, v VM, stateless bool) Effective {
	dept, overridden := ApplyOverrides(directEntries(departmentRules(d)), directEntries(vmRules(v)))
	vm := directEntries(vmRules(v))
	if stateless {
		dept, vm = withReplies(dept, d.Policy), withReplies(vm, d.Policy)
	}
	all := append(append([]Entry{}, vm...), dept...)
	sortEntries(all)
	eff := Effective{Overridden: overridden, Terminal: d.Policy.Terminal()}
	for _, e := range all {
		if e.Dir == In {
			eff.In = append(eff.In, e)
		} else {
			eff.Out = append(eff.Out, e)
		}
	}
	return eff
}

// priority is where an entry sorts: replies stand in for the established
// rule, so they sort at its priority.
func (e Entry) priority() int {
	if e.Reply {
		return EstablishedPriority
	}
	return e.Rule.Priority
}

func sortEntries(es []Entry) {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if a.priority() != b.priority() {
			return a.priority() < b.priority()
		}
		if a.Origin.IsDepartment() != b.Origin.IsDepartment() {
			return !a.Origin.IsDepartment()
		}
		if a.Reply != b.Reply {
			return !a.Reply
		}
		return a.seq < b.seq
	})
}
