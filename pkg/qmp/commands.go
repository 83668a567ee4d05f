package qmp

import (
	"context"
	"errors"
	"os"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// Thin typed wrappers for the commands the shim uses. Argument names follow
// the QEMU 7.2 schema.

// StatusInfo is the reply of query-status. Status is QEMU's RunState, for
// example "prelaunch", "running", "paused", "shutdown", "guest-panicked",
// "internal-error" or "suspended".
type StatusInfo struct {
	Status     string `json:"status"`
	Running    bool   `json:"running"`
	Singlestep bool   `json:"singlestep"` // removed from the reply in QEMU 8.1; false there
}

// QueryStatus asks for the VM's run state.
func (c *Client) QueryStatus(ctx context.Context) (StatusInfo, error) {
	var s StatusInfo
	err := c.Execute(ctx, "query-status", nil, &s)
	return s, err
}

// Cont starts or resumes the vCPUs.
func (c *Client) Cont(ctx context.Context) error { return c.Execute(ctx, "cont", nil, nil) }

// Stop pauses the vCPUs.
func (c *Client) Stop(ctx context.Context) error { return c.Execute(ctx, "stop", nil, nil) }

// SystemPowerdown presses the ACPI power button; the guest decides what to do.
func (c *Client) SystemPowerdown(ctx context.Context) error {
	return c.Execute(ctx, "system_powerdown", nil, nil)
}

// SystemReset resets the machine as the reset button would.
func (c *Client) SystemReset(ctx context.Context) error {
	return c.Execute(ctx, "system_reset", nil, nil)
}

// Quit makes QEMU exit at once, without asking the guest. QEMU may close the
// connection before its reply arrives; that counts as success, since the
// command has done its job. Done closes once QEMU is gone.
func (c *Client) Quit(ctx context.Context) error {
	err := c.Execute(ctx, "quit", nil, nil)
	if errors.Is(err, ErrDisconnected) {
		return nil
	}
	return err
}

// Display protocols for SetPassword and ExpirePassword.
const (
	ProtocolVNC   = "vnc"
	ProtocolSpice = "spice"
)

// displayTarget is the common part of set_password and expire_password.
type displayTarget struct {
	Protocol string `json:"protocol"`
	Display  string `json:"display,omitempty"` // VNC only
}

func checkDisplayTarget(protocol, display string) error {
	switch protocol {
	case ProtocolVNC:
		return nil
	case ProtocolSpice:
		if display != "" {
			return errdefs.Invalid("display", "only VNC has display ids; spice takes none")
		}
		return nil
	default:
		return errdefs.Invalid("protocol", "must be %q or %q, not %q", ProtocolVNC, ProtocolSpice, protocol)
	}
}

// SetPassword sets the password of a VNC or SPICE server. display names one
// VNC server (its id from QueryVNCServers, "default" for the first -vnc);
// empty means the default one. It must be empty for SPICE. VNC uses only the
// first 8 characters of the password. The password is never logged and never
// appears in an error.
func (c *Client) SetPassword(ctx context.Context, protocol, password, display string) error {
	if err := checkDisplayTarget(protocol, display); err != nil {
		return err
	}
	args := struct {
		displayTarget
		Password string `json:"password"`
	}{displayTarget{protocol, display}, password}
	return c.Execute(ctx, "set_password", args, nil)
}

// ExpirePassword sets when the current password stops working: "now",
// "never", "+N" (N seconds from now) or "N" (seconds since the epoch).
// display as for SetPassword.
func (c *Client) ExpirePassword(ctx context.Context, protocol, when, display string) error {
	if err := checkDisplayTarget(protocol, display); err != nil {
		return err
	}
	if when == "" {
		return errdefs.Invalid("time", "must be now, never, +SECONDS or SECONDS")
	}
	args := struct {
		displayTarget
		Time string `json:"time"`
	}{displayTarget{protocol, display}, when}
	return c.Execute(ctx, "expire_password", args, nil)
}

// VNCServer is one entry of query-vnc-servers.
type VNCServer struct {
	ID      string        `json:"id"`   // "default" for the first -vnc, then "vnc2", ...
	Auth    string        `json:"auth"` // "none", "vnc", "vencrypt", "sasl", ...
	Display string        `json:"display,omitempty"`
	Server  []VNCEndpoint `json:"server"`
	Clients []VNCEndpoint `json:"clients"`
}

// VNCEndpoint is a listening address or a connected client.
type VNCEndpoint struct {
	Host      string `json:"host"`
	Service   string `json:"service"`
	Family    string `json:"family"` // "ipv4", "ipv6", "unix"
	WebSocket bool   `json:"websocket"`
}

// QueryVNCServers lists the VNC servers and their clients.
func (c *Client) QueryVNCServers(ctx context.Context) ([]VNCServer, error) {
	var v []VNCServer
	err := c.Execute(ctx, "query-vnc-servers", nil, &v)
	return v, err
}

// SpiceInfo is the reply of query-spice.
type SpiceInfo struct {
	Enabled         bool   `json:"enabled"`
	Migrated        bool   `json:"migrated"`
	Host            string `json:"host,omitempty"`
	Port            int    `json:"port,omitempty"`
	TLSPort         int    `json:"tls-port,omitempty"`
	Auth            string `json:"auth,omitempty"` // "none" or "spice"
	CompiledVersion string `json:"compiled-version,omitempty"`
	MouseMode       string `json:"mouse-mode"`
}

// QuerySpice reports the SPICE server's state.
func (c *Client) QuerySpice(ctx context.Context) (SpiceInfo, error) {
	var s SpiceInfo
	err := c.Execute(ctx, "query-spice", nil, &s)
	return s, err
}

// TPMDevice is one entry of query-tpm.
type TPMDevice struct {
	ID    string `json:"id"`
	Model string `json:"model"` // "tpm-tis", "tpm-crb", ...
	Type  string `json:"-"`     // backend: "emulator" (swtpm) or "passthrough"
}

// QueryTPM lists the VM's TPM devices.
func (c *Client) QueryTPM(ctx context.Context) ([]TPMDevice, error) {
	var raw []struct {
		TPMDevice
		Options struct {
			Type string `json:"type"`
		} `json:"options"`
	}
	if err := c.Execute(ctx, "query-tpm", nil, &raw); err != nil {
		return nil, err
	}
	devs := make([]TPMDevice, len(raw))
	for i, r := range raw {
		devs[i] = r.TPMDevice
		devs[i].Type = r.Options.Type
	}
	return devs, nil
}

// QueryTPMModels lists the TPM device models this QEMU build supports.
func (c *Client) QueryTPMModels(ctx context.Context) ([]string, error) {
	var m []string
	err := c.Execute(ctx, "query-tpm-models", nil, &m)
	return m, err
}

// QueryTPMTypes lists the TPM backends this QEMU build supports.
func (c *Client) QueryTPMTypes(ctx context.Context) ([]string, error) {
	var t []string
	err := c.Execute(ctx, "query-tpm-types", nil, &t)
	return t, err
}

// Eject opens the tray of the removable-media device with qdev id id and
// removes its medium. force ejects even if the guest locked the tray.
func (c *Client) Eject(ctx context.Context, id string, force bool) error {
	args := struct {
		ID    string `json:"id"`
		Force bool   `json:"force,omitempty"`
	}{id, force}
	return c.Execute(ctx, "eject", args, nil)
}

// BlockdevChangeMedium inserts filename (in the given format, never probed)
// into the removable-media device with qdev id id, replacing what was there.
func (c *Client) BlockdevChangeMedium(ctx context.Context, id, filename, format string) error {
	if format == "" {
		return errdefs.Invalid("format", "must be given: image formats are never probed")
	}
	args := struct {
		ID       string `json:"id"`
		Filename string `json:"filename"`
		Format   string `json:"format"`
	}{id, filename, format}
	return c.Execute(ctx, "blockdev-change-medium", args, nil)
}

// BlockdevRemoveMedium removes the medium of a device whose tray is open.
func (c *Client) BlockdevRemoveMedium(ctx context.Context, id string) error {
	args := struct {
		ID string `json:"id"`
	}{id}
	return c.Execute(ctx, "blockdev-remove-medium", args, nil)
}

// HumanMonitorCommand runs an HMP command line, for debugging only: its
// output is free text and changes between QEMU versions.
func (c *Client) HumanMonitorCommand(ctx context.Context, commandLine string) (string, error) {
	args := struct {
		CommandLine string `json:"command-line"`
	}{commandLine}
	var out string
	err := c.Execute(ctx, "human-monitor-command", args, &out)
	return out, err
}

// GetFD passes f to QEMU under name, for later use as fd=name (for example by
// netdev_add). The caller keeps f and may close it afterwards.
func (c *Client) GetFD(ctx context.Context, name string, f *os.File) error {
	args := struct {
		FDName string `json:"fdname"`
	}{name}
	return c.ExecuteWithFile(ctx, "getfd", args, nil, f)
}

// CloseFD closes a descriptor passed earlier with GetFD.
func (c *Client) CloseFD(ctx context.Context, name string) error {
	args := struct {
		FDName string `json:"fdname"`
	}{name}
	return c.Execute(ctx, "closefd", args, nil)
}
