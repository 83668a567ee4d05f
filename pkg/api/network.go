package api

import "net/netip"

// BridgeInfo is one of the host's bridges.
type BridgeInfo struct {
	Name  string `json:"name"`
	Index int    `json:"index"`
	// MAC is in its colon form, 52:54:00:12:34:56.
	MAC       string         `json:"mac"`
	MTU       int            `json:"mtu"`
	Up        bool           `json:"up"`    // administratively up
	Ports     []string       `json:"ports"` // attached links, sorted
	Addresses []netip.Prefix `json:"addresses"`
}

// BridgeRequest is the body of PUT /v1/bridges/{name}.
type BridgeRequest struct {
	MAC       string         `json:"mac,omitempty"` // fixed; derived from the name when empty
	MTU       int            `json:"mtu,omitempty"`
	Addresses []netip.Prefix `json:"addresses,omitempty"`
}

// MoveVMRequest is the body of PUT /v1/vms/{id}/bridge.
type MoveVMRequest struct {
	Bridge string `json:"bridge"`
	// NIC is the NIC that moves, by name; empty moves the primary one.
	NIC string `json:"nic,omitempty" default:"net0"`
}
