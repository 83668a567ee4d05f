package firewall

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// Preset is a service toggle: switched on, it accepts inbound TCP to the
// service's ports.
type Preset string

// The presets; presetPorts holds the ports each opens.
const (
	PresetSSH   Preset = "ssh"   // 22
	PresetHTTP  Preset = "http"  // 80
	PresetHTTPS Preset = "https" // 443
	PresetRDP   Preset = "rdp"   // 3389
	PresetVNC   Preset = "vnc"   // 5900-5999
)

// presetPorts lists the presets in a fixed order with their TCP ports.
var presetPorts = []struct {
	preset     Preset
	start, end int
}{
	{PresetSSH, 22, 22},
	{PresetHTTP, 80, 80},
	{PresetHTTPS, 443, 443},
	{PresetRDP, 3389, 3389},
	{PresetVNC, 5900, 5999},
}

// Presets lists every known preset in a fixed order.
func Presets() []Preset {
	out := make([]Preset, len(presetPorts))
	for i, p := range presetPorts {
		out[i] = p.preset
	}
	return out
}

// Rule is the rule the preset stands for.
func (p Preset) Rule() (Rule, bool) {
	for _, pp := range presetPorts {
		if pp.preset == p {
			return Rule{
				ID:           "preset:" + string(p),
				Name:         "Preset " + strings.ToUpper(string(p)),
				Action:       Accept,
				Direction:    In,
				Priority:     PresetPriority,
				Protocol:     TCP,
				DstPortStart: pp.start,
				DstPortEnd:   pp.end,
			}, true
		}
	}
	return Rule{}, false
}

// RuleSet is the rules and preset toggles of a department or of one VM.
type RuleSet struct {
	Rules   []Rule   `json:"rules"`
	Presets []Preset `json:"presets,omitempty"`
}

// Validate checks every rule and preset. Fields are named with their index
// path, for example "rules[2].dstPortEnd".
func (s RuleSet) Validate() error {
	if len(s.Rules) > maxRulesPerSet {
		return errdefs.Invalid("rules", "at most %d rules, got %d", maxRulesPerSet, len(s.Rules))
	}
	ids := map[string]int{}
	for i, r := range s.Rules {
		if err := r.Validate(); err != nil {
			return prefixField(err, fmt.Sprintf("rules[%d]", i))
		}
		if r.ID == "" {
			continue
		}
		if j, dup := ids[r.ID]; dup {
			return errdefs.Invalid(fmt.Sprintf("rules[%d].id", i), "%q is already used by rules[%d]", r.ID, j)
		}
		ids[r.ID] = i
	}
	seen := map[Preset]bool{}
	for i, p := range s.Presets {
		field := fmt.Sprintf("presets[%d]", i)
		if _, ok := p.Rule(); !ok {
			return errdefs.Invalid(field, "must be one of %s, got %q", presetList(), p)
		}
		if seen[p] {
			return errdefs.Invalid(field, "%q is listed twice", p)
		}
		seen[p] = true
	}
	return nil
}

func presetList() string {
	var s []string
	for _, p := range Presets() {
		s = append(s, string(p))
	}
	return strings.Join(s, ", ")
}

// presetRules returns the rules of the switched-on presets in a fixed
// order, whatever order the toggles came in.
func (s RuleSet) presetRules() []Rule {
	var out []Rule
	for _, p := range Presets() {
		for _, on := range s.Presets {
			if on == p {
				r, _ := p.Rule()
				out = append(out, r)
			}
		}
	}
	return out
}

// prefixField puts path in front of the field of an *errdefs.Error.
func prefixField(err error, path string) error {
	var e *errdefs.Error
	if !errors.As(err, &e) {
		return err
	}
	c := *e
	if c.Field == "" {
		c.Field = path
	} else {
		c.Field = path + "." + c.Field
	}
	return &c
}

// Policy is a department's default stance.
type Policy string

// The policies, as Infinibay spells them.
const (
	BlockAll Policy = "BLOCK_ALL" // traffic no rule matches is dropped
	AllowAll Policy = "ALLOW_ALL" // traffic no rule matches is accepted
)

// DefaultConfig is the set of rules a policy comes with.
type DefaultConfig string

