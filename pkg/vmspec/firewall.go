package vmspec

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/atomicfile"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/firewall"
	"github.com/infinibay/infinivirt/pkg/netdev"
)

// DefaultDepartment holds VMs created without one: it lets everything
// through until an operator gives it a policy.
const DefaultDepartment = "default"

var departmentRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// CheckDepartmentID accepts lower-case letters, digits and '-': the id names
// a file and nftables chains.
func CheckDepartmentID(field, id string) error {
	if !departmentRE.MatchString(id) {
		return errdefs.Invalid(field, "must be 1 to 63 lower-case letters, digits or '-', got %q", id)
	}
	return nil
}

// VMFirewall is a VM's firewall state as persisted in firewall.json. The
// agent writes it; the shim reads it when it installs the VM's rules.
type VMFirewall struct {
	Department string           `json:"department"`
	RuleSet    firewall.RuleSet `json:"ruleSet"`
	// IPs are the primary NIC's addresses, once known: ARP and IP source
	// checks use them. They predate VMs with several NICs.
	IPs []netip.Addr `json:"ips,omitempty"`
	// NICIPs are the known addresses of each NIC, by NIC name (net1). The
	// primary NIC's may be here instead of in IPs, not in both.
	NICIPs map[string][]netip.Addr `json:"nicIps,omitempty"`
}

// Validate checks the state with field names as the API spells them.
// ValidateFor also checks it against the VM's NICs.
func (f VMFirewall) Validate() error {
	if err := CheckDepartmentID("department", f.Department); err != nil {
		return err
	}
	if err := checkIPv4s("ips", f.IPs); err != nil {
		return err
	}
	for _, nic := range slices.Sorted(maps.Keys(f.NICIPs)) {
		field := "nicIps." + nic
		if !deviceNameRE.MatchString(nic) || len(nic) > maxDeviceName {
			return errdefs.Invalid(field, "must name a NIC: a lower-case letter, then letters, digits or '_', at most %d, got %q", maxDeviceName, nic)
		}
		if nic == netdev.PrimaryNIC && len(f.IPs) > 0 {
			return errdefs.Invalid(field, "ips holds the addresses of %s already; give them once", nic)
		}
		if err := checkIPv4s(field, f.NICIPs[nic]); err != nil {
			return err
		}
	}
	return f.RuleSet.Validate()
}

// ValidateFor is Validate, and refuses addresses for a NIC the VM does not
// have.
func (f VMFirewall) ValidateFor(s *Spec) error {
	if err := f.Validate(); err != nil {
		return err
	}
	for _, nic := range slices.Sorted(maps.Keys(f.NICIPs)) {
		if d := s.Device(nic); d == nil || d.Type != api.DeviceNIC {
			return errdefs.Invalid("nicIps."+nic, "the VM has no NIC %s; its NICs are %v", nic, s.NICNames())
		}
	}
	return nil
}

func checkIPv4s(field string, ips []netip.Addr) error {
	for i, ip := range ips {
		if !ip.Is4() {
			return errdefs.Invalid(fmt.Sprintf("%s[%d]", field, i), "must be an IPv4 address, got %s", ip)
		}
	}
	return nil
}

// NICAddrs are the known addresses of the NIC named nic.
func (f VMFirewall) NICAddrs(nic string) []netip.Addr {
	if nic == netdev.PrimaryNIC && len(f.IPs) > 0 {
		return f.IPs
	}
	return f.NICIPs[nic]
}

// FirewallVM is what the firewall library needs about the VM: each NIC
// with its TAP, MAC and known addresses, and the VM's rules, which apply
// to every NIC.
func (f VMFirewall) FirewallVM(s *Spec) firewall.VM {
	v := firewall.VM{ID: s.ID, RuleSet: f.RuleSet}
	for _, d := range s.NICs() {
		v.NICs = append(v.NICs, firewall.NIC{
			Name: d.Name, TAP: netdev.TapName(s.ID, d.Name), MAC: d.NIC.MAC, IPs: f.NICAddrs(d.Name),
		})
	}
	return v
}

// LoadVMFirewall reads a VM's firewall state; a VM that never had one is in
// the default department with no rules of its own.
func LoadVMFirewall(l Layout, id string) (VMFirewall, error) {
	f := VMFirewall{Department: DefaultDepartment}
	b, err := os.ReadFile(l.FirewallFile(id))
	if errors.Is(err, os.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, err
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("%s: %w", l.FirewallFile(id), err)
	}
	return f, nil
}

// SaveVMFirewall writes a VM's firewall state atomically.
func SaveVMFirewall(l Layout, id string, f VMFirewall) error {
	return saveJSON(l.FirewallFile(id), f)
}

// LoadDepartment reads a department; the default department exists even
// before anyone wrote it.
func LoadDepartment(l Layout, id string) (firewall.Department, error) {
	var d firewall.Department
	b, err := os.ReadFile(l.DepartmentFile(id))
	if errors.Is(err, os.ErrNotExist) {
		if id == DefaultDepartment {
			return defaultDepartment(), nil
		}
		return d, errdefs.NotFound("department %s does not exist", id)
	}
	if err != nil {
		return d, err
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("%s: %w", l.DepartmentFile(id), err)
	}
	return d, nil
}

func defaultDepartment() firewall.Department {
	return firewall.Department{
		ID:     DefaultDepartment,
		Policy: firewall.DepartmentPolicy{Policy: firewall.AllowAll, DefaultConfig: firewall.NoDefaults},
	}
}

// SaveDepartment writes a department atomically.
func SaveDepartment(l Layout, d firewall.Department) error {
	if err := os.MkdirAll(l.DepartmentsDir(), 0o700); err != nil {
		return err
	}
	return saveJSON(l.DepartmentFile(d.ID), d)
}

// DeleteDepartment removes a department's file.
func DeleteDepartment(l Layout, id string) error {
	err := os.Remove(l.DepartmentFile(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// ListDepartments reads every department, the default one included.
func ListDepartments(l Layout) ([]firewall.Department, error) {
	out := []firewall.Department{}
	seen := map[string]bool{}
	entries, err := os.ReadDir(l.DepartmentsDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(id, ".") {
			continue
		}
		d, err := LoadDepartment(l, id)
		if err != nil {
			return nil, err
		}
		out, seen[id] = append(out, d), true
	}
	if !seen[DefaultDepartment] {
		out = append(out, defaultDepartment())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func saveJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o600)
}
