package qemu

import "strings"

// What a desktop guest gets beyond a server's: Windows the platform it
// expects from a hypervisor, and a sound card.

// HyperVFlag is one Hyper-V enlightenment, a property of QEMU's x86 CPU:
// an interface Windows uses instead of emulated hardware when the
// hypervisor offers it (synthetic timers instead of the HPET, a
// paravirtual EOI, hypercalls for TLB flushes and IPIs).
type HyperVFlag struct {
	// Name is QEMU's property, as qom-get reads it back.
	Name string
	// Value is what a Windows guest gets: "on", or a number.
	Value string
	// Needs are the flags QEMU refuses this one without, on KVM.
	Needs []string
	// KVMOnly: QEMU 7.2 refuses the flag on any other accelerator.
	KVMOnly bool
}

// hyperV is the set libvirt and Proxmox give a Windows guest, each flag
// after the ones it needs.
var hyperV = []HyperVFlag{
	{Name: "hv-relaxed", Value: "on"},
	{Name: "hv-vapic", Value: "on"},
	// Spinlock retries before the guest yields to the hypervisor: 8191,
	// libvirt's and Proxmox's number.
	{Name: "hv-spinlocks", Value: "0x1fff"},
	// QEMU 7.2 asks KVM whether the VP index can be set, even under TCG,
	// where the answer is always no; QEMU 8.1 fixed the check.
	{Name: "hv-vpindex", Value: "on", KVMOnly: true},
	{Name: "hv-runtime", Value: "on"},
	{Name: "hv-time", Value: "on"},
	{Name: "hv-synic", Value: "on", Needs: []string{"hv-vpindex"}},
	{Name: "hv-stimer", Value: "on", Needs: []string{"hv-synic", "hv-time"}},
	{Name: "hv-reset", Value: "on"},
	{Name: "hv-frequencies", Value: "on"},
	{Name: "hv-reenlightenment", Value: "on"},
	{Name: "hv-tlbflush", Value: "on", Needs: []string{"hv-vpindex"}},
	{Name: "hv-ipi", Value: "on", Needs: []string{"hv-vpindex"}},
}

// HyperVFlags are the enlightenments a Windows guest gets on accel, in
// argv order. KVM gets them all. Another accelerator gets those QEMU
// accepts there: not the KVM-only ones, nor any that needs one of those,
// so the set stays one QEMU on KVM would accept too. Only KVM builds the
// Hyper-V CPUID leaves, so under TCG the guest sees none of them; they are
// still set, so that every run of the suite proves QEMU takes their names
// and values.
func HyperVFlags(accel Accel) []HyperVFlag {
	if accel == "" {
		accel = AccelKVM
	}
	kept := map[string]bool{}
	var flags []HyperVFlag
	for _, f := range hyperV {
		if accel != AccelKVM && f.KVMOnly {
			continue
		}
		ok := true
		for _, n := range f.Needs {
			ok = ok && kept[n]
		}
		if ok {
			kept[f.Name] = true
			flags = append(flags, f)
		}
	}
	return flags
}

// cpuOption is -cpu's value: the host's CPU on KVM, QEMU's richest model
// otherwise, with the enlightenments for Windows.
func (c *Config) cpuOption() string {
	model := "max"
	if c.accel() == AccelKVM {
		model = "host"
	}
	if !c.Windows {
		return model
	}
	parts := []string{model}
	for _, f := range HyperVFlags(c.accel()) {
		parts = append(parts, f.Name+"="+f.Value)
	}
	return strings.Join(parts, ",")
}

// WindowsRTC is -rtc's value for Windows, which keeps the hardware clock in
// local time; slew catches up on timer ticks a busy host delayed, instead
// of letting the guest's clock fall behind.
const WindowsRTC = "base=localtime,driftfix=slew"

// SpiceCompression is how SPICE sends the screen, as the predecessor tuned
// it for thin clients: each image compressed by glz (quic for photos), jpeg
// and zlib on top over slow links, areas that change like video sent as a
// video stream, and the sound compressed.
const SpiceCompression = "image-compression=auto_glz,jpeg-wan-compression=auto,zlib-glz-wan-compression=auto,streaming-video=filter,playback-compression=on"

// IDs of the sound card. The audio backend's ID lives in a namespace of
// its own.
const (
	audiodevID       = "audio"
	soundDevice      = "sound-0"
	soundCodecDevice = "sound-codec-0"
)

// audioArgs adds an Intel HDA card with a codec that plays and records.
// The sound goes to the SPICE client when SPICE is the display; VNC
// clients do not take QEMU's audio, so it goes nowhere then, and the guest
// still has the card its desktop expects. The card comes after every other
// device, so the PCI slots those had without it stay theirs.
func (c *Config) audioArgs(a *argv) {
	if !c.Audio {
		return
	}
	backend := "none"
	if c.Display.protocol() == DisplaySPICE {
		backend = "spice"
	}
	a.add("-audiodev", backend+",id="+audiodevID)
	a.device(Device{Driver: "intel-hda", ID: soundDevice})
	a.device(Device{Driver: "hda-duplex", ID: soundCodecDevice, Bus: soundDevice + ".0", Audiodev: audiodevID})
}
