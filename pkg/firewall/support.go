package firewall

import (
	"fmt"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// Capabilities are the kernel features the bridge family offers, as found
// by Probe.
type Capabilities struct {
	// Conntrack: "ct" expressions in bridge chains (nf_conntrack_bridge).
	Conntrack bool `json:"conntrack"`
	// Reject: "reject" in a chain reached from the bridge forward hook
	// (nft_reject_bridge).
	Reject bool `json:"reject"`
	// BridgeMeta: bridge-only meta keys such as ibrname (nft_meta_bridge).
	// The rendered rules do not need them; they are reported for operators.
	BridgeMeta bool `json:"bridgeMeta"`
}

// Mode is how rules are rendered for a kernel.
type Mode struct {
	Caps Capabilities `json:"caps"`
	// Stateless models connection state from packet headers instead of
	// conntrack; see STATELESS.md for exactly where that is weaker.
	Stateless bool `json:"stateless"`
}

func unsupported(field, format string, args ...any) *errdefs.Error {
	return &errdefs.Error{Code: errdefs.CodeFailedPrecondition, Field: field, Message: fmt.Sprintf(format, args...)}
}

// CheckRule reports whether the mode can enforce r exactly as written, or
// (in stateless mode) never more widely than written. The error is a
// FailedPrecondition naming the field that needs the missing feature.
func (m Mode) CheckRule(r Rule) error {
	if r.Action == Reject && !m.Caps.Reject {
		return unsupported("action", "kernel lacks nft_reject_bridge: REJECT needs it")
	}
	if !r.ConnectionState.Any() {
		return nil
	}
	if !m.Stateless {
		if !m.Caps.Conntrack {
			return unsupported("connectionState", "kernel lacks nf_conntrack_bridge: connectionState needs it")
		}
		return nil
	}
	cs := r.ConnectionState
	switch r.Protocol {
	case TCP, ICMP:
	default:
		return unsupported("connectionState",
			"stateless mode cannot tell the connection state of %s packets: connectionState on them needs nf_conntrack_bridge", r.Protocol)
	}
	// blind is the state the headers cannot show for this protocol.
	blind, blindOn := "related", cs.Related
	if r.Protocol == ICMP {
		blind, blindOn = "invalid", cs.Invalid
	}
	if !blindOn {
		return nil
	}
	if r.Action != Accept {
		return unsupported("connectionState",
			"stateless mode cannot tell %s %s packets, so this %s rule would match less than written: it needs nf_conntrack_bridge",
			blind, r.Protocol, r.Action)
	}
	if len(stateClasses(r.Protocol, cs)) == 0 {
		return unsupported("connectionState",
			"stateless mode cannot tell %s %s packets, so this rule would never match: it needs nf_conntrack_bridge", blind, r.Protocol)
	}
	return nil
}

// CheckRuleSet validates a rule set and checks each rule against the mode,
// naming fields like "rules[2].connectionState".
func (m Mode) CheckRuleSet(s RuleSet) error {
	if err := s.Validate(); err != nil {
		return err
	}
	return m.checkSet(s)
}

// checkSet checks every rule of a rule set against the mode.
func (m Mode) checkSet(s RuleSet) error {
	for i, r := range s.Rules {
		if err := m.CheckRule(r); err != nil {
			return prefixField(err, fmt.Sprintf("rules[%d]", i))
		}
	}
	return nil
}

// CheckDepartment validates d and checks it against the mode.
func (m Mode) CheckDepartment(d Department) error {
	if err := d.Validate(); err != nil {
		return err
	}
	if !m.Stateless && !m.Caps.Conntrack {
		return unsupported("policy",
			"kernel lacks nf_conntrack_bridge: the policy's established-connections rule needs it; use stateless mode")
	}
	return prefixField(m.checkSet(d.RuleSet), "ruleSet")
}

// CheckVM validates v and checks it against the mode.
func (m Mode) CheckVM(v VM) error {
	if err := v.Validate(); err != nil {
		return err
	}
	return prefixField(m.checkSet(v.RuleSet), "ruleSet")
}

// stateClass is a group of packets stateless mode can recognise from
// their headers.
type stateClass int

const (
	tcpNew         stateClass = iota // SYN without ACK or RST
	tcpEstablished                   // ACK or RST set
	tcpInvalid                       // none of SYN, ACK, RST
	icmpRequest                      // echo, timestamp, info and address-mask requests
	icmpReply                        // their replies
	icmpError                        // destination-unreachable, source-quench, redirect, time-exceeded, parameter-problem
)

// stateClasses maps a state selection to header classes. States the
// headers cannot show (related TCP, invalid ICMP) map to nothing.
func stateClasses(p Protocol, cs *ConnectionState) []stateClass {
	var out []stateClass
	switch p {
	case TCP:
		if cs.New {
			out = append(out, tcpNew)
		}
		if cs.Established {
			out = append(out, tcpEstablished)
		}
		if cs.Invalid {
			out = append(out, tcpInvalid)
		}
	case ICMP:
		if cs.New {
			out = append(out, icmpRequest)
		}
		if cs.Established {
			out = append(out, icmpReply)
		}
		if cs.Related {
			out = append(out, icmpError)
		}
	}
	return out
}
