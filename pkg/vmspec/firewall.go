package vmspec

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strings"

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
	// IPs are the VM's addresses, once known: ARP and IP source checks use them.
	IPs []netip.Addr `json:"ips,omitempty"`
}

// Validate checks the state with field names as the API spells them.
func (f VMFirewall) Validate() error {
	if err := CheckDepartmentID("department", f.Department); err != nil {
		return err
	}
	for i, ip := range f.IPs {
		if !ip.Is4() {
			return errdefs.Invalid(fmt.Sprintf("ips[%d]", i), "must be an IPv4 address, got %s", ip)
		}
	}
	return f.RuleSet.Validate()
}

// FirewallVM is what the firewall library needs about the VM: each NIC
// with its TAP, and the VM's rules, which apply to every NIC. The known
// addresses are the primary NIC's.
func (f VMFirewall) FirewallVM(s *Spec) firewall.VM {
	nic := firewall.NIC{Name: netdev.PrimaryNIC, TAP: netdev.TapName(s.ID, netdev.PrimaryNIC), MAC: s.NICs()[0].NIC.MAC, IPs: f.IPs}
	return firewall.VM{ID: s.ID, NICs: []firewall.NIC{nic}, RuleSet: f.RuleSet}
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
