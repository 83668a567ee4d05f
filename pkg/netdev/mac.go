// Package netdev creates the network plumbing of VMs: the bridges, each
// VM's TAP device attached to one, and its MAC address.
package netdev

import (
	"crypto/rand"
	"fmt"
	"net"
	"strings"
)

// QEMUPrefix is the locally administered OUI QEMU and libvirt use for guests.
var QEMUPrefix = net.HardwareAddr{0x52, 0x54, 0x00}

// GenerateMAC returns a random address under QEMUPrefix.
func GenerateMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	copy(mac, QEMUPrefix)
	if _, err := rand.Read(mac[3:]); err != nil {
		panic("netdev: no randomness: " + err.Error())
	}
	return mac
}

// ParseMAC accepts a 48-bit unicast address that is not all zeros, written
// as six colon-separated hex pairs, and returns it.
func ParseMAC(s string) (net.HardwareAddr, error) {
	if len(s) != 17 || strings.Count(s, ":") != 5 {
		return nil, fmt.Errorf("MAC %q must be six hex pairs separated by colons", s)
	}
	mac, err := net.ParseMAC(s)
	if err != nil {
		return nil, fmt.Errorf("MAC %q is not a valid 48-bit address", s)
	}
	if err := validUnicastMAC(mac); err != nil {
		return nil, fmt.Errorf("MAC %w", err)
	}
	return mac, nil
}

// TapName is the TAP device name of a VM: "ivt" and the first 12 hex digits
// of its UUID, which fits IFNAMSIZ and never depends on the display name.
func TapName(vmID string) string {
	hex := strings.ReplaceAll(strings.ToLower(vmID), "-", "")
	if len(hex) > 12 {
		hex = hex[:12]
	}
	return "ivt" + hex
}
