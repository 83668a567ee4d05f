package device

import (
	"context"
	"fmt"
	"strconv"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/netdev"
	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// NIC is a virtio-net interface on a TAP in its bridge. The shim opens the
// TAP's queues and QEMU inherits them, so QEMU needs no network privilege.
type NIC struct {
	name string
	spec vmspec.NIC
	// TAP is the interface Prepare created, until Release.
	TAP *netdev.TAP
}

// Name is the NIC's name, also its QEMU id; with the VM's id it names
// the TAP.
func (n *NIC) Name() string { return n.name }

// Type is always api.DeviceNIC.
func (n *NIC) Type() api.DeviceType { return api.DeviceNIC }

// Bridge is the bridge the NIC is on.
func (n *NIC) Bridge() string { return n.spec.Bridge }

// MAC is the guest's address.
func (n *NIC) MAC() string { return n.spec.MAC }

// Caps says a virtio-net device plugs into a free root port, its TAP moves
// between bridges live, and it migrates.
func (n *NIC) Caps() Caps { return Caps{Hotplug: true, LiveUpdate: true, Migrate: true} }

// Prepare creates the NIC's TAP, attached to its bridge and up.
func (n *NIC) Prepare(ctx context.Context, h *Host) error {
	mac, err := netdev.ParseMAC(n.spec.MAC)
	if err != nil {
		return fmt.Errorf("nic %s: %w", n.name, err)
	}
	tap, err := netdev.CreateTAP(ctx, netdev.TAPConfig{
		Name:     netdev.TapName(h.VMID, n.name),
		Bridge:   n.spec.Bridge,
		GuestMAC: mac,
		Queues:   h.Queues,
	})
	if err != nil {
		return err
	}
	n.TAP = tap
	h.progress("tap %s attached to %s", tap.Name, n.spec.Bridge)
	return nil
}

// Release closes the shim's queue fds: the TAP is not persistent, so the
// kernel removes it once QEMU's copies are closed too.
func (n *NIC) Release(context.Context) error {
	if n.TAP == nil {
		return nil
	}
	err := n.TAP.Close()
	n.TAP = nil
	return err
}

func (n *NIC) qemu(fds []int) qemu.NIC {
	return qemu.NIC{ID: n.name, MAC: n.spec.MAC, FDs: fds}
}

// Configure passes the TAP's queues to QEMU.
func (n *NIC) Configure(cfg *qemu.Config, fds *FDs) {
	var nums []int
	if n.TAP != nil {
		for _, f := range n.TAP.Files {
			nums = append(nums, fds.Pass(f))
		}
	}
	cfg.NICs = append(cfg.NICs, n.qemu(nums))
}

// fdName is the name getfd gives queue i's fd in QEMU.
func (n *NIC) fdName(i int) string { return n.name + "-q" + strconv.Itoa(i) }

// Hotplug sends QEMU the TAP's queue fds, then adds the backend and the
// device on port.
func (n *NIC) Hotplug(port string) ([]Command, error) {
	if n.TAP == nil || len(n.TAP.Files) == 0 {
		return nil, fmt.Errorf("nic %s: no TAP: Prepare first", n.name)
	}
	var cmds []Command
	names := make([]string, len(n.TAP.Files))
	for i, f := range n.TAP.Files {
		names[i] = n.fdName(i)
		cmds = append(cmds, Command{Execute: "getfd", Arguments: map[string]any{"fdname": names[i]}, File: f})
	}
	q := n.qemu(make([]int, len(n.TAP.Files)))
	dev := q.Device(nil)
	dev.Bus = port
	return append(cmds,
		Command{Execute: "netdev_add", Arguments: q.Netdev(names)},
		Command{Execute: "device_add", Arguments: dev},
	), nil
}

// Unplug removes the device, then its backend.
func (n *NIC) Unplug() ([]Command, error) {
	return []Command{deviceDel(n.name), {Execute: "netdev_del", Arguments: map[string]any{"id": n.name}}}, nil
}
