package agenttest

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/infinibay/infinivirt/pkg/firewall"
)

// Firewall is the kernel's firewall in memory. It implements
// netpolicy.Engine: each call is one batch, and it keeps, per VM, every
// department and rule set it was given, in order.
type Firewall struct {
	mode firewall.Mode

	mu      sync.Mutex
	batches []string
	applied map[string][]Applied
	prunes  int
}

// Applied is one VM's rules as one batch installed them.
type Applied struct {
	Op         string // apply-vm, apply-department or resync
	Department firewall.Department
	VM         firewall.VM
}

// NewFirewall is a kernel with these capabilities.
func NewFirewall(caps firewall.Capabilities) *Firewall {
	return &Firewall{mode: firewall.Mode{Caps: caps}, applied: map[string][]Applied{}}
}

// Caps are the capabilities the kernel reports when probed.
func (f *Firewall) Caps() firewall.Capabilities { return f.mode.Caps }

// SetStateless renders statelessly, as firewall.New does with Options.Stateless.
func (f *Firewall) SetStateless(s bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mode.Stateless = s
}

// Mode is the rendering mode: the capabilities NewFirewall was given, and
// stateless as SetStateless left it.
func (f *Firewall) Mode() firewall.Mode {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mode
}

func (f *Firewall) batch(op string, d firewall.Department, vms ...firewall.VM) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches = append(f.batches, op)
	for _, v := range vms {
		f.applied[v.ID] = append(f.applied[v.ID], Applied{Op: op, Department: d, VM: v})
	}
}

// ApplyVM records one apply-vm batch: v's rules under department d.
func (f *Firewall) ApplyVM(ctx context.Context, d firewall.Department, v firewall.VM) error {
	f.batch("apply-vm", d, v)
	return nil
}

// ApplyDepartment records one apply-department batch: d and its running vms.
func (f *Firewall) ApplyDepartment(ctx context.Context, d firewall.Department, vms []firewall.VM) error {
	f.batch("apply-department", d, vms...)
	return nil
}

// Resync records one resync batch: d and all of vms rewritten.
func (f *Firewall) Resync(ctx context.Context, d firewall.Department, vms []firewall.VM) error {
	f.batch("resync", d, vms...)
	return nil
}

// Prune only counts: no chains exist here to delete.
func (f *Firewall) Prune(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.prunes++
	return nil
}

// VMRuleset names the department the VM's rules last came from.
func (f *Firewall) VMRuleset(ctx context.Context, vmID string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.applied[vmID]
	if len(a) == 0 {
		return "", fmt.Errorf("no chains for VM %s", vmID)
	}
	return fmt.Sprintf("chains of VM %s, department %s\n", vmID, a[len(a)-1].Department.ID), nil
}

// Counters are zero: no traffic flows here.
func (f *Firewall) Counters(ctx context.Context, vmID, nic string) (map[string]uint64, error) {
	return map[string]uint64{"spoofed": 0, "policy": 0}, nil
}

// Batches are the operations sent, one per batch, in order.
func (f *Firewall) Batches() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.batches)
}

// Applied is what each batch installed for the VM, in order.
func (f *Firewall) Applied(vmID string) []Applied {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.applied[vmID])
}

// Prunes counts the prunes of unused chains.
func (f *Firewall) Prunes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.prunes
}