// The default configs; each belongs to one policy, and DefaultRules holds
// the rules it stands for.
const (
	// BLOCK_ALL configs.
	AllowInternet   DefaultConfig = "allow_internet" // accepts outbound DNS, HTTP(S) and NTP
	AllowOutbound   DefaultConfig = "allow_outbound" // accepts all outbound traffic
	BlockAllTraffic DefaultConfig = "block_all"      // adds no rules
	// ALLOW_ALL configs.
	BlockSSH       DefaultConfig = "block_ssh"       // drops inbound SSH and FTP
	BlockSMB       DefaultConfig = "block_smb"       // drops inbound SMB and NetBIOS
	BlockDatabases DefaultConfig = "block_databases" // drops inbound database ports
	NoDefaults     DefaultConfig = "none"            // adds no rules
)

// DepartmentPolicy is Infinibay's department firewall policy.
type DepartmentPolicy struct {
	Policy        Policy        `json:"policy"`
	DefaultConfig DefaultConfig `json:"defaultConfig"`
}

// Validate checks that the policy is known and its config belongs to it.
func (p DepartmentPolicy) Validate() error {
	var allowed []DefaultConfig
	switch p.Policy {
	case BlockAll:
		allowed = []DefaultConfig{AllowInternet, AllowOutbound, BlockAllTraffic}
	case AllowAll:
		allowed = []DefaultConfig{BlockSSH, BlockSMB, BlockDatabases, NoDefaults}
	default:
		return errdefs.Invalid("policy", "must be BLOCK_ALL or ALLOW_ALL, got %q", p.Policy)
	}
	for _, c := range allowed {
		if c == p.DefaultConfig {
			return nil
		}
	}
	var names []string
	for _, c := range allowed {
		names = append(names, string(c))
	}
	return errdefs.Invalid("defaultConfig", "%s takes %s, got %q", p.Policy, strings.Join(names, ", "), p.DefaultConfig)
}

// Terminal is the action that ends every VM chain under this policy.
func (p DepartmentPolicy) Terminal() Action {
	if p.Policy == AllowAll {
		return Accept
	}
	return Drop
}

// DefaultRules are the rules the policy's default config stands for.
func (p DepartmentPolicy) DefaultRules() []Rule {
	out := func(id, name string, proto Protocol, port int) Rule {
		return Rule{ID: "default:" + id, Name: name, Action: Accept, Direction: Out, Priority: DefaultConfigPriority,
			Protocol: proto, DstPortStart: port}
	}
	block := func(id, name string, proto Protocol, start, end int) Rule {
		return Rule{ID: "default:" + id, Name: name, Action: Drop, Direction: In, Priority: DefaultConfigPriority,
			Protocol: proto, DstPortStart: start, DstPortEnd: end}
	}
	switch p.DefaultConfig {
	case AllowInternet:
		return []Rule{
			out("dns-udp", "Allow DNS", UDP, 53),
			out("dns-tcp", "Allow DNS over TCP", TCP, 53),
			out("http", "Allow HTTP", TCP, 80),
			out("https", "Allow HTTPS", TCP, 443),
			out("ntp", "Allow NTP", UDP, 123),
		}
	case AllowOutbound:
		return []Rule{{ID: "default:outbound", Name: "Allow all outbound", Action: Accept, Direction: Out,
			Priority: DefaultConfigPriority, Protocol: All}}
	case BlockSSH:
		return []Rule{block("ssh", "Block SSH", TCP, 22, 22), block("ftp", "Block FTP", TCP, 21, 21)}
	case BlockSMB:
		return []Rule{
			block("smb", "Block SMB", TCP, 445, 445),
			block("netbios-tcp", "Block NetBIOS", TCP, 137, 139),
			block("netbios-udp", "Block NetBIOS", UDP, 137, 139),
		}
	case BlockDatabases:
		return []Rule{
			block("mysql", "Block MySQL", TCP, 3306, 3306),
			block("postgresql", "Block PostgreSQL", TCP, 5432, 5432),
			block("mssql", "Block SQL Server", TCP, 1433, 1433),
			block("mongodb", "Block MongoDB", TCP, 27017, 27017),
			block("redis", "Block Redis", TCP, 6379, 6379),
			block("elasticsearch", "Block Elasticsearch", TCP, 9200, 9300),
		}
	}
	return nil
}

// Department is what the firewall needs to know about a department.
type Department struct {
	ID      string           `json:"id"`
	Policy  DepartmentPolicy `json:"policy"`
	RuleSet RuleSet          `json:"ruleSet"`
}

var objectIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// Validate checks the department's ID, policy and rules.
func (d Department) Validate() error {
	if !objectIDRE.MatchString(d.ID) {
		return errdefs.Invalid("id", "must be 1-64 letters, digits, '_' or '-', got %q", d.ID)
	}
	if err := d.Policy.Validate(); err != nil {
		return prefixField(err, "policy")
	}
	if err := d.RuleSet.Validate(); err != nil {
		return prefixField(err, "ruleSet")
	}
	return nil
}

// VM is what the firewall needs to know about one VM: its NICs, each
// filtered in chains of its own, and its rules, which apply to every NIC.
type VM struct {
	ID      string  `json:"id"`
	NICs    []NIC   `json:"nics"`
	RuleSet RuleSet `json:"ruleSet"`
}

// PrimaryNIC is the name of a VM's first NIC (netdev.PrimaryNIC). Its
// kernel objects keep the names they had before VMs had several NICs, so
// that the chains and dispatch of VMs running across an upgrade stay
// where they are.
const PrimaryNIC = "net0"

// NIC is one network interface of a VM, as the firewall sees it.
type NIC struct {
	Name string `json:"name"` // the VM's name for the NIC, for example net0
	TAP  string `json:"tap"`  // the TAP device on the bridge
	MAC  string `json:"mac"`  // the only source MAC the NIC may send from
	// IPs are the NIC's IPv4 addresses once known (from DHCP leases or the
	// guest agent). When empty, ARP and IP source checks are off.
	IPs []netip.Addr `json:"ips,omitempty"`
}

var (
	tapRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$`)
	// nicRE leaves out '.', which separates the VM from the NIC in kernel
	// object names.
	nicRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$`)
)

// Validate checks the VM's identity, NICs and rules.
func (v VM) Validate() error {
	if !objectIDRE.MatchString(v.ID) {
		return errdefs.Invalid("id", "must be 1-64 letters, digits, '_' or '-', got %q", v.ID)
	}
	names, taps := map[string]int{}, map[string]int{}
	for i, n := range v.NICs {
		field := fmt.Sprintf("nics[%d]", i)
		if err := n.Validate(); err != nil {
			return prefixField(err, field)
		}
		if j, dup := names[n.Name]; dup {
			return errdefs.Invalid(field+".name", "%q is also nics[%d]", n.Name, j)
		}
		if j, dup := taps[n.TAP]; dup {
			return errdefs.Invalid(field+".tap", "%q is also the TAP of nics[%d]", n.TAP, j)
		}
		names[n.Name], taps[n.TAP] = i, i
	}
	if err := v.RuleSet.Validate(); err != nil {
		return prefixField(err, "ruleSet")
	}
	return nil
}

// Validate checks the NIC's name, TAP, MAC and addresses.
func (n NIC) Validate() error {
	if !nicRE.MatchString(n.Name) {
		return errdefs.Invalid("name", "must be 1-32 letters, digits, '_' or '-', got %q", n.Name)
	}
	if !tapRE.MatchString(n.TAP) {
		return errdefs.Invalid("tap", "must be an interface name of 1-15 letters, digits, '_', '.' or '-', got %q", n.TAP)
	}
	if _, err := parseUnicastMAC(n.MAC); err != nil {
		return errdefs.Invalid("mac", "%s", err.Error())
	}
	seen := map[netip.Addr]bool{}
	for i, a := range n.IPs {
		field := fmt.Sprintf("ips[%d]", i)
		if !a.Is4() || a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			return errdefs.Invalid(field, "must be a unicast IPv4 address, got %q", a)
		}
		if seen[a] {
			return errdefs.Invalid(field, "%s is listed twice", a)
		}
		seen[a] = true
	}
	return nil
}

func parseUnicastMAC(s string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 || len(s) != 17 || strings.Count(s, ":") != 5 {
		return nil, fmt.Errorf("%q is not a MAC address of six colon-separated hex pairs", s)
	}
	if mac[0]&1 == 1 {
		return nil, fmt.Errorf("%q is multicast; a NIC needs a unicast address", s)
	}
	if string(mac) == string(make([]byte, 6)) {
		return nil, fmt.Errorf("%q is all zeros", s)
	}
	return mac, nil
}
