package firewall

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// Action is what a rule does with the traffic it matches.
type Action string

// The actions, as Infinibay spells them.
const (
	Accept Action = "ACCEPT" // let the packet through
	Drop   Action = "DROP"   // discard the packet silently
	Reject Action = "REJECT" // discard it and answer: a TCP reset, or ICMP unreachable
)

// Direction is seen from the VM: IN is traffic to it, OUT traffic from it.
type Direction string

// The directions, as Infinibay spells them.
const (
	In    Direction = "IN"    // traffic to the VM
	Out   Direction = "OUT"   // traffic from the VM
	InOut Direction = "INOUT" // both: the rule lands in both chains
)

// Protocol is the layer-4 protocol a rule matches.
type Protocol string

// The protocols a rule can name. Only tcp and udp take ports.
const (
	TCP  Protocol = "tcp"
	UDP  Protocol = "udp"
	ICMP Protocol = "icmp" // ICMP for IPv4
	All  Protocol = "all"  // any protocol
)

// Priorities. A lower number is evaluated first.
const (
	DefaultPriority = 500
	MinPriority     = 0
	MaxPriority     = 65535
	// EstablishedPriority is where the policy lets replies through.
	EstablishedPriority = 50
	// DefaultConfigPriority is where a policy's default config rules sit, so
	// that rules and presets at the default priority are seen after them,
	// as in Infinibay.
	DefaultConfigPriority = 100
	// PresetPriority is where service presets sit: after rules written at
	// the default priority, so such a rule can narrow a preset.
	PresetPriority = 600
)

const (
	maxRuleNameLen = 128
	maxRuleDescLen = 1024
	maxRulesPerSet = 1000
)

var ruleIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// ConnectionState selects packets by connection-tracking state. A nil or
// all-false value matches every state.
type ConnectionState struct {
	Established bool `json:"established,omitempty"`
	New         bool `json:"new,omitempty"`
	Related     bool `json:"related,omitempty"`
	Invalid     bool `json:"invalid,omitempty"`
}

// Any reports whether the value selects anything narrower than "every state".
func (c *ConnectionState) Any() bool {
	if c == nil {
		return false
	}
	all := c.Established && c.New && c.Related && c.Invalid
	none := !c.Established && !c.New && !c.Related && !c.Invalid
	return !all && !none
}

// String lists the selected states in a fixed order, comma-separated.
func (c *ConnectionState) String() string {
	if !c.Any() {
		return ""
	}
	var s []string
	for _, x := range []struct {
		on   bool
		name string
	}{{c.Established, "established"}, {c.New, "new"}, {c.Related, "related"}, {c.Invalid, "invalid"}} {
		if x.on {
			s = append(s, x.name)
		}
	}
	return strings.Join(s, ",")
}

// Rule is one firewall rule, with Infinibay's FirewallRule field names.
// Ports are 1-65535; an End of 0 means "same as Start". Addresses are IPv4
// literals with an optional mask, written either as a dotted quad
// (255.255.255.0) or as a prefix length (24); the address may also carry
// the prefix itself (10.0.0.0/24) when the mask is empty.
type Rule struct {
	ID              string           `json:"id,omitempty"`
	Name            string           `json:"name,omitempty"`
	Description     string           `json:"description,omitempty"`
	Action          Action           `json:"action"`
	Direction       Direction        `json:"direction"`
	Priority        int              `json:"priority"`
	Protocol        Protocol         `json:"protocol"`
	SrcPortStart    int              `json:"srcPortStart,omitempty"`
	SrcPortEnd      int              `json:"srcPortEnd,omitempty"`
	DstPortStart    int              `json:"dstPortStart,omitempty"`
	DstPortEnd      int              `json:"dstPortEnd,omitempty"`
	SrcIPAddr       string           `json:"srcIpAddr,omitempty"`
	SrcIPMask       string           `json:"srcIpMask,omitempty"`
	DstIPAddr       string           `json:"dstIpAddr,omitempty"`
	DstIPMask       string           `json:"dstIpMask,omitempty"`
	ConnectionState *ConnectionState `json:"connectionState,omitempty"`
	OverridesDept   bool             `json:"overridesDept,omitempty"`
}

