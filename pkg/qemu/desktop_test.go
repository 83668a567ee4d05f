package qemu_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/qemu"
)

func flagNames(flags []qemu.HyperVFlag) []string {
	names := make([]string, len(flags))
	for i, f := range flags {
		names[i] = f.Name
	}
	return names
}

// KVM gets the whole set; TCG loses the KVM-only flags and every flag that
// needs one, so what TCG gets is still a set KVM's checks would accept.
func TestHyperVFlagsFollowTheAccelerator(t *testing.T) {
	all := qemu.HyperVFlags(qemu.AccelKVM)
	want := []string{"hv-relaxed", "hv-vapic", "hv-spinlocks", "hv-vpindex", "hv-runtime", "hv-time", "hv-synic",
		"hv-stimer", "hv-reset", "hv-frequencies", "hv-reenlightenment", "hv-tlbflush", "hv-ipi"}
	if got := flagNames(all); !slices.Equal(got, want) {
		t.Fatalf("KVM flags %v, want %v", got, want)
	}
	if got := flagNames(qemu.HyperVFlags("")); !slices.Equal(got, want) {
		t.Errorf("the default accelerator is KVM, got %v", got)
	}
	tcg := flagNames(qemu.HyperVFlags(qemu.AccelTCG))
	if want := []string{"hv-relaxed", "hv-vapic", "hv-spinlocks", "hv-runtime", "hv-time", "hv-reset",
		"hv-frequencies", "hv-reenlightenment"}; !slices.Equal(tcg, want) {
		t.Errorf("TCG flags %v, want %v", tcg, want)
	}
	for _, accel := range []qemu.Accel{qemu.AccelKVM, qemu.AccelTCG} {
		var before []string
		for _, f := range qemu.HyperVFlags(accel) {
			for _, n := range f.Needs {
				if !slices.Contains(before, n) {
					t.Errorf("%s: %s comes without or before %s, which it needs", accel, f.Name, n)
				}
			}
			if accel != qemu.AccelKVM && f.KVMOnly {
				t.Errorf("TCG got the KVM-only %s", f.Name)
			}
			before = append(before, f.Name)
		}
	}
}

// Only Windows gets the enlightenments, the local-time RTC and no HPET.
func TestWindowsPlatformOnlyForWindows(t *testing.T) {
	for _, windows := range []bool{false, true} {
		cfg := base()
		cfg.Windows = windows
		args, err := cfg.Args()
		if err != nil {
			t.Fatal(err)
		}
		cpu, machine := argAfter(args, "-cpu"), argAfter(args, "-machine")
		rtc := hasPair(args, "-rtc", qemu.WindowsRTC)
		if windows != strings.Contains(cpu, "hv-") || windows != rtc || windows != strings.Contains(machine, "hpet=off") {
			t.Errorf("Windows %v: -cpu %q, -machine %q, -rtc %v", windows, cpu, machine, rtc)
		}
	}
}

// The sound card plays through SPICE only when SPICE is the display.
func TestAudioBackendFollowsTheDisplay(t *testing.T) {
	for protocol, backend := range map[qemu.DisplayProtocol]string{
		qemu.DisplaySPICE: "spice", qemu.DisplayVNC: "none", qemu.DisplayNone: "none",
	} {
		cfg := base()
		cfg.Audio = true
		if protocol != qemu.DisplayNone {
			cfg.Display = qemu.Display{Protocol: protocol, Listen: "127.0.0.1", Port: 5901}
		}
		args, err := cfg.Args()
		if err != nil {
			t.Fatal(err)
		}
		if got := argAfter(args, "-audiodev"); got != backend+",id=audio" {
			t.Errorf("%s: -audiodev %q, want the %s backend", protocol, got, backend)
		}
		cfg.Audio = false
		if args, _ := cfg.Args(); slices.Contains(args, "-audiodev") {
			t.Errorf("%s: a sound card nobody asked for", protocol)
		}
	}
}
