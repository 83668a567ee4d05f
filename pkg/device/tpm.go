package device

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// TPM is an emulated TPM 2.0. The shim runs swtpm on its state directory
// and passes QEMU the control channel (qemu.Config.TPM); this device owns
// the state.
type TPM struct {
	name string
	spec vmspec.TPM
}

// Name is the TPM's name, also its QEMU id.
func (t *TPM) Name() string { return t.name }

// Type is always api.DeviceTPM.
func (t *TPM) Type() api.DeviceType { return api.DeviceTPM }

// StateDir is swtpm's state directory.
func (t *TPM) StateDir() string { return t.spec.StateDir }

// Caps says a TPM cannot be hot-plugged, as it is there from the first
// instruction, and that swtpm's state migrates.
func (t *TPM) Caps() Caps { return Caps{Migrate: true} }

// Prepare makes the state directory and hands it, and swtpm's files in it
// from earlier runs, to QEMU's user, who runs swtpm. It never follows a
// link there (see Host.HandToQEMU).
func (t *TPM) Prepare(_ context.Context, h *Host) error {
	dir := t.spec.StateDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("tpm state: %w", err)
	}
	own := []string{dir}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		own = append(own, filepath.Join(dir, e.Name()))
	}
	return h.hand(own...)
}

// Release has nothing to give back: the state directory is the VM's, and
// the shim stops swtpm.
func (t *TPM) Release(context.Context) error { return nil }

// Configure adds nothing: the TPM needs swtpm's channel, which the shim
// attaches once swtpm runs.
func (t *TPM) Configure(*qemu.Config, *FDs) {}

// Hotplug refuses: the TPM is there from boot (see Caps).
func (t *TPM) Hotplug(string) ([]Command, error) { return nil, notHotpluggable(api.DeviceTPM) }

// Unplug refuses, as Hotplug does.
func (t *TPM) Unplug() ([]Command, error) { return nil, notHotpluggable(api.DeviceTPM) }