// UnmarshalJSON fills Priority with DefaultPriority when the field is absent,
// so that an explicit 0 stays distinguishable from "not given".
func (r *Rule) UnmarshalJSON(b []byte) error {
	type plain Rule
	p := plain{Priority: DefaultPriority}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*r = Rule(p)
	return nil
}

// PortRange is an inclusive range of ports; the zero value matches any port.
type PortRange struct{ Start, End int }

// IsAny reports whether the range does not restrict the port.
func (p PortRange) IsAny() bool { return p.Start == 0 }

func (p PortRange) String() string {
	switch {
	case p.IsAny():
		return "any"
	case p.Start == p.End:
		return strconv.Itoa(p.Start)
	default:
		return fmt.Sprintf("%d-%d", p.Start, p.End)
	}
}

func portRange(start, end int) PortRange {
	if start == 0 {
		return PortRange{}
	}
	if end == 0 {
		end = start
	}
	return PortRange{start, end}
}

// SrcPorts is the rule's normalised source port range.
func (r Rule) SrcPorts() PortRange { return portRange(r.SrcPortStart, r.SrcPortEnd) }

// DstPorts is the rule's normalised destination port range.
func (r Rule) DstPorts() PortRange { return portRange(r.DstPortStart, r.DstPortEnd) }

// SrcPrefix is the rule's source network with host bits cleared; the zero
// Prefix means "any address". It assumes a validated rule.
func (r Rule) SrcPrefix() netip.Prefix {
	p, _ := parseAddrMask(r.SrcIPAddr, r.SrcIPMask)
	return p
}

// DstPrefix is the rule's destination network, as SrcPrefix.
func (r Rule) DstPrefix() netip.Prefix {
	p, _ := parseAddrMask(r.DstIPAddr, r.DstIPMask)
	return p
}

// Validate checks every field. The error is an *errdefs.Error naming the field
// in its JSON spelling (for example "dstPortEnd").
func (r Rule) Validate() error {
	if r.ID != "" && !ruleIDRE.MatchString(r.ID) {
		return errdefs.Invalid("id", "must be 1-64 letters, digits, '_', '.' or '-' starting with a letter or digit, got %q", r.ID)
	}
	if err := checkText("name", r.Name, maxRuleNameLen); err != nil {
		return err
	}
	if err := checkText("description", r.Description, maxRuleDescLen); err != nil {
		return err
	}
	switch r.Action {
	case Accept, Drop, Reject:
	default:
		return errdefs.Invalid("action", "must be ACCEPT, DROP or REJECT, got %q", r.Action)
	}
	switch r.Direction {
	case In, Out, InOut:
	default:
		return errdefs.Invalid("direction", "must be IN, OUT or INOUT, got %q", r.Direction)
	}
	if r.Priority < MinPriority || r.Priority > MaxPriority {
		return errdefs.Invalid("priority", "must be %d-%d, got %d", MinPriority, MaxPriority, r.Priority)
	}
	switch r.Protocol {
	case TCP, UDP, ICMP, All:
	default:
		return errdefs.Invalid("protocol", "must be tcp, udp, icmp or all, got %q", r.Protocol)
	}
	for _, p := range []struct {
		name       string
		start, end int
	}{{"srcPort", r.SrcPortStart, r.SrcPortEnd}, {"dstPort", r.DstPortStart, r.DstPortEnd}} {
		if err := checkPorts(p.name, p.start, p.end, r.Protocol); err != nil {
			return err
		}
	}
	for _, a := range []struct{ name, addr, mask string }{
		{"srcIp", r.SrcIPAddr, r.SrcIPMask}, {"dstIp", r.DstIPAddr, r.DstIPMask},
	} {
		if _, err := parseAddrMask(a.addr, a.mask); err != nil {
			var ae *addrError
			if errors.As(err, &ae) {
				return ae.apiError(a.name)
			}
			return err
		}
	}
	return nil
}

