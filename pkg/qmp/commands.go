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

// QueryBalloon is the memory the guest has now as its balloon leaves it,
// in bytes. It fails when the VM has no balloon.
func (c *Client) QueryBalloon(ctx context.Context) (int64, error) {
	var info struct {
		Actual int64 `json:"actual"`
	}
	err := c.Execute(ctx, "query-balloon", nil, &info)
	return info.Actual, err
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

// Display protocols for SetPassword.
const (
	ProtocolVNC   = "vnc"
	ProtocolSpice = "spice"
)

// displayTarget names the display server set_password applies to.
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
// VNC server (its id in query-vnc-servers, "default" for the first -vnc);
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
