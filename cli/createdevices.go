package cli

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// createDeviceFlags are vm create's repeatable --disk and --cdrom: disks
// and CD-ROM drives beside the flat flags' disk0 and cd0.
type createDeviceFlags struct {
	disks, cdroms []string
}

func (f *createDeviceFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringArrayVar(&f.disks, "disk", nil,
		"another disk, repeatable: size=SIZE (10G, 512M; a bare number is GiB)[,format=qcow2|raw][,name=NAME][,boot=N][,image=IMAGE[,clone=linked|full]]"+
			"[,bus=virtio-blk|virtio-scsi|sata][,cache=writeback|none|writethrough|directsync|unsafe][,discard=unmap|ignore]")
	fs.StringArrayVar(&f.cdroms, "cdrom", nil,
		"another CD-ROM drive, repeatable: [path=ISO][,name=NAME][,boot=N]; '' is an empty drive")
}

// apply adds the flags' devices to in, disks first.
func (f *createDeviceFlags) apply(in *api.CreateVMInput) error {
	for _, v := range f.disks {
		o, err := parseOptions("disk", v, "size", "format", "name", "boot", "image", "clone", "bus", "cache", "discard")
		if err != nil {
			return err
		}
		if o["size"] == "" {
			return errdefs.Invalid("disk", "%q: size= is required", v)
		}
		size, err := parseSize(o["size"])
		if err != nil {
			return errdefs.Invalid("disk", "%q: %v", v, err)
		}
		boot, err := parseBoot("disk", v, o["boot"])
		if err != nil {
			return err
		}
		in.Devices = append(in.Devices, api.Device{Name: o["name"], Type: api.DeviceDisk, Disk: &api.DiskDevice{
			SizeBytes: size, Format: o["format"], BootIndex: boot, Image: o["image"], Clone: api.DiskClone(o["clone"]),
			Bus: api.DiskBus(o["bus"]), Cache: api.DiskCache(o["cache"]), Discard: api.DiskDiscard(o["discard"]),
		}})
	}
	for _, v := range f.cdroms {
		o, err := parseOptions("cdrom", v, "path", "name", "boot")
		if err != nil {
			return err
		}
		boot, err := parseBoot("cdrom", v, o["boot"])
		if err != nil {
			return err
		}
		in.Devices = append(in.Devices, api.Device{Name: o["name"], Type: api.DeviceCDROM, CDROM: &api.CDROMDevice{Path: o["path"], BootIndex: boot}})
	}
	return nil
}

// parseOptions splits key=value[,key=value] into its values, refusing keys
// not in known and keys given twice.
func parseOptions(flag, v string, known ...string) (map[string]string, error) {
	o := map[string]string{}
	if v == "" {
		return o, nil
	}
	for _, kv := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(kv, "=")
		switch {
		case !ok:
			return nil, errdefs.Invalid(flag, "%q: %q is not key=value (keys: %s)", v, kv, strings.Join(known, ", "))
		case !slices.Contains(known, k):
			return nil, errdefs.Invalid(flag, "%q: unknown key %q (keys: %s)", v, k, strings.Join(known, ", "))
		}
		if _, dup := o[k]; dup {
			return nil, errdefs.Invalid(flag, "%q: %s is given twice", v, k)
		}
		o[k] = val
	}
	return o, nil
}

func parseBoot(flag, v, boot string) (int, error) {
	if boot == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(boot)
	if err != nil {
		return 0, errdefs.Invalid(flag, "%q: boot=%s is not a number", v, boot)
	}
	return n, nil
}

// parseSize reads 10G, 512M, 1.5T or a bare number of GiB as bytes.
func parseSize(s string) (int64, error) {
	unit := float64(1 << 30)
	num := s
	for suffix, u := range map[string]float64{"M": 1 << 20, "G": 1 << 30, "T": 1 << 40} {
		if n, ok := strings.CutSuffix(strings.TrimSuffix(s, "iB"), suffix); ok {
			num, unit = n, u
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	b := f * unit
	if err != nil || math.IsNaN(b) || b <= 0 || b > math.MaxInt64/2 || b != math.Trunc(b) {
		return 0, fmt.Errorf("size %q is not like 10G, 512M or 1.5T", s)
	}
	return int64(b), nil
}