func checkText(field, s string, maxLen int) error {
	if !utf8.ValidString(s) {
		return errdefs.Invalid(field, "must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(s); n > maxLen {
		return errdefs.Invalid(field, "must be at most %d characters, got %d", maxLen, n)
	}
	for _, c := range s {
		if unicode.IsControl(c) {
			return errdefs.Invalid(field, "must not contain control characters")
		}
	}
	return nil
}

// checkPorts validates one port range; ports only make sense for tcp and udp.
func checkPorts(prefix string, start, end int, proto Protocol) error {
	if start == 0 && end == 0 {
		return nil
	}
	if proto != TCP && proto != UDP {
		field := prefix + "Start"
		if start == 0 {
			field = prefix + "End"
		}
		return errdefs.Invalid(field, "ports need protocol tcp or udp, not %q", proto)
	}
	if start == 0 {
		return errdefs.Invalid(prefix+"Start", "is required when %sEnd is set", prefix)
	}
	if start < 1 || start > 65535 {
		return errdefs.Invalid(prefix+"Start", "must be 1-65535, got %d", start)
	}
	if end != 0 && (end < start || end > 65535) {
		return errdefs.Invalid(prefix+"End", "must be %d-65535 (at least %sStart), got %d", start, prefix, end)
	}
	return nil
}

// addrError says which half of an address/mask pair is wrong.
type addrError struct {
	mask bool
	msg  string
}

func (e *addrError) Error() string { return e.msg }

func (e *addrError) apiError(prefix string) *errdefs.Error {
	if e.mask {
		return errdefs.Invalid(prefix+"Mask", "%s", e.msg)
	}
	return errdefs.Invalid(prefix+"Addr", "%s", e.msg)
}

// parseAddrMask turns an Infinibay address and mask into a prefix with the
// host bits cleared. Both empty gives the zero Prefix (any address).
func parseAddrMask(addr, mask string) (netip.Prefix, error) {
	if addr == "" {
		if mask != "" {
			return netip.Prefix{}, &addrError{mask: true, msg: "a mask needs an address"}
		}
		return netip.Prefix{}, nil
	}
	var (
		a    netip.Addr
		bits = -1
		err  error
	)
	if strings.Contains(addr, "/") {
		if mask != "" {
			return netip.Prefix{}, &addrError{mask: true, msg: fmt.Sprintf("must be empty when the address %q carries a prefix", addr)}
		}
		p, perr := netip.ParsePrefix(addr)
		if perr != nil {
			return netip.Prefix{}, &addrError{msg: fmt.Sprintf("%q is not an IPv4 address or prefix", addr)}
		}
		a, bits = p.Addr(), p.Bits()
	} else if a, err = netip.ParseAddr(addr); err != nil {
		return netip.Prefix{}, &addrError{msg: fmt.Sprintf("%q is not an IPv4 address", addr)}
	}
	if !a.Is4() {
		return netip.Prefix{}, &addrError{msg: fmt.Sprintf("%q: only IPv4 addresses are supported", addr)}
	}
	if mask != "" {
		if bits, err = parseMask(mask); err != nil {
			return netip.Prefix{}, &addrError{mask: true, msg: err.Error()}
		}
	}
	if bits < 0 {
		bits = 32
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

// parseMask accepts a prefix length ("24") or a contiguous dotted mask.
func parseMask(mask string) (int, error) {
	if n, err := strconv.Atoi(mask); err == nil && !strings.HasPrefix(mask, "+") {
		if n < 0 || n > 32 || (len(mask) > 1 && mask[0] == '0') {
			return 0, fmt.Errorf("prefix length must be 0-32, got %q", mask)
		}
		return n, nil
	}
	m, err := netip.ParseAddr(mask)
	if err != nil || !m.Is4() {
		return 0, fmt.Errorf("%q is neither a prefix length nor a dotted IPv4 mask", mask)
	}
	b := m.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	ones := 0
	for v&(1<<31) != 0 {
		ones++
		v <<= 1
	}
	if v != 0 {
		return 0, fmt.Errorf("mask %q is not contiguous", mask)
	}
	return ones, nil
}
