package api

import (
	"encoding/json"
	"net/netip"
)

// The firewall's wire types. pkg/firewall and pkg/vmspec hold the same
// shapes for their logic and files; the agent converts at its boundary, and
// a test holds the two to one JSON form.

// FirewallMode is how the host filters VM traffic.
type FirewallMode string

// The firewall modes; the agent's configuration picks one.
const (
	FirewallOff       FirewallMode = "off"       // no rules: bridges are filtered elsewhere
	FirewallConntrack FirewallMode = "conntrack" // connection state from nf_conntrack_bridge
	FirewallStateless FirewallMode = "stateless" // connection state from packet headers
)

// FirewallCapabilities is what the host's kernel offers the firewall.
type FirewallCapabilities struct {
	// Conntrack: "ct" expressions in bridge chains (nf_conntrack_bridge).
	Conntrack bool `json:"conntrack"`
	// Reject: REJECT rules on bridged traffic (nft_reject_bridge).
	Reject bool `json:"reject"`
	// BridgeMeta: bridge-only meta keys such as ibrname (nft_meta_bridge).
	BridgeMeta bool `json:"bridgeMeta"`
}

// FirewallInfo is the body of GET /v1/firewall.
type FirewallInfo struct {
	Mode         FirewallMode         `json:"mode"`
	Capabilities FirewallCapabilities `json:"capabilities"`
}

// FirewallAction is what a rule does with the traffic it matches.
type FirewallAction string

// The actions, as Infinibay spells them.
const (
	FirewallAccept FirewallAction = "ACCEPT" // let the packet through
	FirewallDrop   FirewallAction = "DROP"   // discard the packet silently
	FirewallReject FirewallAction = "REJECT" // discard it and answer: a TCP reset, or ICMP unreachable
)

// FirewallDirection is seen from the VM: IN is traffic to it, OUT traffic
// from it.
type FirewallDirection string

// The directions, as Infinibay spells them.
const (
	FirewallIn    FirewallDirection = "IN"    // traffic to the VM
	FirewallOut   FirewallDirection = "OUT"   // traffic from the VM
	FirewallInOut FirewallDirection = "INOUT" // both: the rule applies each way
)

// FirewallProtocol is the layer-4 protocol a rule matches.
type FirewallProtocol string

// The protocols a rule can name. Only tcp and udp take ports.
const (
	FirewallTCP  FirewallProtocol = "tcp"
	FirewallUDP  FirewallProtocol = "udp"
	FirewallICMP FirewallProtocol = "icmp" // ICMP for IPv4
	FirewallAll  FirewallProtocol = "all"  // any protocol
)

// FirewallDefaultPriority is a rule's priority when the request gives none.
const FirewallDefaultPriority = 500

// ConnectionState selects packets by connection-tracking state. Absent or
// all false matches every state.
type ConnectionState struct {
	Established bool `json:"established,omitempty"`
	New         bool `json:"new,omitempty"`
	Related     bool `json:"related,omitempty"`
	Invalid     bool `json:"invalid,omitempty"`
}

// FirewallRule is one firewall rule, with Infinibay's FirewallRule field
// names. Ports are 1-65535; an end of 0 means "same as start". Addresses are
// IPv4 literals with an optional mask, as a dotted quad (255.255.255.0) or a
// prefix length (24); the address may carry the prefix (10.0.0.0/24) when
// the mask is empty.
type FirewallRule struct {
	ID          string            `json:"id,omitempty"`
	Name        string            `json:"name,omitempty"`
	Description string            `json:"description,omitempty"`
	Action      FirewallAction    `json:"action"`
	Direction   FirewallDirection `json:"direction"`
	// Priority orders rules, lower first: 0-65535, FirewallDefaultPriority
	// when absent.
	Priority        int              `json:"priority" default:"500"`
	Protocol        FirewallProtocol `json:"protocol"`
	SrcPortStart    int              `json:"srcPortStart,omitempty"`
	SrcPortEnd      int              `json:"srcPortEnd,omitempty"`
	DstPortStart    int              `json:"dstPortStart,omitempty"`
	DstPortEnd      int              `json:"dstPortEnd,omitempty"`
	SrcIPAddr       string           `json:"srcIpAddr,omitempty"`
	SrcIPMask       string           `json:"srcIpMask,omitempty"`
	DstIPAddr       string           `json:"dstIpAddr,omitempty"`
	DstIPMask       string           `json:"dstIpMask,omitempty"`
	ConnectionState *ConnectionState `json:"connectionState,omitempty"`
	// OverridesDept replaces the department's rules for the same traffic.
	OverridesDept bool `json:"overridesDept,omitempty"`
}

// UnmarshalJSON fills Priority with FirewallDefaultPriority when the field
// is absent, so that an explicit 0 stays distinguishable from "not given".
func (r *FirewallRule) UnmarshalJSON(b []byte) error {
	type plain FirewallRule
	p := plain{Priority: FirewallDefaultPriority}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*r = FirewallRule(p)
	return nil
}

// FirewallPreset is a service toggle: switched on, it accepts inbound TCP to
// the service's ports.
type FirewallPreset string

// The presets, with the TCP ports each accepts.
const (
	PresetSSH   FirewallPreset = "ssh"   // 22
	PresetHTTP  FirewallPreset = "http"  // 80
	PresetHTTPS FirewallPreset = "https" // 443
	PresetRDP   FirewallPreset = "rdp"   // 3389
	PresetVNC   FirewallPreset = "vnc"   // 5900-5999
)

