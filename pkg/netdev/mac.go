// Package netdev creates the network plumbing of VMs: the bridges, each
// VM's TAP device attached to one, and its MAC address.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package netdev

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net"
	"strconv"
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

// PrimaryNIC is the name of a VM's first NIC: the one VMs had before they
// could have several.
const PrimaryNIC = "net0"

// TapName is the TAP device name of one NIC of a VM. It fits IFNAMSIZ (15
// bytes), never depends on the display name, and differs for every NIC of
// a VM:
//   - net0: "ivt" and the first 12 hex digits of the UUID, the name from
//     before VMs had several NICs, so that a running VM keeps its TAP (and
//     its firewall dispatch) across an upgrade;
//   - net1 to net99: "iv", the first 10 hex digits, "." and the number, for
//     example "iv0f8fad5bd9.1";
//   - any other name: "iv", the first 10 hex digits, "_" and two base-32
//     characters of the name's SHA-256. Two such names of one VM may meet:
//     a caller that allows them checks that its NICs' TAP names differ.
//
// The third character tells the forms apart ('t' is no hex digit), so no
// NIC's TAP can take another VM's net0 TAP name.
func TapName(vmID, nic string) string {
	hex := strings.ReplaceAll(strings.ToLower(vmID), "-", "")
	if nic == PrimaryNIC {
		return "ivt" + prefix(hex, 12)
	}
	if n, ok := nicNumber(nic); ok && n < 100 {
		return "iv" + prefix(hex, 10) + "." + strconv.Itoa(n)
	}
	sum := sha256.Sum256([]byte(nic))
	return "iv" + prefix(hex, 10) + "_" + strings.ToLower(base32.StdEncoding.EncodeToString(sum[:]))[:2]
}

func prefix(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// nicNumber is N of a name "net<N>" written without leading zeros.
func nicNumber(nic string) (int, bool) {
	digits, ok := strings.CutPrefix(nic, "net")
	if !ok || digits == "" || len(digits) > 1 && digits[0] == '0' || len(digits) > 4 {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n < 0 || strings.ContainsAny(digits, "+-") {
		return 0, false
	}
	return n, true
}
