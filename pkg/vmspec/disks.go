package vmspec

import (
	"path/filepath"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// CheckDeviceName accepts a name a new device may take: it is also its
// QEMU id and node name, and names its image file.
func CheckDeviceName(field, name string) error {
	if len(name) > maxDeviceName || !deviceNameRE.MatchString(name) {
		return errdefs.Invalid(field, "must be a lower-case letter then up to %d letters, digits or '_', got %q", maxDeviceName-1, name)
	}
	return nil
}

// DiskBytes is a size in GiB as bytes, when it is a whole number of MiB a
// disk may have.
func DiskBytes(field string, gib float64) (int64, error) {
	mib, ok := wholeMiB(gib)
	if !ok {
		return 0, errdefs.Invalid(field, "must be a whole number of MiB between 1 MiB and %d TiB, got %v GiB", MaxDiskBytes>>40, gib)
	}
	return int64(mib) << 20, nil
}

// DiskImagePath is where a disk named name keeps its image of format in
// the VM's directory (disk0.qcow2 for the first).
func (l Layout) DiskImagePath(id, name, format string) string {
	return filepath.Join(l.VMDir(id), name+"."+format)
}

// Bootable reports whether a device is in the boot order.
func Bootable(d *Device) bool {
	switch {
	case d.Type == api.DeviceDisk && d.Disk != nil:
		return d.Disk.BootIndex > 0
	case d.Type == api.DeviceCDROM && d.CDROM != nil:
		return d.CDROM.BootIndex > 0
	}
	return false
}
