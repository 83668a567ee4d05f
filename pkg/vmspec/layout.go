// Package vmspec is a VM's persisted definition, the host's own truth, and
// the file layout every component agrees on.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package vmspec

import (
	"path/filepath"
)

// Layout names the directories Infinivirt keeps its files in.
type Layout struct {
	StateDir string // persistent: specs, disks, event logs (default /var/lib/infinivirt)
	RunDir   string // volatile: sockets (default /run/infinivirt)
}

// DefaultLayout is the layout of a packaged install.
var DefaultLayout = Layout{StateDir: "/var/lib/infinivirt", RunDir: "/run/infinivirt"}

// VMsDir holds one directory per VM.
func (l Layout) VMsDir() string { return filepath.Join(l.StateDir, "vms") }

// VMDir is the persistent directory of one VM.
func (l Layout) VMDir(id string) string { return filepath.Join(l.VMsDir(), id) }

// SpecFile is the VM's spec.json.
func (l Layout) SpecFile(id string) string { return filepath.Join(l.VMDir(id), "spec.json") }

// CreatingMarker is in the VM's directory from its first file until its
// create commits: an agent that finds it at start rolls the create back.
func (l Layout) CreatingMarker(id string) string { return filepath.Join(l.VMDir(id), ".creating") }

// EventsFile is the VM's append-only event log (JSON lines).
func (l Layout) EventsFile(id string) string { return filepath.Join(l.VMDir(id), "events.jsonl") }

// RuntimeDir is the VM's volatile directory, removed by the shim's cleanup.
func (l Layout) RuntimeDir(id string) string { return filepath.Join(l.RunDir, "vms", id) }

// ShimSocket is the shim's control socket.
func (l Layout) ShimSocket(id string) string { return filepath.Join(l.RuntimeDir(id), "shim.sock") }

// AgentSocket is the agent's API socket.
func (l Layout) AgentSocket() string { return filepath.Join(l.RunDir, "agent.sock") }

// UnitName is the systemd unit that runs the VM's shim.
func UnitName(id string) string { return "infinivirt-shim@" + id + ".service" }

// FirewallFile is the VM's firewall state: department, own rules, known IPs.
func (l Layout) FirewallFile(id string) string { return filepath.Join(l.VMDir(id), "firewall.json") }

// DepartmentsDir holds one file per department's firewall.
func (l Layout) DepartmentsDir() string { return filepath.Join(l.StateDir, "firewall", "departments") }

// DepartmentFile is one department's firewall: policy and rules.
func (l Layout) DepartmentFile(id string) string {
	return filepath.Join(l.DepartmentsDir(), id+".json")
}

// ImagesDir is the image store: golden images that disks are cloned from.
func (l Layout) ImagesDir() string { return filepath.Join(l.StateDir, "images") }

// ISOsDir is the agent's own ISO directory, the default one CD-ROM media
// and install ISOs may come from.
func (l Layout) ISOsDir() string { return filepath.Join(l.StateDir, "isos") }

// ROMsDir holds the option ROM files a passed-through PCI device may be
// given; no other file is one.
func (l Layout) ROMsDir() string { return filepath.Join(l.StateDir, "roms") }
