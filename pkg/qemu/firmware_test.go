package qemu_test

import (
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/qemu"
)

func TestBootOnce(t *testing.T) {
	cfg := base()
	cfg.Disks = []qemu.Disk{{ID: "disk0", Path: "/vms/disk0.qcow2", Format: qemu.FormatQCOW2, BootIndex: 1}}
	cfg.CDROMs = []qemu.CDROM{{ID: "cd0", Path: "/iso/os.iso"}, {ID: "cd1", Path: "/iso/answers.iso", BootIndex: 5}}
	if _, _, ok := cfg.BootOnceRestore(); ok {
		t.Fatal("no boot-once device, yet something to restore")
	}
	for _, tc := range []struct {
		id   string
		want int
	}{{"cd0", -1}, {"cd1", 5}, {"disk0", 1}} {
		cfg.BootOnce = tc.id
		id, idx, ok := cfg.BootOnceRestore()
		if !ok || id != tc.id || idx != tc.want {
			t.Errorf("%s: restore to %s %d %v, want %d", tc.id, id, idx, ok, tc.want)
		}
		args, err := cfg.Args()
		if err != nil {
			t.Fatal(err)
		}
		first := 0
		for _, a := range args {
			if strings.Contains(a, `"bootindex":0`) {
				first++
				if !strings.Contains(a, `"id":"`+tc.id+`"`) {
					t.Errorf("%s: bootindex 0 on %s", tc.id, a)
				}
			}
		}
		if first != 1 {
			t.Errorf("%s: %d devices with bootindex 0, want 1", tc.id, first)
		}
	}
	if got := qemu.PeripheralPath("cd0"); got != "/machine/peripheral/cd0" {
		t.Errorf("PeripheralPath = %s", got)
	}
}

func TestFirmwareMachineOptions(t *testing.T) {
	cfg := base()
	cfg.Firmware = &qemu.Firmware{Code: "/fw/code.fd", Vars: "/vms/vars.fd"}
	args, err := cfg.Args()
	if err != nil {
		t.Fatal(err)
	}
	if m := argAfter(args, "-machine"); m != "q35,pflash0=fw-code,pflash1=fw-vars" {
		t.Errorf("UEFI -machine %s", m)
	}
	if hasPair(args, "-global", "driver=cfi.pflash01,property=secure,value=on") {
		t.Error("secure pflash without Secure Boot")
	}
	cfg.Firmware.SecureBoot = true
	args, _ = cfg.Args()
	if m := argAfter(args, "-machine"); m != "q35,smm=on,pflash0=fw-code,pflash1=fw-vars" {
		t.Errorf("Secure Boot -machine %s", m)
	}
	if !hasPair(args, "-global", "driver=cfi.pflash01,property=secure,value=on") {
		t.Error("Secure Boot without secure pflash: the guest could rewrite its keys")
	}
}