// FirewallPresets lists every preset, in the order the API documents them.
var FirewallPresets = []FirewallPreset{PresetSSH, PresetHTTP, PresetHTTPS, PresetRDP, PresetVNC}

// FirewallRuleSet is the rules and preset toggles of a department or a VM.
type FirewallRuleSet struct {
	Rules   []FirewallRule   `json:"rules"`
	Presets []FirewallPreset `json:"presets,omitempty"`
}

// FirewallPolicy is a department's default stance.
type FirewallPolicy string

// The policies, as Infinibay spells them.
const (
	PolicyBlockAll FirewallPolicy = "BLOCK_ALL" // traffic no rule matches is dropped
	PolicyAllowAll FirewallPolicy = "ALLOW_ALL" // traffic no rule matches is accepted
)

// FirewallDefaultConfig is the set of rules a policy comes with.
type FirewallDefaultConfig string

// The default configs. The first three go with BLOCK_ALL, the others with
// ALLOW_ALL.
const (
	ConfigAllowInternet  FirewallDefaultConfig = "allow_internet"  // BLOCK_ALL: accepts outbound DNS, HTTP(S) and NTP
	ConfigAllowOutbound  FirewallDefaultConfig = "allow_outbound"  // BLOCK_ALL: accepts all outbound traffic
	ConfigBlockAll       FirewallDefaultConfig = "block_all"       // BLOCK_ALL: adds no rules
	ConfigBlockSSH       FirewallDefaultConfig = "block_ssh"       // ALLOW_ALL: drops inbound SSH and FTP
	ConfigBlockSMB       FirewallDefaultConfig = "block_smb"       // ALLOW_ALL: drops inbound SMB and NetBIOS
	ConfigBlockDatabases FirewallDefaultConfig = "block_databases" // ALLOW_ALL: drops inbound database ports
	ConfigNone           FirewallDefaultConfig = "none"            // ALLOW_ALL: adds no rules
)

// DepartmentPolicy is Infinibay's department firewall policy.
type DepartmentPolicy struct {
	Policy        FirewallPolicy        `json:"policy"`
	DefaultConfig FirewallDefaultConfig `json:"defaultConfig"`
}

// DefaultDepartment holds VMs created without one.
const DefaultDepartment = "default"

// Department is a department's firewall: its policy and rules, shared by
// its VMs. The body of PUT /v1/departments/{dept}, whose id is the path's.
type Department struct {
	ID      string           `json:"id"`
	Policy  DepartmentPolicy `json:"policy"`
	RuleSet FirewallRuleSet  `json:"ruleSet"`
}

// VMFirewall is a VM's firewall: its department, rules of its own, and its
// known addresses, which ARP and IP source checks use, each NIC's for its
// own traffic.
type VMFirewall struct {
	// Department is DefaultDepartment when a request leaves it empty.
	Department string          `json:"department" default:"default"`
	RuleSet    FirewallRuleSet `json:"ruleSet"`
	// IPs are the primary NIC's (net0) addresses.
	IPs []netip.Addr `json:"ips,omitempty"`
	// NICIPs are each NIC's addresses by NIC name (net1); net0's may be here
	// instead of in ips, not in both.
	NICIPs map[string][]netip.Addr `json:"nicIps,omitempty"`
}

// FirewallOrigin says where an effective rule came from.
type FirewallOrigin string

// The origins of effective rules.
const (
	OriginVM               FirewallOrigin = "vm"                // the VM's own rules
	OriginVMPreset         FirewallOrigin = "vm-preset"         // the VM's presets
	OriginDepartment       FirewallOrigin = "department"        // the department's rules
	OriginDepartmentPreset FirewallOrigin = "department-preset" // the department's presets
	// OriginPolicy marks the policy's own rules: its default config and the
	// rule that lets replies through.
	OriginPolicy FirewallOrigin = "policy"
)

// FirewallEntry is one rule as it applies to one direction of one VM.
type FirewallEntry struct {
	Rule   FirewallRule      `json:"rule"`
	Origin FirewallOrigin    `json:"origin"`
	Dir    FirewallDirection `json:"dir"` // IN or OUT: the chain the entry lands in
	// Reply marks the stateless reply of Rule: the same flow the other way,
	// for established packets only.
	Reply bool `json:"reply,omitempty"`
}

// FirewallOverride is one direction of a department rule that a VM rule
// replaced.
type FirewallOverride struct {
	Department FirewallRule      `json:"department"`
	Dir        FirewallDirection `json:"dir"`
	By         FirewallRule      `json:"by"`
}

// FirewallEffective is what a VM's traffic meets, in evaluation order.
type FirewallEffective struct {
	In         []FirewallEntry    `json:"in"`
	Out        []FirewallEntry    `json:"out"`
	Overridden []FirewallOverride `json:"overridden,omitempty"`
	// Terminal is what happens to traffic no entry matched.
	Terminal FirewallAction `json:"terminal"`
}

// EffectiveFirewall is the body of GET /v1/vms/{id}/firewall/effective: the
// rules in evaluation order, and what the kernel holds right now.
type EffectiveFirewall struct {
	Mode       FirewallMode      `json:"mode"`
	Department string            `json:"department"`
	Effective  FirewallEffective `json:"effective"`
	// Kernel is the VM's chains as nftables lists them; empty while the VM is off.
	Kernel string `json:"kernel,omitempty"`
	// Counters are the primary NIC's (net0) anti-spoofing drop counters by
	// kind, NICCounters those of every NIC, by NIC name.
	Counters    map[string]uint64            `json:"counters,omitempty"`
	NICCounters map[string]map[string]uint64 `json:"nicCounters,omitempty"`
}
